# Key not initialized.
# type: socket_filter
# map: array key=4 value=8 entries=4
# expect: reject invalid indirect read from stack R2 off -4+0 size 4
mov %r2, %r10
add %r2, -4
ldmap %r1, 0
call 1
mov %r0, 0
exit
