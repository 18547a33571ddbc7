# A thousand iterations stay within the budget.
# type: syscall
# expect: accept
mov %r1, 0
mov %r0, 0
loop:
add %r0, 3
add %r1, 1
jlt %r1, 1000, loop
mov %r0, 0
exit
