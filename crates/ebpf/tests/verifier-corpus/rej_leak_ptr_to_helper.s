# A pointer passed as a plain number.
# type: socket_filter
# map: hash key=8 value=8 entries=4
# expect: reject R4 leaks addr into helper function
stdw [%r10-8], 1
mov %r2, %r10
add %r2, -8
mov %r3, %r10
add %r3, -8
ldmap %r1, 0
mov %r4, %r10
call 2
mov %r0, 0
exit
