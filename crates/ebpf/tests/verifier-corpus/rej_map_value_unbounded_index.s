# Index not bounds-checked.
# type: socket_filter
# map: array key=4 value=8 entries=4
# expect: reject unbounded memory access
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
ldmap %r1, 0
call 1
jeq %r0, 0, out
mov %r6, %r0
call 7
mov32 %r0, %r0
add %r6, %r0
ldxb %r0, [%r6+0]
out:
mov %r0, 0
exit
