// SPDX-License-Identifier: GPL-2.0
/* Global data: .data, .rodata, .bss, string literals, a custom .data.* section. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

int counter = 5;                       /* .data */
__u64 hits;                            /* .bss */
const volatile int threshold = 42;     /* .rodata */
const volatile char banner[8] = "bpfvfs"; /* .rodata */
int custom_val SEC(".data.custom") = 0x1234;
static int static_counter = 3;         /* .data, static */

SEC("tracepoint/syscalls/sys_enter_openat")
int tp_openat(void *ctx)
{
	counter++;
	hits += threshold;
	static_counter += banner[0];
	custom_val++;
	bpf_trace_printk("openat %d\n", sizeof("openat %d\n"), counter);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
