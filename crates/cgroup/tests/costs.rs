//! Rough costs of the tree's operations, printed (run with
//! `cargo test --release -p bpfvfs-cgroup --test costs -- --ignored --nocapture`).
//! Figures, not assertions: docs/cgroup.md quotes them.

use bpfvfs_cgroup::{install, Cgroup, CgroupMode, SeqShow, WalkOrder};
use bpfvfs_vfs::{oflags, Cred, Errno, Vfs};
use std::sync::Arc;
use std::time::Instant;

struct Fixed(Vec<u8>);
impl SeqShow for Fixed {
    fn show(&self, _g: &Arc<Cgroup>) -> Result<Vec<u8>, Errno> {
        Ok(self.0.clone())
    }
}

#[test]
#[ignore = "prints timing figures for docs/benchmarks.md, asserts nothing: run with -- --ignored --nocapture"]
fn costs() {
    let vfs = Vfs::new_memfs();
    let tree = install(&vfs, CgroupMode::Local).unwrap();
    let c = Cred::root();
    let n = 2000;
    let t = Instant::now();
    for i in 0..n {
        vfs.mkdir(&c, None, format!("/sys/fs/cgroup/g{i}").as_bytes(), 0o755)
            .unwrap();
    }
    let mk = t.elapsed() / n;
    let t = Instant::now();
    let walked = tree.walk(&tree.root(), WalkOrder::DescendantsPre).len();
    let walk = t.elapsed();
    let t = Instant::now();
    for i in 0..n {
        vfs.rmdir(&c, None, format!("/sys/fs/cgroup/g{i}").as_bytes())
            .unwrap();
    }
    let rm = t.elapsed() / n;
    println!("mkdir (group + 2 control files): {mk:?} per group; rmdir: {rm:?} per group");
    println!("walk of {walked} groups (pre-order): {walk:?}");

    // current(): no members at all, then this process a member of a group.
    let me = std::process::id();
    bpfvfs_vfs::task::set_caller(Some(bpfvfs_vfs::task::Caller {
        pid: me,
        uid: 0,
        gid: 0,
    }));
    let iters = 1_000_000u32;
    let t = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(tree.current());
    }
    let empty = t.elapsed() / iters;
    vfs.mkdir(&c, None, b"/sys/fs/cgroup/m", 0o755).unwrap();
    let f = vfs
        .open(
            &c,
            None,
            b"/sys/fs/cgroup/m/cgroup.procs",
            oflags::O_WRONLY,
            0,
        )
        .unwrap();
    vfs.write(&f, format!("{me}\n").as_bytes(), 0).unwrap();
    let t = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(tree.current());
    }
    let member = t.elapsed() / iters;
    println!("current(): {empty:?} (no members anywhere), {member:?} (caller is a member)");

    // An exposed file of 4 KiB read whole, open to close.
    let m = tree.by_path("/m").unwrap();
    let _x = tree
        .expose(&m, b"view", Arc::new(Fixed(vec![b'x'; 4096])), false)
        .unwrap();
    let reads = 100_000u32;
    let t = Instant::now();
    for _ in 0..reads {
        std::hint::black_box(vfs.read_file(&c, b"/sys/fs/cgroup/m/view").unwrap());
    }
    println!(
        "open+read+close of a 4 KiB exposed file: {:?}",
        t.elapsed() / reads
    );
}
