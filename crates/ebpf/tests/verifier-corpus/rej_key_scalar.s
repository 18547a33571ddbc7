# Key is not a pointer.
# type: socket_filter
# map: array key=4 value=8 entries=4
# expect: reject R2 type=scalar expected=
mov %r2, 0
ldmap %r1, 0
call 1
mov %r0, 0
exit
