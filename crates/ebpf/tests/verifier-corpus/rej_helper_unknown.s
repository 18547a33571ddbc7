# No such helper.
# type: socket_filter
# expect: reject invalid func unknown#9999
call 9999
mov %r0, 0
exit
