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
