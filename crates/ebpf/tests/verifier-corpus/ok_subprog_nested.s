# Three nested subprograms, each with its own frame.
# type: socket_filter
# expect: accept
call local a
exit
a:
stdw [%r10-8], 1
call local b
exit
b:
stdw [%r10-16], 2
call local c
exit
c:
mov %r0, 0
exit
