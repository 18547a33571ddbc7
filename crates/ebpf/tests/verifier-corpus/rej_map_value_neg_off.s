# Before the value.
# type: socket_filter
# map: array key=4 value=8 entries=4
# expect: reject invalid access to map value, value_size=8 off=-8 size=8
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
ldmap %r1, 0
call 1
jeq %r0, 0, out
ldxdw %r1, [%r0-8]
out:
mov %r0, 0
exit
