//! memfs (the tmpfs-like filesystem): data, sizes, space and inode limits, xattrs,
//! fallocate, links, symlinks and readdir cookies. Expectations follow a kernel tmpfs
//! (checked on Linux 6.x).

use bpfvfs_vfs::memfs::{MemFs, TMPFS_MAGIC};
use bpfvfs_vfs::oflags::*;
use bpfvfs_vfs::*;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

macro_rules! ok {
    ($e:expr) => {{
        match $e {
            Ok(v) => v,
            Err(got) => panic!("`{}` failed with {:?}", stringify!($e), got),
        }
    }};
}
macro_rules! err {
    ($e:expr, $want:expr) => {{
        match $e {
            Ok(_) => panic!("`{}` succeeded, want {:?}", stringify!($e), $want),
            Err(got) => assert_eq!(got, $want, "`{}`", stringify!($e)),
        }
    }};
}

const PAGE: u64 = 4096;
const XATTR_CREATE: i32 = 1;
const XATTR_REPLACE: i32 = 2;
const FALLOC_FL_KEEP_SIZE: i32 = 1;

fn r() -> Cred {
    Cred::root()
}

fn open_rw(vfs: &Vfs, p: &[u8], extra: i32) -> Arc<File> {
    ok!(vfs.open(&r(), None, p, O_RDWR | O_CREAT | extra, 0o644))
}

fn read_all(vfs: &Vfs, f: &File) -> Vec<u8> {
    let size = f.inode().size() as usize;
    let mut buf = vec![0xAAu8; size + 10];
    let n = ok!(vfs.read(f, &mut buf, 0));
    buf.truncate(n);
    buf
}

/// A memfs mounted at `at` with `opts`; returns it so tests can look at its accounting.
fn mount_memfs(vfs: &Vfs, at: &[u8], opts: &str) -> Arc<MemFs> {
    ok!(vfs.mkdir(&r(), None, at, 0o755));
    let fs = Arc::new(ok!(MemFs::from_options(opts)));
    ok!(vfs.mount(&r(), fs.clone(), at));
    fs
}

#[test]
fn read_write_append() {
    let vfs = Vfs::new_memfs();
    let f = open_rw(&vfs, b"/f", 0);
    assert_eq!(ok!(vfs.write(&f, b"hello world", 0)), 11);
    assert_eq!(read_all(&vfs, &f), b"hello world");
    assert_eq!(ok!(vfs.write(&f, b"W", 6)), 1);
    assert_eq!(read_all(&vfs, &f), b"hello World");
    // Reads at and past the end return 0; a read across the end is short.
    let mut buf = [0u8; 32];
    assert_eq!(ok!(vfs.read(&f, &mut buf, 11)), 0);
    assert_eq!(ok!(vfs.read(&f, &mut buf, 1000)), 0);
    assert_eq!(ok!(vfs.read(&f, &mut buf[..4], 9)), 2);
    assert_eq!(&buf[..2], b"ld");
    // A write across a page boundary.
    let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(ok!(vfs.write(&f, &big, 4000)), big.len());
    let all = read_all(&vfs, &f);
    assert_eq!(all.len(), 14_000);
    assert_eq!(&all[4000..], &big[..]);
    assert_eq!(&all[..11], b"hello World");
    assert!(all[11..4000].iter().all(|&b| b == 0));
    // O_APPEND: every write goes to the end, whatever offset is passed (pwrite too, as
    // Linux does for O_APPEND files).
    let a = open_rw(&vfs, b"/a", O_APPEND);
    ok!(vfs.write(&a, b"123", 0));
    ok!(vfs.write(&a, b"45", 0));
    ok!(vfs.write(&a, b"6", 100));
    assert_eq!(read_all(&vfs, &a), b"123456");
    // A second, non-append handle writes where told; the append one still appends after it.
    let b = ok!(vfs.open(&r(), None, b"/a", O_WRONLY, 0));
    ok!(vfs.write(&b, b"x", 0));
    ok!(vfs.write(&a, b"7", 0));
    assert_eq!(ok!(vfs.read_file(&r(), b"/a")), b"x234567");
    // fcntl(F_SETFL) can turn O_APPEND off.
    a.set_status_flags(0);
    ok!(vfs.write(&a, b"y", 0));
    assert_eq!(ok!(vfs.read_file(&r(), b"/a")), b"y234567");
    // Access modes are enforced on the handle.
    let ro = ok!(vfs.open(&r(), None, b"/a", O_RDONLY, 0));
    err!(vfs.write(&ro, b"z", 0), Errno::EBADF);
    let wo = ok!(vfs.open(&r(), None, b"/a", O_WRONLY, 0));
    err!(vfs.read(&wo, &mut buf, 0), Errno::EBADF);
    // O_TRUNC empties the file and frees its pages.
    let st = ok!(vfs.stat(&r(), None, b"/f", true));
    assert!(st.blocks > 0);
    let t = ok!(vfs.open(&r(), None, b"/f", O_WRONLY | O_TRUNC, 0));
    let st = vfs.getattr(t.path());
    assert_eq!((st.size, st.blocks), (0, 0));
    // Empty writes change nothing.
    assert_eq!(ok!(vfs.write(&t, b"", 1 << 30)), 0);
    assert_eq!(vfs.getattr(t.path()).size, 0);
}

