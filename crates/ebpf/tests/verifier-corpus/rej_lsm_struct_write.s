# Kernel structs are read-only.
# type: lsm
# expect: reject only read is supported
ldxdw %r2, [%r1+0]
mov %r3, 0
stxw [%r2+4], %r3
mov %r0, 0
exit
