// A group shown as its kernel type: one function body as SEC("view/cgroup") (exposed in a
// group's directory, `cat` shows it) and SEC("iter/cgroup"), printing `struct cgroup` with
// bpf_seq_printf_btf (helper 150) — `cfg.repeat` times, with the BTF_F_* `cfg.flags` —
// then the address of its kernfs node and what the helper returned.
//   bpfvfs cgroup attach /sys/fs/cgroup/a view iter_btf_cgroup.bpf.o
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

/* include/uapi/linux/bpf.h */
struct btf_ptr {
	void *ptr;
	__u32 type_id;
	__u32 flags;
};

/* Set through .data (one struct: a zero-initialized global would go to .bss). */
struct {
	__u32 repeat;
	__u32 flags;
} cfg = { 1, 0 };

static int show(struct bpf_iter__cgroup *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct cgroup *cgrp = ctx->cgroup;
	struct btf_ptr p = {};
	long ret = 0;
	__u32 i, n = cfg.repeat;

	if (!cgrp)
		return 0;
	p.ptr = cgrp;
	p.type_id = bpf_core_type_id_kernel(struct cgroup);
	for (i = 0; i < n && i < 1000; i++)
		ret |= bpf_seq_printf_btf(seq, &p, sizeof(p), cfg.flags);
	BPF_SEQ_PRINTF(seq, "kn %llx ret %ld\n", (__u64)cgrp->kn, ret);
	return 0;
}

SEC("view/cgroup")
int cgroup_btf(struct bpf_iter__cgroup *ctx)
{
	return show(ctx);
}

SEC("iter/cgroup")
int cgroup_btf_walk(struct bpf_iter__cgroup *ctx)
{
	return show(ctx);
}

char LICENSE[] SEC("license") = "GPL";
