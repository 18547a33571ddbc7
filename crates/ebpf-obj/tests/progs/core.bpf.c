// SPDX-License-Identifier: GPL-2.0
/* CO-RE relocations against locally defined, flavored kernel structs. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

struct task_struct___local {
	int pid;
	int tgid;
	struct task_struct___local *real_parent;
	int field_that_does_not_exist;
} __attribute__((preserve_access_index));

struct list_head___x {
	struct list_head___x *next, *prev;
} __attribute__((preserve_access_index));

struct type_that_does_not_exist___x {
	int a;
} __attribute__((preserve_access_index));

struct bpfvfs_bits___local {
	int a;
	unsigned int flag:3;
	int sflag:5;
} __attribute__((preserve_access_index));

enum pid_type___local {
	PIDTYPE_PID___local = 0,
	PIDTYPE_TGID___local = 1,
};

int out_pid, out_ppid, out_exists, out_size, out_type_exists, out_tsize, out_enum;
long out_flag, out_sflag;

SEC("tp_btf/sched_switch")
int read_task(void *ctx)
{
	struct task_struct___local *t = (void *)bpf_get_current_task();

	out_pid = BPF_CORE_READ(t, pid);
	out_ppid = BPF_CORE_READ(t, real_parent, tgid);
	out_exists = bpf_core_field_exists(t->field_that_does_not_exist);
	out_size = bpf_core_field_size(t->tgid);
	out_type_exists = bpf_core_type_exists(struct type_that_does_not_exist___x);
	out_tsize = bpf_core_type_size(struct list_head___x);
	out_enum = bpf_core_enum_value(enum pid_type___local, PIDTYPE_TGID___local);
	return 0;
}

SEC("fentry/bpfvfs_bits_user")
int read_bits(void *ctx)
{
	struct bpfvfs_bits___local *b = (void *)bpf_get_current_task();

	out_flag = BPF_CORE_READ_BITFIELD_PROBED(b, flag);
	out_sflag = BPF_CORE_READ_BITFIELD_PROBED(b, sflag);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
