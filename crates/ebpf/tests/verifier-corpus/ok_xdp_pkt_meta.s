# Metadata: data_meta + 4 <= data proves 4 bytes of metadata.
# type: xdp
# expect: accept
ldxw %r2, [%r1+8]
ldxw %r3, [%r1+0]
mov %r0, 2
mov %r4, %r2
add %r4, 4
jgt %r4, %r3, out
ldxw %r0, [%r2+0]
and %r0, 3
out:
exit
