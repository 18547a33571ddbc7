# The usual bounds check: data + 14 > data_end exits, the fall-through reads the EtherType.
# type: xdp
# expect: accept
ldxw %r2, [%r1+0]
ldxw %r3, [%r1+4]
mov %r0, 1
mov %r4, %r2
add %r4, 14
jgt %r4, %r3, out
ldxh %r0, [%r2+12]
and %r0, 3
out:
exit
