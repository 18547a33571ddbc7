//! End-to-end tests: the real `bpfvfs up` mounted on a temporary directory, exercised with
//! real system calls and everyday tools.

mod common;

use common::*;
use std::ffi::CString;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::Duration;

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[test]
fn shell_tools() {
    let Some(d) = Daemon::start("tools", &[]) else {
        return;
    };
    d.sh_ok(
        r#"
        set -eu
        mkdir -p a/b/c
        test -d a/b/c
        echo hello > a/f
        test "$(cat a/f)" = hello
        ls a | grep -qx f
        ls -la a >/dev/null
        test "$(stat -c %s a/f)" = 6
        test "$(stat -c %F a/b)" = directory
        cp a/f a/g
        cmp a/f a/g
        mv a/g a/b/g
        test ! -e a/g
        test "$(cat a/b/g)" = hello
        ln a/f a/hard
        test "$(stat -c %h a/f)" = 2
        test "$(stat -c %i a/f)" = "$(stat -c %i a/hard)"
        ln -s f a/sym
        test "$(readlink a/sym)" = f
        test "$(cat a/sym)" = hello
        test -L a/sym
        chmod 600 a/f
        test "$(stat -c %a a/f)" = 600
        chmod 4755 a/f
        test "$(stat -c %a a/f)" = 4755
        truncate -s 100000 a/f
        test "$(stat -c %s a/f)" = 100000
        truncate -s 3 a/f
        test "$(cat a/f)" = hel
        test "$(find . -path ./sys -prune -o -print | sort | tr '\n' ' ')" = ". ./a ./a/b ./a/b/c ./a/b/g ./a/f ./a/hard ./a/sym "
        test "$(find . -type l)" = ./a/sym
        rm a/hard
        test "$(stat -c %h a/f)" = 1
        rm a/sym
        rmdir a/b/c
        if rmdir a 2>/dev/null; then echo "rmdir of a non-empty dir succeeded"; exit 1; fi
        mv a/b a/renamed
        test -f a/renamed/g
        rm -r a
        test "$(ls -A)" = sys
        "#,
    );
}

#[test]
fn tar_round_trip() {
    let Some(d) = Daemon::start("tar", &[]) else {
        return;
    };
    d.sh_ok(
        r#"
        set -eu
        mkdir -p src/d1/d2 src/empty
        seq 1 20000 > src/d1/nums
        echo x > src/d1/d2/x
        ln -s ../nums src/d1/d2/link
        ln src/d1/nums src/d1/hl
        chmod 751 src/d1/d2
        chmod 640 src/d1/d2/x
        touch -d @1000000000 src/d1/d2/x
        tar -cf archive.tar -C src .
        mkdir dst
        tar -xpf archive.tar -C dst
        diff -r src dst
        test "$(stat -c %h dst/d1/nums)" = 2
        test "$(stat -c %i dst/d1/nums)" = "$(stat -c %i dst/d1/hl)"
        test "$(readlink dst/d1/d2/link)" = ../nums
        test "$(stat -c %a dst/d1/d2)" = 751
        test "$(stat -c %a dst/d1/d2/x)" = 640
        test "$(stat -c %Y dst/d1/d2/x)" = 1000000000
        test "$(tar -tf archive.tar | sort | tr '\n' ' ')" = "./ ./d1/ ./d1/d2/ ./d1/d2/link ./d1/d2/x ./d1/hl ./d1/nums ./empty/ "
        "#,
    );
    // And out of the mount and back in, against the host filesystem.
    let host = TempDir::new("tar-host");
    let archive = host.path().join("a.tar");
    let out = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(d.mnt.join("src"))
        .arg(".")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.sh_ok(&format!(
        "set -eu; mkdir back; tar -xf {} -C back; diff -r src back",
        archive.display()
    ));
}

