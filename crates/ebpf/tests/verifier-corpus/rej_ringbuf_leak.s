# Record reserved and never submitted.
# type: socket_filter
# map: ringbuf entries=4096
# expect: reject Unreleased reference id=
ldmap %r1, 0
mov %r2, 8
mov %r3, 0
call 131
jeq %r0, 0, out
stdw [%r0+0], 1
out:
mov %r0, 0
exit
