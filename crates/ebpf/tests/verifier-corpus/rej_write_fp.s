# r10 is read-only.
# type: socket_filter
# expect: reject frame pointer is read only
mov %r10, 0
mov %r0, 0
exit
