//! Resolve one cached 5-component path N times: a fixed workload for
//! `valgrind --tool=callgrind` instruction counts (see docs/benchmarks.md).
use bpfvfs_vfs::{Cred, Vfs, LOOKUP_FOLLOW};
fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let vfs = Vfs::new_memfs();
    let root = Cred::root();
    for p in [
        "/usr",
        "/usr/share",
        "/usr/share/doc",
        "/usr/share/doc/bpfvfs",
    ] {
        vfs.mkdir(&root, None, p.as_bytes(), 0o755).unwrap();
    }
    vfs.write_file(&root, b"/usr/share/doc/bpfvfs/README", b"x")
        .unwrap();
    let user = Cred::user(1000, 1000);
    let mut sum = 0u64;
    for _ in 0..n {
        let p = vfs
            .resolve(
                &user,
                None,
                std::hint::black_box(b"/usr/share/doc/bpfvfs/README"),
                LOOKUP_FOLLOW,
            )
            .unwrap();
        sum = sum.wrapping_add(p.inode().ino());
    }
    println!("{sum}");
}
