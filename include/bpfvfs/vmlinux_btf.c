// Compiled only to produce BTF for the types of vmlinux.h: bpfvfs's "kernel BTF", the target
// CO-RE relocations of loaded programs are resolved against (scripts/gen-vmlinux-btf.sh
// writes crates/runtime/src/vmlinux.btf from it; a test checks the blob is current).
#include "vmlinux.h"

/* Objects, not pointers: a type only pointed to is emitted as a forward declaration. */
struct inode bpfvfs_btf_inode;
struct dentry bpfvfs_btf_dentry;
struct file bpfvfs_btf_file;
struct super_block bpfvfs_btf_super_block;
struct path bpfvfs_btf_path;
struct iattr bpfvfs_btf_iattr;
struct qstr bpfvfs_btf_qstr;
struct bpf_iter_meta bpfvfs_btf_bpf_iter_meta;
struct bpf_map bpfvfs_btf_bpf_map;
struct bpf_prog_aux bpfvfs_btf_bpf_prog_aux;
struct bpf_prog bpfvfs_btf_bpf_prog;
struct bpf_link bpfvfs_btf_bpf_link;
struct kernfs_node bpfvfs_btf_kernfs_node;
struct cgroup bpfvfs_btf_cgroup;
struct css_set bpfvfs_btf_css_set;
struct task_struct bpfvfs_btf_task_struct;
struct bpf_iter__bpf_map bpfvfs_btf_iter_bpf_map;
struct bpf_iter__bpf_prog bpfvfs_btf_iter_bpf_prog;
struct bpf_iter__bpf_link bpfvfs_btf_iter_bpf_link;
struct bpf_iter__bpf_map_elem bpfvfs_btf_iter_bpf_map_elem;
struct bpf_iter__cgroup bpfvfs_btf_iter_cgroup;
