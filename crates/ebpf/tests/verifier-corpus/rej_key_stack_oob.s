# Key runs past the frame pointer.
# type: socket_filter
# map: array key=4 value=8 entries=4
# expect: reject invalid indirect access to stack R2 off=-2 size=4
stw [%r10-4], 0
mov %r2, %r10
add %r2, -2
ldmap %r1, 0
call 1
mov %r0, 0
exit
