# Above the frame pointer.
# type: socket_filter
# expect: reject invalid write to stack R10 off=0 size=8
stdw [%r10+0], 0
mov %r0, 0
exit
