# Size argument bounded by `&= 15`, zero allowed.
# type: syscall
# expect: accept
call 7
and %r0, 15
mov %r2, %r0
mov %r1, %r10
add %r1, -16
mov %r3, 0
call 113
mov %r0, 0
exit
