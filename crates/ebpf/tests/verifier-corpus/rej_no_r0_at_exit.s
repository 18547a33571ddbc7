# r0 not set at exit.
# type: socket_filter
# expect: reject R0 !read_ok
exit
