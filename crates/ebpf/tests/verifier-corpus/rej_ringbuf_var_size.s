# Reservation size must be constant.
# type: socket_filter
# map: ringbuf entries=4096
# expect: reject R2 is not a known constant
call 7
and %r0, 63
mov %r2, %r0
ldmap %r1, 0
mov %r3, 0
call 131
mov %r0, 0
exit
