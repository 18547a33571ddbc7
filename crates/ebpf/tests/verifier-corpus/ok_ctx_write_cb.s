# cb[0] is writable.
# type: socket_filter
# expect: accept
mov %r2, 7
stxw [%r1+48], %r2
mov %r0, 0
exit
