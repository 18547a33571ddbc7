# seq_printf outside iterators.
# type: socket_filter
# expect: reject program of this type cannot use helper bpf_seq_printf#126
mov %r0, 0
call 126
mov %r0, 0
exit
