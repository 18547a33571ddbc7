# Half of an 8-byte key initialized.
# type: socket_filter
# map: hash key=8 value=8 entries=4
# expect: reject invalid indirect read from stack R2 off -8+0 size 8
stw [%r10-4], 0
mov %r2, %r10
add %r2, -8
ldmap %r1, 0
call 1
mov %r0, 0
exit
