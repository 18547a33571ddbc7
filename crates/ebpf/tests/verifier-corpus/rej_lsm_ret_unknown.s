# LSM return value not bounded.
# type: lsm
# expect: reject should have been in [-4095, 0]
call 7
exit
