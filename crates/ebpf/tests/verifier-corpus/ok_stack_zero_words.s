# Two zero words read back as one dword.
# type: socket_filter
# expect: accept
stw [%r10-4], 0
stw [%r10-8], 0
ldxdw %r0, [%r10-8]
exit
