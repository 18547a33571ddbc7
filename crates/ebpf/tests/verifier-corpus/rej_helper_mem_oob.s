# Buffer smaller than the size argument.
# type: syscall
# expect: reject invalid indirect access to stack R1 off=-8 size=16
mov %r1, %r10
add %r1, -8
mov %r2, 16
call 16
mov %r0, 0
exit
