# A spilled pointer read in part.
# type: socket_filter
# expect: reject invalid size of register fill
stxdw [%r10-8], %r1
ldxw %r0, [%r10-8]
exit
