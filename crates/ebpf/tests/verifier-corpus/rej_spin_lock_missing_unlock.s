# Exit while holding a lock.
# type: socket_filter
# map: array key=4 value=16 entries=1 spin_lock=0
# expect: reject bpf_spin_unlock is missing
# kernel: skip the kernel needs BTF for spin locks
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
ldmap %r1, 0
call 1
jeq %r0, 0, out
mov %r1, %r0
call 93
out:
mov %r0, 0
exit
