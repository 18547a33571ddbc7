// (c) First-writer tracking: the uid and time of the first write to each file, kept in
// inode storage (an LSM program on file_permission, for writes).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define MAY_WRITE 2

struct first_write {
	__u32 uid;
	__u32 pid;
	__u64 time_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_INODE_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct first_write);
} first_writer SEC(".maps");

SEC("lsm/file_permission")
int BPF_PROG(record_first_write, struct file *file, int mask)
{
	struct first_write *w;

	if (!(mask & MAY_WRITE))
		return 0;
	w = bpf_inode_storage_get(&first_writer, file->f_inode, 0,
				  BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (w && !w->time_ns) {
		w->uid = (__u32)bpf_get_current_uid_gid();
		w->pid = bpf_get_current_pid_tgid() >> 32;
		w->time_ns = bpf_ktime_get_ns();
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