#[test]
fn sparse_files_and_blocks() {
    let vfs = Vfs::new_memfs();
    let f = open_rw(&vfs, b"/s", 0);
    let blocks = |vfs: &Vfs| ok!(vfs.stat(&r(), None, b"/s", true)).blocks;
    assert_eq!(blocks(&vfs), 0);
    ok!(vfs.write(&f, b"a", 0));
    assert_eq!(blocks(&vfs), 8); // one page = 8 x 512
    ok!(vfs.write(&f, &[1u8; 4095], 1));
    assert_eq!(blocks(&vfs), 8);
    ok!(vfs.write(&f, b"b", 4096));
    assert_eq!(blocks(&vfs), 16);
    // A byte 1 MiB out: one more page, the hole between costs nothing and reads as zeros.
    ok!(vfs.write(&f, b"z", 1 << 20));
    let st = ok!(vfs.stat(&r(), None, b"/s", true));
    assert_eq!(st.size, (1 << 20) + 1);
    assert_eq!(st.blocks, 24);
    assert_eq!(st.blksize, 4096);
    let mut buf = vec![0xFFu8; 3 * PAGE as usize];
    assert_eq!(ok!(vfs.read(&f, &mut buf, 8192)), buf.len());
    assert!(buf.iter().all(|&b| b == 0));
    let mut one = [0u8; 2];
    assert_eq!(ok!(vfs.read(&f, &mut one, 1 << 20)), 1);
    assert_eq!(one[0], b'z');
    // Writing zeros into a hole allocates it (tmpfs does not detect zero pages).
    ok!(vfs.write(&f, &[0u8; 10], 100_000));
    assert_eq!(blocks(&vfs), 32);
}

#[test]
fn truncate_down_and_up() {
    let vfs = Vfs::new_memfs();
    let f = open_rw(&vfs, b"/t", 0);
    ok!(vfs.write(&f, b"abcdefgh", 0));
    ok!(vfs.truncate(&r(), b"/t", 4));
    assert_eq!(read_all(&vfs, &f), b"abcd");
    ok!(vfs.truncate(&r(), b"/t", 8));
    // Bytes beyond the old size are zeros after re-extension, not the old data.
    assert_eq!(read_all(&vfs, &f), b"abcd\0\0\0\0");

    // Across pages: cut in the middle of the second page, then grow far.
    let data = vec![0x5Au8; 3 * PAGE as usize];
    ok!(vfs.write(&f, &data, 0));
    assert_eq!(ok!(vfs.stat(&r(), None, b"/t", true)).blocks, 24);
    ok!(vfs.truncate(&r(), b"/t", PAGE + 100));
    assert_eq!(ok!(vfs.stat(&r(), None, b"/t", true)).blocks, 16);
    ok!(vfs.truncate(&r(), b"/t", 10 * PAGE));
    let st = ok!(vfs.stat(&r(), None, b"/t", true));
    assert_eq!((st.size, st.blocks), (10 * PAGE, 16)); // growing allocates nothing
    let all = read_all(&vfs, &f);
    assert!(all[..(PAGE + 100) as usize].iter().all(|&b| b == 0x5A));
    assert!(all[(PAGE + 100) as usize..].iter().all(|&b| b == 0));
    // Truncating to a page boundary and writing after it.
    ok!(vfs.truncate(&r(), b"/t", PAGE));
    ok!(vfs.write(&f, b"q", 2 * PAGE));
    let all = read_all(&vfs, &f);
    assert_eq!(all.len() as u64, 2 * PAGE + 1);
    assert!(all[PAGE as usize..(2 * PAGE) as usize]
        .iter()
        .all(|&b| b == 0));
    // Truncate changes mtime/ctime; a truncate to the same size too (Linux sets them when
    // size is given).
    let t = Timespec { sec: 5, nsec: 0 };
    ok!(vfs.utimens(&r(), b"/t", Some(TimeSet::At(t)), Some(TimeSet::At(t))));
    ok!(vfs.truncate(&r(), b"/t", 2 * PAGE + 1));
    assert!(ok!(vfs.stat(&r(), None, b"/t", true)).mtime > t);
    ok!(vfs.truncate(&r(), b"/t", 0));
    let st = ok!(vfs.stat(&r(), None, b"/t", true));
    assert_eq!((st.size, st.blocks), (0, 0));
    // Symlinks are followed; other types are refused.
    ok!(vfs.symlink(&r(), b"t", None, b"/lt"));
    ok!(vfs.write_file(&r(), b"/t", b"12345"));
    ok!(vfs.truncate(&r(), b"/lt", 2));
    assert_eq!(ok!(vfs.read_file(&r(), b"/t")), b"12");
    ok!(vfs.mknod(&r(), None, b"/fifo", S_IFIFO | 0o644, 0));
    err!(vfs.truncate(&r(), b"/fifo", 0), Errno::EINVAL);
}