#[test]
fn std_fs_semantics() {
    let Some(d) = Daemon::start("stdfs", &[]) else {
        return;
    };
    let m = &d.mnt;

    // open/write/fsync/read
    let p = m.join("data");
    let mut f = fs::File::create(&p).unwrap();
    let chunk: Vec<u8> = (0..100_003u32).map(|i| (i * 7 % 251) as u8).collect();
    for _ in 0..50 {
        f.write_all(&chunk).unwrap();
    }
    f.sync_all().unwrap();
    f.sync_data().unwrap();
    drop(f);
    let back = fs::read(&p).unwrap();
    assert_eq!(back.len(), chunk.len() * 50);
    assert!(back.chunks(chunk.len()).all(|c| c == chunk.as_slice()));

    // pread at offsets, beyond EOF, sparse writes
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    f.seek(SeekFrom::Start(5)).unwrap();
    let mut b = [0u8; 4];
    f.read_exact(&mut b).unwrap();
    assert_eq!(&b, &chunk[5..9]);
    f.seek(SeekFrom::Start(1 << 40)).unwrap();
    assert_eq!(f.read(&mut b).unwrap(), 0);
    f.write_all(b"z").unwrap();
    assert_eq!(f.metadata().unwrap().len(), (1 << 40) + 1);
    f.set_len(10).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().len(), 10);
    drop(f);

    // rename, and rename over an existing file
    fs::write(m.join("a"), b"AAA").unwrap();
    fs::write(m.join("b"), b"BBB").unwrap();
    let b_ino = fs::metadata(m.join("b")).unwrap().ino();
    let a_ino = fs::metadata(m.join("a")).unwrap().ino();
    fs::rename(m.join("a"), m.join("b")).unwrap();
    assert!(!m.join("a").exists());
    assert_eq!(fs::read(m.join("b")).unwrap(), b"AAA");
    assert_eq!(fs::metadata(m.join("b")).unwrap().ino(), a_ino);
    assert_ne!(a_ino, b_ino);
    fs::create_dir(m.join("dir")).unwrap();
    fs::rename(m.join("b"), m.join("dir/b2")).unwrap();
    assert_eq!(fs::read(m.join("dir/b2")).unwrap(), b"AAA");
    // Over an ancestor: ENOTEMPTY (Linux checks the lock_rename trap first).
    assert_eq!(
        fs::rename(m.join("dir/b2"), m.join("dir"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ENOTEMPTY)
    );
    fs::create_dir(m.join("empty")).unwrap();
    assert_eq!(
        fs::rename(m.join("dir/b2"), m.join("empty"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EISDIR)
    );
    assert_eq!(
        fs::rename(m.join("empty"), m.join("dir/b2"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ENOTDIR)
    );
    fs::remove_dir(m.join("empty")).unwrap();

    // hard links
    fs::hard_link(m.join("dir/b2"), m.join("l1")).unwrap();
    fs::hard_link(m.join("dir/b2"), m.join("l2")).unwrap();
    assert_eq!(fs::metadata(m.join("l1")).unwrap().nlink(), 3);
    fs::remove_file(m.join("l2")).unwrap();
    assert_eq!(fs::metadata(m.join("dir/b2")).unwrap().nlink(), 2);
    assert_eq!(
        fs::hard_link(m.join("dir"), m.join("dl"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EPERM)
    );
    assert_eq!(fs::metadata(m.join("dir")).unwrap().nlink(), 2);

    // errors
    assert_eq!(
        fs::create_dir(m.join("dir")).unwrap_err().raw_os_error(),
        Some(libc::EEXIST)
    );
    assert_eq!(
        fs::remove_dir(m.join("dir")).unwrap_err().raw_os_error(),
        Some(libc::ENOTEMPTY)
    );
    assert_eq!(
        fs::remove_file(m.join("dir")).unwrap_err().raw_os_error(),
        Some(libc::EISDIR)
    );
    assert_eq!(
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(m.join("l1"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EEXIST)
    );
    assert_eq!(
        fs::read(m.join("nope")).unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
    let long = "x".repeat(256);
    assert_eq!(
        fs::write(m.join(&long), b"").unwrap_err().raw_os_error(),
        Some(libc::ENAMETOOLONG)
    );
    fs::write(m.join("x".repeat(255)), b"ok").unwrap();

    // symlinks
    std::os::unix::fs::symlink("dir/b2", m.join("sl")).unwrap();
    assert_eq!(fs::read_link(m.join("sl")).unwrap(), Path::new("dir/b2"));
    assert_eq!(fs::read(m.join("sl")).unwrap(), b"AAA");
    assert!(fs::symlink_metadata(m.join("sl"))
        .unwrap()
        .file_type()
        .is_symlink());

    // O_APPEND
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.join("l1"))
        .unwrap();
    f.write_all(b"+").unwrap();
    drop(f);
    assert_eq!(fs::read(m.join("l1")).unwrap(), b"AAA+");

    // permissions bits and utimes round trip
    fs::set_permissions(m.join("l1"), fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(fs::metadata(m.join("l1")).unwrap().mode() & 0o7777, 0o640);
    let c = cstr(&m.join("l1"));
    let times = [
        libc::timespec {
            tv_sec: 1_234_567_890,
            tv_nsec: 123_456_789,
        },
        libc::timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 5,
        },
    ];
    // SAFETY: valid path and array of two timespecs.
    assert_eq!(
        unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) },
        0
    );
    let md = fs::metadata(m.join("l1")).unwrap();
    assert_eq!((md.atime(), md.atime_nsec()), (1_234_567_890, 123_456_789));
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_000_000_000, 5));

    // a big directory: readdir must resume across many replies
    fs::create_dir(m.join("big")).unwrap();
    for i in 0..1500 {
        fs::write(m.join(format!("big/file-with-a-longish-name-{i:05}")), b"").unwrap();
    }
    let mut names: Vec<String> = fs::read_dir(m.join("big"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 1500);
    assert_eq!(names[0], "file-with-a-longish-name-00000");
    assert_eq!(names[1499], "file-with-a-longish-name-01499");

    // statfs
    // SAFETY: statvfs is plain data; valid path.
    let mut sv: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(cstr(m).as_ptr(), &mut sv) }, 0);
    assert_eq!(sv.f_namemax, 255);
    assert!(sv.f_bsize > 0);
}

