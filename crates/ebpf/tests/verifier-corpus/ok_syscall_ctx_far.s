# Syscall context offsets up to 64 KiB.
# type: syscall
# expect: accept
ldxdw %r0, [%r1+4096]
exit
