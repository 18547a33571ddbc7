# Comparing pointers leaks them.
# type: socket_filter
# expect: reject pointer comparison prohibited
jgt %r1, %r10, out
out:
mov %r0, 0
exit
