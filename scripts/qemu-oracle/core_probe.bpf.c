// CO-RE probe for the kernel oracle (docs/kernel-parity.md): reads EVERY field that
// include/bpfvfs/vmlinux.h models, so that loading it in the guest shows libbpf relocating
// each one (bpfvfs's layout, the kernel's names) against Debian 6.1's BTF. Loaded, not
// attached: the relocations and the verifier's acceptance are what count. bpfvfs loads it too
// (crates/bpfvfs/tests/kernel_parity_qemu.rs compares the two loads).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

__u64 sink;

static __u64 inode_fields(struct inode *i)
{
	__u64 acc = 0;

	if (!i)
		return 0;
	acc += i->i_mode + i->i_uid.val + i->i_gid.val + i->i_flags + i->i_nlink + i->i_ino + i->i_size;
	if (i->i_sb)
		acc += i->i_sb->s_magic + i->i_sb->s_id[0] + i->i_sb->s_dev;
	return acc;
}

SEC("lsm/inode_setattr")
int BPF_PROG(probe_dentry_iattr, struct dentry *d, struct iattr *a)
{
	/* d_name.hash_len: core_probe_union.bpf.c (6.1's verifier refuses it). */
	__u64 acc = d->d_flags + d->d_name.hash + d->d_name.len + (__u64)d->d_name.name;

	if (d->d_parent)
		acc += d->d_parent->d_flags;
	if (d->d_sb)
		acc += d->d_sb->s_magic;
	acc += inode_fields(d->d_inode);
	acc += a->ia_valid + a->ia_mode + a->ia_uid.val + a->ia_gid.val + a->ia_size;
	sink += acc;
	return 0;
}

SEC("lsm/file_open")
int BPF_PROG(probe_file, struct file *f)
{
	/* f_path.mnt: core_probe_mnt.bpf.c (bpfvfs does not model struct vfsmount). */
	__u64 acc = f->f_flags + f->f_mode + f->f_pos;

	if (f->f_path.dentry)
		acc += f->f_path.dentry->d_flags;
	acc += inode_fields(f->f_inode);
	sink += acc;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
