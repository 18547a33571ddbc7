// An iterator over the elements of one map (SEC("iter/bpf_map_elem"), the map given when
// the link is created): each key and value printed, the values of a __u32 -> __u64 map
// summed, and the sum printed by the final call (key == NULL). The same object runs in the
// kernel and in bpfvfs with identical output (crates/runtime/tests/iter_kernel.rs).
//   bpfvfs iter pin iter_map_elem.bpf.o /sys/fs/bpf/elems map name counts
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

__u64 sum = 0;

SEC("iter/bpf_map_elem")
int dump_elems(struct bpf_iter__bpf_map_elem *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	__u32 *key = ctx->key;
	__u64 *value = ctx->value;

	if (!key || !value) {
		BPF_SEQ_PRINTF(seq, "map %s: %llu elements before the end, sum %llu\n",
			       ctx->map->name, ctx->meta->seq_num, sum);
		sum = 0;
		return 0;
	}
	if (ctx->meta->seq_num == 0)
		BPF_SEQ_PRINTF(seq, "key value\n");
	sum += *value;
	BPF_SEQ_PRINTF(seq, "%-3u %llu\n", *key, *value);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
