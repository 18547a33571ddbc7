# Subprogram exits without r0.
# type: socket_filter
# expect: reject R0 !read_ok
call local f
exit
f:
exit
