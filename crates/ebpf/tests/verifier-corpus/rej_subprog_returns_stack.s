# Pointer into a dead frame.
# type: socket_filter
# expect: reject cannot return stack pointer to the caller frame
call local f
mov %r0, 0
exit
f:
mov %r0, %r10
add %r0, -8
exit
