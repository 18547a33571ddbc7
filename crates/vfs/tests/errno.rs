//! Error paths of the path API, checked against what Linux returns.
//!
//! Every expectation here was verified on a kernel tmpfs (Linux 6.x, as root and as uid 1000
//! via setresuid in a forked child); the comments name the kernel check that produces it.
//! Structural errors (ENOENT, ENOTDIR, ...) are checked for both root and an unprivileged
//! user, inside a world-writable, non-sticky directory `/w` so that permissions do not get in
//! the way; EACCES/EPERM have their own fixtures.

use bpfvfs_vfs::oflags::*;
use bpfvfs_vfs::rename_flags::*;
use bpfvfs_vfs::*;
use std::sync::Arc;

/// Assert that `$e` fails with `$want` (and say which expression did not).
macro_rules! err {
    ($e:expr, $want:expr) => {{
        match $e {
            Ok(_) => panic!("`{}` succeeded, want {:?}", stringify!($e), $want),
            Err(got) => assert_eq!(got, $want, "`{}`", stringify!($e)),
        }
    }};
}

/// Assert that `$e` succeeds.
macro_rules! ok {
    ($e:expr) => {{
        match $e {
            Ok(v) => v,
            Err(got) => panic!("`{}` failed with {:?}", stringify!($e), got),
        }
    }};
}

fn root() -> Cred {
    Cred::root()
}
fn user() -> Cred {
    Cred::user(1000, 1000)
}

/// A fresh tree with `/w` (0777, root-owned, not sticky) holding, created by `c`:
/// `f` (file "hi"), `d/sub/deep` (dirs), `e` (empty dir), `l` -> f, `ld` -> d, `dangling`.
fn fixture(c: &Cred) -> Arc<Vfs> {
    let vfs = Vfs::new_memfs();
    let r = root();
    ok!(vfs.mkdir(&r, None, b"/w", 0o777));
    ok!(vfs.chmod(&r, b"/w", 0o777));
    ok!(vfs.write_file(c, b"/w/f", b"hi"));
    ok!(vfs.mkdir(c, None, b"/w/d", 0o755));
    ok!(vfs.mkdir(c, None, b"/w/d/sub", 0o755));
    ok!(vfs.mkdir(c, None, b"/w/d/sub/deep", 0o755));
    ok!(vfs.mkdir(c, None, b"/w/e", 0o755));
    ok!(vfs.symlink(c, b"f", None, b"/w/l"));
    ok!(vfs.symlink(c, b"d", None, b"/w/ld"));
    ok!(vfs.symlink(c, b"nowhere", None, b"/w/dangling"));
    vfs
}

fn both(f: impl Fn(&Arc<Vfs>, &Cred)) {
    for c in [root(), user()] {
        let vfs = fixture(&c);
        f(&vfs, &c);
    }
}

/// Mount a fresh memfs at `/w/mnt` (as root) holding `mf` and `md/`.
fn with_mount(vfs: &Vfs) {
    let r = root();
    ok!(vfs.mkdir(&r, None, b"/w/mnt", 0o777));
    ok!(vfs.mount_type(&r, "tmpfs", "", b"/w/mnt"));
    ok!(vfs.write_file(&r, b"/w/mnt/mf", b"m"));
    ok!(vfs.chmod(&r, b"/w/mnt/mf", 0o666));
    ok!(vfs.mkdir(&r, None, b"/w/mnt/md", 0o777));
    ok!(vfs.chmod(&r, b"/w/mnt/md", 0o777));
}

fn ino(vfs: &Vfs, c: &Cred, p: &[u8]) -> u64 {
    ok!(vfs.stat(c, None, p, true)).ino
}

// ---------------------------------------------------------------- names

#[test]
fn invalid_names_path_api() {
    both(|vfs, c| {
        // Empty path: ENOENT everywhere (getname).
        err!(vfs.stat(c, None, b"", true), Errno::ENOENT);
        err!(vfs.mkdir(c, None, b"", 0o755), Errno::ENOENT);
        err!(vfs.open(c, None, b"", O_RDONLY, 0), Errno::ENOENT);
        err!(
            vfs.open(c, None, b"", O_CREAT | O_WRONLY, 0o644),
            Errno::ENOENT
        );
        err!(vfs.unlink(c, None, b""), Errno::ENOENT);
        err!(vfs.rmdir(c, None, b""), Errno::ENOENT);
        err!(vfs.rename(c, b"", b"/w/x", 0), Errno::ENOENT);
        err!(vfs.rename(c, b"/w/f", b"", 0), Errno::ENOENT);
        err!(vfs.link(c, b"", b"/w/x", false), Errno::ENOENT);
        err!(vfs.link(c, b"/w/f", b"", false), Errno::ENOENT);
        err!(vfs.symlink(c, b"x", None, b""), Errno::ENOENT);
        err!(vfs.symlink(c, b"", None, b"/w/x"), Errno::ENOENT);
        err!(vfs.readlink(c, None, b""), Errno::ENOENT);
        err!(vfs.chmod(c, b"", 0o644), Errno::ENOENT);
        err!(vfs.chown(c, b"", None, None, true), Errno::ENOENT);
        err!(vfs.truncate(c, b"", 0), Errno::ENOENT);
        err!(vfs.utimens(c, b"", None, None), Errno::ENOENT);

        // A component of 256 bytes: ENAMETOOLONG; 255 is fine.
        let long = [b'a'; 256];
        let mut p = b"/w/".to_vec();
        p.extend_from_slice(&long);
        err!(vfs.mkdir(c, None, &p, 0o755), Errno::ENAMETOOLONG);
        err!(
            vfs.open(c, None, &p, O_CREAT | O_WRONLY, 0o644),
            Errno::ENAMETOOLONG
        );
        err!(vfs.stat(c, None, &p, true), Errno::ENAMETOOLONG);
        err!(vfs.symlink(c, b"f", None, &p), Errno::ENAMETOOLONG);
        err!(vfs.link(c, b"/w/f", &p, false), Errno::ENAMETOOLONG);
        err!(vfs.rename(c, b"/w/f", &p, 0), Errno::ENAMETOOLONG);
        err!(vfs.unlink(c, None, &p), Errno::ENAMETOOLONG);
        let mut mid = p.clone();
        mid.extend_from_slice(b"/x");
        err!(vfs.stat(c, None, &mid, true), Errno::ENAMETOOLONG);
        // Linux checks the directory before the name: "f/<256>" is ENOTDIR, "missing/<256>"
        // ENOENT.
        let mut pf = b"/w/f/".to_vec();
        pf.extend_from_slice(&long);
        err!(vfs.stat(c, None, &pf, true), Errno::ENOTDIR);
        let mut pm = b"/w/missing/".to_vec();
        pm.extend_from_slice(&long);
        err!(vfs.stat(c, None, &pm, true), Errno::ENOENT);
        let ok255 = [&b"/w/"[..], &[b'b'; 255][..]].concat();
        ok!(vfs.mkdir(c, None, &ok255, 0o755));
        ok!(vfs.rmdir(c, None, &ok255));

        // Whole path: 4096 bytes (with the NUL, over PATH_MAX) is ENAMETOOLONG even when
        // every component is valid; 4095 is resolved normally.
        let mut p4095 = b"/".to_vec();
        while p4095.len() < 4095 {
            p4095.extend_from_slice(b"./");
        }
        p4095.truncate(4095);
        assert_eq!(p4095.len(), 4095);
        ok!(vfs.stat(c, None, &p4095, true));
        let p4096 = [&b"/"[..], &p4095[..]].concat();
        err!(vfs.stat(c, None, &p4096, true), Errno::ENAMETOOLONG);
        err!(vfs.mkdir(c, None, &p4096, 0o755), Errno::ENAMETOOLONG);
        err!(
            vfs.open(c, None, &p4096, O_CREAT | O_RDWR, 0o644),
            Errno::ENAMETOOLONG
        );
        let mut miss = b"/".to_vec();
        while miss.len() < 4093 {
            miss.extend_from_slice(b"a/");
        }
        miss.extend_from_slice(b"bb");
        assert_eq!(miss.len(), 4095);
        err!(vfs.stat(c, None, &miss, true), Errno::ENOENT);

        // Symlink targets: empty is ENOENT, PATH_MAX bytes ENAMETOOLONG, 4095 fine.
        err!(
            vfs.symlink(c, &[b'y'; 4096], None, b"/w/lt"),
            Errno::ENAMETOOLONG
        );
        ok!(vfs.symlink(c, &[b'y'; 4095], None, b"/w/lt"));
        assert_eq!(ok!(vfs.readlink(c, None, b"/w/lt")).len(), 4095);
    });
}

