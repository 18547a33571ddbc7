# Index bounded by a 32-bit comparison.
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
mov32 %r0, %r0
jgt32 %r0, 7, out
lsh %r0, 3
add %r6, %r0
ldxdw %r1, [%r6+0]
out:
mov %r0, 0
exit
