# bpf_ringbuf_output from the stack.
# type: socket_filter
# map: ringbuf entries=4096
# expect: accept
stdw [%r10-8], 1
ldmap %r1, 0
mov %r2, %r10
add %r2, -8
mov %r3, 8
mov %r4, 0
call 130
mov %r0, 0
exit
