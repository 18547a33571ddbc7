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
