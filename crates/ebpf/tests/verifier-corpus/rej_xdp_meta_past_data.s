# 4 bytes of metadata proven; a load at metadata offset 4 is past them.
# type: xdp
# expect: reject invalid access to packet, off=4 size=4, R2(id=0,off=4,r=4)
ldxw %r2, [%r1+8]
ldxw %r3, [%r1+0]
mov %r0, 2
mov %r4, %r2
add %r4, 4
jgt %r4, %r3, out
ldxw %r0, [%r2+4]
out:
exit
