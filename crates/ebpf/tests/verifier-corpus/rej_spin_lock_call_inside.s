# Helper call inside a locked region.
# type: socket_filter
# map: array key=4 value=16 entries=1 spin_lock=0
# expect: reject function calls are not allowed while holding a lock
# kernel: skip the kernel needs BTF for spin locks
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
ldmap %r1, 0
call 1
jeq %r0, 0, out
mov %r6, %r0
mov %r1, %r6
call 93
call 5
mov %r1, %r6
call 94
out:
mov %r0, 0
exit
