# `<= 8` instead of `< 8`.
# type: socket_filter
# map: array key=4 value=64 entries=4
# expect: reject invalid access to map value, value_size=64 off=64 size=8
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
ldmap %r1, 0
call 1
jeq %r0, 0, out
mov %r6, %r0
call 7
mov %r1, %r0
jgt %r1, 8, out
lsh %r1, 3
add %r6, %r1
ldxdw %r0, [%r6+0]
out:
mov %r0, 0
exit
