// BPF-to-BPF calls: non-inlined functions get their own stack frames; a global function is
// verified on its own, a static one in its caller's context.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct args {
	__u32 a;
	__u32 b;
	__u64 gcd;
	__u64 fact;
};

static __noinline __u64 gcd(__u64 a, __u64 b)
{
	for (int i = 0; i < 64 && b; i++) {
		__u64 t = a % b;
		a = b;
		b = t;
	}
	return a;
}

static __noinline __u64 factorial(__u32 n)
{
	__u64 r = 1;
	for (__u32 i = 2; i <= n && i <= 20; i++)
		r *= i;
	return r;
}

__noinline int clamp(int v)
{
	return v > 20 ? 20 : (v < 0 ? 0 : v);
}

SEC("syscall")
int math(struct args *ctx)
{
	ctx->gcd = gcd(ctx->a, ctx->b);
	ctx->fact = factorial(clamp(ctx->b));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
