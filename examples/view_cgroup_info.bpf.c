// One function body as a view and as an iterator: the same printer of a group's id
// (cgroup->kn->id, the directory's inode number), level, name and root-most ancestor,
// compiled once as SEC("view/cgroup") (exposed in a group's directory, shown for that group)
// and once as SEC("iter/cgroup") (a link walking groups in an order, pinned in bpffs).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

static int show(struct bpf_iter__cgroup *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct cgroup *cgrp = ctx->cgroup;

	if (!cgrp) {
		BPF_SEQ_PRINTF(seq, "end %llu\n", ctx->meta->seq_num);
		return 0;
	}
	BPF_SEQ_PRINTF(seq, "%llu id %llu level %d name %s root %llu cur %llu\n",
		       ctx->meta->seq_num, cgrp->kn->id, cgrp->level, cgrp->kn->name,
		       cgrp->ancestors[0]->kn->id, bpf_get_current_cgroup_id());
	return 0;
}

SEC("view/cgroup")
int cgroup_info(struct bpf_iter__cgroup *ctx)
{
	return show(ctx);
}

SEC("iter/cgroup")
int cgroup_walk(struct bpf_iter__cgroup *ctx)
{
	return show(ctx);
}

char LICENSE[] SEC("license") = "GPL";
