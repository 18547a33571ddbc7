# data_end - data is a number (the packet's length).
# type: xdp
# expect: accept
ldxw %r2, [%r1+0]
ldxw %r3, [%r1+4]
sub %r3, %r2
mov %r0, 2
jgt %r3, 60, out
mov %r0, 1
out:
exit
