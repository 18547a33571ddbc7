// An iterator over every map (SEC("iter/bpf_map")): one line per map with its id, name,
// type, sizes and the object's position (meta->seq_num), and a last line from the final
// call (map == NULL). Pin a link and read it:
//   bpfvfs iter pin iter_maps.bpf.o /sys/fs/bpf/maps
//   cat /sys/fs/bpf/maps
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("iter/bpf_map")
int dump_maps(struct bpf_iter__bpf_map *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct bpf_map *map = ctx->map;

	if (!map) {
		BPF_SEQ_PRINTF(seq, "end seq_num %llu\n", ctx->meta->seq_num);
		return 0;
	}
	BPF_SEQ_PRINTF(seq, "%llu: %u %s type %u key %u value %u max %u\n", ctx->meta->seq_num,
		       map->id, map->name, map->map_type, map->key_size, map->value_size,
		       map->max_entries);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
