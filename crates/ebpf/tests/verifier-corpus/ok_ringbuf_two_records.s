# Two references, both released.
# type: socket_filter
# map: ringbuf entries=4096
# expect: accept
ldmap %r1, 0
mov %r2, 8
mov %r3, 0
call 131
mov %r6, %r0
ldmap %r1, 0
mov %r2, 8
mov %r3, 0
call 131
jeq %r0, 0, no2
mov %r1, %r0
mov %r2, 0
call 132
no2:
jeq %r6, 0, out
mov %r1, %r6
mov %r2, 0
call 133
out:
mov %r0, 0
exit
