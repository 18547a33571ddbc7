# Past the modelled struct.
# type: lsm
# expect: reject access beyond struct inode
ldxdw %r2, [%r1+0]
ldxdw %r3, [%r2+64]
mov %r0, 0
exit
