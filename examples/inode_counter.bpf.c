// Inode storage from programs: an LSM program counts opens per inode in inode storage, and
// another refuses to unlink files whose counter user space has set to a "protected" value.
// User space reads and writes the same storage with `bpfvfs map lookup|update pinned MAP
// file FILE`. Built against bpfvfs's vmlinux.h (include/bpfvfs).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define EPERM 1
#define PROTECTED (1ULL << 63)

struct counts {
	__u64 opens;
	__u64 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_INODE_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct counts);
} inode_counts SEC(".maps");

SEC("lsm/file_open")
int BPF_PROG(count_open, struct file *file)
{
	struct counts *c;

	c = bpf_inode_storage_get(&inode_counts, file->f_inode, 0,
				  BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (c)
		__sync_fetch_and_add(&c->opens, 1);
	return 0;
}

SEC("lsm/inode_unlink")
int BPF_PROG(protect_unlink, struct inode *dir, struct dentry *victim)
{
	struct inode *inode = victim->d_inode;
	struct counts *c;

	if (!inode)
		return 0;
	c = bpf_inode_storage_get(&inode_counts, inode, 0, 0);
	if (c && (c->flags & PROTECTED))
		return -EPERM;
	/* Forget the counter of a file going away. */
	bpf_inode_storage_delete(&inode_counts, inode);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
