// SPDX-License-Identifier: GPL-2.0
/* BTF-defined maps of several kinds, including map-in-map and prog-array
 * initial values. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct value {
	__u64 count;
	__u32 flags;
	char name[20];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct value);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 8);
} plain_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 128);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, __u64);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pinned_lru SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, int);
	__type(value, long);
} percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
};

struct inner inner_a SEC(".maps"), inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 3);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps") = {
	.values = { &inner_a, [2] = &inner_b },
};

int tail(struct xdp_md *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, int (void *));
} jumps SEC(".maps") = {
	.values = { [1] = (void *)&tail },
};

SEC("xdp")
int tail(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int use_maps(struct xdp_md *ctx)
{
	__u32 key = 0;
	struct value *v = bpf_map_lookup_elem(&counts, &key);
	if (v)
		v->count++;
	__u64 *a = bpf_map_lookup_elem(&plain_array, &key);
	if (a)
		*a += 1;
	__u64 k64 = 7, v64 = 9;
	bpf_map_update_elem(&pinned_lru, &k64, &v64, BPF_ANY);
	long *p = bpf_map_lookup_elem(&percpu, &key);
	if (p)
		*p += 1;
	bpf_ringbuf_output(&events, &key, sizeof(key), 0);
	void *in = bpf_map_lookup_elem(&outer, &key);
	if (in)
		bpf_map_lookup_elem(in, &key);
	bpf_tail_call(ctx, &jumps, 1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
