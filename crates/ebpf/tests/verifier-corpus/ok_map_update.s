# bpf_map_update_elem with stack key and value.
# type: socket_filter
# map: hash key=8 value=8 entries=16
# expect: accept
stdw [%r10-8], 1
stdw [%r10-16], 2
mov %r2, %r10
add %r2, -8
mov %r3, %r10
add %r3, -16
ldmap %r1, 0
mov %r4, 0
call 2
mov %r0, 0
exit
