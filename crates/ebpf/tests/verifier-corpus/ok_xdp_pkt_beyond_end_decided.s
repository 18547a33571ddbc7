# Once data + 14 > data_end is known, a second comparison of the same pointer is decided:
# the branch that would read past the end is never taken.
# type: xdp
# expect: accept
ldxw %r2, [%r1+0]
ldxw %r3, [%r1+4]
mov %r4, %r2
add %r4, 14
jgt %r4, %r3, past
mov %r0, 2
exit
past:
jle %r4, %r3, never
mov %r0, 1
exit
never:
ldxb %r0, [%r4+100]
exit
