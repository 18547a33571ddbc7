# xdp_md->ingress_ifindex.
# type: xdp
# expect: accept
ldxw %r0, [%r1+12]
mov %r0, 2
exit
