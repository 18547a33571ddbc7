# Jump to the second slot of lddw.
# type: socket_filter
# expect: reject jump into the middle of ldimm64 insn 2
mov %r0, 0
ja +1
lddw %r1, 5
exit
