// (a) Per-group file opens, shown in each group's directory.
//
// A tracing program on vfs_open counts opens per cgroup in cgroup local storage (the
// opening task's group, task->cgroups->dfl_cgrp); a view program formats one group's count
// as "opens: N". Exposed in a group, `cat` of the file runs the view for that group:
//   bpfvfs prog loadall cgroup_opens.bpf.o /sys/fs/bpf/cgopens \
//          pinmaps /sys/fs/bpf/cgopens_maps autoattach
//   bpfvfs prog pin pinned /sys/fs/bpf/cgopens/show_opens /sys/fs/cgroup/a/opens
//   bpfvfs cgroup attach /sys/fs/cgroup/a view pinned /sys/fs/bpf/cgopens/show_opens inherit
// The pinned exposure lives as long as the program's bpffs pin; the attached one (a file
// named show_opens in a and in every group below it, existing or future) as long as the
// attachment. This is the bpf_view design of the 2022 "pinning outside bpffs" series;
// cgroup_opens_iter.bpf.c is the same report in the design that landed.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} opens SEC(".maps");

SEC("fentry/vfs_open")
int BPF_PROG(count_open, const struct path *path, struct file *file)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 *n = bpf_cgrp_storage_get(&opens, task->cgroups->dfl_cgrp, 0,
					BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}

SEC("view/cgroup")
int show_opens(struct bpf_iter__cgroup *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct cgroup *cgrp = ctx->cgroup;
	__u64 *n;

	if (!cgrp)
		return 0;
	n = bpf_cgrp_storage_get(&opens, cgrp, 0, 0);
	BPF_SEQ_PRINTF(seq, "opens: %llu\n", n ? *n : 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