/// The `_at` forms take a raw name; bad ones get an errno, never a panic.
#[test]
fn invalid_names_at_api() {
    both(|vfs, c| {
        let w = ok!(vfs.resolve(c, None, b"/w", LOOKUP_FOLLOW));
        let f = ok!(vfs.resolve(c, None, b"/w/f", 0));
        let long = [b'n'; 256];
        for (name, want) in [
            (&b""[..], Errno::ENOENT),
            (&b"a/b"[..], Errno::EINVAL),
            (&b"/"[..], Errno::EINVAL),
            (&b"a\0b"[..], Errno::EINVAL),
            (&long[..], Errno::ENAMETOOLONG),
        ] {
            err!(vfs.create_at(c, &w, name, NewKind::File, 0o644), want);
            err!(vfs.create_at(c, &w, name, NewKind::Dir, 0o755), want);
            err!(vfs.create_at(c, &w, name, NewKind::Symlink(b"t"), 0), want);
            err!(vfs.lookup_at(c, &w, name), want);
            err!(vfs.unlink_at(c, &w, name), want);
            err!(vfs.rmdir_at(c, &w, name), want);
            err!(vfs.link_at(c, &f, &w, name), want);
            err!(vfs.rename_at(c, &w, b"f", &w, name, 0), want);
            err!(vfs.rename_at(c, &w, name, &w, b"g", 0), want);
        }
        // "." and "..": EEXIST to create, EISDIR to unlink, EINVAL / ENOTEMPTY to rmdir,
        // EBUSY to rename.
        for dot in [&b"."[..], b".."] {
            err!(
                vfs.create_at(c, &w, dot, NewKind::File, 0o644),
                Errno::EEXIST
            );
            err!(
                vfs.create_at(c, &w, dot, NewKind::Dir, 0o755),
                Errno::EEXIST
            );
            err!(vfs.link_at(c, &f, &w, dot), Errno::EEXIST);
            err!(vfs.unlink_at(c, &w, dot), Errno::EISDIR);
            err!(vfs.rename_at(c, &w, dot, &w, b"x", 0), Errno::EBUSY);
            err!(vfs.rename_at(c, &w, b"f", &w, dot, 0), Errno::EBUSY);
            err!(
                vfs.rename_at(c, &w, b"f", &w, dot, RENAME_NOREPLACE),
                Errno::EEXIST
            );
        }
        err!(vfs.rmdir_at(c, &w, b"."), Errno::EINVAL);
        err!(vfs.rmdir_at(c, &w, b".."), Errno::ENOTEMPTY);
        // A file is not a directory to look in.
        err!(vfs.lookup_at(c, &f, b"x"), Errno::ENOTDIR);
        err!(
            vfs.create_at(c, &f, b"x", NewKind::File, 0o644),
            Errno::ENOTDIR
        );
        // The tree is intact.
        assert_eq!(ok!(vfs.read_file(c, b"/w/f")), b"hi");
    });
}

// ---------------------------------------------------------------- ENOENT / ENOTDIR / EISDIR

#[test]
fn enoent() {
    both(|vfs, c| {
        err!(vfs.stat(c, None, b"/w/missing", true), Errno::ENOENT);
        err!(vfs.stat(c, None, b"/w/missing/x", true), Errno::ENOENT);
        err!(vfs.stat(c, None, b"/w/dangling", true), Errno::ENOENT);
        ok!(vfs.stat(c, None, b"/w/dangling", false));
        err!(vfs.open(c, None, b"/w/missing", O_RDONLY, 0), Errno::ENOENT);
        err!(
            vfs.open(c, None, b"/w/missing/x", O_CREAT | O_RDWR, 0o644),
            Errno::ENOENT
        );
        err!(vfs.mkdir(c, None, b"/w/missing/x", 0o755), Errno::ENOENT);
        err!(vfs.unlink(c, None, b"/w/missing"), Errno::ENOENT);
        err!(vfs.unlink(c, None, b"/w/missing/"), Errno::ENOENT);
        err!(vfs.rmdir(c, None, b"/w/missing"), Errno::ENOENT);
        err!(vfs.rename(c, b"/w/missing", b"/w/x", 0), Errno::ENOENT);
        err!(vfs.rename(c, b"/w/f", b"/w/missing/x", 0), Errno::ENOENT);
        err!(
            vfs.rename(c, b"/w/f", b"/w/e2", RENAME_EXCHANGE),
            Errno::ENOENT
        );
        err!(vfs.link(c, b"/w/missing", b"/w/x", false), Errno::ENOENT);
        err!(vfs.link(c, b"/w/f", b"/w/missing/x", false), Errno::ENOENT);
        // link(f, "new/"): the new name cannot be a directory to be.
        err!(vfs.link(c, b"/w/f", b"/w/new/", false), Errno::ENOENT);
        err!(vfs.link(c, b"/w/dangling", b"/w/x", true), Errno::ENOENT);
        err!(vfs.symlink(c, b"t", None, b"/w/missing/x"), Errno::ENOENT);
        err!(vfs.symlink(c, b"t", None, b"/w/new/"), Errno::ENOENT);
        err!(vfs.readlink(c, None, b"/w/missing"), Errno::ENOENT);
        err!(vfs.chmod(c, b"/w/missing", 0o644), Errno::ENOENT);
        err!(vfs.chmod(c, b"/w/dangling", 0o644), Errno::ENOENT);
        err!(vfs.chown(c, b"/w/missing", None, None, true), Errno::ENOENT);
        err!(vfs.truncate(c, b"/w/missing", 0), Errno::ENOENT);
        err!(
            vfs.utimens(c, b"/w/missing", Some(TimeSet::Now), None),
            Errno::ENOENT
        );
        err!(
            vfs.mknod(c, None, b"/w/fifo/", S_IFIFO | 0o644, 0),
            Errno::ENOENT
        );
        // A name inside a removed directory.
        let gone = ok!(vfs.mkdir(c, None, b"/w/gone", 0o755));
        ok!(vfs.rmdir(c, None, b"/w/gone"));
        err!(
            vfs.create_at(c, &gone, b"x", NewKind::File, 0o644),
            Errno::ENOENT
        );
        err!(
            vfs.create_at(c, &gone, b"x", NewKind::Dir, 0o755),
            Errno::ENOENT
        );
        err!(
            vfs.open(c, Some(&gone), b"x", O_CREAT | O_RDWR, 0o644),
            Errno::ENOENT
        );
        err!(vfs.readdir(&gone, 0, 100), Errno::ENOENT);
        assert_eq!(vfs.getattr(&gone).nlink, 0);
        // ".." of a removed directory still leads to its old parent (as in Linux).
        let up = ok!(vfs.resolve(c, Some(&gone), b"..", 0));
        assert_eq!(up.inode().ino(), ino(vfs, c, b"/w"));
    });
}

