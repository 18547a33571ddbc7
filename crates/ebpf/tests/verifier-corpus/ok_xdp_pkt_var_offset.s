# A header at a variable offset (IP header length from the packet), checked again.
# type: xdp
# expect: accept
ldxw %r2, [%r1+0]
ldxw %r3, [%r1+4]
mov %r0, 1
mov %r4, %r2
add %r4, 15
jgt %r4, %r3, out
ldxb %r5, [%r2+14]
and %r5, 15
lsh %r5, 2
mov %r6, %r2
add %r6, %r5
mov %r7, %r6
add %r7, 18
jgt %r7, %r3, out
ldxh %r0, [%r6+16]
mov %r0, 2
out:
exit
