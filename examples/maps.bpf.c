// Maps from a program: a hash map of counters keyed by a caller-chosen id, and an array
// holding the last value seen. Run it with `bpfvfs prog run ... ctx_in FILE` where FILE
// holds struct args.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct args {
	__u32 id;
	__u32 add;
	__u64 total; /* out: the counter after this run */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} last SEC(".maps");

SEC("syscall")
int count(struct args *ctx)
{
	__u32 zero = 0, id = ctx->id;
	__u64 init = 0, *v;

	v = bpf_map_lookup_elem(&counters, &id);
	if (!v) {
		if (bpf_map_update_elem(&counters, &id, &init, BPF_NOEXIST))
			return -1;
		v = bpf_map_lookup_elem(&counters, &id);
		if (!v)
			return -2;
	}
	__sync_fetch_and_add(v, ctx->add);
	ctx->total = *v;

	v = bpf_map_lookup_elem(&last, &zero);
	if (v)
		*v = id;
	return 0;
}

SEC("syscall")
int forget(struct args *ctx)
{
	__u32 id = ctx->id;

	return bpf_map_delete_elem(&counters, &id);
}

char LICENSE[] SEC("license") = "GPL";