#[test]
fn enotdir() {
    both(|vfs, c| {
        err!(vfs.stat(c, None, b"/w/f/x", true), Errno::ENOTDIR);
        err!(vfs.stat(c, None, b"/w/l/x", true), Errno::ENOTDIR);
        err!(vfs.mkdir(c, None, b"/w/f/x", 0o755), Errno::ENOTDIR);
        err!(
            vfs.open(c, None, b"/w/f/x", O_CREAT | O_RDWR, 0o644),
            Errno::ENOTDIR
        );
        err!(
            vfs.open(c, None, b"/w/f", O_RDONLY | O_DIRECTORY, 0),
            Errno::ENOTDIR
        );
        err!(vfs.rmdir(c, None, b"/w/f"), Errno::ENOTDIR);
        err!(vfs.rmdir(c, None, b"/w/l"), Errno::ENOTDIR);
        err!(vfs.rename(c, b"/w/d", b"/w/f", 0), Errno::ENOTDIR);
        err!(vfs.rename(c, b"/w/f", b"/w/f/x", 0), Errno::ENOTDIR);
        err!(vfs.rename(c, b"/w/f/x", b"/w/y", 0), Errno::ENOTDIR);
        err!(vfs.unlink(c, None, b"/w/f/x"), Errno::ENOTDIR);
        err!(vfs.symlink(c, b"t", None, b"/w/f/x"), Errno::ENOTDIR);
        err!(vfs.link(c, b"/w/f", b"/w/f/x", false), Errno::ENOTDIR);
        err!(vfs.chmod(c, b"/w/f/x", 0o644), Errno::ENOTDIR);
        // A symlink whose body ends in a slash must name a directory (link_path_walk checks
        // d_can_lookup after every component followed by '/').
        ok!(vfs.symlink(c, b"f/", None, b"/w/lslash"));
        ok!(vfs.symlink(c, b"f//", None, b"/w/lslash2"));
        ok!(vfs.symlink(c, b"d/", None, b"/w/ldslash"));
        err!(vfs.stat(c, None, b"/w/lslash", true), Errno::ENOTDIR);
        err!(vfs.stat(c, None, b"/w/lslash2", true), Errno::ENOTDIR);
        err!(vfs.open(c, None, b"/w/lslash", O_RDONLY, 0), Errno::ENOTDIR);
        assert!(ok!(vfs.stat(c, None, b"/w/lslash", false)).mode & S_IFMT == S_IFLNK);
        assert!(ok!(vfs.stat(c, None, b"/w/ldslash", true)).mode & S_IFMT == S_IFDIR);
        // _at forms on a non-directory parent.
        let f = ok!(vfs.resolve(c, None, b"/w/f", 0));
        err!(vfs.readdir(&f, 0, 10), Errno::ENOTDIR);
        err!(vfs.unlink_at(c, &f, b"x"), Errno::ENOTDIR);
    });
}

#[test]
fn eisdir() {
    both(|vfs, c| {
        err!(vfs.unlink(c, None, b"/w/d"), Errno::EISDIR);
        err!(vfs.unlink(c, None, b"/w/d/"), Errno::EISDIR);
        err!(vfs.unlink(c, None, b"/w/d/."), Errno::EISDIR);
        err!(vfs.unlink(c, None, b"/w/d/.."), Errno::EISDIR);
        err!(vfs.unlink(c, None, b"/"), Errno::EISDIR);
        err!(vfs.open(c, None, b"/w/d", O_WRONLY, 0), Errno::EISDIR);
        err!(vfs.open(c, None, b"/w/d", O_RDWR, 0), Errno::EISDIR);
        err!(
            vfs.open(c, None, b"/w/d", O_RDONLY | O_TRUNC, 0),
            Errno::EISDIR
        );
        err!(
            vfs.open(c, None, b"/w/d", O_RDONLY | O_CREAT, 0o644),
            Errno::EISDIR
        );
        err!(
            vfs.open(c, None, b"/w/ld", O_RDONLY | O_CREAT, 0o644),
            Errno::EISDIR
        );
        // O_CREAT with a trailing slash: EISDIR, whether or not the name exists.
        err!(
            vfs.open(c, None, b"/w/new/", O_RDONLY | O_CREAT, 0o644),
            Errno::EISDIR
        );
        err!(
            vfs.open(c, None, b"/w/f/", O_RDONLY | O_CREAT, 0o644),
            Errno::EISDIR
        );
        err!(vfs.truncate(c, b"/w/d", 0), Errno::EISDIR);
        err!(vfs.rename(c, b"/w/f", b"/w/e", 0), Errno::EISDIR);
        let d = ok!(vfs.open(c, None, b"/w/d", O_RDONLY, 0));
        let mut buf = [0u8; 4];
        err!(vfs.read(&d, &mut buf, 0), Errno::EISDIR);
        err!(vfs.write(&d, b"x", 0), Errno::EBADF);
    });
}

// ---------------------------------------------------------------- ENOTEMPTY / EEXIST

#[test]
fn enotempty() {
    both(|vfs, c| {
        err!(vfs.rmdir(c, None, b"/w/d"), Errno::ENOTEMPTY);
        err!(vfs.rmdir(c, None, b"/w/d/.."), Errno::ENOTEMPTY);
        err!(vfs.rmdir(c, None, b"/.."), Errno::ENOTEMPTY);
        err!(vfs.rename(c, b"/w/e", b"/w/d", 0), Errno::ENOTEMPTY);
        // The target is an ancestor of the source.
        err!(
            vfs.rename(c, b"/w/d/sub/deep", b"/w/d", 0),
            Errno::ENOTEMPTY
        );
        ok!(vfs.rmdir(c, None, b"/w/d/sub/deep"));
        ok!(vfs.rmdir(c, None, b"/w/d/sub/"));
        ok!(vfs.rmdir(c, None, b"/w/d"));
    });
}

#[test]
fn eexist() {
    both(|vfs, c| {
        err!(vfs.mkdir(c, None, b"/w/d", 0o755), Errno::EEXIST);
        err!(vfs.mkdir(c, None, b"/w/f", 0o755), Errno::EEXIST);
        err!(vfs.mkdir(c, None, b"/w/f/", 0o755), Errno::EEXIST);
        err!(vfs.mkdir(c, None, b"/w/l", 0o755), Errno::EEXIST);
        err!(vfs.mkdir(c, None, b"/w/dangling", 0o755), Errno::EEXIST);
        err!(vfs.mkdir(c, None, b"/", 0o755), Errno::EEXIST);
        err!(vfs.mkdir(c, None, b"/w/.", 0o755), Errno::EEXIST);
        err!(vfs.mkdir(c, None, b"/w/..", 0o755), Errno::EEXIST);
        err!(
            vfs.open(c, None, b"/w/f", O_CREAT | O_EXCL | O_RDWR, 0o644),
            Errno::EEXIST
        );
        // O_EXCL does not follow a final symlink, even a dangling one.
        err!(
            vfs.open(c, None, b"/w/dangling", O_CREAT | O_EXCL | O_RDWR, 0o644),
            Errno::EEXIST
        );
        err!(vfs.symlink(c, b"t", None, b"/w/f"), Errno::EEXIST);
        err!(vfs.symlink(c, b"t", None, b"/w/f/"), Errno::EEXIST);
        err!(vfs.symlink(c, b"t", None, b"/w/d/"), Errno::EEXIST);
        err!(vfs.link(c, b"/w/f", b"/w/f", false), Errno::EEXIST);
        err!(vfs.link(c, b"/w/f", b"/w/d", false), Errno::EEXIST);
        // Linux looks the new name up before refusing to link a directory.
        err!(vfs.link(c, b"/w/d", b"/w/f", false), Errno::EEXIST);
        err!(
            vfs.mknod(c, None, b"/w/f", S_IFIFO | 0o644, 0),
            Errno::EEXIST
        );
        err!(
            vfs.rename(c, b"/w/f", b"/w/e", RENAME_NOREPLACE),
            Errno::EEXIST
        );
        // NOREPLACE is checked before "same file": even renaming onto itself fails.
        err!(
            vfs.rename(c, b"/w/f", b"/w/f", RENAME_NOREPLACE),
            Errno::EEXIST
        );
        err!(
            vfs.rename(c, b"/w/f", b"/w/.", RENAME_NOREPLACE),
            Errno::EEXIST
        );
    });
}

// ---------------------------------------------------------------- EXDEV

#[test]
fn exdev() {
    both(|vfs, c| {
        with_mount(vfs);
        err!(vfs.rename(c, b"/w/f", b"/w/mnt/f", 0), Errno::EXDEV);
        err!(vfs.rename(c, b"/w/mnt/mf", b"/w/f", 0), Errno::EXDEV);
        err!(vfs.rename(c, b"/w/d", b"/w/mnt/d", 0), Errno::EXDEV);
        err!(
            vfs.rename(c, b"/w/f", b"/w/mnt/mf", RENAME_EXCHANGE),
            Errno::EXDEV
        );
        // The mounts are compared before the names are looked up.
        err!(vfs.rename(c, b"/w/missing", b"/w/mnt/f", 0), Errno::EXDEV);
        err!(vfs.rename(c, b"/w/mnt/..", b"/w/x", 0), Errno::EXDEV);
        err!(vfs.link(c, b"/w/f", b"/w/mnt/f", false), Errno::EXDEV);
        err!(vfs.link(c, b"/w/mnt/mf", b"/w/g", false), Errno::EXDEV);
        // ... but after the new name is found to exist, and before "is a directory".
        err!(vfs.link(c, b"/w/mnt/mf", b"/w/f", false), Errno::EEXIST);
        err!(vfs.link(c, b"/w/d", b"/w/mnt/dl", false), Errno::EXDEV);
        // Within the mounted filesystem, both work.
        ok!(vfs.link(c, b"/w/mnt/mf", b"/w/mnt/md/h", false));
        ok!(vfs.rename(c, b"/w/mnt/md/h", b"/w/mnt/h2", 0));
        assert_eq!(ok!(vfs.stat(c, None, b"/w/mnt/mf", true)).nlink, 2);
        // Through a symlink that crosses the mount: still EXDEV.
        ok!(vfs.symlink(c, b"mnt", None, b"/w/lm"));
        err!(vfs.rename(c, b"/w/f", b"/w/lm/f", 0), Errno::EXDEV);
    });
}

