# Packet bytes as a map key: the map helpers accept packet memory.
# type: xdp
# map: hash key=4 value=8 entries=4
# expect: accept
ldxw %r2, [%r1+0]
ldxw %r3, [%r1+4]
mov %r0, 2
mov %r4, %r2
add %r4, 4
jgt %r4, %r3, out
ldmap %r1, 0
call 1
mov %r0, 2
out:
exit
