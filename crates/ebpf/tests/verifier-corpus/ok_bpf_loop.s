# bpf_loop with a trivial callback.
# type: socket_filter
# expect: accept
# kernel: skip the kernel needs BTF func_info for callbacks
ldfunc %r2, cb
mov %r1, 10
mov %r3, 0
mov %r4, 0
call 181
mov %r0, 0
exit
cb:
mov %r0, 0
exit
