# Index may be negative.
# type: syscall
# map: array key=4 value=8 entries=4
# expect: reject R0 min value is negative
ldxdw %r7, [%r1+0]
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
ldmap %r1, 0
call 1
jeq %r0, 0, out
jsgt %r7, 7, out
jslt %r7, -8, out
add %r0, %r7
ldxb %r1, [%r0+0]
out:
mov %r0, 0
exit
