# Ring-buffer helper on an array.
# type: socket_filter
# map: array key=4 value=8 entries=4
# expect: reject cannot pass map_type 2 into func bpf_ringbuf_reserve#131
ldmap %r1, 0
mov %r2, 8
mov %r3, 0
call 131
mov %r0, 0
exit
