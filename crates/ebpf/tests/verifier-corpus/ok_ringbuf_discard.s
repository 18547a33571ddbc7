# Reserve then discard.
# type: socket_filter
# map: ringbuf entries=4096
# expect: accept
ldmap %r1, 0
mov %r2, 16
mov %r3, 0
call 131
jeq %r0, 0, out
mov %r1, %r0
mov %r2, 0
call 133
out:
mov %r0, 0
exit
