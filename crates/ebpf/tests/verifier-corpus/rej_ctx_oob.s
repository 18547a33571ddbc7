# Outside __sk_buff.
# type: socket_filter
# expect: reject invalid bpf_context access off=200 size=4
ldxw %r0, [%r1+200]
exit
