# A valid pointer compared with 0: decided, not a leak.
# type: socket_filter
# expect: accept
jeq %r1, 0, out
mov %r0, 1
exit
out:
mov %r0, 0
exit
