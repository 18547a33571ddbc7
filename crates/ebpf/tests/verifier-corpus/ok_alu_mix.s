# Assorted scalar ALU operations.
# type: socket_filter
# expect: accept
call 7
mov %r1, %r0
neg %r1
be16 %r1
movsx1664 %r2, %r1
arsh %r2, 3
mov32 %r3, %r2
xor %r3, 0x55
mul %r3, 7
mod %r3, 13
mov %r0, %r3
exit
