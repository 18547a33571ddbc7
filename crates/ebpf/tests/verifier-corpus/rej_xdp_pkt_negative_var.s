# A variable part that may be negative is refused before any range check.
# type: xdp
# expect: reject R6 min value is negative
ldxw %r2, [%r1+0]
ldxw %r3, [%r1+4]
mov %r0, 1
mov %r4, %r2
add %r4, 64
jgt %r4, %r3, out
ldxb %r5, [%r2+0]
and %r5, 31
sub %r5, 16
mov %r6, %r2
add %r6, %r5
mov %r7, %r6
add %r7, 4
jgt %r7, %r3, out
ldxb %r0, [%r6+0]
out:
exit
