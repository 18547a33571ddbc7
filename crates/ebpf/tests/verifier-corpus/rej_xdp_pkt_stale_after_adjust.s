# bpf_xdp_adjust_head may move the packet: pointers from before the call are numbers now.
# type: xdp
# expect: reject R7 invalid mem access 'scalar'
mov %r6, %r1
ldxw %r7, [%r1+0]
ldxw %r3, [%r1+4]
mov %r0, 1
mov %r4, %r7
add %r4, 4
jgt %r4, %r3, out
mov %r1, %r6
mov %r2, 4
call 44
ldxw %r0, [%r7+0]
out:
exit
