# Arithmetic before the null check.
# type: socket_filter
# map: array key=4 value=8 entries=4
# expect: reject R0 pointer arithmetic on map_value_or_null prohibited, null-check it first
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
ldmap %r1, 0
call 1
add %r0, 8
mov %r0, 0
exit
