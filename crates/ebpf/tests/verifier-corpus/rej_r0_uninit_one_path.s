# r0 set on one path only.
# type: socket_filter
# expect: reject R0 !read_ok
ldxw %r1, [%r1+0]
jgt %r1, 10, out
mov %r0, 0
out:
exit
