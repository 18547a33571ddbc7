# Register written on every path.
# type: socket_filter
# expect: accept
ldxw %r1, [%r1+0]
mov %r0, 0
jgt %r1, 10, big
mov %r2, 1
ja join
big:
mov %r2, 2
join:
add %r0, %r2
exit
