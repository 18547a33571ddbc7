// Global data: .rodata (constants, frozen after load), .data (initialised variables) and
// .bss (zeroed variables) become single-element array maps the program addresses directly.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 scale = 3;        /* .rodata */
__u64 calls = 100;                     /* .data   */
__u64 sum;                             /* .bss    */
static const char greeting[] = "hi";   /* .rodata */

struct args {
	__u32 x;
	__u32 pad;
	__u64 out_calls;
	__u64 out_sum;
	char out_greeting[4];
};

SEC("syscall")
int accumulate(struct args *ctx)
{
	calls++;
	sum += (__u64)ctx->x * scale;
	ctx->out_calls = calls;
	ctx->out_sum = sum;
	__builtin_memcpy(ctx->out_greeting, greeting, sizeof(greeting));
	return scale;
}

char LICENSE[] SEC("license") = "GPL";
