# view: seq_write through the seq_file pointer.
# type: view
# expect: accept
ldxdw %r1, [%r1+0]
stdw [%r10-8], 0x41
mov %r2, %r10
add %r2, -8
mov %r3, 8
call 127
mov %r0, 0
exit
