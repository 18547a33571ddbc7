# Bounded loop with a branch in the body.
# type: socket_filter
# expect: accept
mov %r1, 0
mov %r2, 0
loop:
jset %r1, 1, odd
add %r2, 1
odd:
add %r1, 1
jlt %r1, 20, loop
mov %r0, 0
exit
