# r2 clobbered by a helper call.
# type: socket_filter
# expect: reject R2 !read_ok
mov %r2, 1
call 5
mov %r0, %r2
exit
