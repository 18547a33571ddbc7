// Loops: a bounded for loop the verifier walks, and bpf_loop with a callback.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct args {
	__u32 n;
	__u32 pad;
	__u64 sum_for;
	__u64 sum_cb;
	__u32 data[16];
};

struct cb_ctx {
	__u32 data[16];
	__u64 sum;
};

static int add_one(__u32 i, struct cb_ctx *c)
{
	if (i >= 16)
		return 1;
	c->sum += c->data[i];
	return 0;
}

SEC("syscall")
int sum(struct args *ctx)
{
	__u32 n = ctx->n > 16 ? 16 : ctx->n;
	struct cb_ctx c = { .sum = 0 };
	__u64 s = 0;

	/* Context pointers may not be indexed by a variable: copy the array to the stack. */
	__builtin_memcpy(c.data, ctx->data, sizeof(c.data));
	for (__u32 i = 0; i < 16; i++) {
		if (i >= n)
			break;
		s += c.data[i];
	}
	ctx->sum_for = s;

	long iters = bpf_loop(n, add_one, &c, 0);
	ctx->sum_cb = c.sum;
	return iters;
}

char LICENSE[] SEC("license") = "GPL";
