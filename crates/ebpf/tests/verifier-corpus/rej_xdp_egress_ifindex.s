# egress_ifindex belongs to devmap programs.
# type: xdp
# expect: reject invalid bpf_context access off=20 size=4
ldxw %r0, [%r1+20]
mov %r0, 2
exit
