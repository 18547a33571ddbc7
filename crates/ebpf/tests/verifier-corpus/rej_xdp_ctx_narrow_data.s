# xdp_md fields load only whole.
# type: xdp
# expect: reject invalid bpf_context access off=0 size=1
ldxb %r2, [%r1+0]
mov %r0, 2
exit
