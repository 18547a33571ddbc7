# Eight diamonds: dead registers let states merge.
# type: socket_filter
# expect: accept
call 7
mov %r6, %r0
mov %r2, 0
jset %r6, 1, a1
mov %r2, 1
a1:
jset %r6, 2, a2
mov %r2, 2
a2:
jset %r6, 4, a3
mov %r2, 3
a3:
jset %r6, 8, a4
mov %r2, 4
a4:
jset %r6, 16, a5
mov %r2, 5
a5:
jset %r6, 32, a6
mov %r2, 6
a6:
jset %r6, 64, a7
mov %r2, 7
a7:
jset %r6, 128, a8
mov %r2, 8
a8:
mov %r0, 0
exit
