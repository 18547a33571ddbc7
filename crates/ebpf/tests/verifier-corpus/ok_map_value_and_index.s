# Variable index bounded by `&= 7`.
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
and %r0, 7
lsh %r0, 3
add %r6, %r0
ldxdw %r0, [%r6+0]
mov %r0, 0
out:
exit
