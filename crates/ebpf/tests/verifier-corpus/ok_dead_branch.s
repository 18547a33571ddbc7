# A branch that is never taken is not explored.
# type: socket_filter
# expect: accept
mov %r1, 0
jne %r1, 0, bad
mov %r0, 0
exit
bad:
ldxdw %r0, [%r5+0]
exit