#[test]
fn renameat2_flags() {
    let Some(d) = Daemon::start("rename2", &[]) else {
        return;
    };
    let m = &d.mnt;
    fs::write(m.join("x"), b"X").unwrap();
    fs::write(m.join("y"), b"Y").unwrap();
    let (x, y) = (cstr(&m.join("x")), cstr(&m.join("y")));
    let z = cstr(&m.join("z"));
    let rename2 = |a: &CString, b: &CString, flags: u32| -> i32 {
        // SAFETY: valid paths.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                flags,
            )
        };
        if r == 0 {
            0
        } else {
            errno()
        }
    };
    assert_eq!(rename2(&x, &y, libc::RENAME_NOREPLACE), libc::EEXIST);
    assert_eq!(rename2(&x, &y, libc::RENAME_EXCHANGE), 0);
    assert_eq!(fs::read(m.join("x")).unwrap(), b"Y");
    assert_eq!(fs::read(m.join("y")).unwrap(), b"X");
    assert_eq!(rename2(&x, &z, libc::RENAME_EXCHANGE), libc::ENOENT);
    assert_eq!(rename2(&x, &z, libc::RENAME_NOREPLACE), 0);
    assert_eq!(fs::read(m.join("z")).unwrap(), b"Y");
    assert_eq!(
        rename2(&y, &z, libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE),
        libc::EINVAL
    );
    // exchange a directory and a file
    fs::create_dir(m.join("dd")).unwrap();
    fs::write(m.join("dd/in"), b"").unwrap();
    assert_eq!(rename2(&cstr(&m.join("dd")), &z, libc::RENAME_EXCHANGE), 0);
    assert!(fs::metadata(m.join("z")).unwrap().is_dir());
    assert!(m.join("z/in").exists());
    assert_eq!(fs::read(m.join("dd")).unwrap(), b"Y");
}

