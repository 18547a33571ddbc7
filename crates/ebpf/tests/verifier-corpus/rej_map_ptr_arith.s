# Arithmetic on a map pointer.
# type: socket_filter
# map: array key=4 value=8 entries=4
# expect: reject R1 pointer arithmetic on map_ptr prohibited
ldmap %r1, 0
add %r1, 8
mov %r0, 0
exit
