# fentry-style programs return 0.
# type: tracing
# expect: reject should have been in [0, 0]
mov %r0, 1
exit
