# Jump before the start.
# type: socket_filter
# expect: reject jump out of range from insn 0 to -2
ja -3
mov %r0, 0
exit
