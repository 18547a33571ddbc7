// CO-RE probe, the one field of include/bpfvfs/vmlinux.h kept apart from core_probe.bpf.c:
// qstr.hash_len, the 8-byte second member of the anonymous union whose first member is the
// struct { hash; len; }. libbpf relocates it, but Linux 6.1's verifier refuses the load
// ("access beyond the end of member hash (mend:4) in struct (anon) with off 0 size 8"): its
// btf_struct_walk descends into the union's first member that covers the offset and does
// not try the others.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

__u64 sink;

SEC("lsm/inode_setattr")
int BPF_PROG(probe_hash_len, struct dentry *d, struct iattr *a)
{
	sink += d->d_name.hash_len;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