#[test]
fn huge_offsets() {
    let vfs = Vfs::new_memfs();
    let f = open_rw(&vfs, b"/h", 0);
    let max = i64::MAX as u64;
    assert_eq!(ok!(vfs.write(&f, b"0", 1 << 40)), 1);
    assert_eq!(vfs.getattr(f.path()).size, (1 << 40) + 1);
    assert_eq!(vfs.getattr(f.path()).blocks, 8);
    // The last byte a file can hold is at i64::MAX - 1.
    assert_eq!(ok!(vfs.write(&f, b"1", max - 1)), 1);
    assert_eq!(vfs.getattr(f.path()).size, max);
    // A range ending past i64::MAX is EINVAL (rw_verify_area), for reads and writes.
    err!(vfs.write(&f, b"12", max - 1), Errno::EINVAL);
    err!(vfs.write(&f, b"1", max), Errno::EINVAL);
    err!(vfs.write(&f, b"1", u64::MAX), Errno::EINVAL);
    let mut buf = [0u8; 10];
    err!(vfs.read(&f, &mut buf[..1], max), Errno::EINVAL);
    err!(vfs.read(&f, &mut buf, max - 1), Errno::EINVAL);
    assert_eq!(ok!(vfs.write(&f, b"", max)), 0);
    assert_eq!(ok!(vfs.read(&f, &mut buf[..1], max - 1)), 1);
    assert_eq!(buf[0], b'1');
    // O_APPEND at the maximum size: EFBIG (generic_write_check_limits).
    let a = ok!(vfs.open(&r(), None, b"/h", O_WRONLY | O_APPEND, 0));
    err!(vfs.write(&a, b"x", 0), Errno::EFBIG);
    // truncate: up to i64::MAX; beyond is a negative loff_t, EINVAL.
    ok!(vfs.truncate(&r(), b"/h", max));
    err!(vfs.truncate(&r(), b"/h", max + 1), Errno::EINVAL);
    ok!(vfs.truncate(&r(), b"/h", 0));
    assert_eq!(vfs.getattr(f.path()).blocks, 0);
}

#[test]
fn statfs_and_enospc() {
    let vfs = Vfs::new_memfs();
    let unl = ok!(vfs.statfs(&vfs.root()));
    assert_eq!(unl.fs_type, TMPFS_MAGIC);
    assert_eq!((unl.bsize, unl.frsize, unl.namelen), (4096, 4096, 255));
    assert!(unl.bfree > 0 && unl.ffree > 0);

    let fs = mount_memfs(&vfs, b"/lim", "size=64k");
    let lim = ok!(vfs.resolve(&r(), None, b"/lim", LOOKUP_FOLLOW));
    let st = ok!(vfs.statfs(&lim));
    assert_eq!((st.blocks, st.bfree, st.bavail), (16, 16, 16));
    // The root filesystem's numbers are not the mounted one's.
    assert_ne!(ok!(vfs.statfs(&vfs.root())).blocks, 16);

    // Write until ENOSPC: the last write is short, the next fails.
    let f = open_rw(&vfs, b"/lim/big", 0);
    let chunk = vec![7u8; 10_000];
    let mut total = 0u64;
    let mut short = false;
    loop {
        match vfs.write(&f, &chunk, total) {
            Ok(n) => {
                if n < chunk.len() {
                    short = true;
                }
                total += n as u64;
            }
            Err(e) => {
                assert_eq!(e, Errno::ENOSPC);
                break;
            }
        }
        assert!(total <= 64 * 1024);
    }
    assert!(short);
    assert_eq!(total, 64 * 1024);
    assert_eq!(fs.pages_used(), 16);
    assert_eq!(ok!(vfs.statfs(&lim)).bfree, 0);
    assert_eq!(vfs.getattr(f.path()).blocks, 128);
    // Another file cannot get a page either, but an empty one can be created.
    let g = open_rw(&vfs, b"/lim/g", 0);
    err!(vfs.write(&g, b"x", 0), Errno::ENOSPC);
    // Overwriting already allocated pages needs no space.
    assert_eq!(ok!(vfs.write(&f, b"over", 100)), 4);
    // fallocate is all-or-nothing.
    err!(
        g.inode().sb().fs().fallocate(g.inode(), 0, 0, 8192),
        Errno::ENOSPC
    );
    assert_eq!(vfs.getattr(g.path()).size, 0);
    // Long symlinks need a page; short ones (< 128 bytes) do not (shmem_symlink).
    err!(
        vfs.symlink(&r(), &[b'y'; 200], None, b"/lim/longl"),
        Errno::ENOSPC
    );
    ok!(vfs.symlink(&r(), &[b'y'; 100], None, b"/lim/shortl"));
    // Unlinking while the file is open frees nothing yet...
    ok!(vfs.unlink(&r(), None, b"/lim/big"));
    assert_eq!(ok!(vfs.statfs(&lim)).bfree, 0);
    assert_eq!(read_all(&vfs, &f).len(), 64 * 1024);
    // ...closing it does, and writes succeed again.
    drop(f);
    assert_eq!(ok!(vfs.statfs(&lim)).bfree, 16);
    assert_eq!(fs.pages_used(), 0);
    assert_eq!(ok!(vfs.write(&g, &chunk, 0)), chunk.len());
    ok!(vfs.symlink(&r(), &[b'y'; 200], None, b"/lim/longl"));
    assert_eq!(ok!(vfs.statfs(&lim)).bfree, 16 - 3 - 1);
    // Truncating frees pages too.
    ok!(vfs.truncate(&r(), b"/lim/g", 0));
    assert_eq!(ok!(vfs.statfs(&lim)).bfree, 15);
    ok!(vfs.unlink(&r(), None, b"/lim/longl"));
    assert_eq!(ok!(vfs.statfs(&lim)).bfree, 16);
    // ENOSPC does not leak: after removing everything, the pages are all back.
    drop(g);
    ok!(vfs.unlink(&r(), None, b"/lim/g"));
    ok!(vfs.unlink(&r(), None, b"/lim/shortl"));
    assert_eq!(fs.pages_used(), 0);
    // Options are parsed like tmpfs's.
    assert!(fs.show_options().contains("size=64k"));
    err!(MemFs::from_options("size=12q").map(|_| ()), Errno::EINVAL);
    err!(MemFs::from_options("nosuch=1").map(|_| ()), Errno::EINVAL);
    ok!(MemFs::from_options(
        "size=1m,nr_inodes=10,mode=0700,uid=5,gid=6"
    ));
}

