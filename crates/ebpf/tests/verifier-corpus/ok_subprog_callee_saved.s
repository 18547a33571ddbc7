# r6-r9 survive calls.
# type: socket_filter
# expect: accept
mov %r6, 5
call local f
mov %r0, %r6
exit
f:
mov %r6, 1
mov %r0, 0
exit
