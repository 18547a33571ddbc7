//! Who holds what during a hook dispatch: the views of one invocation hold the inodes no
//! caller holds (reached through `d_parent`) only until the invocation ends; a dropped
//! runtime's hooks run nothing, even with a link still open; programs of one hook share the
//! thread's JIT state run after run, and every engine gives the same verdicts.

mod common;

use bpfvfs_runtime::HookArg;
use bpfvfs_vfs::{Cred, Errno};
use std::sync::Arc;

const PARENT_SRC: &str = r#"#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
/* Reads the victim's parent's inode: the parent's view is built for the run. */
SEC("lsm/inode_unlink") int BPF_PROG(parent_ino, struct inode *dir, struct dentry *victim)
{
	struct inode *pi = victim->d_parent->d_inode;
	if (!pi)
		return -2;
	return pi->i_ino == dir->i_ino ? 0 : -1;
}
char LICENSE[] SEC("license") = "GPL";
"#;

const DENY_SRC: &str = r#"#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
SEC("lsm/inode_unlink") int BPF_PROG(deny_unlink, struct inode *dir, struct dentry *victim)
{
	return -1; /* -EPERM */
}
char LICENSE[] SEC("license") = "GPL";
"#;

fn object(name: &str, src: &str) -> Option<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("bpfvfs-hook-lifetimes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.bpf.c"));
    std::fs::write(&path, src).unwrap();
    common::compile(&path)
}

/// The arena takes a reference on an inode it reaches through `d_parent` (no caller holds
/// one) and gives it back when the invocation ends, not at the next run on the thread.
#[test]
fn parent_inodes_are_held_for_the_invocation_only() {
    let Some(obj) = object("parent_ino", PARENT_SRC) else {
        return;
    };
    let root = Cred::root();
    for cfg in common::configs() {
        let (vfs, _bpf, rt) = common::instance(cfg);
        let o = common::load(&rt, "parent_ino", &obj);
        let p = o.progs[0].1.obj.as_prog().unwrap().clone();
        vfs.mkdir(&root, None, b"/d", 0o755).unwrap();
        vfs.write_file(&root, b"/d/f", b"x").unwrap();
        let at = vfs.resolve(&root, None, b"/d/f", 0).unwrap();
        let victim = at.dentry.arc().clone();
        let parent = victim.parent().unwrap();
        let dir = parent.inode().clone();
        let before = Arc::strong_count(&dir);
        // The directory is not an argument (the victim's inode stands in for it), so only
        // the d_parent chain reaches it: the arena holds it for the run.
        let r = rt
            .run_with_args(
                &p,
                &[HookArg::Inode(victim.inode()), HookArg::Dentry(&victim)],
            )
            .unwrap();
        assert_eq!(
            r as i32, -1,
            "{cfg:?}: d_parent->d_inode is not the argument"
        );
        assert_eq!(
            Arc::strong_count(&dir),
            before,
            "{cfg:?}: the view's reference ends with the invocation"
        );
        assert_eq!(
            rt.run_with_args(&p, &[HookArg::Inode(&dir), HookArg::Dentry(&victim)])
                .unwrap(),
            0,
            "{cfg:?}: d_parent->d_inode is the directory"
        );
        assert_eq!(
            Arc::strong_count(&dir),
            before,
            "{cfg:?}: the view's reference ends with the invocation"
        );
    }
}

/// Links hold the runtime weakly; once it is dropped its hooks (still installed on the VFS,
/// which outlives it) run nothing, and the open link detaches without effect.
#[test]
fn a_dropped_runtime_runs_no_program() {
    let Some(obj) = object("deny_unlink", DENY_SRC) else {
        return;
    };
    let root = Cred::root();
    for cfg in common::configs() {
        let (vfs, _bpf, rt) = common::instance(cfg);
        let o = common::load(&rt, "deny_unlink", &obj);
        let link = rt.attach(&o.progs[0].1, None).unwrap();
        vfs.write_file(&root, b"/a", b"x").unwrap();
        vfs.write_file(&root, b"/b", b"x").unwrap();
        assert_eq!(vfs.unlink(&root, None, b"/a"), Err(Errno::EPERM), "{cfg:?}");
        drop(o);
        drop(rt);
        vfs.unlink(&root, None, b"/b")
            .unwrap_or_else(|e| panic!("{cfg:?}: unlink after the runtime is gone: {e:?}"));
        drop(link);
        vfs.unlink(&root, None, b"/a").unwrap();
    }
}

