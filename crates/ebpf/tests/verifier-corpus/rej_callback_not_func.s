# Callback argument is not a function.
# type: socket_filter
# expect: reject R2 type=scalar expected=func
mov %r2, 0
mov %r1, 4
mov %r3, 0
mov %r4, 0
call 181
mov %r0, 0
exit
