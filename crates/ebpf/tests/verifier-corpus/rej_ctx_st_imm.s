# BPF_ST into the context.
# type: socket_filter
# expect: reject BPF_ST stores into R1 ctx is not allowed
stw [%r1+48], 1
mov %r0, 0
exit