// ---------------------------------------------------------------- ELOOP

#[test]
fn eloop() {
    both(|vfs, c| {
        ok!(vfs.symlink(c, b"loop2", None, b"/w/loop1"));
        ok!(vfs.symlink(c, b"loop1", None, b"/w/loop2"));
        ok!(vfs.symlink(c, b"self", None, b"/w/self"));
        err!(vfs.stat(c, None, b"/w/loop1", true), Errno::ELOOP);
        err!(vfs.stat(c, None, b"/w/self", true), Errno::ELOOP);
        err!(vfs.stat(c, None, b"/w/loop1/x", false), Errno::ELOOP);
        err!(vfs.open(c, None, b"/w/loop1", O_RDONLY, 0), Errno::ELOOP);
        err!(
            vfs.open(c, None, b"/w/loop1", O_CREAT | O_RDWR, 0o644),
            Errno::ELOOP
        );
        err!(vfs.mkdir(c, None, b"/w/loop1/x", 0o755), Errno::ELOOP);
        err!(vfs.chmod(c, b"/w/loop1", 0o644), Errno::ELOOP);
        ok!(vfs.stat(c, None, b"/w/loop1", false));
        ok!(vfs.readlink(c, None, b"/w/loop1"));
        ok!(vfs.unlink(c, None, b"/w/self"));

        // A chain: c0 -> f, c(i) -> c(i-1). Resolving c39 follows 40 links (the limit);
        // c40 follows 41.
        ok!(vfs.symlink(c, b"f", None, b"/w/c0"));
        for i in 1..=41 {
            let t = format!("c{}", i - 1);
            let p = format!("/w/c{i}");
            ok!(vfs.symlink(c, t.as_bytes(), None, p.as_bytes()));
        }
        assert_eq!(ok!(vfs.stat(c, None, b"/w/c39", true)).size, 2);
        assert_eq!(ok!(vfs.read_file(c, b"/w/c39")), b"hi");
        err!(vfs.stat(c, None, b"/w/c40", true), Errno::ELOOP);
        err!(vfs.open(c, None, b"/w/c40", O_RDONLY, 0), Errno::ELOOP);
        err!(vfs.stat(c, None, b"/w/c41", true), Errno::ELOOP);
        ok!(vfs.stat(c, None, b"/w/c40", false));
        // The count covers the whole resolution, intermediate components included.
        let mut dchain = b"d".to_vec();
        ok!(vfs.symlink(c, &dchain, None, b"/w/k0"));
        for i in 1..=40 {
            dchain = format!("k{}", i - 1).into_bytes();
            ok!(vfs.symlink(c, &dchain, None, format!("/w/k{i}").as_bytes()));
        }
        ok!(vfs.stat(c, None, b"/w/k39/sub", true));
        err!(vfs.stat(c, None, b"/w/k40/sub", true), Errno::ELOOP);

        // O_NOFOLLOW on a final symlink: ELOOP (also with O_CREAT); O_PATH opens the link.
        err!(
            vfs.open(c, None, b"/w/l", O_RDONLY | O_NOFOLLOW, 0),
            Errno::ELOOP
        );
        err!(
            vfs.open(c, None, b"/w/l", O_RDWR | O_NOFOLLOW | O_CREAT, 0o644),
            Errno::ELOOP
        );
        err!(
            vfs.open(
                c,
                None,
                b"/w/dangling",
                O_RDWR | O_NOFOLLOW | O_CREAT,
                0o644
            ),
            Errno::ELOOP
        );
        let p = ok!(vfs.open(c, None, b"/w/l", O_PATH | O_NOFOLLOW, 0));
        assert!(p.inode().is_symlink());
        // O_NOFOLLOW only concerns the last component; a trailing slash follows anyway.
        ok!(vfs.open(c, None, b"/w/ld/sub", O_RDONLY | O_NOFOLLOW, 0));
        ok!(vfs.open(c, None, b"/w/ld/", O_RDONLY | O_NOFOLLOW, 0));
        ok!(vfs.open(c, None, b"/w/d", O_RDONLY | O_NOFOLLOW, 0));
    });
}

// ---------------------------------------------------------------- EACCES

/// Root-owned fixtures for the permission tests.
fn perm_fixture() -> Arc<Vfs> {
    let vfs = Vfs::new_memfs();
    let r = root();
    ok!(vfs.write_file(&r, b"/f", b"hi"));
    ok!(vfs.chmod(&r, b"/f", 0o644));
    ok!(vfs.link(&r, b"/f", b"/fl", false));
    ok!(vfs.mkdir(&r, None, b"/noexec", 0o700));
    ok!(vfs.write_file(&r, b"/noexec/f", b"x"));
    ok!(vfs.symlink(&r, b"f", None, b"/noexec/l"));
    ok!(vfs.mkdir(&r, None, b"/ro", 0o755));
    ok!(vfs.write_file(&r, b"/ro/f", b"x"));
    ok!(vfs.mkdir(&r, None, b"/ro/sub", 0o777));
    ok!(vfs.chmod(&r, b"/ro/sub", 0o777));
    ok!(vfs.write_file(&r, b"/secret", b"s"));
    ok!(vfs.chmod(&r, b"/secret", 0o600));
    ok!(vfs.write_file(&r, b"/world", b"w"));
    ok!(vfs.chmod(&r, b"/world", 0o666));
    ok!(vfs.write_file(&r, b"/mine", b"m"));
    ok!(vfs.chown(&r, b"/mine", Some(1000), Some(1000), true));
    ok!(vfs.mkdir(&r, None, b"/wr", 0o777));
    ok!(vfs.chmod(&r, b"/wr", 0o777));
    ok!(vfs.mkdir(&r, None, b"/wr/rootd", 0o755));
    ok!(vfs.mkdir(&r, None, b"/wr/ud", 0o755));
    ok!(vfs.chown(&r, b"/wr/ud", Some(1000), Some(1000), true));
    ok!(vfs.mkdir(&r, None, b"/wr/ud2", 0o755));
    ok!(vfs.chown(&r, b"/wr/ud2", Some(1000), Some(1000), true));
    vfs
}

