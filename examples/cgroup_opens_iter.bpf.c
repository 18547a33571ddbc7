// (b) The per-group open counts of cgroup_opens.bpf.c, reported the way a current kernel
// does it: a cgroup iterator (SEC("iter/cgroup"), Linux 6.1+) whose link is created for a
// start group and an order and pinned in bpffs, read with `cat`.
//   bpfvfs prog loadall cgroup_opens_iter.bpf.o /sys/fs/bpf/cgopens_iter autoattach
//   bpfvfs iter pin cgroup_opens_iter.bpf.o /sys/fs/bpf/cgroup_opens_report \
//          cgroup /sys/fs/cgroup order descendants_pre
//   cat /sys/fs/bpf/cgroup_opens_report
// The first command attaches the counter; `iter pin` loads the object again and pins an
// iterator link of its first program, dump_opens. The counts map is pinned by name
// (/sys/fs/bpf/cgroup_opens), so both loads share it, as with bpftool and libbpf.
// A header, then one line per group: its id (cgroup->kn->id, what stat shows as the group
// directory's inode number), its level and its count. The iterator's last call has
// cgroup == NULL and prints nothing.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__type(key, int);
	__type(value, __u64);
} cgroup_opens SEC(".maps");

// First in the object: the program `iter pin` attaches.
SEC("iter/cgroup")
int dump_opens(struct bpf_iter__cgroup *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct cgroup *cgrp = ctx->cgroup;
	__u64 *n;

	if (!cgrp)
		return 0;
	if (ctx->meta->seq_num == 0)
		BPF_SEQ_PRINTF(seq, "id       level opens\n");
	n = bpf_cgrp_storage_get(&cgroup_opens, cgrp, 0, 0);
	BPF_SEQ_PRINTF(seq, "%-8llu %-5d %llu\n", cgrp->kn->id, cgrp->level, n ? *n : 0);
	return 0;
}

SEC("fentry/vfs_open")
int BPF_PROG(count_open, const struct path *path, struct file *file)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 *n = bpf_cgrp_storage_get(&cgroup_opens, task->cgroups->dfl_cgrp, 0,
					BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
