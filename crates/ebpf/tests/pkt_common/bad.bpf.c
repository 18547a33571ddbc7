// Unsafe packet programs: each must be rejected, by this verifier and by the kernel, for the
// reason named in tests/packet_programs.rs.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* No bounds check at all. */
SEC("xdp")
int bad_no_check(struct xdp_md *ctx)
{
	struct ethhdr *eth = (void *)(long)ctx->data;

	return eth->h_proto == bpf_htons(ETH_P_IP) ? XDP_PASS : XDP_DROP;
}

/* The check proves 13 bytes; the EtherType's second byte is the 14th. */
SEC("xdp")
int bad_off_by_one(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if (data + 13 > data_end)
		return XDP_DROP;
	return eth->h_proto == bpf_htons(ETH_P_IP) ? XDP_PASS : XDP_DROP;
}

/* A store one byte past the checked Ethernet header. */
SEC("xdp")
int bad_write_past(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (data + sizeof(struct ethhdr) > data_end)
		return XDP_DROP;
	((volatile __u8 *)data)[sizeof(struct ethhdr)] = 0x45;
	return XDP_TX;
}

/* A header at a variable offset read without checking it again. */
SEC("xdp")
int bad_var_unchecked(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct udphdr *udp;

	if ((void *)(ip + 1) > data_end)
		return XDP_DROP;
	udp = (void *)ip + ip->ihl * 4;
	return udp->dest == bpf_htons(53) ? XDP_PASS : XDP_DROP;
}

/* A pointer kept across bpf_xdp_adjust_head, which may move the packet. */
SEC("xdp")
int bad_stale_after_adjust(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (data + 1 > data_end)
		return XDP_DROP;
	bpf_xdp_adjust_head(ctx, -4);
	return *(volatile __u8 *)data;
}

/* Socket filters have no direct packet access. */
SEC("socket")
int bad_sock_direct(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (data + 1 > data_end)
		return 0;
	return *(__u8 *)data;
}

/* Metadata read without proving it is there. */
SEC("xdp")
int bad_meta_unchecked(struct xdp_md *ctx)
{
	return *(volatile __u32 *)(long)ctx->data_meta;
}

char LICENSE[] SEC("license") = "GPL";
