# LSM: both exits in range.
# type: lsm
# expect: accept
call 7
jgt %r0, 5, deny
mov %r0, 0
exit
deny:
mov %r0, -13
exit
