# data + 14 < data_end: strictly less, so 15 bytes are proven.
# type: xdp
# expect: accept
ldxw %r2, [%r1+0]
ldxw %r3, [%r1+4]
mov %r4, %r2
add %r4, 14
jlt %r4, %r3, ok
mov %r0, 1
exit
ok:
ldxb %r0, [%r2+14]
mov %r0, 2
exit
