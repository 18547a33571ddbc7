# Masking a pointer.
# type: socket_filter
# expect: reject R1 bitwise operator &= on pointer prohibited
mov %r1, %r10
and %r1, 7
mov %r0, 0
exit
