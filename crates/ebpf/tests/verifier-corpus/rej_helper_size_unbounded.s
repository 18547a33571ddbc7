# Size argument not bounded.
# type: socket_filter
# expect: reject R2 unbounded memory access, use 'var &= const' or 'if (var < const)'
stdw [%r10-8], 0
call 7
mov32 %r0, %r0
or %r0, 1
mov %r2, %r0
mov %r1, %r10
add %r1, -8
call 6
mov %r0, 0
exit
