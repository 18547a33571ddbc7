# Bounds learned on a copy apply to the original.
# type: socket_filter
# map: array key=4 value=64 entries=4
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
mov %r2, %r1
jgt %r2, 56, out
add %r6, %r1
ldxb %r0, [%r6+7]
out:
mov %r0, 0
exit
