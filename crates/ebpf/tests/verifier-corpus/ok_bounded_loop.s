# Loop with a constant bound, explored iteration by iteration.
# type: socket_filter
# expect: accept
mov %r0, 0
mov %r1, 0
loop:
add %r0, %r1
add %r1, 1
jlt %r1, 10, loop
exit
