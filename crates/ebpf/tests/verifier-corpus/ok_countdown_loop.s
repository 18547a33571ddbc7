# Count-down loop.
# type: socket_filter
# expect: accept
mov %r1, 100
loop:
sub %r1, 1
jne %r1, 0, loop
mov %r0, 0
exit
