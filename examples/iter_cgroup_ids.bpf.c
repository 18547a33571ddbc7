// A cgroup iterator printing, per group, its position, id (cgroup->kn->id: the inode number
// stat shows for the group's directory), level and name, and the count at the end. Built
// against bpfvfs's vmlinux.h, it runs unchanged in the kernel (CO-RE against the kernel's
// BTF) and in bpfvfs's host mode, with identical output (crates/runtime/tests/iter_kernel.rs):
//   bpfvfs iter pin iter_cgroup_ids.bpf.o /sys/fs/bpf/groups cgroup /sys/fs/cgroup order descendants_pre
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

/* A group id after which the walk stops (the program returns 1: "terminate after this
 * element", the cgroup iterator's rule); -1: never. */
__u64 stop_after_id = -1;

SEC("iter/cgroup")
int cgroup_ids(struct bpf_iter__cgroup *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct cgroup *cgrp = ctx->cgroup;

	if (!cgrp) {
		BPF_SEQ_PRINTF(seq, "end seq_num %llu\n", ctx->meta->seq_num);
		return 0;
	}
	BPF_SEQ_PRINTF(seq, "%llu: id %llu level %d name %s\n", ctx->meta->seq_num, cgrp->kn->id,
		       cgrp->level, cgrp->kn->name);
	return cgrp->kn->id == stop_after_id;
}

char LICENSE[] SEC("license") = "GPL";
