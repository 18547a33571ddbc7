# A copy of the pointer is null-checked through the original.
# type: socket_filter
# map: array key=4 value=8 entries=4
# expect: accept
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
ldmap %r1, 0
call 1
mov %r6, %r0
jeq %r0, 0, out
ldxdw %r1, [%r6+0]
out:
mov %r0, 0
exit