#[test]
fn eacces() {
    let vfs = perm_fixture();
    let u = user();
    // No search permission on an intermediate directory (even for a missing name).
    err!(vfs.stat(&u, None, b"/noexec/f", true), Errno::EACCES);
    err!(vfs.stat(&u, None, b"/noexec/missing", true), Errno::EACCES);
    err!(vfs.readlink(&u, None, b"/noexec/l"), Errno::EACCES);
    err!(vfs.open(&u, None, b"/noexec/f", O_RDONLY, 0), Errno::EACCES);
    err!(vfs.mkdir(&u, None, b"/noexec/x", 0o755), Errno::EACCES);
    // ... the search check on the parent comes before "." is recognised.
    err!(vfs.mkdir(&u, None, b"/noexec/.", 0o755), Errno::EACCES);
    err!(vfs.unlink(&u, None, b"/noexec/f"), Errno::EACCES);
    err!(vfs.rename(&u, b"/noexec/f", b"/wr/x", 0), Errno::EACCES);
    err!(vfs.rename(&u, b"/wr/ud", b"/noexec/x", 0), Errno::EACCES);
    err!(vfs.link(&u, b"/world", b"/noexec/x", false), Errno::EACCES);
    ok!(vfs.stat(&u, None, b"/noexec", true));
    // No write permission on the parent.
    err!(
        vfs.open(&u, None, b"/ro/x", O_CREAT | O_WRONLY, 0o644),
        Errno::EACCES
    );
    err!(vfs.mkdir(&u, None, b"/ro/x", 0o755), Errno::EACCES);
    err!(vfs.symlink(&u, b"t", None, b"/ro/x"), Errno::EACCES);
    err!(
        vfs.mknod(&u, None, b"/ro/x", S_IFIFO | 0o644, 0),
        Errno::EACCES
    );
    err!(vfs.unlink(&u, None, b"/ro/f"), Errno::EACCES);
    err!(vfs.rename(&u, b"/ro/f", b"/ro/g", 0), Errno::EACCES);
    err!(vfs.rename(&u, b"/wr/ud", b"/ro/ud", 0), Errno::EACCES);
    err!(vfs.link(&u, b"/world", b"/ro/x", false), Errno::EACCES);
    err!(vfs.rmdir(&u, None, b"/ro/sub"), Errno::EACCES);
    // Existence is decided before write permission on the parent (filename_create and the
    // lookups in do_unlinkat / do_rmdir / do_renameat2 come first).
    err!(vfs.mkdir(&u, None, b"/ro/f", 0o755), Errno::EEXIST);
    err!(
        vfs.open(&u, None, b"/ro/f", O_CREAT | O_EXCL | O_RDONLY, 0o644),
        Errno::EEXIST
    );
    err!(vfs.symlink(&u, b"t", None, b"/ro/f"), Errno::EEXIST);
    err!(vfs.unlink(&u, None, b"/ro/missing"), Errno::ENOENT);
    err!(vfs.rmdir(&u, None, b"/ro/missing"), Errno::ENOENT);
    err!(vfs.rename(&u, b"/ro/missing", b"/ro/x", 0), Errno::ENOENT);
    // open(O_CREAT) of an existing file in a read-only directory opens it.
    let f = ok!(vfs.open(&u, None, b"/ro/f", O_CREAT | O_RDONLY, 0o644));
    let mut buf = [0u8; 8];
    assert_eq!(ok!(vfs.read(&f, &mut buf, 0)), 1);
    // Opening a 0600 file of another user, or writing a 0644 one.
    err!(vfs.open(&u, None, b"/secret", O_RDONLY, 0), Errno::EACCES);
    err!(vfs.open(&u, None, b"/f", O_WRONLY, 0), Errno::EACCES);
    err!(vfs.open(&u, None, b"/f", O_RDWR, 0), Errno::EACCES);
    err!(
        vfs.open(&u, None, b"/f", O_RDONLY | O_TRUNC, 0),
        Errno::EACCES
    );
    err!(
        vfs.open(&u, None, b"/f", O_CREAT | O_WRONLY, 0o644),
        Errno::EACCES
    );
    ok!(vfs.open(&u, None, b"/f", O_RDONLY, 0));
    ok!(vfs.open(&u, None, b"/world", O_RDWR, 0));
    // truncate needs write permission; utimens(NOW) too unless owner.
    err!(vfs.truncate(&u, b"/f", 0), Errno::EACCES);
    ok!(vfs.truncate(&u, b"/world", 0));
    err!(
        vfs.utimens(&u, b"/f", Some(TimeSet::Now), Some(TimeSet::Now)),
        Errno::EACCES
    );
    ok!(vfs.utimens(&u, b"/world", Some(TimeSet::Now), Some(TimeSet::Now)));
    // Moving a directory to another parent rewrites its "..": needs write on it.
    err!(vfs.rename(&u, b"/wr/rootd", b"/wr/ud/x", 0), Errno::EACCES);
    ok!(vfs.rename(&u, b"/wr/rootd", b"/wr/rootd2", 0));
    ok!(vfs.rename(&u, b"/wr/ud2", b"/wr/ud/ud2", 0));
    // Same file under two names: rename is a no-op before any permission check.
    ok!(vfs.rename(&u, b"/f", b"/fl", 0));
    ok!(vfs.stat(&u, None, b"/f", true));
    ok!(vfs.stat(&u, None, b"/fl", true));

    // Root passes every one of these DAC checks.
    let r = root();
    ok!(vfs.stat(&r, None, b"/noexec/f", true));
    ok!(vfs.open(&r, None, b"/secret", O_RDWR, 0));
    ok!(vfs.mkdir(&r, None, b"/ro/x", 0o755));
    ok!(vfs.write_file(&r, b"/ro/y", b""));
    ok!(vfs.truncate(&r, b"/f", 1));
    ok!(vfs.rename(&r, b"/wr/rootd2", b"/wr/ud/rootd", 0));
    ok!(vfs.chmod(&r, b"/secret", 0));
    ok!(vfs.open(&r, None, b"/secret", O_RDWR, 0));
}

// ---------------------------------------------------------------- EPERM

#[test]
fn eperm() {
    let vfs = perm_fixture();
    let r = root();
    let u = user();
    // Sticky directory: only the entry's owner, the directory's owner or root may remove or
    // rename an entry.
    ok!(vfs.mkdir(&r, None, b"/sticky", 0o1777));
    ok!(vfs.chmod(&r, b"/sticky", 0o1777));
    ok!(vfs.write_file(&r, b"/sticky/rootf", b""));
    ok!(vfs.mkdir(&r, None, b"/sticky/rootd", 0o777));
    ok!(vfs.write_file(&r, b"/sticky/u2f", b""));
    ok!(vfs.chown(&r, b"/sticky/u2f", Some(2000), Some(2000), true));
    ok!(vfs.write_file(&u, b"/sticky/mine", b""));
    err!(vfs.unlink(&u, None, b"/sticky/rootf"), Errno::EPERM);
    err!(vfs.unlink(&u, None, b"/sticky/u2f"), Errno::EPERM);
    err!(vfs.rmdir(&u, None, b"/sticky/rootd"), Errno::EPERM);
    err!(
        vfs.rename(&u, b"/sticky/rootf", b"/sticky/x", 0),
        Errno::EPERM
    );
    err!(
        vfs.rename(&u, b"/sticky/mine", b"/sticky/u2f", 0),
        Errno::EPERM
    );
    // A sticky dir owned by the user: the user may remove anything in it.
    ok!(vfs.mkdir(&r, None, b"/usticky", 0o1777));
    ok!(vfs.chmod(&r, b"/usticky", 0o1777));
    ok!(vfs.chown(&r, b"/usticky", Some(1000), None, true));
    ok!(vfs.write_file(&r, b"/usticky/rootf", b""));
    ok!(vfs.unlink(&u, None, b"/usticky/rootf"));
    ok!(vfs.unlink(&u, None, b"/sticky/mine"));
    ok!(vfs.unlink(&r, None, b"/sticky/u2f"));

    // chown: only root gives files away or changes the group to one the caller is not in.
    err!(
        vfs.chown(&u, b"/mine", Some(2000), None, true),
        Errno::EPERM
    );
    err!(
        vfs.chown(&u, b"/mine", None, Some(2000), true),
        Errno::EPERM
    );
    err!(vfs.chown(&u, b"/f", Some(0), None, true), Errno::EPERM);
    err!(vfs.chown(&u, b"/f", Some(1000), None, true), Errno::EPERM);
    ok!(vfs.chown(&u, b"/mine", Some(1000), Some(1000), true));
    ok!(vfs.chown(&u, b"/f", None, None, true));
    ok!(vfs.chown(&r, b"/f", Some(2000), Some(2000), true));
    // chmod and explicit times: owner only.
    err!(vfs.chmod(&u, b"/f", 0o777), Errno::EPERM);
    ok!(vfs.chmod(&u, b"/mine", 0o600));
    let t = Timespec { sec: 1, nsec: 0 };
    err!(
        vfs.utimens(&u, b"/f", Some(TimeSet::At(t)), Some(TimeSet::At(t))),
        Errno::EPERM
    );
    err!(
        vfs.utimens(&u, b"/world", Some(TimeSet::At(t)), None),
        Errno::EPERM
    );
    ok!(vfs.utimens(&u, b"/mine", Some(TimeSet::At(t)), Some(TimeSet::At(t))));
    assert_eq!(ok!(vfs.stat(&u, None, b"/mine", true)).mtime, t);

    // Hard links to directories: EPERM, for root too.
    for c in [&r, &u] {
        err!(vfs.link(c, b"/wr/ud", b"/wr/dl", false), Errno::EPERM);
        err!(vfs.link(c, b"/", b"/wr/dl", false), Errno::EPERM);
    }
    // Device nodes need privilege; mknod of a directory is EPERM (may_mknod).
    err!(
        vfs.mknod(&u, None, b"/wr/dev", S_IFCHR | 0o644, 0x0101),
        Errno::EPERM
    );
    ok!(vfs.mknod(&r, None, b"/wr/dev", S_IFCHR | 0o644, 0x0101));
    err!(
        vfs.mknod(&r, None, b"/wr/nd", S_IFDIR | 0o755, 0),
        Errno::EPERM
    );
    err!(
        vfs.mknod(&r, None, b"/wr/dev", S_IFDIR | 0o755, 0),
        Errno::EPERM
    );
    err!(
        vfs.mknod(&r, None, b"/wr/nl", S_IFLNK | 0o755, 0),
        Errno::EINVAL
    );

    // mount / umount: root only (after the path resolves).
    ok!(vfs.mkdir(&r, None, b"/wr/mnt", 0o777));
    err!(vfs.mount_type(&u, "tmpfs", "", b"/wr/mnt"), Errno::EPERM);
    err!(
        vfs.mount_type(&u, "tmpfs", "", b"/wr/missing"),
        Errno::ENOENT
    );
    ok!(vfs.mount_type(&r, "tmpfs", "", b"/wr/mnt"));
    err!(vfs.umount(&u, b"/wr/mnt"), Errno::EPERM);
    err!(vfs.umount(&u, b"/wr/missing"), Errno::ENOENT);
    ok!(vfs.umount(&r, b"/wr/mnt"));
}

