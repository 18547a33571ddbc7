# Reserve result used unchecked.
# type: socket_filter
# map: ringbuf entries=4096
# expect: reject R0 invalid mem access
ldmap %r1, 0
mov %r2, 8
mov %r3, 0
call 131
stdw [%r0+0], 1
mov %r1, %r0
mov %r2, 0
call 132
mov %r0, 0
exit
