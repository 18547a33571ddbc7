# Loop whose exit depends on a value the body does not change.
# type: socket_filter
# expect: reject infinite loop detected
ldxw %r1, [%r1+0]
loop:
add %r1, 0
jne %r1, 0, loop
mov %r0, 0
exit
