# Variable offset may reach above the frame.
# type: syscall
# expect: reject invalid variable-offset read from stack
stdw [%r10-8], 0
call 7
and %r0, 16
mov %r1, %r10
add %r1, -8
add %r1, %r0
ldxdw %r0, [%r1+0]
exit