#[test]
fn xattrs_and_fallocate() {
    let Some(d) = Daemon::start("xattr", &[]) else {
        return;
    };
    let p = d.mnt.join("f");
    fs::write(&p, b"").unwrap();
    let c = cstr(&p);
    let name = CString::new("user.color").unwrap();
    let val = b"turquoise";
    // SAFETY (all calls below): valid NUL-terminated strings and buffers of the given sizes.
    unsafe {
        assert_eq!(
            libc::setxattr(c.as_ptr(), name.as_ptr(), val.as_ptr().cast(), val.len(), 0),
            0
        );
        assert_eq!(
            libc::setxattr(
                c.as_ptr(),
                name.as_ptr(),
                val.as_ptr().cast(),
                val.len(),
                libc::XATTR_CREATE
            ),
            -1
        );
        assert_eq!(errno(), libc::EEXIST);
        // size probe
        assert_eq!(
            libc::getxattr(c.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0),
            9
        );
        let mut small = [0u8; 4];
        assert_eq!(
            libc::getxattr(c.as_ptr(), name.as_ptr(), small.as_mut_ptr().cast(), 4),
            -1
        );
        assert_eq!(errno(), libc::ERANGE);
        let mut buf = [0u8; 64];
        assert_eq!(
            libc::getxattr(c.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), 64),
            9
        );
        assert_eq!(&buf[..9], val);
        // list
        let n2 = CString::new("user.a").unwrap();
        assert_eq!(
            libc::setxattr(c.as_ptr(), n2.as_ptr(), b"1".as_ptr().cast(), 1, 0),
            0
        );
        let want = b"user.a\0user.color\0";
        assert_eq!(
            libc::listxattr(c.as_ptr(), std::ptr::null_mut(), 0),
            want.len() as isize
        );
        assert_eq!(libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), 3), -1);
        assert_eq!(errno(), libc::ERANGE);
        assert_eq!(
            libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), 64),
            want.len() as isize
        );
        assert_eq!(&buf[..want.len()], want);
        // remove
        assert_eq!(libc::removexattr(c.as_ptr(), name.as_ptr()), 0);
        assert_eq!(libc::removexattr(c.as_ptr(), name.as_ptr()), -1);
        assert_eq!(errno(), libc::ENODATA);
        assert_eq!(
            libc::getxattr(c.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), 64),
            -1
        );
        assert_eq!(errno(), libc::ENODATA);
    }

    // fallocate
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    // SAFETY: valid fd.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, 3 * 4096 + 1) };
    assert_eq!(r, 0, "fallocate: errno {}", errno());
    assert_eq!(f.metadata().unwrap().len(), 3 * 4096 + 1);
    assert!(f.metadata().unwrap().blocks() >= 4 * 8);
    // SAFETY: valid fd.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, 40960) };
    assert_eq!(r, 0);
    assert_eq!(f.metadata().unwrap().len(), 3 * 4096 + 1);
    // SAFETY: valid fd.
    let r = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            0,
            4096,
        )
    };
    assert_eq!((r, errno()), (-1, libc::EOPNOTSUPP));
}

