// Packet programs shared by tests/packet_programs.rs and tests/kernel_test_run.rs: XDP
// programs with direct packet access, socket filters reading the packet through helpers,
// and a syscall program. Compiled at test time with `clang -O2 -g -target bpf`.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Packets per verdict (XDP action, or a socket filter's class). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} verdicts SEC(".maps");

/* Bytes per UDP destination port. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u16);
	__type(value, __u64);
} ports SEC(".maps");

/* Helper return values and context fields a program wants to show. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __s64);
} results SEC(".maps");

static __always_inline int count(__u32 verdict, __u16 port, __u64 bytes)
{
	__u64 *v = bpf_map_lookup_elem(&verdicts, &verdict);

	if (v)
		__sync_fetch_and_add(v, 1);
	if (port) {
		__u64 *b = bpf_map_lookup_elem(&ports, &port);

		if (b)
			*b += bytes;
		else
			bpf_map_update_elem(&ports, &port, &bytes, BPF_NOEXIST);
	}
	return verdict;
}

static __always_inline void result(__u32 idx, __s64 value)
{
	__s64 *r = bpf_map_lookup_elem(&results, &idx);

	if (r)
		*r = value;
}

/* Ethernet / IPv4 / UDP with a bounds check before every header; the UDP header sits at a
 * variable offset (the IP header length). Port 9 (discard) is dropped, port 7 (echo) is
 * sent back with MACs, addresses and ports swapped, the rest passes. */
SEC("xdp")
int xdp_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;
	__u16 dport;
	__u64 len;

	if ((void *)(eth + 1) > data_end)
		return count(XDP_DROP, 0, 0);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return count(XDP_PASS, 0, 0);
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return count(XDP_DROP, 0, 0);
	if (ip->protocol != IPPROTO_UDP)
		return count(XDP_PASS, 0, 0);
	udp = (void *)ip + ip->ihl * 4;
	if ((void *)(udp + 1) > data_end)
		return count(XDP_DROP, 0, 0);
	dport = bpf_ntohs(udp->dest);
	len = data_end - data;
	if (dport == 9)
		return count(XDP_DROP, dport, len);
	if (dport == 7) {
		__u8 mac[ETH_ALEN];
		__be32 addr;
		__be16 port;

		__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
		__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
		__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
		addr = ip->saddr;
		ip->saddr = ip->daddr;
		ip->daddr = addr;
		port = udp->source;
		udp->source = udp->dest;
		udp->dest = port;
		return count(XDP_TX, dport, len);
	}
	return count(XDP_PASS, dport, len);
}

/* The helpers that move the packet, driven by the first bytes of the frame: byte 0 is how
 * far to grow the head, byte 1 - 128 how far to move the tail, byte 2 how much metadata to
 * add. Return values land in `results`; the pushed head gets a tag. */
SEC("xdp")
int xdp_adjust(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	void *meta;
	__u8 head, tail, metalen;
	int r;

	if (data + 3 > data_end)
		return XDP_ABORTED;
	head = ((__u8 *)data)[0];
	tail = ((__u8 *)data)[1];
	metalen = ((__u8 *)data)[2];
	r = bpf_xdp_adjust_head(ctx, -(int)head);
	result(0, r);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (r == 0 && head >= 2 && data + 2 <= data_end) {
		((__u8 *)data)[0] = 0xde;
		((__u8 *)data)[1] = 0xad;
	}
	r = bpf_xdp_adjust_tail(ctx, (int)tail - 128);
	result(1, r);
	r = bpf_xdp_adjust_meta(ctx, -(int)metalen);
	result(2, r);
	meta = (void *)(long)ctx->data_meta;
	data = (void *)(long)ctx->data;
	if (meta + 4 <= data)
		*(__u32 *)meta = 0x12345678;
	result(3, bpf_xdp_get_buff_len(ctx));
	return XDP_PASS;
}

/* Metadata in front of the packet (from ctx_in): copied over the first bytes of the frame;
 * the receive queue and device go to `results`. */
SEC("xdp")
int xdp_meta(struct xdp_md *ctx)
{
	void *meta = (void *)(long)ctx->data_meta;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 tag;

	result(0, ctx->ingress_ifindex);
	result(1, ctx->rx_queue_index);
	if (meta + 4 > data)
		return XDP_PASS;
	tag = *(__u32 *)meta;
	if (data + 4 > data_end)
		return XDP_ABORTED;
	*(__u32 *)data = tag;
	return XDP_TX;
}

/* A socket filter for UDP: the packet is read with bpf_skb_load_bytes (offsets from the IP
 * header, the Ethernet header being pulled); accepts DNS (port 53) whole, drops the rest. */
SEC("socket")
int sock_udp(struct __sk_buff *skb)
{
	__u8 vihl, proto;
	__u16 dport;
	__u32 ihl;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return count(0, 0, 0);
	if (bpf_skb_load_bytes(skb, __builtin_offsetof(struct iphdr, protocol), &proto, 1))
		return count(1, 0, 0);
	if (proto != IPPROTO_UDP)
		return count(0, 0, 0);
	bpf_skb_load_bytes(skb, 0, &vihl, 1);
	ihl = (vihl & 0xf) * 4;
	if (bpf_skb_load_bytes(skb, ihl + __builtin_offsetof(struct udphdr, dest), &dport, 2))
		return count(1, 0, 0);
	dport = bpf_ntohs(dport);
	skb->cb[0] = dport;
	skb->cb[1] = skb->len;
	count(2, dport, skb->len);
	return dport == 53 ? skb->len : 0;
}

/* The __sk_buff fields a socket filter sees, folded into cb[] (copied back in ctx_out), and
 * bpf_skb_load_bytes_relative from the MAC header and past the end. */
SEC("socket")
int sock_fields(struct __sk_buff *skb)
{
	__u8 mac[6];
	__u32 word = 0;
	int r;

	r = bpf_skb_load_bytes_relative(skb, 0, mac, 6, BPF_HDR_START_MAC);
	skb->cb[0] = skb->pkt_type | (skb->protocol << 8) | (skb->len << 24);
	skb->cb[1] = skb->mark ^ (skb->priority << 4);
	skb->cb[2] = skb->ifindex | (skb->ingress_ifindex << 8) | (skb->gso_segs << 16);
	skb->cb[3] = skb->gso_size + skb->hash + skb->napi_id + skb->queue_mapping +
		     skb->vlan_present + skb->tc_index + skb->cb[4];
	skb->cb[4] = r == 0 ? mac[0] | (mac[5] << 8) : r;
	result(0, bpf_skb_load_bytes(skb, skb->len - 2, &word, 4));
	result(1, bpf_skb_load_bytes_relative(skb, 2, &word, 4, BPF_HDR_START_NET));
	result(2, word);
	result(3, bpf_skb_load_bytes_relative(skb, 0, &word, 4, 7));
	return skb->len + skb->pkt_type;
}

struct sys_args {
	__u32 a;
	__u32 b;
	__u64 product;
};

/* A syscall program: reads and writes its context buffer and a map. */
SEC("syscall")
int sys_sum(struct sys_args *ctx)
{
	__u32 k = 3;
	__u64 *v = bpf_map_lookup_elem(&verdicts, &k);

	if (v)
		*v += ctx->a;
	ctx->product = (__u64)ctx->a * ctx->b;
	return ctx->a + ctx->b;
}

char LICENSE[] SEC("license") = "GPL";
