# data_end is only for comparisons.
# type: xdp
# expect: reject R3 invalid mem access 'pkt_end'
ldxw %r3, [%r1+4]
ldxb %r0, [%r3-1]
exit
