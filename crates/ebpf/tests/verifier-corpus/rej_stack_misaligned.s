# Stack accesses must be aligned.
# type: socket_filter
# expect: reject misaligned stack access
stw [%r10-6], 0
mov %r0, 0
exit