#[test]
fn nr_inodes_limit() {
    let vfs = Vfs::new_memfs();
    mount_memfs(&vfs, b"/lim", "nr_inodes=4");
    let lim = ok!(vfs.resolve(&r(), None, b"/lim", LOOKUP_FOLLOW));
    // The root takes one slot.
    let st = ok!(vfs.statfs(&lim));
    assert_eq!((st.files, st.ffree), (4, 3));
    ok!(vfs.write_file(&r(), b"/lim/a", b""));
    ok!(vfs.mkdir(&r(), None, b"/lim/d", 0o755));
    ok!(vfs.symlink(&r(), b"a", None, b"/lim/l"));
    assert_eq!(ok!(vfs.statfs(&lim)).ffree, 0);
    err!(vfs.write_file(&r(), b"/lim/b", b""), Errno::ENOSPC);
    err!(
        vfs.open(&r(), None, b"/lim/b", O_CREAT | O_RDWR, 0o644),
        Errno::ENOSPC
    );
    err!(vfs.mkdir(&r(), None, b"/lim/e", 0o755), Errno::ENOSPC);
    err!(vfs.symlink(&r(), b"x", None, b"/lim/m"), Errno::ENOSPC);
    err!(
        vfs.mknod(&r(), None, b"/lim/p", S_IFIFO | 0o644, 0),
        Errno::ENOSPC
    );
    // tmpfs charges each extra hard link a slot too (shmem_link).
    err!(vfs.link(&r(), b"/lim/a", b"/lim/a2", false), Errno::ENOSPC);
    assert_eq!(ok!(vfs.stat(&r(), None, b"/lim/a", true)).nlink, 1);
    // The failed creates left no entries behind.
    let names: Vec<Vec<u8>> = ok!(vfs.readdir(&lim, 2, 100))
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names.len(), 3);
    // Freeing a slot lets one create through.
    ok!(vfs.unlink(&r(), None, b"/lim/l"));
    assert_eq!(ok!(vfs.statfs(&lim)).ffree, 1);
    ok!(vfs.link(&r(), b"/lim/a", b"/lim/a2", false));
    assert_eq!(ok!(vfs.statfs(&lim)).ffree, 0);
    err!(vfs.write_file(&r(), b"/lim/b", b""), Errno::ENOSPC);
    // Removing one of two links gives its slot back; the inode keeps its own.
    ok!(vfs.unlink(&r(), None, b"/lim/a"));
    assert_eq!(ok!(vfs.statfs(&lim)).ffree, 1);
    ok!(vfs.write_file(&r(), b"/lim/b", b""));
    err!(
        vfs.link(&r(), b"/lim/b", b"/lim/d/b2", false),
        Errno::ENOSPC
    );
    // rmdir frees the directory's slot.
    ok!(vfs.rmdir(&r(), None, b"/lim/d"));
    assert_eq!(ok!(vfs.statfs(&lim)).ffree, 1);
    // Renaming over one of two links drops that link: its slot comes back.
    ok!(vfs.link(&r(), b"/lim/a2", b"/lim/a3", false));
    assert_eq!(ok!(vfs.statfs(&lim)).ffree, 0);
    ok!(vfs.rename(&r(), b"/lim/b", b"/lim/a3", 0));
    assert_eq!(ok!(vfs.statfs(&lim)).ffree, 1);
    assert_eq!(ok!(vfs.stat(&r(), None, b"/lim/a2", true)).nlink, 1);
    // Removing the last links gives back the inodes' own slots.
    ok!(vfs.unlink(&r(), None, b"/lim/a2"));
    ok!(vfs.unlink(&r(), None, b"/lim/a3"));
    assert_eq!(ok!(vfs.statfs(&lim)).ffree, 3);
}

