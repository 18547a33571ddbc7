// bpf_get_current_cgroup_id() in the program types BPF_PROG_TEST_RUN runs: the syscall
// program writes it to its context (what `prog run ... ctx_out` shows), the socket filter
// and the XDP program return its low 32 bits. The kernel (6.4 and later) allows the helper in
// all three and reports the calling task's cgroup v2 id.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct args {
	__u64 cgroup_id;
};

SEC("syscall")
int current_cgroup(struct args *ctx)
{
	ctx->cgroup_id = bpf_get_current_cgroup_id();
	return 0;
}

SEC("socket")
int current_cgroup_skb(struct __sk_buff *skb)
{
	return (int)bpf_get_current_cgroup_id();
}

SEC("xdp")
int current_cgroup_xdp(struct xdp_md *ctx)
{
	return (int)bpf_get_current_cgroup_id();
}

/* The same without the helper: the baseline of the figures test. */
SEC("syscall")
int constant(struct args *ctx)
{
	ctx->cgroup_id = 7;
	return 0;
}
