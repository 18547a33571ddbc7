# LSM must return 0 or -errno.
# type: lsm
# expect: reject At program exit the register R0 has smin=1 smax=1 should have been in [-4095, 0]
mov %r0, 1
exit
