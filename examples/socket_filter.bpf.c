// Socket filter: read the IPv4 header with bpf_skb_load_bytes (socket filters have no direct
// packet access), keep TCP and UDP packets whole, truncate ICMP to 64 bytes, drop the rest;
// count bytes per verdict.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} bytes SEC(".maps");

static void account(__u32 verdict, __u64 len)
{
	__u64 *v = bpf_map_lookup_elem(&bytes, &verdict);
	if (v)
		__sync_fetch_and_add(v, len);
}

SEC("socket")
int sock_filter(struct __sk_buff *skb)
{
	struct iphdr ip;

	if (skb->protocol != bpf_htons(ETH_P_IP)) {
		account(2, skb->len);
		return 0;
	}
	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) < 0) {
		account(2, skb->len);
		return 0;
	}
	if (ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP) {
		account(0, skb->len);
		return skb->len;
	}
	if (ip.protocol == IPPROTO_ICMP) {
		account(1, skb->len);
		return 64;
	}
	account(2, skb->len);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
