# bpf_map_delete_elem.
# type: socket_filter
# map: hash key=8 value=8 entries=16
# expect: accept
stdw [%r10-8], 1
mov %r2, %r10
add %r2, -8
ldmap %r1, 0
call 3
mov %r0, 0
exit
