# Reading a register never written.
# type: socket_filter
# expect: reject R2 !read_ok
mov %r0, %r2
exit
