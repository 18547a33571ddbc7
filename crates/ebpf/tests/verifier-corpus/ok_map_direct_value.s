# Direct map value access (lddw map value).
# type: socket_filter
# map: array key=4 value=16 entries=1
# expect: accept
ldmapval %r1, 0, 8
ldxdw %r0, [%r1+0]
exit
