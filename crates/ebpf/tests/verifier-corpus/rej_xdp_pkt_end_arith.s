# No arithmetic on data_end.
# type: xdp
# expect: reject R3 pointer arithmetic on pkt_end prohibited
ldxw %r3, [%r1+4]
add %r3, -1
mov %r0, 2
exit
