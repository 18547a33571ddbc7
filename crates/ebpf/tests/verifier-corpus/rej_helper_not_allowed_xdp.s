# Helper not allowed for the type.
# type: xdp
# expect: reject program of this type cannot use helper bpf_get_current_pid_tgid#14
call 14
mov %r0, 2
exit
