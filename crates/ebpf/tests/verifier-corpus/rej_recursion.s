# Recursion.
# type: socket_filter
# expect: reject the call stack of 9 frames is too deep
call local f
exit
f:
call local f
exit