// ---------------------------------------------------------------- EINVAL

#[test]
fn einval() {
    both(|vfs, c| {
        err!(vfs.rename(c, b"/w/d", b"/w/d/sub/x", 0), Errno::EINVAL);
        err!(vfs.rename(c, b"/w/d", b"/w/d/sub/deep", 0), Errno::EINVAL);
        err!(vfs.rename(c, b"/w/d", b"/w/d/x", 0), Errno::EINVAL);
        err!(
            vfs.rename(c, b"/w/d/sub/deep", b"/w/d", RENAME_EXCHANGE),
            Errno::EINVAL
        );
        err!(
            vfs.rename(c, b"/w/d", b"/w/d/sub", RENAME_EXCHANGE),
            Errno::EINVAL
        );
        err!(
            vfs.rename(c, b"/w/f", b"/w/e", RENAME_NOREPLACE | RENAME_EXCHANGE),
            Errno::EINVAL
        );
        // Flags are checked before anything is looked up.
        err!(
            vfs.rename(
                c,
                b"/w/missing",
                b"/w/x",
                RENAME_NOREPLACE | RENAME_EXCHANGE
            ),
            Errno::EINVAL
        );
        err!(vfs.rename(c, b"/w/f", b"/w/e", 8), Errno::EINVAL);
        err!(
            vfs.rename(c, b"/w/f", b"/w/g", RENAME_WHITEOUT | RENAME_EXCHANGE),
            Errno::EINVAL
        );
        err!(vfs.readlink(c, None, b"/w/f"), Errno::EINVAL);
        err!(vfs.readlink(c, None, b"/w/d"), Errno::EINVAL);
        err!(vfs.readlink(c, None, b"/w/ld/"), Errno::EINVAL);
        err!(vfs.readlink(c, None, b"/w/l/"), Errno::ENOTDIR);
        assert_eq!(ok!(vfs.readlink(c, None, b"/w/l")), b"f");
        err!(vfs.rmdir(c, None, b"/w/d/."), Errno::EINVAL);
        err!(vfs.rmdir(c, None, b"/w/."), Errno::EINVAL);
        // O_CREAT | O_DIRECTORY is meaningless (Linux 6.4+: EINVAL).
        err!(
            vfs.open(c, None, b"/w/nn", O_CREAT | O_DIRECTORY | O_RDONLY, 0o644),
            Errno::EINVAL
        );
        err!(vfs.stat(c, None, b"/w/nn", true), Errno::ENOENT);
    });
    let vfs = fixture(&root());
    with_mount(&vfs);
    err!(vfs.umount(&root(), b"/w/mnt/md"), Errno::EINVAL);
    err!(vfs.umount(&root(), b"/w/f"), Errno::EINVAL);
    err!(
        vfs.mount_type(&root(), "tmpfs", "bogus=1", b"/w/e"),
        Errno::EINVAL
    );
    err!(
        vfs.mount_type(&root(), "nosuchfs", "", b"/w/e"),
        Errno::ENODEV
    );
    err!(
        vfs.mount_type(&root(), "tmpfs", "", b"/w/f"),
        Errno::ENOTDIR
    );
}

// ---------------------------------------------------------------- EBUSY

#[test]
fn ebusy() {
    both(|vfs, c| {
        with_mount(vfs);
        err!(vfs.rmdir(c, None, b"/w/mnt"), Errno::EBUSY);
        err!(vfs.rmdir(c, None, b"/w/mnt/"), Errno::EBUSY);
        err!(vfs.rename(c, b"/w/mnt", b"/w/mnt2", 0), Errno::EBUSY);
        err!(vfs.rename(c, b"/w/e", b"/w/mnt", 0), Errno::EBUSY);
        err!(
            vfs.rename(c, b"/w/e", b"/w/mnt", RENAME_EXCHANGE),
            Errno::EBUSY
        );
        // Type mismatch is found before the mount point (may_delete, then EBUSY).
        err!(vfs.rename(c, b"/w/f", b"/w/mnt", 0), Errno::EISDIR);
        err!(vfs.rename(c, b"/w/.", b"/w/x", 0), Errno::EBUSY);
        err!(vfs.rename(c, b"/w/f", b"/w/d/..", 0), Errno::EBUSY);
        err!(vfs.rename(c, b"/", b"/w/x", 0), Errno::EBUSY);
        err!(vfs.rmdir(c, None, b"/"), Errno::EBUSY);
        err!(vfs.rmdir(c, None, b"///"), Errno::EBUSY);
        ok!(vfs.stat(c, None, b"/w/mnt/mf", true));
        if c.is_privileged() {
            ok!(vfs.umount(c, b"/w/mnt"));
            ok!(vfs.rmdir(c, None, b"/w/mnt"));
        }
    });
    // umount: the root is not unmountable; a mount with a mount on it is busy.
    let vfs = fixture(&root());
    with_mount(&vfs);
    let r = root();
    ok!(vfs.mount_type(&r, "tmpfs", "", b"/w/mnt/md"));
    err!(vfs.umount(&r, b"/w/mnt"), Errno::EBUSY);
    err!(vfs.umount(&r, b"/"), Errno::EBUSY);
    ok!(vfs.umount(&r, b"/w/mnt/md"));
    ok!(vfs.umount(&r, b"/w/mnt"));
    err!(vfs.stat(&r, None, b"/w/mnt/mf", true), Errno::ENOENT);
}

// ---------------------------------------------------------------- trailing slashes, dots

