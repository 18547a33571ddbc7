# LSM: -EPERM is allowed.
# type: lsm
# expect: accept
mov %r0, -1
exit
