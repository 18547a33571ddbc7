# Inode argument is not an inode pointer.
# type: lsm
# map: inode_storage key=4 value=8 entries=0
# expect: reject R2 type=scalar expected=ptr_inode
mov %r2, 1
ldmap %r1, 0
mov %r3, 0
mov %r4, 1
call 145
mov %r0, 0
exit
