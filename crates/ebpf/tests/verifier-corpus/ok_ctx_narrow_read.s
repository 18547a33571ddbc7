# Narrow load of a u32 context field.
# type: socket_filter
# expect: accept
ldxb %r0, [%r1+0]
exit
