# Write past the record.
# type: socket_filter
# map: ringbuf entries=4096
# expect: reject invalid access to memory, mem_size=8 off=8 size=8
ldmap %r1, 0
mov %r2, 8
mov %r3, 0
call 131
jeq %r0, 0, out
stdw [%r0+8], 1
mov %r1, %r0
mov %r2, 0
call 132
out:
mov %r0, 0
exit