#[test]
fn copy_file_range_and_seek_data() {
    let Some(d) = Daemon::start("copy", &[]) else {
        return;
    };
    let src: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    fs::write(d.mnt.join("src"), &src).unwrap();
    let fin = fs::File::open(d.mnt.join("src")).unwrap();
    let fout = fs::File::create(d.mnt.join("dst")).unwrap();
    let mut off_in: i64 = 0;
    let mut off_out: i64 = 10;
    let mut total = 0usize;
    loop {
        // SAFETY: valid fds and offsets.
        let n = unsafe {
            libc::copy_file_range(
                fin.as_raw_fd(),
                &mut off_in,
                fout.as_raw_fd(),
                &mut off_out,
                1 << 20,
                0,
            )
        };
        assert!(n >= 0, "copy_file_range: errno {}", errno());
        if n == 0 {
            break;
        }
        total += n as usize;
    }
    assert_eq!(total, src.len());
    drop(fout);
    let dst = fs::read(d.mnt.join("dst")).unwrap();
    assert_eq!(&dst[..10], &[0u8; 10]);
    assert_eq!(&dst[10..], &src[..]);
    // SEEK_DATA / SEEK_HOLE
    // SAFETY: valid fd.
    unsafe {
        assert_eq!(libc::lseek(fin.as_raw_fd(), 5, libc::SEEK_DATA), 5);
        assert_eq!(
            libc::lseek(fin.as_raw_fd(), 5, libc::SEEK_HOLE),
            src.len() as i64
        );
        assert_eq!(
            libc::lseek(fin.as_raw_fd(), src.len() as i64, libc::SEEK_DATA),
            -1
        );
        assert_eq!(errno(), libc::ENXIO);
    }
    // A clean log: no "not implemented" noise from fuser.
    assert!(
        !d.log_text().contains("Not Implemented"),
        "{}",
        d.log_text()
    );
}

#[test]
fn unlink_while_open_then_evicted_on_close() {
    let Some(d) = Daemon::start("unlinkopen", &[]) else {
        return;
    };
    let p = d.mnt.join("doomed");
    fs::write(&p, b"still here").unwrap();
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    let evicted0 = d.stat_u64("inodes_evicted_total");
    fs::remove_file(&p).unwrap();
    assert!(!p.exists());
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "still here");
    f.write_all(b"!").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    s.clear();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "still here!");
    assert_eq!(f.metadata().unwrap().nlink(), 0);
    assert_eq!(
        d.stat_u64("inodes_evicted_total"),
        evicted0,
        "evicted while open"
    );
    drop(f);
    // RELEASE and FORGET are asynchronous: the eviction follows shortly.
    assert!(
        wait_until(Duration::from_secs(10), || d
            .stat_u64("inodes_evicted_total")
            == evicted0 + 1),
        "not evicted after close: {}",
        d.stats()
    );
    assert!(wait_until(Duration::from_secs(10), || d
        .stat_u64("fuse_handles")
        == 0));
    assert!(wait_until(Duration::from_secs(10), || d
        .stat_u64("files_open")
        == 0));
}

#[test]
fn forget_releases_nodes() {
    let Some(d) = Daemon::start("forget", &["--threads", "4"]) else {
        return;
    };
    // What a fresh tree holds: the root, /sys/fs/bpf and its bpffs with maps.debug and
    // progs.debug.
    let fresh = {
        let s = d.stats();
        s["inodes_live"].as_i64().unwrap() - s["inodes_evicted_pending_free"].as_i64().unwrap()
    };
    // Parallel creates, writes, renames and deletes from several threads.
    let m = d.mnt.clone();
    let evicted0 = d.stat_u64("inodes_evicted_total");
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                let dir = m.join(format!("t{t}"));
                fs::create_dir(&dir).unwrap();
                for i in 0..200 {
                    let p = dir.join(format!("f{i}"));
                    fs::write(&p, format!("{t}-{i}")).unwrap();
                    let q = m.join(format!("shared-{t}-{i}"));
                    fs::rename(&p, &q).unwrap();
                    assert_eq!(fs::read_to_string(&q).unwrap(), format!("{t}-{i}"));
                    fs::remove_file(&q).unwrap();
                }
                fs::remove_dir(&dir).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // 6 directories and 1200 files were created and removed: all evicted once the kernel
    // forgot them.
    assert!(
        wait_until(Duration::from_secs(15), || d
            .stat_u64("inodes_evicted_total")
            == evicted0 + 1206),
        "evictions: {}",
        d.stats()
    );
    // Nodes the kernel merely caches go when it drops its caches (root only).
    if is_root() {
        fs::create_dir_all(m.join("keep/a/b")).unwrap();
        fs::write(m.join("keep/a/b/f"), b"").unwrap();
        assert!(d.stat_u64("fuse_nodes") >= 4);
        let dropped = wait_until(Duration::from_secs(15), || {
            let _ = fs::write("/proc/sys/vm/drop_caches", b"2");
            d.stat_u64("fuse_nodes") == 0
        });
        assert!(dropped, "nodes still held after drop_caches: {}", d.stats());
        // And they come back on demand (the VFS kept them: memfs lives in the dcache).
        assert!(m.join("keep/a/b/f").exists());
        assert_eq!(d.stat_u64("fuse_nodes"), 4, "{}", d.stats());
        let s = d.stats();
        let live =
            s["inodes_live"].as_i64().unwrap() - s["inodes_evicted_pending_free"].as_i64().unwrap();
        assert_eq!(live, fresh + 4, "{s}");
    }
}

