# bpf_loop callbacks return 0 or 1.
# type: socket_filter
# expect: reject At callback return the register R0 has smin=5 smax=5 should have been in [0, 1]
ldfunc %r2, cb
mov %r1, 4
mov %r3, 0
mov %r4, 0
call 181
mov %r0, 0
exit
cb:
mov %r0, 5
exit
