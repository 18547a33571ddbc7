# Lookup on a ring buffer.
# type: socket_filter
# map: ringbuf entries=4096
# expect: reject cannot pass map_type 27 into func bpf_map_lookup_elem#1
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
ldmap %r1, 0
call 1
mov %r0, 0
exit
