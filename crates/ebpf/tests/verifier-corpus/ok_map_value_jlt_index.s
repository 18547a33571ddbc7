# Variable index bounded by a comparison.
# type: socket_filter
# map: array key=4 value=64 entries=4
# expect: accept
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
ldmap %r1, 0
call 1
jeq %r0, 0, out
mov %r6, %r0
call 7
mov %r1, %r0
jge %r1, 8, out
lsh %r1, 3
add %r6, %r1
stdw [%r6+0], 1
out:
mov %r0, 0
exit
