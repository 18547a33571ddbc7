# Returning a helper's scalar.
# type: socket_filter
# expect: accept
call 5
exit
