// Iterators over every program (SEC("iter/bpf_prog")) and every link
// (SEC("iter/bpf_link")): id, name and attach point of each program; id, type and program
// of each link.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("iter/bpf_prog")
int dump_progs(struct bpf_iter__bpf_prog *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct bpf_prog *prog = ctx->prog;

	if (!prog)
		return 0;
	BPF_SEQ_PRINTF(seq, "prog %u %s type %u attach %s\n", prog->aux->id, prog->aux->name,
		       prog->type, prog->aux->attach_func_name);
	return 0;
}

SEC("iter/bpf_link")
int dump_links(struct bpf_iter__bpf_link *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct bpf_link *link = ctx->link;

	if (!link)
		return 0;
	BPF_SEQ_PRINTF(seq, "link %u type %u prog %u\n", link->id, link->type,
		       link->prog->aux->id);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