#[test]
fn xattrs() {
    let vfs = Vfs::new_memfs();
    ok!(vfs.write_file(&r(), b"/f", b""));
    ok!(vfs.mkdir(&r(), None, b"/d", 0o755));
    ok!(vfs.symlink(&r(), b"f", None, b"/l"));
    ok!(vfs.mknod(&r(), None, b"/p", S_IFIFO | 0o644, 0));
    let f = ok!(vfs.resolve(&r(), None, b"/f", 0));
    let fs = f.inode().sb().fs().clone();
    let i = f.inode();
    ok!(fs.setxattr(i, b"user.a", b"1", 0));
    ok!(fs.setxattr(i, b"user.b", b"", 0));
    ok!(fs.setxattr(i, b"trusted.t", b"tt", 0));
    assert_eq!(ok!(fs.getxattr(i, b"user.a")), b"1");
    assert_eq!(ok!(fs.getxattr(i, b"user.b")), b"");
    assert_eq!(
        ok!(fs.listxattr(i)),
        vec![
            b"trusted.t".to_vec(),
            b"user.a".to_vec(),
            b"user.b".to_vec()
        ]
    );
    // XATTR_CREATE on an existing name: EEXIST; XATTR_REPLACE on a missing one: ENODATA.
    err!(fs.setxattr(i, b"user.a", b"2", XATTR_CREATE), Errno::EEXIST);
    err!(
        fs.setxattr(i, b"user.z", b"2", XATTR_REPLACE),
        Errno::ENODATA
    );
    err!(
        fs.setxattr(i, b"user.a", b"2", XATTR_CREATE | XATTR_REPLACE),
        Errno::EEXIST
    );
    err!(
        fs.setxattr(i, b"user.z", b"2", XATTR_CREATE | XATTR_REPLACE),
        Errno::ENODATA
    );
    assert_eq!(ok!(fs.getxattr(i, b"user.a")), b"1");
    ok!(fs.setxattr(i, b"user.a", b"22", XATTR_REPLACE));
    assert_eq!(ok!(fs.getxattr(i, b"user.a")), b"22");
    ok!(fs.setxattr(i, b"user.c", b"3", XATTR_CREATE));
    // Missing names: ENODATA to get and to remove.
    err!(fs.getxattr(i, b"user.nope"), Errno::ENODATA);
    err!(fs.removexattr(i, b"user.nope"), Errno::ENODATA);
    ok!(fs.removexattr(i, b"user.a"));
    err!(fs.getxattr(i, b"user.a"), Errno::ENODATA);
    assert_eq!(ok!(fs.listxattr(i)).len(), 3);
    // Unknown namespaces are unsupported; sizes are bounded.
    err!(fs.setxattr(i, b"bogus.x", b"1", 0), Errno::EOPNOTSUPP);
    err!(
        fs.setxattr(i, &[b"user.".as_slice(), &[b'n'; 251]].concat(), b"1", 0),
        Errno::ERANGE
    );
    err!(
        fs.setxattr(i, b"user.big", &vec![0u8; 65537], 0),
        Errno::E2BIG
    );
    ok!(fs.setxattr(i, b"user.big", &vec![1u8; 65536], 0));
    // Directories take user.* too; symlinks and fifos do not (xattr_permission).
    let d = ok!(vfs.resolve(&r(), None, b"/d", 0));
    ok!(fs.setxattr(d.inode(), b"user.x", b"1", 0));
    let l = ok!(vfs.resolve(&r(), None, b"/l", 0));
    err!(fs.setxattr(l.inode(), b"user.x", b"1", 0), Errno::EPERM);
    ok!(fs.setxattr(l.inode(), b"trusted.x", b"1", 0));
    let p = ok!(vfs.resolve(&r(), None, b"/p", 0));
    err!(fs.setxattr(p.inode(), b"user.x", b"1", 0), Errno::EPERM);
    err!(fs.getxattr(p.inode(), b"user.x"), Errno::ENODATA);
    // Hard links share them; setting one changes ctime.
    ok!(vfs.link(&r(), b"/f", b"/f2", false));
    let f2 = ok!(vfs.resolve(&r(), None, b"/f2", 0));
    assert_eq!(ok!(fs.getxattr(f2.inode(), b"user.c")), b"3");
}

#[test]
fn fallocate() {
    let vfs = Vfs::new_memfs();
    let f = open_rw(&vfs, b"/fa", 0);
    let fs = f.inode().sb().fs().clone();
    let i = f.inode();
    err!(fs.fallocate(i, 0, 0, 0), Errno::EINVAL);
    ok!(fs.fallocate(i, 0, 0, 10_000));
    let st = vfs.getattr(f.path());
    assert_eq!((st.size, st.blocks), (10_000, 24));
    assert!(read_all(&vfs, &f).iter().all(|&b| b == 0));
    // KEEP_SIZE allocates without growing the file.
    ok!(fs.fallocate(i, FALLOC_FL_KEEP_SIZE, 0, 20_000));
    let st = vfs.getattr(f.path());
    assert_eq!((st.size, st.blocks), (10_000, 40));
    // Already allocated ranges cost nothing more; data is kept.
    ok!(vfs.write(&f, b"keep", 5000));
    ok!(fs.fallocate(i, 0, 0, 8192));
    assert_eq!(vfs.getattr(f.path()).blocks, 40);
    assert_eq!(&read_all(&vfs, &f)[5000..5004], b"keep");
    // Growing past the end with mode 0 sets the size.
    ok!(fs.fallocate(i, 0, 1 << 20, 1));
    assert_eq!(vfs.getattr(f.path()).size, (1 << 20) + 1);
    // Unsupported modes; a range past the largest file size.
    err!(fs.fallocate(i, 0x10, 0, 1), Errno::EOPNOTSUPP);
    err!(fs.fallocate(i, 0, i64::MAX as u64, 1), Errno::EFBIG);
    // On something that is not a regular file.
    ok!(vfs.mkdir(&r(), None, b"/d", 0o755));
    let d = ok!(vfs.resolve(&r(), None, b"/d", 0));
    assert!(fs.fallocate(d.inode(), 0, 0, 1).is_err());
}

