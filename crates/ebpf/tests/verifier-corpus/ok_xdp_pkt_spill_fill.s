# A packet pointer spilled to the stack gets the range proven later, and keeps it on fill.
# type: xdp
# expect: accept
ldxw %r2, [%r1+0]
ldxw %r3, [%r1+4]
stxdw [%r10-8], %r2
mov %r0, 1
mov %r4, %r2
add %r4, 8
jgt %r4, %r3, out
ldxdw %r5, [%r10-8]
ldxdw %r0, [%r5+0]
mov %r0, 2
out:
exit
