# Variable-offset stack read over initialized slots.
# type: syscall
# expect: accept
stdw [%r10-8], 0
stdw [%r10-16], 0
call 7
and %r0, 8
mov %r1, %r10
add %r1, -16
add %r1, %r0
ldxdw %r0, [%r1+0]
exit
