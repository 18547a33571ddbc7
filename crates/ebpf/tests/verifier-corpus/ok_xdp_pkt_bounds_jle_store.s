# data + 14 <= data_end, then stores into the packet (XDP may write it).
# type: xdp
# expect: accept
ldxw %r2, [%r1+0]
ldxw %r3, [%r1+4]
mov %r4, %r2
add %r4, 14
jle %r4, %r3, ok
mov %r0, 1
exit
ok:
stb [%r2+0], 0xff
mov %r5, 0x0008
stxh [%r2+12], %r5
mov %r0, 3
exit
