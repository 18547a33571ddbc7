# 32-bit arithmetic on a pointer.
# type: socket_filter
# expect: reject R1 32-bit pointer arithmetic prohibited
mov %r1, %r10
add32 %r1, 8
mov %r0, 0
exit
