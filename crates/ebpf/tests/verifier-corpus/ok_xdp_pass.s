# XDP_PASS.
# type: xdp
# expect: accept
mov %r0, 2
exit
