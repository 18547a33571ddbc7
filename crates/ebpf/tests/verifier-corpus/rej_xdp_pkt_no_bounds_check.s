# A packet byte read before any comparison with data_end: no range proven.
# type: xdp
# expect: reject invalid access to packet, off=0 size=1, R2(id=0,off=0,r=0)
ldxw %r2, [%r1+0]
ldxb %r0, [%r2+0]
mov %r0, 2
exit
