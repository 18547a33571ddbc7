# 32-bit ops zero-extend: index in [0, 3].
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
mov32 %r1, %r0
and32 %r1, 3
add %r6, %r1
ldxb %r0, [%r6+4]
out:
mov %r0, 0
exit
