# tracing: read an argument, return 0.
# type: tracing
# expect: accept
ldxdw %r2, [%r1+8]
mov %r0, 0
exit
