# The loop condition never changes.
# type: socket_filter
# expect: reject infinite loop detected at insn 1
mov %r1, 0
loop:
jeq %r1, 0, loop
mov %r0, 0
exit
