// (b) LSM policy: files tagged in inode storage cannot be unlinked or renamed (EPERM) until
// untagged. Tag: `bpfvfs map update pinned DIR/protected file FILE value 1 0 0 0`;
// untag: `bpfvfs map delete pinned DIR/protected file FILE`.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define EPERM 1

struct {
	__uint(type, BPF_MAP_TYPE_INODE_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
} protected SEC(".maps");

static int is_protected(struct dentry *d)
{
	struct inode *inode = d->d_inode;
	__u32 *tag;

	if (!inode)
		return 0;
	tag = bpf_inode_storage_get(&protected, inode, 0, 0);
	return tag && *tag;
}

SEC("lsm/inode_unlink")
int BPF_PROG(protect_unlink, struct inode *dir, struct dentry *victim)
{
	return is_protected(victim) ? -EPERM : 0;
}

SEC("lsm/inode_rename")
int BPF_PROG(protect_rename, struct inode *old_dir, struct dentry *old_dentry,
	     struct inode *new_dir, struct dentry *new_dentry)
{
	if (is_protected(old_dentry) || is_protected(new_dentry))
		return -EPERM;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
