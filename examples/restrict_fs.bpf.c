// (d) Restrict filesystems by superblock magic, as systemd's RestrictFileSystems= program
// does: opening a file on a filesystem whose magic is in `denied_magic` fails with EPERM.
// Deny bpffs: `bpfvfs map update pinned DIR/denied_magic key hex 46 46 e0 ca 00 00 00 00 value 1`.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define EPERM 1

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u8);
} denied_magic SEC(".maps");

SEC("lsm/file_open")
int BPF_PROG(restrict_filesystems, struct file *file)
{
	__u64 magic = file->f_inode->i_sb->s_magic;

	if (bpf_map_lookup_elem(&denied_magic, &magic))
		return -EPERM;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
