# Unknown map.
# type: socket_filter
# map: array key=4 value=8 entries=4
# expect: reject fd 7 is not pointing to valid bpf_map
# kernel: skip needs an fd that is not a map
ldmap %r1, 7
mov %r0, 0
exit
