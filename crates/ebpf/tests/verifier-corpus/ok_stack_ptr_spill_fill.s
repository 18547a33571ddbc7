# Context pointer spilled and filled keeps its type.
# type: socket_filter
# expect: accept
stxdw [%r10-8], %r1
ldxdw %r3, [%r10-8]
ldxw %r0, [%r3+0]
exit
