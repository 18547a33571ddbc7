// (a) Tracing: count reads and writes (calls and bytes) per inode, in inode storage, from
// fentry programs on vfs_read and vfs_write. Dump with `bpfvfs map dump pinned DIR/rw_counts`.
//
// bpfvfs lets tracing programs use inode storage (what the Nov 2024 series proposed); Linux
// 6.1 refuses it ("unknown func bpf_inode_storage_get#145"), so in the kernel this object
// loads only where that series is applied.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct rw {
	__u64 reads;
	__u64 read_bytes;
	__u64 writes;
	__u64 write_bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_INODE_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct rw);
} rw_counts SEC(".maps");

SEC("fentry/vfs_read")
int BPF_PROG(count_read, struct file *file, char *buf, __u64 count, loff_t *pos)
{
	struct rw *c = bpf_inode_storage_get(&rw_counts, file->f_inode, 0,
					     BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (c) {
		__sync_fetch_and_add(&c->reads, 1);
		__sync_fetch_and_add(&c->read_bytes, count);
	}
	return 0;
}

SEC("fentry/vfs_write")
int BPF_PROG(count_write, struct file *file, const char *buf, __u64 count, loff_t *pos)
{
	struct rw *c = bpf_inode_storage_get(&rw_counts, file->f_inode, 0,
					     BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (c) {
		__sync_fetch_and_add(&c->writes, 1);
		__sync_fetch_and_add(&c->write_bytes, count);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
