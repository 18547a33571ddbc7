# The kernel forbids `fp -= k`.
# type: socket_filter
# expect: reject R1 subtraction from stack pointer prohibited
mov %r1, %r10
sub %r1, 8
mov %r0, 0
exit
