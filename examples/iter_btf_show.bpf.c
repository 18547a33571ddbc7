// BTF-typed printing (bpf_seq_printf_btf, helper 150) from an iterator: each element of the
// array map `cases` says which kernel type to print its bytes as, with which BTF_F_* flags,
// how many times, and with which btf_ptr size; the helper's return (OR of the repeats) is
// printed after each case. The types are the kernel's (bpf_core_type_id_kernel: a CO-RE
// relocation against the kernel's BTF, bpfvfs's include/bpfvfs/vmlinux.h), so the same
// object prints the same bytes in the host kernel and in bpfvfs for the types both lay out
// alike (crates/runtime/tests/seq_printf_btf.rs).
//   bpfvfs iter pin iter_btf_show.bpf.o /sys/fs/bpf/btf map name cases
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* include/uapi/linux/bpf.h */
struct btf_ptr {
	void *ptr;
	__u32 type_id;
	__u32 flags;
};

enum {
	SHOW_NONE = 0,
	SHOW_PATH = 1,		/* struct path: two pointers */
	SHOW_QSTR = 2,		/* struct qstr: anonymous union and struct */
	SHOW_MAP_TYPE = 3,	/* enum bpf_map_type */
	SHOW_U64 = 4,		/* __u64, a typedef */
	SHOW_INT = 5,
	SHOW_UMODE = 6,		/* umode_t */
	SHOW_CHAR = 7,
	SHOW_LOFF = 8,		/* loff_t, a typedef of a typedef */
	SHOW_TYPE_ID_0 = 9,	/* -EINVAL */
	SHOW_NO_TYPE = 10,	/* a type id past the kernel's: -ENOENT */
	SHOW_NULL = 11,		/* ptr NULL */
	SHOW_DENTRY = 12,	/* struct dentry: a nested struct (bpfvfs's layout only) */
	SHOW_SUPER = 13,	/* struct super_block: a char array (bpfvfs's layout only) */
	SHOW_TASK = 14,		/* struct task_struct (bpfvfs's layout only) */
	SHOW_MAP = 15,		/* struct bpf_map (bpfvfs's layout only) */
	SHOW_INODE = 16,	/* struct inode (bpfvfs's layout only) */
	SHOW_STACK = 18,	/* struct path copied to the program's stack */
	SHOW_LOCAL = 17,	/* this program's own struct btf_case, by its local id: the id
				 * is looked up in the kernel's BTF, never the program's */
};

struct btf_case {
	__u32 what;		/* SHOW_* */
	__u32 flags;		/* BTF_F_* */
	__u32 repeat;		/* times to print it (at most 400) */
	__u32 ptr_size;		/* passed as ptr_size (masked to 0..31) */
	__u32 at;		/* the object starts at data + at (masked to 0..127) */
	__u32 raw;		/* if 1, the object is at the address data[0] instead */
	__u32 pad[2];
	__u64 data[16];		/* the object printed */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, struct btf_case);
} cases SEC(".maps");

SEC("iter/bpf_map_elem")
int show_cases(struct bpf_iter__bpf_map_elem *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct btf_case *c = ctx->value;
	__u32 *key = ctx->key;
	/* The btf_ptr inside a larger initialized buffer: ptr_size may be any of 0..31. */
	struct {
		struct btf_ptr p;
		__u64 pad[2];
	} b = {};
	__u64 local[2];
	long ret = 0;
	__u32 i, n;

	if (!key || !c || c->what == SHOW_NONE)
		return 0;
	b.p.ptr = (char *)c->data + (c->at & 127);
	if (c->raw == 1)
		b.p.ptr = (void *)c->data[0];
	switch (c->what) {
	case SHOW_PATH:
		b.p.type_id = bpf_core_type_id_kernel(struct path);
		break;
	case SHOW_QSTR:
		b.p.type_id = bpf_core_type_id_kernel(struct qstr);
		break;
	case SHOW_MAP_TYPE:
		b.p.type_id = bpf_core_type_id_kernel(enum bpf_map_type);
		break;
	case SHOW_U64:
		b.p.type_id = bpf_core_type_id_kernel(__u64);
		break;
	case SHOW_INT:
		b.p.type_id = bpf_core_type_id_kernel(int);
		break;
	case SHOW_UMODE:
		b.p.type_id = bpf_core_type_id_kernel(umode_t);
		break;
	case SHOW_CHAR:
		b.p.type_id = bpf_core_type_id_kernel(char);
		break;
	case SHOW_LOFF:
		b.p.type_id = bpf_core_type_id_kernel(loff_t);
		break;
	case SHOW_TYPE_ID_0:
		b.p.type_id = 0;
		break;
	case SHOW_NO_TYPE:
		b.p.type_id = 0x7ffffff0;
		break;
	case SHOW_NULL:
		b.p.type_id = bpf_core_type_id_kernel(struct path);
		b.p.ptr = 0;
		break;
	case SHOW_DENTRY:
		b.p.type_id = bpf_core_type_id_kernel(struct dentry);
		break;
	case SHOW_SUPER:
		b.p.type_id = bpf_core_type_id_kernel(struct super_block);
		break;
	case SHOW_TASK:
		b.p.type_id = bpf_core_type_id_kernel(struct task_struct);
		break;
	case SHOW_MAP:
		b.p.type_id = bpf_core_type_id_kernel(struct bpf_map);
		break;
	case SHOW_INODE:
		b.p.type_id = bpf_core_type_id_kernel(struct inode);
		break;
	case SHOW_STACK:
		local[0] = c->data[0];
		local[1] = c->data[1];
		b.p.ptr = local;
		b.p.type_id = bpf_core_type_id_kernel(struct path);
		break;
	case SHOW_LOCAL:
		b.p.type_id = bpf_core_type_id_local(struct btf_case);
		break;
	default:
		return 0;
	}
	n = c->repeat;
	for (i = 0; i < n && i < 400; i++)
		ret |= bpf_seq_printf_btf(seq, &b.p, c->ptr_size & 31, c->flags);
	BPF_SEQ_PRINTF(seq, "#%u ret %ld\n", *key, ret);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
