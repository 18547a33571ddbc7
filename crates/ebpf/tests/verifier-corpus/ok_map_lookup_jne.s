# Null check with jne.
# type: socket_filter
# map: array key=4 value=8 entries=4
# expect: accept
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
ldmap %r1, 0
call 1
jne %r0, 0, found
mov %r0, 0
exit
found:
ldxdw %r0, [%r0+0]
mov %r0, 1
exit
