# scalar - pointer.
# type: socket_filter
# expect: reject R0 tried to subtract pointer from scalar
mov %r0, 0
sub %r0, %r10
exit
