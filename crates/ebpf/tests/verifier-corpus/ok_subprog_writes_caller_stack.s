# Callee initializes the caller's stack slot.
# type: socket_filter
# expect: accept
mov %r1, %r10
add %r1, -8
call local f
ldxdw %r0, [%r10-8]
exit
f:
stdw [%r1+0], 9
mov %r0, 0
exit
