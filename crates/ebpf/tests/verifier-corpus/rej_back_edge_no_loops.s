# With loops disallowed every back-edge is rejected.
# type: socket_filter
# expect: reject back-edge from insn 2 to 1
# option: no_loops
# kernel: skip the kernel allows bounded loops for root
mov %r1, 0
loop:
add %r1, 1
jlt %r1, 10, loop
mov %r0, 0
exit
