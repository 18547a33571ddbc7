# pointer * k.
# type: socket_filter
# expect: reject R1 pointer arithmetic with *= operator prohibited
mov %r1, %r10
mul %r1, 2
mov %r0, 0
exit
