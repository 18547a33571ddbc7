# LSM: read a field of the inode argument.
# type: lsm
# expect: accept
ldxdw %r2, [%r1+0]
ldxw %r3, [%r2+4]
mov %r0, 0
exit
