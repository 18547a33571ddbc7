# Division by a register that may be zero is defined (result 0).
# type: socket_filter
# expect: accept
call 7
mov %r6, %r0
call 7
div %r0, %r6
mod %r0, %r6
exit
