# Below the 512-byte frame.
# type: socket_filter
# expect: reject invalid write to stack R10 off=-520 size=8
stdw [%r10-520], 0
mov %r0, 0
exit
