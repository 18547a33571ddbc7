# Zero size where it is not allowed.
# type: socket_filter
# expect: reject R2 invalid zero-sized read
stdw [%r10-8], 0
mov %r1, %r10
add %r1, -8
mov %r2, 0
call 6
mov %r0, 0
exit
