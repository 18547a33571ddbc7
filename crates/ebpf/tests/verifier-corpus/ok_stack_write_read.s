# Stack store then load.
# type: socket_filter
# expect: accept
stdw [%r10-8], 5
ldxdw %r0, [%r10-8]
exit
