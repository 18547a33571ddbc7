# bpf_skb_load_bytes is for skb programs.
# type: xdp
# expect: reject program of this type cannot use helper bpf_skb_load_bytes#26
mov %r2, 0
mov %r3, %r10
add %r3, -8
mov %r4, 4
call 26
mov %r0, 2
exit