#[test]
fn hard_links_share_data() {
    let vfs = Vfs::new_memfs();
    ok!(vfs.mkdir(&r(), None, b"/d", 0o755));
    ok!(vfs.write_file(&r(), b"/a", b"one"));
    let nl = |p: &[u8]| ok!(vfs.stat(&r(), None, p, true)).nlink;
    assert_eq!(nl(b"/a"), 1);
    ok!(vfs.link(&r(), b"/a", b"/b", false));
    ok!(vfs.link(&r(), b"/b", b"/d/c", false));
    assert_eq!((nl(b"/a"), nl(b"/b"), nl(b"/d/c")), (3, 3, 3));
    let ia = ok!(vfs.stat(&r(), None, b"/a", true)).ino;
    assert_eq!(ok!(vfs.stat(&r(), None, b"/d/c", true)).ino, ia);
    // Writes through one name are seen through the others.
    let f = ok!(vfs.open(&r(), None, b"/d/c", O_WRONLY, 0));
    ok!(vfs.write(&f, b"ONE-two", 0));
    assert_eq!(ok!(vfs.read_file(&r(), b"/a")), b"ONE-two");
    ok!(vfs.truncate(&r(), b"/b", 3));
    assert_eq!(ok!(vfs.read_file(&r(), b"/d/c")), b"ONE");
    // Attributes are the inode's.
    ok!(vfs.chmod(&r(), b"/a", 0o600));
    assert_eq!(ok!(vfs.stat(&r(), None, b"/b", true)).mode & 0o777, 0o600);
    // Removing names one by one.
    ok!(vfs.unlink(&r(), None, b"/a"));
    assert_eq!(nl(b"/b"), 2);
    ok!(vfs.rename(&r(), b"/b", b"/d/c", 0)); // same inode: nothing happens
    assert_eq!(nl(b"/b"), 2);
    ok!(vfs.unlink(&r(), None, b"/b"));
    assert_eq!(nl(b"/d/c"), 1);
    assert_eq!(ok!(vfs.read_file(&r(), b"/d/c")), b"ONE");
    // A link to a symlink links the symlink itself (linkat without AT_SYMLINK_FOLLOW)...
    ok!(vfs.symlink(&r(), b"d/c", None, b"/sl"));
    ok!(vfs.link(&r(), b"/sl", b"/sl2", false));
    assert_eq!(ok!(vfs.readlink(&r(), None, b"/sl2")), b"d/c");
    // ...or its target with follow.
    ok!(vfs.link(&r(), b"/sl", b"/c2", true));
    assert_eq!(nl(b"/d/c"), 2);
    // Directory link counts: 2 + subdirectories.
    ok!(vfs.mkdir(&r(), None, b"/d/s1", 0o755));
    ok!(vfs.mkdir(&r(), None, b"/d/s2", 0o755));
    assert_eq!(nl(b"/d"), 4);
    ok!(vfs.rmdir(&r(), None, b"/d/s1"));
    assert_eq!(nl(b"/d"), 3);
}

#[test]
fn symlinks_short_and_long() {
    let vfs = Vfs::new_memfs();
    ok!(vfs.mkdir(&r(), None, b"/d", 0o755));
    ok!(vfs.write_file(&r(), b"/d/target", b"T"));
    // Short (inline in the inode) and long (heap) bodies; long ones through many dirs.
    let short = b"d/target".to_vec();
    let mut long = b"d".to_vec();
    while long.len() < 200 {
        long.extend_from_slice(b"/.");
    }
    long.extend_from_slice(b"/target");
    let mut exact60 = b"d/target".to_vec();
    while exact60.len() < 60 {
        exact60.insert(0, b'/');
    }
    let mut exact61 = exact60.clone();
    exact61.insert(0, b'/');
    for (name, body, inline) in [
        (&b"/s"[..], &short, true),
        (b"/s60", &exact60, true),
        (b"/s61", &exact61, false),
        (b"/lg", &long, false),
    ] {
        ok!(vfs.symlink(&r(), body, None, name));
        assert_eq!(&ok!(vfs.readlink(&r(), None, name)), body);
        let st = ok!(vfs.stat(&r(), None, name, false));
        assert_eq!(st.mode, S_IFLNK | 0o777);
        assert_eq!(st.size, body.len() as u64);
        // tmpfs: a page only from 128 bytes on.
        assert_eq!(st.blocks, if body.len() >= 128 { 8 } else { 0 });
        let at = ok!(vfs.resolve(&r(), None, name, 0));
        assert_eq!(at.inode().link_body().unwrap().is_inline(), inline);
        assert_eq!(at.inode().link_body().unwrap().as_bytes(), &body[..]);
        assert_eq!(ok!(vfs.read_file(&r(), name)), b"T");
    }
    // Relative bodies resolve from the link's directory; absolute ones from the root.
    ok!(vfs.symlink(&r(), b"target", None, b"/d/rel"));
    ok!(vfs.symlink(&r(), b"/d/target", None, b"/d/abs"));
    ok!(vfs.symlink(&r(), b"../d/./target", None, b"/d/up"));
    for p in [&b"/d/rel"[..], b"/d/abs", b"/d/up"] {
        assert_eq!(ok!(vfs.read_file(&r(), p)), b"T");
    }
    // Symlink permissions are not checked; the owner is the creator.
    let u = Cred::user(1000, 1000);
    ok!(vfs.mkdir(&r(), None, b"/pub", 0o777));
    ok!(vfs.chmod(&r(), b"/pub", 0o777));
    ok!(vfs.symlink(&u, b"../d/target", None, b"/pub/ul"));
    let st = ok!(vfs.stat(&u, None, b"/pub/ul", false));
    assert_eq!((st.uid, st.gid), (1000, 1000));
    assert_eq!(ok!(vfs.read_file(&u, b"/pub/ul")), b"T");
}

