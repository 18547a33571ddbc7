# len is read-only.
# type: socket_filter
# expect: reject invalid bpf_context access off=0 size=4
mov %r2, 1
stxw [%r1+0], %r2
mov %r0, 0
exit
