# Pointers are spilled whole.
# type: socket_filter
# expect: reject invalid size of register spill
stxw [%r10-8], %r10
mov %r0, 0
exit
