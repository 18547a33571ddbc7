# A socket filter reads the packet with bpf_skb_load_bytes into the stack.
# type: socket_filter
# expect: accept
mov %r2, 9
mov %r3, %r10
add %r3, -8
mov %r4, 1
call 26
jne %r0, 0, out
ldxb %r0, [%r10-8]
out:
exit
