//! A clang-built LSM program using bpf_inode_storage_get/delete runs through the engine on
//! real inodes of a memfs tree and sees the same storage user space sees (the bpf(2)-style
//! inode-keyed map operations), on every engine and every storage layout.

mod common;

use bpfvfs_bpf::maps::inode_storage::StorageLayout;
use bpfvfs_bpf::Bpf;
use bpfvfs_runtime::{HookArg, LoadOpts, Runtime};
use bpfvfs_vfs::{oflags, Cred, Vfs};

const PROTECTED: u64 = 1 << 63;

fn counts(v: &[u8]) -> (u64, u64) {
    (
        u64::from_ne_bytes(v[..8].try_into().unwrap()),
        u64::from_ne_bytes(v[8..16].try_into().unwrap()),
    )
}

#[test]
fn program_and_user_space_share_inode_storage() {
    let Some(obj) = common::example("inode_counter") else {
        return;
    };
    for layout in [
        StorageLayout::InodeField,
        StorageLayout::Addons,
        StorageLayout::Blob,
        StorageLayout::HashTable,
    ] {
        for cfg in common::configs() {
            let vfs = Vfs::new_memfs();
            let bpf = Bpf::new_with_inode_storage(vfs.clone(), layout).unwrap();
            let rt = Runtime::with_config(bpf.clone(), cfg);
            let o = rt
                .load_object(&obj, &LoadOpts::new("inode_counter"))
                .unwrap_or_else(|e| panic!("{e}\n{}", e.verifier_log().unwrap_or("")));
            let prog = |n: &str| {
                o.progs
                    .iter()
                    .find(|(p, _)| p == n)
                    .unwrap()
                    .1
                    .obj
                    .as_prog()
                    .unwrap()
                    .clone()
            };
            let (open_p, unlink_p) = (prog("count_open"), prog("protect_unlink"));
            let map = &o.maps.iter().find(|(n, _)| n == "inode_counts").unwrap().1;
            let root = Cred::root();
            vfs.mkdir(&root, None, b"/d", 0o755).unwrap();
            let f = vfs
                .open(
                    &root,
                    None,
                    b"/d/a",
                    oflags::O_CREAT | oflags::O_RDWR,
                    0o644,
                )
                .unwrap();
            // Three opens through the program.
            for _ in 0..3 {
                assert_eq!(rt.run_with_args(&open_p, &[HookArg::File(&f)]).unwrap(), 0);
            }
            let v = bpf.inode_storage_lookup(map, f.inode()).unwrap();
            assert_eq!(counts(&v), (3, 0), "{layout:?} {cfg:?}");
            // User space tags the file; the unlink program refuses it (-EPERM).
            let mut tagged = v.clone();
            tagged[8..16].copy_from_slice(&PROTECTED.to_ne_bytes());
            bpf.inode_storage_update(map, f.inode(), &tagged, 0)
                .unwrap();
            let dentry = f.path().dentry.arc().clone();
            let dir = dentry.parent().unwrap();
            let r = rt
                .run_with_args(
                    &unlink_p,
                    &[HookArg::Inode(dir.inode()), HookArg::Dentry(&dentry)],
                )
                .unwrap();
            assert_eq!(r as i32, -1, "{layout:?} {cfg:?}");
            // The program keeps counting on the same element.
            rt.run_with_args(&open_p, &[HookArg::File(&f)]).unwrap();
            assert_eq!(
                counts(&bpf.inode_storage_lookup(map, f.inode()).unwrap()),
                (4, PROTECTED)
            );
            // Untagged: the program allows the unlink and deletes the element.
            bpf.inode_storage_update(map, f.inode(), &[0u8; 16], 0)
                .unwrap();
            let r = rt
                .run_with_args(
                    &unlink_p,
                    &[HookArg::Inode(dir.inode()), HookArg::Dentry(&dentry)],
                )
                .unwrap();
            assert_eq!(r, 0);
            assert_eq!(
                bpf.inode_storage_lookup(map, f.inode()).unwrap_err(),
                bpfvfs_vfs::Errno::ENOENT
            );
        }
    }
}

