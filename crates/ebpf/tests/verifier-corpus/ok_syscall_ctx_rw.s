# Syscall context: caller buffer, read and write.
# type: syscall
# expect: accept
ldxdw %r2, [%r1+8]
stxdw [%r1+16], %r2
mov %r0, 0
exit
