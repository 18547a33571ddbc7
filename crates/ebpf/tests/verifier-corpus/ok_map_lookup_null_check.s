# Lookup, null check, read the value.
# type: socket_filter
# map: array key=4 value=8 entries=4
# expect: accept
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
ldmap %r1, 0
call 1
jeq %r0, 0, out
ldxdw %r1, [%r0+0]
out:
mov %r0, 0
exit
