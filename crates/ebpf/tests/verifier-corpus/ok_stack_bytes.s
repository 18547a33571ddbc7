# Byte-sized stack use.
# type: socket_filter
# expect: accept
stb [%r10-1], 1
ldxb %r0, [%r10-1]
exit
