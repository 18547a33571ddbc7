// Ring buffer: records reserved and submitted (or discarded) by the program, and one copied
// in with bpf_ringbuf_output; user space consumes them in order.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct event {
	__u32 seq;
	__u32 kind;
	__u64 value;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct args {
	__u32 count;
	__u32 discard_every;
};

SEC("syscall")
int produce(struct args *ctx)
{
	__u32 n = ctx->count > 32 ? 32 : ctx->count;
	__u32 k = ctx->discard_every;

	for (__u32 i = 0; i < n; i++) {
		struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (!e)
			return -1;
		e->seq = i;
		e->kind = 1;
		e->value = (__u64)i * i;
		if (k && i % k == 0)
			bpf_ringbuf_discard(e, 0);
		else
			bpf_ringbuf_submit(e, 0);
	}
	/* Records sent, computed rather than counted on each path: a per-path counter makes
	 * every path's state distinct to a verifier without precision tracking (ours). */
	__u32 sent = k ? n - (n + k - 1) / k : n;
	struct event last = { .seq = n, .kind = 2, .value = sent };
	if (bpf_ringbuf_output(&events, &last, sizeof(last), 0))
		return -2;
	return sent + 1;
}

char LICENSE[] SEC("license") = "GPL";
