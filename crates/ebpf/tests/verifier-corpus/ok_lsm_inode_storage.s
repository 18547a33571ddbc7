# LSM: inode storage get, null-checked.
# type: lsm
# map: inode_storage key=4 value=8 entries=0
# expect: accept
ldxdw %r2, [%r1+0]
ldmap %r1, 0
mov %r3, 0
mov %r4, 1
call 145
jeq %r0, 0, out
stdw [%r0+0], 1
out:
mov %r0, 0
exit