#[test]
fn permissions_as_other_user() {
    let Some(nobody) = nobody_prefix() else {
        skip("needs root and setpriv to act as uid 65534");
        return;
    };
    // --ttl 0: the kernel re-asks for every path component, so search permission is
    // checked on each (with caching, components the kernel already knows are not).
    let Some(d) = Daemon::start("perm", &["--ttl", "0"]) else {
        return;
    };
    d.sh_ok(
        r#"
        set -eu
        mkdir private
        echo secret > private/f
        chmod 700 private
        chmod 644 private/f
        echo mine > rootfile
        chmod 644 rootfile
        echo s > suid
        chmod 4777 suid
        mkdir open
        chmod 777 open
        "#,
    );
    let run = |script: &str| {
        let out = sh_as_nobody(&nobody, &d.mnt, script);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run("ls private");
    assert_ne!(code, Some(0));
    assert!(err.contains("Permission denied"), "{err}");
    let (code, _, err) = run("cat private/f");
    assert_ne!(code, Some(0));
    assert!(err.contains("Permission denied"), "{err}");
    let (code, _, err) = run("cd private");
    assert_ne!(code, Some(0), "{err}");
    let (code, _, err) = run("echo x > rootfile");
    assert_ne!(code, Some(0));
    assert!(err.contains("Permission denied"), "{err}");
    let (code, _, err) = run("chmod 777 rootfile");
    assert_ne!(code, Some(0));
    assert!(err.contains("Operation not permitted"), "{err}");
    // The root directory is 1777 (tmpfs-like): others may create, but not remove root's.
    let (code, _, err) = run("rm -f rootfile");
    assert_ne!(code, Some(0));
    assert!(err.contains("Operation not permitted"), "{err}");
    let (code, out, err) = run(
        "set -e; echo hi > mine; test \"$(stat -c %u:%g mine)\" = 65534:65534; \
         test -r rootfile && test ! -w rootfile && echo access-ok; \
         mkdir open/sub; rm mine; rmdir open/sub",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("access-ok"));
    // A write by a non-owner clears set-user-ID (the kernel asks for it in the writer's
    // name; the FUSE edge must not refuse it as a non-owner chmod).
    let (code, _, err) = run("echo more >> suid");
    assert_eq!(code, Some(0), "{err}");
    let mode = fs::metadata(d.mnt.join("suid")).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o777);
    assert_eq!(fs::read_to_string(d.mnt.join("suid")).unwrap(), "s\nmore\n");
}

#[test]
fn stats_command() {
    let Some(d) = Daemon::start("stats", &[]) else {
        return;
    };
    fs::write(d.mnt.join("f"), b"x").unwrap();
    let out = std::process::Command::new(BIN)
        .arg("stats")
        .arg("--socket")
        .arg(&d.sock)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for key in [
        "inodes_live: ",
        "dentries_hashed: ",
        "files_open: ",
        "fuse_nodes: ",
        "walks_lockless: ",
    ] {
        assert!(text.contains(key), "{key} missing in:\n{text}");
    }
    assert!(text.contains("mount: / tmpfs"), "{text}");
    // JSON, with the socket from the environment and the flag after the subcommand
    let out = std::process::Command::new(BIN)
        .args(["stats", "-j"])
        .env("BPFVFS_SOCKET", &d.sock)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["inodes_live"].as_i64().unwrap() >= 2);
    assert_eq!(v["mounts"][0]["path"], "/");
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
    let out = std::process::Command::new(BIN)
        .args(["-p", "-j", "stats", "--socket"])
        .arg(&d.sock)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout).unwrap().lines().count() > 5);
}

