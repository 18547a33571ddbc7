# snprintf format must be a read-only map string.
# type: syscall
# expect: reject R3 type=fp expected=map_value
stdw [%r10-24], 0x6425
mov %r3, %r10
add %r3, -24
mov %r1, %r10
add %r1, -16
mov %r2, 16
mov %r4, 0
mov %r5, 0
call 165
mov %r0, 0
exit
