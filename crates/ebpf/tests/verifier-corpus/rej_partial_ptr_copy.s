# 32-bit copy of a pointer.
# type: socket_filter
# expect: reject R10 partial copy of pointer
mov32 %r0, %r10
exit