#[test]
fn sigterm_unmounts_cleanly() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let Some(mut d) = Daemon::start("sigterm", &[]) else {
            return;
        };
        fs::write(d.mnt.join("f"), b"x").unwrap();
        // Also with a file left open by another process.
        let _held = fs::File::open(d.mnt.join("f")).unwrap();
        drop(_held);
        d.signal(sig);
        let st = d
            .wait_exit(Duration::from_secs(20))
            .expect("daemon did not exit");
        assert!(st.success(), "exit {st}; log:\n{}", d.log_text());
        assert!(!mounted_at(&d.mnt), "mount left behind");
        assert!(!d.sock.exists(), "socket left behind");
        assert!(fs::read_dir(&d.mnt).unwrap().next().is_none());
    }
}

#[test]
fn busy_mount_does_not_hang_shutdown() {
    let Some(mut d) = Daemon::start("busy", &[]) else {
        return;
    };
    fs::create_dir(d.mnt.join("cwd")).unwrap();
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .current_dir(d.mnt.join("cwd"))
        .spawn()
        .unwrap();
    d.signal(libc::SIGTERM);
    let st = d.wait_exit(Duration::from_secs(30));
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let st = st.unwrap_or_else(|| panic!("daemon hung on a busy mount:\n{}", d.log_text()));
    // The mount is detached at once; the daemon warns about the users it leaves behind.
    assert!(st.success(), "exit {st}:\n{}", d.log_text());
    assert!(!mounted_at(&d.mnt), "mount left behind");
}

#[test]
fn sigkill_leaves_no_stale_mount() {
    let Some(mut d) = Daemon::start("sigkill", &[]) else {
        return;
    };
    if d.log_text().contains("without auto_unmount") {
        skip("fusermount3 is missing: no auto_unmount");
        return;
    }
    fs::write(d.mnt.join("f"), b"x").unwrap();
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(10))
        .expect("SIGKILL did not kill");
    assert!(
        wait_until(Duration::from_secs(10), || !mounted_at(&d.mnt)),
        "stale mount left after SIGKILL"
    );
    // The directory is usable again (not "Transport endpoint is not connected").
    assert!(fs::read_dir(&d.mnt).is_ok());
}

#[test]
fn up_rejects_bad_directories() {
    let tmp = TempDir::new("baddir");
    let file = tmp.path().join("file");
    fs::write(&file, b"").unwrap();
    let sock = tmp.path().join("s.sock");
    for (dir, want) in [
        (tmp.path().join("missing"), "No such file or directory"),
        (file.clone(), "not a directory"),
    ] {
        let out = std::process::Command::new(BIN)
            .arg("up")
            .arg(&dir)
            .arg("--socket")
            .arg(&sock)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("bpfvfs: "), "{err}");
        assert!(err.contains(want), "{err}");
        assert!(err.contains(&*dir.to_string_lossy()), "{err}");
        assert!(!sock.exists());
    }
}

#[test]
fn stats_without_daemon() {
    let tmp = TempDir::new("nodaemon");
    let sock = tmp.path().join("none.sock");
    let out = std::process::Command::new(BIN)
        .args(["stats", "--socket"])
        .arg(&sock)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "bpfvfs: no daemon at {} (start one with: bpfvfs up DIR)\n",
            sock.display()
        )
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn help_everywhere() {
    for args in [
        &["--help"][..],
        &["up", "--help"],
        &["stats", "--help"],
        &["help", "up"],
    ] {
        let out = std::process::Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage:"), "{args:?}: {text}");
        assert!(text.contains("--socket"), "{args:?}: {text}");
    }
}
