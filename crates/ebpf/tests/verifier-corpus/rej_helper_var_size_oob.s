# Variable size may exceed the buffer.
# type: syscall
# expect: reject invalid indirect access to stack
call 7
and %r0, 31
mov %r2, %r0
mov %r1, %r10
add %r1, -16
mov %r3, 0
call 113
mov %r0, 0
exit