#[test]
fn unmodelled_fields_and_unknown_hooks_are_refused() {
    let dir = std::env::temp_dir().join(format!("bpfvfs-rt-refuse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("bad_field.bpf.c");
    std::fs::write(
        &src,
        r#"#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
SEC("lsm/file_open") int BPF_PROG(x, struct file *file)
{
	return (int)(long)file->f_path.mnt; /* struct vfsmount is not modelled */
}
char LICENSE[] SEC("license") = "GPL";
"#,
    )
    .unwrap();
    let Some(obj) = common::compile(&src) else {
        return;
    };
    let (_vfs, _bpf, rt) = common::instance(Default::default());
    let e = rt
        .load_object(&obj, &LoadOpts::new("bad_field"))
        .unwrap_err();
    let log = e.verifier_log().unwrap_or("");
    assert!(log.contains("vfsmount is not modelled"), "{e}\n{log}");

    let src = dir.join("bad_hook.bpf.c");
    std::fs::write(
        &src,
        r#"#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
SEC("lsm/no_such_hook") int x(void *ctx) { return 0; }
char LICENSE[] SEC("license") = "GPL";
"#,
    )
    .unwrap();
    let Some(obj) = common::compile(&src) else {
        return;
    };
    let e = rt
        .load_object(&obj, &LoadOpts::new("bad_hook"))
        .unwrap_err();
    assert!(
        e.to_string().contains("unknown LSM hook \"no_such_hook\""),
        "{e}"
    );
}

#[test]
fn programs_read_names_and_walk_parents() {
    let dir = std::env::temp_dir().join(format!("bpfvfs-rt-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("names.bpf.c");
    std::fs::write(
        &src,
        r#"#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
/* Deny unlinking anything directly under a directory named "locked". */
SEC("lsm/inode_unlink") int BPF_PROG(deny_in_locked, struct inode *dir, struct dentry *victim)
{
	char name[8] = {};
	struct dentry *parent = victim->d_parent;
	if (parent->d_name.len != 6)
		return 0;
	bpf_probe_read_kernel_str(name, sizeof(name), parent->d_name.name);
	if (name[0] == 'l' && name[1] == 'o' && name[5] == 'd')
		return -1;
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
"#,
    )
    .unwrap();
    let Some(obj) = common::compile(&src) else {
        return;
    };
    for cfg in common::configs() {
        let (vfs, _bpf, rt) = common::instance(cfg);
        let o = rt
            .load_object(&obj, &LoadOpts::new("names"))
            .unwrap_or_else(|e| panic!("{e}\n{}", e.verifier_log().unwrap_or("")));
        let p = o.progs[0].1.obj.as_prog().unwrap().clone();
        let root = Cred::root();
        for d in [&b"/locked"[..], b"/other"] {
            vfs.mkdir(&root, None, d, 0o755).unwrap();
        }
        vfs.write_file(&root, b"/locked/f", b"x").unwrap();
        vfs.write_file(&root, b"/other/f", b"x").unwrap();
        for (path, want) in [(&b"/locked/f"[..], -1i32), (b"/other/f", 0)] {
            let at = vfs.resolve(&root, None, path, 0).unwrap();
            let victim = at.dentry.arc().clone();
            let parent = victim.parent().unwrap();
            let r = rt
                .run_with_args(
                    &p,
                    &[HookArg::Inode(parent.inode()), HookArg::Dentry(&victim)],
                )
                .unwrap();
            assert_eq!(r as i32, want, "{cfg:?} {}", String::from_utf8_lossy(path));
        }
    }
}

/// A program built against a kernel-like vmlinux.h (the real kernel's field offsets, not
/// ours) reads the right fields: CO-RE relocates it against bpfvfs's BTF, with direct BTF
/// pointer reads and with BPF_CORE_READ.
#[test]
fn core_relocates_kernel_layouts_to_ours() {
    let dir = std::env::temp_dir().join(format!("bpfvfs-rt-core-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("k")).unwrap();
    // Offsets as in a real kernel (padding where bpfvfs has none), names as in ours.
    std::fs::write(
        dir.join("k/vmlinux.h"),
        r#"typedef unsigned char __u8; typedef unsigned short __u16; typedef unsigned int __u32;
typedef unsigned long long __u64; typedef signed char __s8; typedef short __s16; typedef int __s32;
typedef long long __s64; typedef __u16 __be16; typedef __u32 __be32; typedef __u32 __wsum;
typedef unsigned short umode_t; typedef long long loff_t; typedef _Bool bool;
enum bpf_map_type { BPF_MAP_TYPE_UNSPEC = 0 };
#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)
typedef struct { __u32 val; } kuid_t;
struct super_block { char pad[96]; unsigned long s_magic; };
struct inode { umode_t i_mode; unsigned short i_opflags; kuid_t i_uid; int pad0[4];
               struct super_block *i_sb; char pad1[24]; unsigned long i_ino; };
struct dentry;
struct path { void *mnt; struct dentry *dentry; };
struct file { char pad[16]; struct path f_path; struct inode *f_inode; };
#pragma clang attribute pop
"#,
    )
    .unwrap();
    let src = dir.join("k/core_kernel.bpf.c");
    std::fs::write(
        &src,
        r#"#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
__u64 seen_ino, seen_ino_core, seen_magic;
__u32 seen_uid;
SEC("lsm/file_open") int BPF_PROG(peek, struct file *file)
{
	seen_ino = file->f_inode->i_ino;
	seen_ino_core = BPF_CORE_READ(file, f_inode, i_ino);
	seen_magic = file->f_inode->i_sb->s_magic;
	seen_uid = file->f_inode->i_uid.val;
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
"#,
    )
    .unwrap();
    // Compile with the kernel-like header first on the include path.
    let out = dir.join("core_kernel.bpf.o");
    let ok = std::process::Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86", "-c"])
        .arg(format!("-I{}", dir.join("k").display()))
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .status();
    match ok {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("clang failed: {s}"),
        Err(e) => {
            println!("SKIPPED: clang not available: {e}");
            return;
        }
    }
    let obj = std::fs::read(&out).unwrap();
    for cfg in common::configs() {
        let (vfs, bpf, rt) = common::instance(cfg);
        let o = rt
            .load_object(&obj, &LoadOpts::new("core_kernel"))
            .unwrap_or_else(|e| panic!("{e}\n{}", e.verifier_log().unwrap_or("")));
        let p = o.progs[0].1.obj.as_prog().unwrap().clone();
        let root = Cred::root();
        let f = vfs
            .open(&root, None, b"/x", oflags::O_CREAT | oflags::O_RDWR, 0o640)
            .unwrap();
        assert_eq!(rt.run_with_args(&p, &[HookArg::File(&f)]).unwrap(), 0);
        let bss = &o.maps.iter().find(|(n, _)| n.ends_with(".bss")).unwrap().1;
        let v = bpf.map_lookup_elem(bss, &0u32.to_ne_bytes()).unwrap();
        let u = |i: usize| u64::from_ne_bytes(v[i * 8..i * 8 + 8].try_into().unwrap());
        assert_eq!(u(0), f.inode().ino(), "direct read {cfg:?}");
        assert_eq!(u(1), f.inode().ino(), "BPF_CORE_READ {cfg:?}");
        assert_eq!(u(2), f.inode().sb().magic(), "s_magic {cfg:?}");
        let uid = u32::from_ne_bytes(v[24..28].try_into().unwrap());
        assert_eq!(uid, f.inode().uid(), "i_uid {cfg:?}");
    }
}

/// The committed BTF blob describes include/bpfvfs/vmlinux.h as it is now (member names and
/// offsets of every struct), and matches the verifier's view layouts.
#[test]
fn committed_btf_matches_the_header() {
    let dir = std::env::temp_dir().join(format!("bpfvfs-rt-btf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let o = dir.join("v.o");
    let ok = std::process::Command::new("clang")
        .args(["-g", "-O2", "-target", "bpf", "-c"])
        .arg(format!("-I{}", root.join("include/bpfvfs").display()))
        .arg(root.join("include/bpfvfs/vmlinux_btf.c"))
        .arg("-o")
        .arg(&o)
        .status();
    if !matches!(ok, Ok(s) if s.success()) {
        println!("SKIPPED: clang not available");
        return;
    }
    let fresh = bpfvfs_ebpf_obj::LoadedObject::parse(&std::fs::read(&o).unwrap(), "v")
        .unwrap()
        .btf
        .expect("BTF");
    let ours = bpfvfs_runtime::kernel_btf();
    for name in [
        "inode",
        "dentry",
        "file",
        "super_block",
        "path",
        "iattr",
        "qstr",
    ] {
        let layout = |b: &bpfvfs_ebpf_obj::Btf| -> Vec<(String, u32)> {
            let id = b
                .find_by_name_kind(name, bpfvfs_ebpf_obj::BtfKind::Struct)
                .unwrap_or_else(|| panic!("no struct {name}"));
            b.type_by_id(id)
                .unwrap()
                .members()
                .iter()
                .map(|m| (b.string_at(m.name_off).unwrap().to_string(), m.bit_offset))
                .collect()
        };
        assert_eq!(
            layout(&fresh),
            layout(ours),
            "struct {name}: run scripts/gen-vmlinux-btf.sh"
        );
    }
}

/// bpf_loop whose callback body reaches the same state on every iteration (create then
/// delete an element) is not an infinite loop: iterations are told apart as Linux's
/// callback_unroll_depth does. The run creates and deletes 1024 times and leaves nothing.
#[test]
fn callback_iterations_are_not_taken_for_an_infinite_loop() {
    let dir = std::env::temp_dir().join(format!("bpfvfs-rt-cbloop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("cbloop.bpf.c");
    std::fs::write(
        &src,
        r#"#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
struct { __uint(type, BPF_MAP_TYPE_INODE_STORAGE); __uint(map_flags, BPF_F_NO_PREALLOC);
         __type(key, int); __type(value, __u64); } st SEC(".maps");
struct ctx { struct inode *inode; __u64 made; };
static int create_delete(__u32 i, struct ctx *c)
{
	__u64 *v = bpf_inode_storage_get(&st, c->inode, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (v)
		c->made += 1;
	bpf_inode_storage_delete(&st, c->inode);
	return 0;
}
SEC("lsm/inode_permission") int BPF_PROG(churn, struct inode *inode, int mask)
{
	struct ctx c = { .inode = inode };
	bpf_loop(1024, create_delete, &c, 0);
	return c.made == 1024 ? 0 : -1;
}
char LICENSE[] SEC("license") = "GPL";
"#,
    )
    .unwrap();
    let Some(obj) = common::compile(&src) else {
        return;
    };
    for cfg in common::configs() {
        let (vfs, bpf, rt) = common::instance(cfg);
        let o = rt
            .load_object(&obj, &LoadOpts::new("cbloop"))
            .unwrap_or_else(|e| panic!("{e}\n{}", e.verifier_log().unwrap_or("")));
        let p = o.progs[0].1.obj.as_prog().unwrap().clone();
        let root = Cred::root();
        let f = vfs
            .open(&root, None, b"/f", oflags::O_CREAT | oflags::O_RDWR, 0o644)
            .unwrap();
        let r = rt
            .run_with_args(&p, &[HookArg::Inode(f.inode()), HookArg::Scalar(4)])
            .unwrap();
        assert_eq!(r, 0, "{cfg:?}");
        let map = &o.maps[0].1;
        assert_eq!(
            bpf.inode_storage_lookup(map, f.inode()).unwrap_err(),
            bpfvfs_vfs::Errno::ENOENT
        );
    }
}
