# bpf_probe_read_kernel into the stack.
# type: syscall
# expect: accept
mov %r1, %r10
add %r1, -8
mov %r2, 8
mov %r3, 0
call 113
ldxdw %r0, [%r10-8]
exit
