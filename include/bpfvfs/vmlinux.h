/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The kernel types bpfvfs programs see, under the kernel's own names, in bpfvfs's own
 * layout. Include it instead of a kernel vmlinux.h (with <bpf/bpf_helpers.h>,
 * <bpf/bpf_tracing.h>, <bpf/bpf_core_read.h> after it). Only the fields listed here are
 * modelled: a program reading anything else is refused by the verifier. Every struct is
 * preserve_access_index, so field accesses carry CO-RE relocations.
 *
 * Keep in sync with crates/runtime/src/kobj.rs (a test checks the offsets).
 */
#ifndef __BPFVFS_VMLINUX_H__
#define __BPFVFS_VMLINUX_H__

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s32 s32;
typedef __s64 s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
enum { false = 0, true = 1 };
typedef __u16 umode_t;
typedef __s64 loff_t;
typedef __u32 dev_t;
typedef __u32 fmode_t;
typedef __u32 gfp_t;

/* What helper prototypes in bpf_helper_defs.h refer to. */
enum bpf_map_type {
	BPF_MAP_TYPE_UNSPEC = 0,
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_HASH = 5,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
	BPF_MAP_TYPE_INODE_STORAGE = 28,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
	BPF_MAP_TYPE_CGRP_STORAGE = 32,
};
enum bpf_prog_type {
	BPF_PROG_TYPE_UNSPEC = 0,
	BPF_PROG_TYPE_SOCKET_FILTER = 1,
	BPF_PROG_TYPE_XDP = 6,
	BPF_PROG_TYPE_TRACING = 26,
	BPF_PROG_TYPE_LSM = 29,
	BPF_PROG_TYPE_SYSCALL = 31,
};
enum bpf_link_type {
	BPF_LINK_TYPE_UNSPEC = 0,
	BPF_LINK_TYPE_TRACING = 2,
	BPF_LINK_TYPE_CGROUP = 3,
	BPF_LINK_TYPE_ITER = 4,
};
enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
	BPF_F_LOCK = 4,
};
enum {
	BPF_F_NO_PREALLOC = 1,
	BPF_F_RDONLY_PROG = 128,
};
enum {
	BPF_LOCAL_STORAGE_GET_F_CREATE = 1,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

typedef struct { __u32 val; } kuid_t;
typedef struct { __u32 val; } kgid_t;

struct super_block {
	unsigned long s_magic;          /* 0 */
	char s_id[32];                  /* 8 */
	dev_t s_dev;                    /* 40 */
	__u32 __pad0;
	__u64 __reserved[2];            /* 48: not modelled */
};

struct inode {
	umode_t i_mode;                 /* 0 */
	__u16 __pad0;
	kuid_t i_uid;                   /* 4 */
	kgid_t i_gid;                   /* 8 */
	unsigned int i_flags;           /* 12 */
	struct super_block *i_sb;       /* 16 */
	unsigned int i_nlink;           /* 24 */
	__u32 __pad1;
	unsigned long i_ino;            /* 32 */
	loff_t i_size;                  /* 40 */
	__u64 __reserved[2];            /* 48: not modelled */
};

struct qstr {
	union {
		struct {
			__u32 hash;
			__u32 len;
		};
		__u64 hash_len;
	};                              /* 0 */
	const unsigned char *name;      /* 8 */
};

struct dentry {
	unsigned int d_flags;           /* 0 */
	__u32 __pad0;
	struct dentry *d_parent;        /* 8 */
	struct qstr d_name;             /* 16 */
	struct inode *d_inode;          /* 32 */
	struct super_block *d_sb;       /* 40 */
	__u64 __reserved[2];            /* 48: not modelled */
};

struct vfsmount;
struct path {
	struct vfsmount *mnt;           /* 0 */
	struct dentry *dentry;          /* 8 */
};

struct file {
	struct path f_path;             /* 0 */
	struct inode *f_inode;          /* 16 */
	unsigned int f_flags;           /* 24 */
	fmode_t f_mode;                 /* 28 */
	loff_t f_pos;                   /* 32 */
	__u64 __reserved[3];            /* 40: not modelled */
};

struct iattr {
	unsigned int ia_valid;          /* 0 */
	umode_t ia_mode;                /* 4 */
	__u16 __pad0;
	kuid_t ia_uid;                  /* 8 */
	kgid_t ia_gid;                  /* 12 */
	loff_t ia_size;                 /* 16 */
};

/* Iterators and views (SEC("iter/...") and SEC("view/cgroup")). */
struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;           /* 0 */
	__u64 session_id;               /* 8 */
	__u64 seq_num;                  /* 16 */
};

struct bpf_map {
	__u32 id;                       /* 0 */
	char name[16];                  /* 4 */
	__u32 max_entries;              /* 20 */
	enum bpf_map_type map_type;     /* 24 */
	__u32 key_size;                 /* 28 */
	__u32 value_size;               /* 32 */
};

struct bpf_prog_aux {
	__u32 id;                       /* 0 */
	char name[16];                  /* 4 */
	const char *attach_func_name;   /* 24 */
};

struct bpf_prog {
	__u32 len;                      /* 0 */
	enum bpf_prog_type type;        /* 4 */
	struct bpf_prog_aux *aux;       /* 8 */
};

struct bpf_link {
	__u32 id;                       /* 0 */
	enum bpf_link_type type;        /* 4 */
	struct bpf_prog *prog;          /* 8 */
};

struct kernfs_node {
	struct kernfs_node *parent;     /* 0, NULL at the root */
	const char *name;               /* 8 */
	__u64 id;                       /* 16: the directory's inode number */
};

struct cgroup {
	struct kernfs_node *kn;         /* 0 */
	int level;                      /* 8 */
	int __pad;
	/* ancestors[level] is the group itself; 16 levels are modelled (entries past the
	 * group's level point at the group). */
	struct cgroup *ancestors[];     /* 16 */
};

struct css_set {
	struct cgroup *dfl_cgrp;        /* 0 */
};

struct task_struct {
	int pid;                        /* 0 */
	int tgid;                       /* 4 */
	struct css_set *cgroups;        /* 8 */
	char comm[16];                  /* 16 */
};

struct bpf_iter__bpf_map {
	union { struct bpf_iter_meta *meta; };
	union { struct bpf_map *map; };
};

struct bpf_iter__bpf_prog {
	union { struct bpf_iter_meta *meta; };
	union { struct bpf_prog *prog; };
};

struct bpf_iter__bpf_link {
	union { struct bpf_iter_meta *meta; };
	union { struct bpf_link *link; };
};

struct bpf_iter__bpf_map_elem {
	union { struct bpf_iter_meta *meta; };
	union { struct bpf_map *map; };
	union { void *key; };
	union { void *value; };
};

/* Also the context of SEC("view/cgroup") programs. */
struct bpf_iter__cgroup {
	union { struct bpf_iter_meta *meta; };
	union { struct cgroup *cgroup; };
};

#pragma clang attribute pop

#endif /* __BPFVFS_VMLINUX_H__ */