#[test]
fn trailing_slashes() {
    both(|vfs, c| {
        err!(vfs.stat(c, None, b"/w/f/", true), Errno::ENOTDIR);
        err!(vfs.stat(c, None, b"/w/f/", false), Errno::ENOTDIR);
        err!(vfs.stat(c, None, b"/w/f//", true), Errno::ENOTDIR);
        err!(vfs.stat(c, None, b"/w/l/", false), Errno::ENOTDIR);
        err!(vfs.open(c, None, b"/w/f/", O_RDONLY, 0), Errno::ENOTDIR);
        err!(vfs.chmod(c, b"/w/f/", 0o644), Errno::ENOTDIR);
        err!(vfs.truncate(c, b"/w/f/", 0), Errno::ENOTDIR);
        err!(vfs.unlink(c, None, b"/w/f/"), Errno::ENOTDIR);
        err!(vfs.rmdir(c, None, b"/w/f/"), Errno::ENOTDIR);
        err!(vfs.link(c, b"/w/f/", b"/w/new", false), Errno::ENOTDIR);
        ok!(vfs.stat(c, None, b"/w/d/", true));
        ok!(vfs.stat(c, None, b"/w/d//", true));
        // A trailing slash follows a final symlink even for lstat.
        let st = ok!(vfs.stat(c, None, b"/w/ld/", false));
        assert_eq!(st.mode & S_IFMT, S_IFDIR);
        ok!(vfs.mkdir(c, None, b"/w/d2/", 0o755));
        ok!(vfs.mkdir(c, None, b"/w/d3//", 0o755));
        assert_eq!(
            ok!(vfs.stat(c, None, b"/w/d2", true)).mode & S_IFMT,
            S_IFDIR
        );
        // rename: trailing slashes need a directory source (and target, unless exchanging).
        err!(vfs.rename(c, b"/w/f/", b"/w/g", 0), Errno::ENOTDIR);
        err!(vfs.rename(c, b"/w/f", b"/w/g/", 0), Errno::ENOTDIR);
        err!(vfs.rename(c, b"/w/f", b"/w/e/", 0), Errno::ENOTDIR);
        ok!(vfs.rename(c, b"/w/d2/", b"/w/d4/", 0));
        ok!(vfs.rename(c, b"/w/d4", b"/w/d5/", 0));
        ok!(vfs.rename(c, b"/w/d5/", b"/w/d6", 0));
        // RENAME_EXCHANGE: the target may have a slash if it is a directory; a file
        // source still may not.
        err!(
            vfs.rename(c, b"/w/f/", b"/w/e/", RENAME_EXCHANGE),
            Errno::ENOTDIR
        );
        err!(
            vfs.rename(c, b"/w/e", b"/w/f/", RENAME_EXCHANGE),
            Errno::ENOTDIR
        );
        ok!(vfs.rename(c, b"/w/f", b"/w/e/", RENAME_EXCHANGE));
        assert_eq!(ok!(vfs.stat(c, None, b"/w/f", true)).mode & S_IFMT, S_IFDIR);
        assert_eq!(ok!(vfs.read_file(c, b"/w/e")), b"hi");
        ok!(vfs.rename(c, b"/w/f/", b"/w/e", RENAME_EXCHANGE));
        assert_eq!(ok!(vfs.read_file(c, b"/w/f")), b"hi");
        // mknod / symlink of "name/": ENOENT for a new name.
        err!(
            vfs.mknod(c, None, b"/w/fifo/", S_IFIFO | 0o644, 0),
            Errno::ENOENT
        );
    });
}

#[test]
fn dots_and_mount_crossing() {
    both(|vfs, c| {
        let root_ino = ino(vfs, c, b"/");
        for p in [
            &b"/.."[..],
            b"/../..",
            b"/./.",
            b"/../w/..",
            b"//",
            b"/w/d/sub/../../..",
        ] {
            assert_eq!(ino(vfs, c, p), root_ino, "{}", String::from_utf8_lossy(p));
        }
        assert_eq!(ino(vfs, c, b"/w/d/sub/.."), ino(vfs, c, b"/w/d"));
        assert_eq!(ino(vfs, c, b"/w/ld/sub/.."), ino(vfs, c, b"/w/d"));
        // ".." is lexical on the resolved location, not on the symlink's name.
        ok!(vfs.symlink(c, b"d/sub", None, b"/w/lsub"));
        assert_eq!(ino(vfs, c, b"/w/lsub/.."), ino(vfs, c, b"/w/d"));
        // Relative to a base.
        let base = ok!(vfs.resolve(c, None, b"/w/d/sub", LOOKUP_FOLLOW));
        let up = ok!(vfs.resolve(c, Some(&base), b"../..", LOOKUP_FOLLOW));
        assert_eq!(up.inode().ino(), ino(vfs, c, b"/w"));
        let abs = ok!(vfs.resolve(c, Some(&base), b"/w/f", LOOKUP_FOLLOW));
        assert_eq!(abs.inode().ino(), ino(vfs, c, b"/w/f"));
        let top = ok!(vfs.resolve(c, Some(&base), b"../../../../../..", LOOKUP_FOLLOW));
        assert_eq!(top.inode().ino(), root_ino);

        // Mounts: "mnt" crosses down to the mounted root; ".." from there crosses back up.
        with_mount(vfs);
        let mroot = ok!(vfs.stat(c, None, b"/w/mnt", true));
        let w = ok!(vfs.stat(c, None, b"/w", true));
        assert_ne!(mroot.dev, w.dev);
        assert_eq!(ok!(vfs.stat(c, None, b"/w/mnt/.", true)).ino, mroot.ino);
        assert_eq!(ino(vfs, c, b"/w/mnt/.."), w.ino);
        assert_eq!(ino(vfs, c, b"/w/mnt/md/../.."), w.ino);
        assert_eq!(
            ino(vfs, c, b"/w/mnt/md/../../mnt/md"),
            ino(vfs, c, b"/w/mnt/md")
        );
        assert_eq!(ino(vfs, c, b"/w/mnt/../../.."), root_ino);
        let st = ok!(vfs.stat(c, None, b"/w/mnt/mf", true));
        assert_eq!(st.dev, mroot.dev);
        // Relative walks starting inside the mount.
        let md = ok!(vfs.resolve(c, None, b"/w/mnt/md", LOOKUP_FOLLOW));
        assert_eq!(
            ok!(vfs.resolve(c, Some(&md), b"../../f", 0)).inode().ino(),
            ino(vfs, c, b"/w/f")
        );
        // A symlink inside the mount pointing out of it, and back in.
        ok!(vfs.symlink(&root(), b"../d", None, b"/w/mnt/out"));
        ok!(vfs.symlink(&root(), b"/w/mnt/md", None, b"/w/mnt/in"));
        assert_eq!(ino(vfs, c, b"/w/mnt/out/sub"), ino(vfs, c, b"/w/d/sub"));
        assert_eq!(ino(vfs, c, b"/w/mnt/in/.."), mroot.ino);
        // path_of goes across the mount.
        assert_eq!(vfs.path_of(&md), b"/w/mnt/md");
        // readdir of the mounted root: "." is itself.
        let mnt = ok!(vfs.resolve(c, None, b"/w/mnt", LOOKUP_FOLLOW));
        let ents = ok!(vfs.readdir(&mnt, 0, 100));
        assert_eq!(ents[0].name, b".");
        assert_eq!(ents[0].ino, mroot.ino);
        assert_eq!(ents[1].name, b"..");
    });
}

// ---------------------------------------------------------------- rename semantics

#[test]
fn rename_noreplace_and_exchange() {
    both(|vfs, c| {
        // NOREPLACE onto a free name works.
        ok!(vfs.rename(c, b"/w/f", b"/w/g", RENAME_NOREPLACE));
        assert_eq!(ok!(vfs.read_file(c, b"/w/g")), b"hi");
        err!(
            vfs.rename(c, b"/w/g", b"/w/d", RENAME_NOREPLACE),
            Errno::EEXIST
        );
        assert_eq!(ok!(vfs.read_file(c, b"/w/g")), b"hi");

        // EXCHANGE a file and a directory in different parents: both names stay, the
        // objects swap, and the parents' link counts follow the directory.
        ok!(vfs.mkdir(c, None, b"/w/p1", 0o755));
        ok!(vfs.mkdir(c, None, b"/w/p2", 0o755));
        ok!(vfs.write_file(c, b"/w/p1/file", b"data"));
        ok!(vfs.mkdir(c, None, b"/w/p2/dir", 0o755));
        ok!(vfs.mkdir(c, None, b"/w/p2/dir/in", 0o755));
        let n = |p: &[u8]| ok!(vfs.stat(c, None, p, true)).nlink;
        let (file_ino, dir_ino) = (ino(vfs, c, b"/w/p1/file"), ino(vfs, c, b"/w/p2/dir"));
        assert_eq!((n(b"/w/p1"), n(b"/w/p2")), (2, 3));
        ok!(vfs.rename(c, b"/w/p1/file", b"/w/p2/dir", RENAME_EXCHANGE));
        assert_eq!((n(b"/w/p1"), n(b"/w/p2")), (3, 2));
        assert_eq!(ino(vfs, c, b"/w/p1/file"), dir_ino);
        assert_eq!(ino(vfs, c, b"/w/p2/dir"), file_ino);
        assert_eq!(ok!(vfs.read_file(c, b"/w/p2/dir")), b"data");
        ok!(vfs.stat(c, None, b"/w/p1/file/in", true));
        assert_eq!(ino(vfs, c, b"/w/p1/file/.."), ino(vfs, c, b"/w/p1"));
        assert_eq!(ino(vfs, c, b"/w/p1/file/in/../.."), ino(vfs, c, b"/w/p1"));
        assert_eq!(n(b"/w/p1/file"), 3);
        // And back, in the same directory this time: parents unchanged.
        ok!(vfs.write_file(c, b"/w/p1/x", b""));
        ok!(vfs.rename(c, b"/w/p1/file", b"/w/p1/x", RENAME_EXCHANGE));
        assert_eq!(n(b"/w/p1"), 3);
        assert_eq!(ino(vfs, c, b"/w/p1/x"), dir_ino);
        // Two directories across parents: counts unchanged, ".." swapped.
        ok!(vfs.mkdir(c, None, b"/w/p2/other", 0o755));
        let (a, b) = (n(b"/w/p1"), n(b"/w/p2"));
        ok!(vfs.rename(c, b"/w/p1/x", b"/w/p2/other", RENAME_EXCHANGE));
        assert_eq!((n(b"/w/p1"), n(b"/w/p2")), (a, b));
        assert_eq!(ino(vfs, c, b"/w/p1/x/.."), ino(vfs, c, b"/w/p1"));
        assert_eq!(ino(vfs, c, b"/w/p2/other/.."), ino(vfs, c, b"/w/p2"));
        assert_eq!(ino(vfs, c, b"/w/p2/other"), dir_ino);
        // EXCHANGE a name with itself: a no-op.
        ok!(vfs.rename(c, b"/w/p2/other", b"/w/p2/other", RENAME_EXCHANGE));
        // EXCHANGE with a missing target.
        err!(
            vfs.rename(c, b"/w/p2/other", b"/w/p2/nothing", RENAME_EXCHANGE),
            Errno::ENOENT
        );
    });
}

