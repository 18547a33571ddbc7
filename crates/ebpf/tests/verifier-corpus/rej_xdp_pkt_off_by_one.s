# 14 bytes proven; a 2-byte load at offset 13 needs 15.
# type: xdp
# expect: reject invalid access to packet, off=13 size=2, R2(id=0,off=13,r=14)
ldxw %r2, [%r1+0]
ldxw %r3, [%r1+4]
mov %r0, 1
mov %r4, %r2
add %r4, 14
jgt %r4, %r3, out
ldxh %r0, [%r2+13]
out:
exit
