# bpf_trace_printk with a format on the stack.
# type: socket_filter
# expect: accept
stdw [%r10-8], 0x0a6968
mov %r1, %r10
add %r1, -8
mov %r2, 8
call 6
mov %r0, 0
exit