/// Several programs at one hook run one after another in the thread's shared JIT state:
/// each sees its own arguments and the first denial stops the rest, as before.
#[test]
fn programs_of_one_hook_share_the_thread_state() {
    let (Some(allow), Some(deny)) = (
        object("parent_ino", PARENT_SRC),
        object("deny_unlink", DENY_SRC),
    ) else {
        return;
    };
    let root = Cred::root();
    for cfg in common::configs() {
        let (vfs, _bpf, rt) = common::instance(cfg);
        let mut links = Vec::new();
        for _ in 0..3 {
            let o = common::load(&rt, "allow", &allow);
            links.push(rt.attach(&o.progs[0].1, None).unwrap());
        }
        vfs.mkdir(&root, None, b"/d", 0o755).unwrap();
        for i in 0..50 {
            let name = format!("/d/f{i}");
            vfs.write_file(&root, name.as_bytes(), b"x").unwrap();
            vfs.unlink(&root, None, name.as_bytes())
                .unwrap_or_else(|e| panic!("{cfg:?}: {e:?}"));
        }
        let o = common::load(&rt, "deny", &deny);
        links.push(rt.attach(&o.progs[0].1, None).unwrap());
        vfs.write_file(&root, b"/d/g", b"x").unwrap();
        assert_eq!(
            vfs.unlink(&root, None, b"/d/g"),
            Err(Errno::EPERM),
            "{cfg:?}"
        );
        links.pop();
        vfs.unlink(&root, None, b"/d/g").unwrap();
    }
}

const COUNT_DIR_SRC: &str = r#"#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
struct {
	__uint(type, BPF_MAP_TYPE_INODE_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} unlinks SEC(".maps");
/* No field loads, only inode storage: the views are left unbuilt (zeroed), and the helper
 * still finds the directory by its view's address. */
SEC("lsm/inode_unlink") int BPF_PROG(count_dir, struct inode *dir, struct dentry *victim)
{
	__u64 *n = bpf_inode_storage_get(&unlinks, dir, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (n)
		*n += 1;
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
"#;

/// Programs that read no field get zeroed views (nothing is copied from the objects) whose
/// addresses still name the objects for the storage helpers.
#[test]
fn unread_views_still_name_their_objects() {
    let Some(obj) = object("count_dir", COUNT_DIR_SRC) else {
        return;
    };
    let root = Cred::root();
    for cfg in common::configs() {
        let (vfs, bpf, rt) = common::instance(cfg);
        let o = common::load(&rt, "count_dir", &obj);
        let map = &o.maps.iter().find(|(n, _)| n == "unlinks").unwrap().1;
        let _link = rt.attach(&o.progs[0].1, None).unwrap();
        for d in [&b"/a"[..], b"/b"] {
            vfs.mkdir(&root, None, d, 0o755).unwrap();
        }
        for (dir, n) in [("/a", 3), ("/b", 2)] {
            for i in 0..n {
                let f = format!("{dir}/f{i}");
                vfs.write_file(&root, f.as_bytes(), b"x").unwrap();
                vfs.unlink(&root, None, f.as_bytes()).unwrap();
            }
        }
        for (dir, want) in [("/a", 3u64), ("/b", 2)] {
            let at = vfs.resolve(&root, None, dir.as_bytes(), 0).unwrap();
            let v = bpf.inode_storage_lookup(map, at.inode()).unwrap();
            assert_eq!(
                u64::from_ne_bytes(v[..8].try_into().unwrap()),
                want,
                "{cfg:?} {dir}"
            );
        }
    }
}
