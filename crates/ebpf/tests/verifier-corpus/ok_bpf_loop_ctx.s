# bpf_loop callback updating a counter on the caller's stack.
# type: socket_filter
# expect: accept
# kernel: skip the kernel needs BTF func_info for callbacks
stdw [%r10-8], 0
mov %r3, %r10
add %r3, -8
ldfunc %r2, cb
mov %r1, 16
mov %r4, 0
call 181
ldxdw %r0, [%r10-8]
mov %r0, 0
exit
cb:
ldxdw %r3, [%r2+0]
add %r3, 1
stxdw [%r2+0], %r3
mov %r0, 0
exit