#[test]
fn rename_replace_rules() {
    both(|vfs, c| {
        let n = |p: &[u8]| ok!(vfs.stat(c, None, p, true)).nlink;
        // Over an existing file: the target's data is gone, the source's name is gone.
        ok!(vfs.write_file(c, b"/w/g", b"old"));
        ok!(vfs.rename(c, b"/w/f", b"/w/g", 0));
        assert_eq!(ok!(vfs.read_file(c, b"/w/g")), b"hi");
        err!(vfs.stat(c, None, b"/w/f", true), Errno::ENOENT);
        // Over an empty directory: allowed for a directory; parent count drops by one.
        ok!(vfs.mkdir(c, None, b"/w/empty", 0o755));
        let before = n(b"/w");
        ok!(vfs.rename(c, b"/w/e", b"/w/empty", 0));
        assert_eq!(n(b"/w"), before - 1);
        err!(vfs.stat(c, None, b"/w/e", true), Errno::ENOENT);
        // Over a non-empty directory: ENOTEMPTY; file over dir EISDIR; dir over file ENOTDIR.
        ok!(vfs.mkdir(c, None, b"/w/e", 0o755));
        err!(vfs.rename(c, b"/w/e", b"/w/d", 0), Errno::ENOTEMPTY);
        err!(vfs.rename(c, b"/w/g", b"/w/e", 0), Errno::EISDIR);
        err!(vfs.rename(c, b"/w/e", b"/w/g", 0), Errno::ENOTDIR);
        // Directory moved across parents: counts move with it.
        let (w, d) = (n(b"/w"), n(b"/w/d"));
        ok!(vfs.rename(c, b"/w/e", b"/w/d/e", 0));
        assert_eq!((n(b"/w"), n(b"/w/d")), (w - 1, d + 1));
        assert_eq!(ino(vfs, c, b"/w/d/e/.."), ino(vfs, c, b"/w/d"));
        // Onto itself, or onto another hard link of the same inode: success, nothing changes.
        ok!(vfs.rename(c, b"/w/g", b"/w/g", 0));
        ok!(vfs.rename(c, b"/w/d", b"/w/d", 0));
        ok!(vfs.link(c, b"/w/g", b"/w/g2", false));
        ok!(vfs.rename(c, b"/w/g", b"/w/g2", 0));
        ok!(vfs.stat(c, None, b"/w/g", true));
        ok!(vfs.stat(c, None, b"/w/g2", true));
        assert_eq!(n(b"/w/g"), 2);
        ok!(vfs.link(c, b"/w/g", b"/w/d/g3", false));
        ok!(vfs.rename(c, b"/w/d/g3", b"/w/g", 0));
        assert_eq!(n(b"/w/g"), 3);
        ok!(vfs.stat(c, None, b"/w/d/g3", true));
        // A symlink is renamed, not followed.
        ok!(vfs.rename(c, b"/w/l", b"/w/l2", 0));
        assert_eq!(ok!(vfs.readlink(c, None, b"/w/l2")), b"f");
        // Rename into a directory then out again keeps data and inode number.
        let i = ino(vfs, c, b"/w/g2");
        ok!(vfs.rename(c, b"/w/g2", b"/w/d/sub/deep/g", 0));
        ok!(vfs.rename(c, b"/w/d/sub/deep/g", b"/w/g4", 0));
        assert_eq!(ino(vfs, c, b"/w/g4"), i);
        assert_eq!(ok!(vfs.read_file(c, b"/w/g4")), b"hi");
    });
}

/// Creating through a dangling symlink with O_CREAT creates its target (open(2) follows it).
#[test]
fn creat_through_dangling_symlink() {
    both(|vfs, c| {
        ok!(vfs.symlink(c, b"target_new", None, b"/w/dl1"));
        let f = ok!(vfs.open(c, None, b"/w/dl1", O_CREAT | O_WRONLY, 0o644));
        ok!(vfs.write(&f, b"x", 0));
        assert_eq!(ok!(vfs.read_file(c, b"/w/target_new")), b"x");
        ok!(vfs.symlink(c, b"nodir/x", None, b"/w/dl2"));
        err!(
            vfs.open(c, None, b"/w/dl2", O_CREAT | O_WRONLY, 0o644),
            Errno::ENOENT
        );
        ok!(vfs.symlink(c, b"/w/d/abs", None, b"/w/dl3"));
        ok!(vfs.open(c, None, b"/w/dl3", O_CREAT | O_WRONLY, 0o644));
        ok!(vfs.stat(c, None, b"/w/d/abs", false));
        ok!(vfs.symlink(c, b"loop", None, b"/w/loop"));
        err!(
            vfs.open(c, None, b"/w/loop", O_CREAT | O_WRONLY, 0o644),
            Errno::ELOOP
        );
        // The created file gets the mode asked for, the link is left alone.
        assert!(ok!(vfs.stat(c, None, b"/w/dl1", false)).mode & S_IFMT == S_IFLNK);
        assert_eq!(ok!(vfs.stat(c, None, b"/w/dl1", true)).mode & 0o7777, 0o644);
    });
}

/// Renaming a directory that contains a mount point is allowed, and the mount moves with it
/// (only the mount point itself is busy).
#[test]
fn mount_follows_renamed_parent() {
    let vfs = fixture(&root());
    let c = root();
    with_mount(&vfs);
    ok!(vfs.mkdir(&c, None, b"/w/holder", 0o755));
    err!(vfs.rename(&c, b"/w/mnt", b"/w/holder/mnt", 0), Errno::EBUSY);
    ok!(vfs.rename(&c, b"/w", b"/w2", 0));
    assert_eq!(ok!(vfs.read_file(&c, b"/w2/mnt/mf")), b"m");
    err!(vfs.stat(&c, None, b"/w/mnt/mf", true), Errno::ENOENT);
    let md = ok!(vfs.resolve(&c, None, b"/w2/mnt/md", 0));
    assert_eq!(vfs.path_of(&md), b"/w2/mnt/md");
    assert_eq!(ino(&vfs, &c, b"/w2/mnt/md/../.."), ino(&vfs, &c, b"/w2"));
    assert!(vfs
        .mounts()
        .iter()
        .any(|(p, t, _)| p == "/w2/mnt" && t == "tmpfs"));
    ok!(vfs.umount(&c, b"/w2/mnt"));
    assert!(ok!(vfs.readdir(&ok!(vfs.resolve(&c, None, b"/w2/mnt", 0)), 2, 10)).is_empty());
}
