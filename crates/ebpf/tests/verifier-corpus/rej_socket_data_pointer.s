# Socket filters have no direct packet access.
# type: socket_filter
# expect: reject invalid bpf_context access off=76 size=4
ldxw %r2, [%r1+76]
mov %r0, 0
exit
