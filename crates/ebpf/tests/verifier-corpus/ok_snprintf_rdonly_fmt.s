# bpf_snprintf with a read-only map format.
# type: syscall
# map: array key=4 value=16 entries=1 flags=0x80
# expect: accept
# kernel: skip the kernel needs a frozen map holding the format
ldmapval %r3, 0, 0
mov %r1, %r10
add %r1, -16
mov %r2, 16
mov %r4, 0
mov %r5, 0
call 165
mov %r0, 0
exit
