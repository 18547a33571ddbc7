# A variable amount added after the check: a new pointer family, nothing proven for it.
# type: xdp
# expect: reject invalid access to packet, off=0 size=1, R6(id=
ldxw %r2, [%r1+0]
ldxw %r3, [%r1+4]
mov %r0, 1
mov %r4, %r2
add %r4, 64
jgt %r4, %r3, out
ldxb %r5, [%r2+0]
and %r5, 31
mov %r6, %r2
add %r6, %r5
ldxb %r0, [%r6+0]
out:
exit
