# data < data_end at offset 0 proves nothing (Linux gives no range for it).
# type: xdp
# expect: reject invalid access to packet, off=0 size=1, R2(id=0,off=0,r=0)
ldxw %r2, [%r1+0]
ldxw %r3, [%r1+4]
mov %r0, 1
jge %r2, %r3, out
ldxb %r0, [%r2+0]
out:
exit
