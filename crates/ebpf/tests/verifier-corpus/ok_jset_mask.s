# jset clears a bit on the fall-through: index in [0, 7].
# type: socket_filter
# map: array key=4 value=8 entries=4
# expect: accept
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
ldmap %r1, 0
call 1
jeq %r0, 0, out
mov %r6, %r0
call 7
mov %r1, %r0
and %r1, 0xf
jset %r1, 8, out
add %r6, %r1
ldxb %r0, [%r6+0]
out:
mov %r0, 0
exit
