// SPDX-License-Identifier: GPL-2.0
/* Many programs in one object: attach kinds, sub-programs, a bounded loop,
 * bpf_loop callback (pseudo function pointer). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

static __noinline int add_twice(int a, int b)
{
	return a + b + b;
}

__noinline int global_helper(int x)
{
	int s = 0;
	/* bounded loop: the verifier must see the back edge terminate */
	for (int i = 0; i < 16 && i < x; i++)
		s += bpf_get_prandom_u32() & x;
	return s;
}

static int loop_cb(__u32 index, void *ctx)
{
	*(int *)ctx += index;
	return 0;
}

SEC("lsm/file_open")
int BPF_PROG(check_open, struct file *file)
{
	int v = add_twice(1, 2);
	return add_twice(v, 3) > 100 ? -1 : 0;
}

SEC("fentry/vfs_read")
int BPF_PROG(on_read, struct file *file, char *buf, unsigned long count)
{
	return global_helper((int)count);
}

SEC("fexit/vfs_read")
int BPF_PROG(after_read, struct file *file, char *buf, unsigned long count, long ret)
{
	int acc = 0;
	bpf_loop(8, loop_cb, &acc, 0);
	return acc + add_twice(1, 1);
}

SEC("tp_btf/sched_switch")
int on_switch(void *ctx)
{
	return 0;
}

SEC("iter/task")
int dump_task(void *ctx)
{
	return 0;
}

SEC("kprobe/do_unlinkat")
int probe_a(void *ctx)
{
	return global_helper(3);
}

SEC("kprobe/do_unlinkat")
int probe_b(void *ctx)
{
	return add_twice(4, 5);
}

SEC("syscall")
int sys_prog(void *ctx)
{
	return 0;
}

SEC("socket")
int sock(void *ctx)
{
	return 0;
}

SEC("view/cgroup")
int view_cgroup(void *ctx)
{
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
