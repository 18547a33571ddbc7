# 320 + 256 bytes of stack on one call chain.
# type: socket_filter
# expect: reject combined stack size of 2 calls is 576. Too large
stdw [%r10-320], 0
call local f
mov %r0, 0
exit
f:
stdw [%r10-256], 0
mov %r0, 0
exit
