# bpf_trace_printk does not take packet memory (only helpers marked for it do).
# type: xdp
# expect: reject helper access to the packet is not allowed
ldxw %r2, [%r1+0]
ldxw %r3, [%r1+4]
mov %r0, 1
mov %r4, %r2
add %r4, 8
jgt %r4, %r3, out
mov %r1, %r2
mov %r2, 8
call 6
out:
exit
