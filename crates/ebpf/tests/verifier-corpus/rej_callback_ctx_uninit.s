# Callback reads uninitialized caller stack.
# type: socket_filter
# expect: reject invalid read from stack
mov %r3, %r10
add %r3, -8
ldfunc %r2, cb
mov %r1, 4
mov %r4, 0
call 181
mov %r0, 0
exit
cb:
ldxdw %r0, [%r2+0]
mov %r0, 0
exit
