# bpf-to-bpf call returning a value.
# type: socket_filter
# expect: accept
mov %r1, 1
call local f
exit
f:
mov %r0, %r1
add %r0, 1
exit
