// CO-RE probe, the other field of include/bpfvfs/vmlinux.h kept apart from core_probe.bpf.c:
// file.f_path.mnt. libbpf relocates it and Linux 6.1 loads it; bpfvfs's verifier refuses it
// (crates/runtime/src/kobj.rs: "struct vfsmount is not modelled").
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

__u64 sink;

SEC("lsm/file_open")
int BPF_PROG(probe_mnt, struct file *f)
{
	if (f->f_path.mnt)
		sink++;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