fn names(ents: &[DirEntry]) -> Vec<Vec<u8>> {
    ents.iter().map(|e| e.name.clone()).collect()
}

#[test]
fn readdir_dot_entries_and_inos() {
    let vfs = Vfs::new_memfs();
    ok!(vfs.mkdir(&r(), None, b"/d", 0o755));
    ok!(vfs.mkdir(&r(), None, b"/d/s", 0o755));
    ok!(vfs.write_file(&r(), b"/d/f", b""));
    ok!(vfs.symlink(&r(), b"f", None, b"/d/l"));
    ok!(vfs.mknod(&r(), None, b"/d/p", S_IFIFO | 0o600, 0));
    let ino = |p: &[u8]| ok!(vfs.stat(&r(), None, p, false)).ino;
    let d = ok!(vfs.resolve(&r(), None, b"/d", 0));
    let ents = ok!(vfs.readdir(&d, 0, 100));
    assert_eq!(
        names(&ents),
        vec![
            b".".to_vec(),
            b"..".to_vec(),
            b"s".to_vec(),
            b"f".to_vec(),
            b"l".to_vec(),
            b"p".to_vec()
        ]
    );
    assert_eq!(ents[0].ino, ino(b"/d"));
    assert_eq!(ents[1].ino, ino(b"/"));
    assert_eq!(ents[2].ino, ino(b"/d/s"));
    assert_eq!(ents[3].ino, ino(b"/d/f"));
    assert_eq!(ents[0].kind, FileType::Directory);
    assert_eq!(ents[1].kind, FileType::Directory);
    assert_eq!(ents[2].kind, FileType::Directory);
    assert_eq!(ents[3].kind, FileType::Regular);
    assert_eq!(ents[4].kind, FileType::Symlink);
    assert_eq!(ents[5].kind, FileType::Fifo);
    assert_eq!(FileType::Fifo.dirent_type(), 1);
    assert_eq!(FileType::Directory.dirent_type(), 4);
    // Cookies increase strictly.
    assert!(ents.windows(2).all(|w| w[0].offset < w[1].offset));
    // The root's ".." is the root.
    let root = ok!(vfs.readdir(&vfs.root(), 0, 2));
    assert_eq!((root[0].ino, root[1].ino), (ino(b"/"), ino(b"/")));
    // A subdirectory's "..", and after it moves.
    let s = ok!(vfs.resolve(&r(), None, b"/d/s", 0));
    assert_eq!(ok!(vfs.readdir(&s, 0, 2))[1].ino, ino(b"/d"));
    ok!(vfs.rename(&r(), b"/d/s", b"/s2", 0));
    assert_eq!(ok!(vfs.readdir(&s, 0, 2))[1].ino, ino(b"/"));
    // A mounted root: "." is the mounted root. ".." is what "mnt/.." resolves to, the
    // directory holding the mount point (Linux reports the mounted root's own inode there,
    // since it only looks within the filesystem; see the report).
    ok!(vfs.mkdir(&r(), None, b"/d/mnt", 0o755));
    ok!(vfs.mount_type(&r(), "tmpfs", "", b"/d/mnt"));
    let m = ok!(vfs.resolve(&r(), None, b"/d/mnt", LOOKUP_FOLLOW));
    let ents = ok!(vfs.readdir(&m, 0, 10));
    assert_eq!(names(&ents), vec![b".".to_vec(), b"..".to_vec()]);
    assert_eq!(ents[0].ino, ok!(vfs.stat(&r(), None, b"/d/mnt", true)).ino);
    assert_eq!(
        ents[1].ino,
        ok!(vfs.stat(&r(), None, b"/d/mnt/..", true)).ino
    );
    // max limits the batch; resuming at each cookie continues right after it.
    let one = ok!(vfs.readdir(&d, 0, 1));
    assert_eq!(names(&one), vec![b".".to_vec()]);
    let next = ok!(vfs.readdir(&d, one[0].offset, 1));
    assert_eq!(names(&next), vec![b"..".to_vec()]);
    let next = ok!(vfs.readdir(&d, next[0].offset, 1));
    assert_eq!(names(&next), vec![b"f".to_vec()]);
    assert!(ok!(vfs.readdir(&d, 0, 0)).is_empty());
    assert!(ok!(vfs.readdir(&d, u64::MAX, 10)).is_empty());
}

