# Record written after submit.
# type: socket_filter
# map: ringbuf entries=4096
# expect: reject R6 invalid mem access 'scalar'
ldmap %r1, 0
mov %r2, 8
mov %r3, 0
call 131
jeq %r0, 0, out
mov %r6, %r0
mov %r1, %r0
mov %r2, 0
call 132
stdw [%r6+0], 1
out:
mov %r0, 0
exit
