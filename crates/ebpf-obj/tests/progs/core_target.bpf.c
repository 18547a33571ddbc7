// SPDX-License-Identifier: GPL-2.0
/* Not a program: a made-up "kernel" whose BTF is the CO-RE target in tests.
 * Layouts deliberately differ from core.bpf.c's local definitions. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct list_head {
	struct list_head *next, *prev;
};

struct task_struct {
	char pad[100];
	int tgid;
	int pid;
	struct task_struct *real_parent;
	struct list_head tasks;
};

struct bpfvfs_bits {
	long pad;
	unsigned int x:1;
	unsigned int flag:3;
	int sflag:5;
};

enum pid_type {
	PIDTYPE_PID,
	PIDTYPE_TGID = 7,
	PIDTYPE_MAX,
};

struct task_struct task_anchor;
struct bpfvfs_bits bits_anchor;
enum pid_type pid_type_anchor;

char LICENSE[] SEC("license") = "GPL";