#[test]
fn readdir_resume_is_stable_under_changes() {
    let vfs = Vfs::new_memfs();
    ok!(vfs.mkdir(&r(), None, b"/d", 0o755));
    let n = 60;
    for i in 0..n {
        ok!(vfs.write_file(&r(), format!("/d/e{i:02}").as_bytes(), b""));
    }
    let d = ok!(vfs.resolve(&r(), None, b"/d", 0));
    // A plain chunked listing sees everything once, in creation order.
    let mut seen = Vec::new();
    let mut off = 2; // skip "." and ".."
    loop {
        let batch = ok!(vfs.readdir(&d, off, 7));
        if batch.is_empty() {
            break;
        }
        off = batch.last().unwrap().offset;
        seen.extend(names(&batch));
    }
    let want: Vec<Vec<u8>> = (0..n).map(|i| format!("e{i:02}").into_bytes()).collect();
    assert_eq!(seen, want);

    // Now change the directory between batches: remove entries already returned and some
    // not yet returned, add new ones, rename some. Every entry present from start to end
    // must be returned exactly once; nothing is returned twice.
    let mut rng = 0x2545F4914F6CDD1Du64;
    let mut rand = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..5 {
        let before: BTreeSet<Vec<u8>> = names(&ok!(vfs.readdir(&d, 2, 10_000)))
            .into_iter()
            .collect();
        let mut removed: HashSet<Vec<u8>> = HashSet::new();
        let mut returned: Vec<Vec<u8>> = Vec::new();
        let mut off = 2;
        let mut k = 0;
        loop {
            let batch = ok!(vfs.readdir(&d, off, 5));
            if batch.is_empty() {
                break;
            }
            off = batch.last().unwrap().offset;
            returned.extend(names(&batch));
            if k >= 8 {
                continue; // let the listing finish (new names keep landing after the cursor)
            }
            k += 1;
            // Mutate: remove two random current entries, add two, rename one.
            let cur = names(&ok!(vfs.readdir(&d, 2, 10_000)));
            for _ in 0..2 {
                if cur.is_empty() {
                    break;
                }
                let v = &cur[(rand() as usize) % cur.len()];
                if !removed.contains(v) {
                    let p = [&b"/d/"[..], v].concat();
                    ok!(vfs.unlink(&r(), None, &p));
                    removed.insert(v.clone());
                }
            }
            for j in 0..2 {
                ok!(vfs.write_file(&r(), format!("/d/new{round}_{k}_{j}").as_bytes(), b""));
            }
            let cur = names(&ok!(vfs.readdir(&d, 2, 10_000)));
            let v = &cur[(rand() as usize) % cur.len()];
            if !v.starts_with(b"ren") {
                let from = [&b"/d/"[..], v].concat();
                let to = format!("/d/ren{round}_{k}");
                ok!(vfs.rename(&r(), &from, to.as_bytes(), 0));
                removed.insert(v.clone());
            }
        }
        let uniq: HashSet<&Vec<u8>> = returned.iter().collect();
        assert_eq!(
            uniq.len(),
            returned.len(),
            "round {round}: an entry came twice"
        );
        for name in &before {
            if !removed.contains(name) {
                assert!(
                    returned.contains(name),
                    "round {round}: {name:?} was skipped"
                );
            }
        }
        // The listing and the lookups agree at the end of each round.
        for name in names(&ok!(vfs.readdir(&d, 2, 10_000))) {
            ok!(vfs.lookup_at(&r(), &d, &name));
        }
    }
}

#[test]
fn times_and_modes() {
    let vfs = Vfs::new_memfs();
    let u = Cred {
        umask: 0o022,
        ..Cred::user(1000, 1000)
    };
    ok!(vfs.mkdir(&r(), None, b"/pub", 0o777));
    ok!(vfs.chmod(&r(), b"/pub", 0o777));
    ok!(vfs.write_file(&u, b"/pub/f", b""));
    let st = ok!(vfs.stat(&u, None, b"/pub/f", true));
    assert_eq!(st.mode, S_IFREG | 0o644);
    assert_eq!((st.uid, st.gid), (1000, 1000));
    ok!(vfs.mkdir(&u, None, b"/pub/d", 0o777));
    assert_eq!(
        ok!(vfs.stat(&u, None, b"/pub/d", true)).mode,
        S_IFDIR | 0o755
    );
    // set-gid directories hand down their group (and the bit, to subdirectories).
    ok!(vfs.chmod(&r(), b"/pub", 0o2777));
    ok!(vfs.chown(&r(), b"/pub", None, Some(50), true));
    ok!(vfs.write_file(&u, b"/pub/g", b""));
    assert_eq!(ok!(vfs.stat(&u, None, b"/pub/g", true)).gid, 50);
    ok!(vfs.mkdir(&u, None, b"/pub/sd", 0o755));
    let st = ok!(vfs.stat(&u, None, b"/pub/sd", true));
    assert_eq!((st.gid, st.mode & S_ISGID), (50, S_ISGID));
    // Writes update mtime and ctime; explicit times stick.
    let t = Timespec { sec: 1000, nsec: 5 };
    ok!(vfs.utimens(&u, b"/pub/f", Some(TimeSet::At(t)), Some(TimeSet::At(t))));
    let st = ok!(vfs.stat(&u, None, b"/pub/f", true));
    assert_eq!((st.atime, st.mtime), (t, t));
    let f = ok!(vfs.open(&u, None, b"/pub/f", O_WRONLY, 0));
    ok!(vfs.write(&f, b"x", 0));
    let st = ok!(vfs.stat(&u, None, b"/pub/f", true));
    assert!(st.mtime > t && st.ctime > t);
    assert_eq!(st.atime, t);
    // Writing clears set-user-ID.
    ok!(vfs.chmod(&u, b"/pub/f", 0o4755));
    ok!(vfs.write(&f, b"y", 1));
    assert_eq!(
        ok!(vfs.stat(&u, None, b"/pub/f", true)).mode & 0o7777,
        0o755
    );
    // Creating in a directory updates its mtime.
    ok!(vfs.utimens(&r(), b"/pub", Some(TimeSet::At(t)), Some(TimeSet::At(t))));
    ok!(vfs.write_file(&u, b"/pub/h", b""));
    assert!(ok!(vfs.stat(&u, None, b"/pub", true)).mtime > t);
}
