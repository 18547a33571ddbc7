# Size argument may be negative.
# type: syscall
# expect: reject R2 min value is negative
ldxdw %r2, [%r1+0]
stdw [%r10-8], 0
mov %r1, %r10
add %r1, -8
call 6
mov %r0, 0
exit
