// SPDX-License-Identifier: GPL-2.0
/* Legacy (pre-BTF) map definitions in SEC("maps"), as old samples wrote them. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct bpf_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct bpf_map_def SEC("maps") legacy_hash = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 64,
};

struct bpf_map_def SEC("maps") legacy_array = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = 4,
	.value_size = 16,
	.max_entries = 8,
	.map_flags = 0,
};

SEC("socket")
int sock_prog(struct __sk_buff *skb)
{
	__u32 key = 1;
	__u64 *v = bpf_map_lookup_elem(&legacy_hash, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
	char *a = bpf_map_lookup_elem(&legacy_array, &key);
	if (a)
		a[0] = 1;
	return 0;
}

char _license[] SEC("license") = "Dual BSD/GPL";
__u32 _version SEC("version") = 0x050a00;
