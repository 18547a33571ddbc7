// bpf_printk: messages go to the instance's trace pipe (`bpfvfs prog tracelog`).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct args {
	__u32 x;
};

// In .rodata: `%s` reaches it through the program's global data.
static const char who[] = "bpfvfs";

SEC("syscall")
int hello(struct args *ctx)
{
	bpf_printk("hello from bpfvfs: x=%u", ctx->x);
	bpf_printk("x squared is %llu", (__u64)ctx->x * ctx->x);
	bpf_printk("from [%s] [%-8s]", who, "ab");
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
