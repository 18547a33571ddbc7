# xdp_md fields are read-only.
# type: xdp
# expect: reject invalid bpf_context access off=12 size=4
mov %r2, 1
stxw [%r1+12], %r2
mov %r0, 2
exit
