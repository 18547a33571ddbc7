# Syscall program returning a constant.
# type: syscall
# expect: accept
mov %r0, 42
exit
