# LSM: 0 is allowed.
# type: lsm
# expect: accept
mov %r0, 0
exit
