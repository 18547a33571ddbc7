# Division by the constant 0.
# type: socket_filter
# expect: reject div by zero
mov %r0, 1
div %r0, 0
exit
