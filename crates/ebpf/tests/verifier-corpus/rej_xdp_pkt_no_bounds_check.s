# Packet pointers are not modelled (known gap).
# type: xdp
# expect: reject packet pointers are not supported
ldxw %r2, [%r1+0]
mov %r0, 2
exit
