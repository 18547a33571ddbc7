// Output sizes for the seq_file tests: each object (each map of the instance) writes
// `per_obj` bytes (a global the test sets) in chunks of 256, so a test can make one
// object's output overflow a buffer. The view writes `per_obj` bytes for its group (a view
// retries with a doubled buffer until the output fits).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

__u32 per_obj = 100;
char chunk[256];

static int write_chunks(struct seq_file *seq)
{
	__u32 whole = per_obj / 256, rest = per_obj & 255;

	for (__u32 i = 0; i < 512; i++) {
		if (i >= whole)
			break;
		bpf_seq_write(seq, chunk, 256);
	}
	if (rest)
		bpf_seq_write(seq, chunk, rest);
	return 0;
}

SEC("iter/bpf_map")
int big_maps(struct bpf_iter__bpf_map *ctx)
{
	if (!ctx->map) {
		BPF_SEQ_PRINTF(ctx->meta->seq, "end\n");
		return 0;
	}
	return write_chunks(ctx->meta->seq);
}

SEC("view/cgroup")
int big_view(struct bpf_iter__cgroup *ctx)
{
	if (!ctx->cgroup)
		return 0;
	return write_chunks(ctx->meta->seq);
}

char LICENSE[] SEC("license") = "GPL";
