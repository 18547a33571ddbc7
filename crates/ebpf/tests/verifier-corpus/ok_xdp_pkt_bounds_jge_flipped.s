# data_end >= data + 14 jumps to the access: the taken branch has [data, data+14) proven.
# type: xdp
# expect: accept
ldxw %r2, [%r1+0]
ldxw %r3, [%r1+4]
mov %r4, %r2
add %r4, 14
jge %r3, %r4, ok
mov %r0, 1
exit
ok:
ldxb %r0, [%r2+13]
mov %r0, 2
exit
