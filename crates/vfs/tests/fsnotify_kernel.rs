//! Kernel differential test for watch marks: one script of file operations runs on a host
//! tmpfs directory watched with real inotify and on a memfs tree watched with our groups;
//! after every step both event streams must be identical — watch descriptors, masks (names),
//! child names, order, and cookie pairing (cookies are compared by first appearance, since
//! their values are arbitrary).
//!
//! Skips, with the reason printed, when inotify or a tmpfs directory is unavailable.

use bpfvfs_vfs::fsnotify::*;
use bpfvfs_vfs::oflags::*;
use bpfvfs_vfs::*;
use std::collections::HashMap;
use std::ffi::CString;
use std::sync::Arc;

const TMPFS_MAGIC: i64 = 0x0102_1994;

#[derive(Clone, Debug)]
enum Op {
    Watch(&'static str, u32),
    RmWatch(i32),
    Mkdir(&'static str),
    Open(usize, &'static str, i32),
    Close(usize),
    Write(usize, &'static [u8], u64),
    Read(usize, u64),
    Fallocate(usize, u64, u64),
    Getdents(usize),
    Chmod(&'static str, u32),
    Chown(&'static str),
    Utimes(&'static str, bool, bool),
    Truncate(&'static str, u64),
    SetXattr(&'static str),
    RemoveXattr(&'static str),
    Link(&'static str, &'static str),
    Symlink(&'static str, &'static str),
    Mkfifo(&'static str),
    Rename(&'static str, &'static str, u32),
    Unlink(&'static str),
    Rmdir(&'static str),
}

/// (wd, mask, cookie, name)
type Ev = (i32, u32, u32, String);

trait Backend {
    fn run(&mut self, op: &Op) -> Result<(), String>;
    fn events(&mut self) -> Vec<Ev>;
}

// ---- the host: real inotify on tmpfs ----

struct Host {
    base: String,
    fd: i32,
    files: HashMap<usize, i32>,
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn check(rc: i64, what: &str) -> Result<(), String> {
    if rc < 0 {
        Err(format!("{what}: {}", std::io::Error::last_os_error()))
    } else {
        Ok(())
    }
}

impl Host {
    fn p(&self, rel: &str) -> CString {
        cstr(&format!("{}/{}", self.base, rel))
    }
    fn utimes(&self, rel: &str, atime: bool, mtime: bool) -> i64 {
        let t = |set: bool| libc::timespec {
            tv_sec: 0,
            tv_nsec: if set {
                libc::UTIME_NOW
            } else {
                libc::UTIME_OMIT
            },
        };
        let times = [t(atime), t(mtime)];
        // SAFETY: valid path and a two-element timespec array.
        unsafe { libc::utimensat(libc::AT_FDCWD, self.p(rel).as_ptr(), times.as_ptr(), 0) as i64 }
    }
}

impl Backend for Host {
    fn run(&mut self, op: &Op) -> Result<(), String> {
        // SAFETY (whole block): plain system calls on NUL-terminated paths we own, buffers
        // sized as passed, and fds this struct opened.
        unsafe {
            match op {
                Op::Watch(p, mask) => check(
                    libc::inotify_add_watch(self.fd, self.p(p).as_ptr(), *mask) as i64,
                    "inotify_add_watch",
                ),
                Op::RmWatch(wd) => check(
                    libc::inotify_rm_watch(self.fd, *wd) as i64,
                    "inotify_rm_watch",
                ),
                Op::Mkdir(p) => check(libc::mkdir(self.p(p).as_ptr(), 0o755) as i64, "mkdir"),
                Op::Open(h, p, flags) => {
                    let fd = libc::open(self.p(p).as_ptr(), *flags | libc::O_CLOEXEC, 0o644);
                    check(fd as i64, "open")?;
                    self.files.insert(*h, fd);
                    Ok(())
                }
                Op::Close(h) => check(libc::close(self.files.remove(h).unwrap()) as i64, "close"),
                Op::Write(h, data, off) => check(
                    libc::pwrite(self.files[h], data.as_ptr().cast(), data.len(), *off as i64)
                        as i64,
                    "pwrite",
                ),
                Op::Read(h, off) => {
                    let mut buf = [0u8; 64];
                    check(
                        libc::pread(self.files[h], buf.as_mut_ptr().cast(), 64, *off as i64) as i64,
                        "pread",
                    )
                }
                Op::Fallocate(h, off, len) => check(
                    libc::fallocate(self.files[h], 0, *off as i64, *len as i64) as i64,
                    "fallocate",
                ),
                Op::Getdents(h) => {
                    let mut buf = vec![0u8; 8192];
                    // Until the end: the last call returns 0 (and reports ACCESS too).
                    loop {
                        let n = libc::syscall(
                            libc::SYS_getdents64,
                            self.files[h],
                            buf.as_mut_ptr(),
                            buf.len(),
                        );
                        check(n, "getdents64")?;
                        if n == 0 {
                            return Ok(());
                        }
                    }
                }
                Op::Chmod(p, m) => check(libc::chmod(self.p(p).as_ptr(), *m) as i64, "chmod"),
                Op::Chown(p) => check(
                    libc::chown(self.p(p).as_ptr(), libc::getuid(), libc::getgid()) as i64,
                    "chown",
                ),
                Op::Utimes(p, a, m) => check(self.utimes(p, *a, *m), "utimensat"),
                Op::Truncate(p, n) => check(
                    libc::truncate(self.p(p).as_ptr(), *n as i64) as i64,
                    "truncate",
                ),
                Op::SetXattr(p) => check(
                    libc::setxattr(
                        self.p(p).as_ptr(),
                        c"user.k".as_ptr(),
                        b"v".as_ptr().cast(),
                        1,
                        0,
                    ) as i64,
                    "setxattr",
                ),
                Op::RemoveXattr(p) => check(
                    libc::removexattr(self.p(p).as_ptr(), c"user.k".as_ptr()) as i64,
                    "removexattr",
                ),
                Op::Link(a, b) => check(
                    libc::link(self.p(a).as_ptr(), self.p(b).as_ptr()) as i64,
                    "link",
                ),
                Op::Symlink(t, p) => check(
                    libc::symlink(cstr(t).as_ptr(), self.p(p).as_ptr()) as i64,
                    "symlink",
                ),
                Op::Mkfifo(p) => check(
                    libc::mknod(self.p(p).as_ptr(), libc::S_IFIFO | 0o644, 0) as i64,
                    "mknod",
                ),
                Op::Rename(a, b, flags) => check(
                    libc::syscall(
                        libc::SYS_renameat2,
                        libc::AT_FDCWD,
                        self.p(a).as_ptr(),
                        libc::AT_FDCWD,
                        self.p(b).as_ptr(),
                        *flags,
                    ),
                    "renameat2",
                ),
                Op::Unlink(p) => check(libc::unlink(self.p(p).as_ptr()) as i64, "unlink"),
                Op::Rmdir(p) => check(libc::rmdir(self.p(p).as_ptr()) as i64, "rmdir"),
            }
        }
    }

    fn events(&mut self) -> Vec<Ev> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: reading into a buffer of the size passed.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return out;
            }
            let mut off = 0usize;
            while off < n as usize {
                let word = |i: usize| {
                    u32::from_ne_bytes(buf[off + 4 * i..off + 4 * i + 4].try_into().unwrap())
                };
                let (wd, mask, cookie, len) = (word(0) as i32, word(1), word(2), word(3));
                let raw = &buf[off + 16..off + 16 + len as usize];
                let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
                out.push((
                    wd,
                    mask,
                    cookie,
                    String::from_utf8_lossy(&raw[..end]).into_owned(),
                ));
                off += 16 + len as usize;
            }
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for (_, fd) in self.files.drain() {
            // SAFETY: fds we opened.
            unsafe { libc::close(fd) };
        }
        // SAFETY: the inotify fd we opened.
        unsafe { libc::close(self.fd) };
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

// ---- ours ----

struct Ours {
    vfs: Arc<Vfs>,
    group: Group,
    files: HashMap<usize, Arc<File>>,
}

impl Ours {
    fn p(rel: &str) -> Vec<u8> {
        format!("/{rel}").into_bytes()
    }
}

impl Backend for Ours {
    fn run(&mut self, op: &Op) -> Result<(), String> {
        let c = Cred::root();
        let v = &self.vfs;
        let r: Result<(), Errno> = (|| {
            match op {
                Op::Watch(p, mask) => {
                    self.group.add_watch(v, &c, &Self::p(p), *mask)?;
                }
                Op::RmWatch(wd) => self.group.remove_watch(*wd)?,
                Op::Mkdir(p) => {
                    v.mkdir(&c, None, &Self::p(p), 0o755)?;
                }
                Op::Open(h, p, flags) => {
                    let f = v.open(&c, None, &Self::p(p), *flags, 0o644)?;
                    self.files.insert(*h, f);
                }
                Op::Close(h) => drop(self.files.remove(h)),
                Op::Write(h, data, off) => {
                    v.write(&self.files[h], data, *off)?;
                }
                Op::Read(h, off) => {
                    let mut buf = [0u8; 64];
                    v.read(&self.files[h], &mut buf, *off)?;
                }
                Op::Fallocate(h, off, len) => v.fallocate(&self.files[h], 0, *off, *len)?,
                Op::Getdents(h) => {
                    let dir = self.files[h].path().clone();
                    let mut off = 0;
                    loop {
                        let ents = v.readdir(&dir, off, 64)?;
                        match ents.last() {
                            Some(e) => off = e.offset,
                            None => break,
                        }
                    }
                }
                Op::Chmod(p, m) => v.chmod(&c, &Self::p(p), *m)?,
                Op::Chown(p) => v.chown(&c, &Self::p(p), Some(0), Some(0), true)?,
                Op::Utimes(p, a, m) => v.utimens(
                    &c,
                    &Self::p(p),
                    a.then_some(TimeSet::Now),
                    m.then_some(TimeSet::Now),
                )?,
                Op::Truncate(p, n) => v.truncate(&c, &Self::p(p), *n)?,
                Op::SetXattr(p) => {
                    let at = v.resolve(&c, None, &Self::p(p), LOOKUP_FOLLOW)?;
                    v.setxattr_at(&c, &at, b"user.k", b"v", 0)?;
                }
                Op::RemoveXattr(p) => {
                    let at = v.resolve(&c, None, &Self::p(p), LOOKUP_FOLLOW)?;
                    v.removexattr_at(&c, &at, b"user.k")?;
                }
                Op::Link(a, b) => {
                    v.link(&c, &Self::p(a), &Self::p(b), false)?;
                }
                Op::Symlink(t, p) => {
                    v.symlink(&c, t.as_bytes(), None, &Self::p(p))?;
                }
                Op::Mkfifo(p) => {
                    v.mknod(&c, None, &Self::p(p), S_IFIFO | 0o644, 0)?;
                }
                Op::Rename(a, b, flags) => v.rename(&c, &Self::p(a), &Self::p(b), *flags)?,
                Op::Unlink(p) => v.unlink(&c, None, &Self::p(p))?,
                Op::Rmdir(p) => v.rmdir(&c, None, &Self::p(p))?,
            }
            Ok(())
        })();
        r.map_err(|e| e.name().to_string())
    }

    fn events(&mut self) -> Vec<Ev> {
        self.group
            .try_read_events(usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| {
                (
                    e.wd,
                    e.mask,
                    e.cookie,
                    e.name
                        .map(|n| String::from_utf8_lossy(&n).into_owned())
                        .unwrap_or_default(),
                )
            })
            .collect()
    }
}

fn script() -> Vec<Op> {
    use Op::*;
    const ALL: u32 = IN_ALL_EVENTS;
    vec![
        Mkdir("d"),
        Mkdir("e"),
        Watch("d", ALL), // wd 1
        Watch("e", ALL), // wd 2
        // create, write (merged), close
        Open(0, "d/a", O_WRONLY | O_CREAT),
        Write(0, b"hello", 0),
        Write(0, b"!", 5),
        Close(0),
        Watch("d/a", ALL), // wd 3
        // read-only open, reads (one at EOF reports nothing)
        Open(1, "d/a", O_RDONLY),
        Read(1, 0),
        Read(1, 1 << 20),
        Close(1),
        // attributes
        Chmod("d/a", 0o600),
        Chown("d/a"),
        Utimes("d/a", true, true),
        Utimes("d/a", true, false),
        Utimes("d/a", false, true),
        Truncate("d/a", 3),
        SetXattr("d/a"),
        RemoveXattr("d/a"),
        Open(2, "d/a", O_RDWR),
        Fallocate(2, 0, 8192),
        Close(2),
        Open(3, "d/a", O_WRONLY | O_TRUNC),
        Close(3),
        // links and moves
        Link("d/a", "d/b"),
        Rename("d/b", "e/c", 0),
        Unlink("e/c"),
        Mkdir("d/sub"),
        Watch("d/sub", ALL), // wd 4
        Open(4, "d/sub", O_RDONLY | O_DIRECTORY),
        Getdents(4),
        Close(4),
        Chmod("d/sub", 0o700),
        Symlink("a", "d/l"),
        Mkfifo("d/p"),
        Rename("d/l", "d/l2", 0),
        Rename("d/sub", "e/sub", 0),
        Rename("e/sub", "d/sub", 0),
        Open(5, "d/x", O_WRONLY | O_CREAT),
        Close(5),
        Watch("d/x", ALL), // wd 5
        // replace a watched target
        Rename("d/a", "d/x", 0),
        // exchange a file and a directory
        Rename("d/x", "d/sub", rename_flags::RENAME_EXCHANGE),
        // descriptor removal, one-shot, mask add/create
        RmWatch(1),
        Watch("d", IN_CREATE | IN_ONESHOT), // wd 6
        Mkfifo("d/q"),
        Mkfifo("d/q2"),
        Watch("d", IN_CREATE | IN_DELETE | IN_MASK_CREATE), // wd 7
        Watch("d", IN_ATTRIB | IN_MASK_ADD),
        // unlink while open: DELETE_SELF waits for the close
        Open(6, "d/sub", O_RDWR),
        Unlink("d/sub"),
        Write(6, b"late", 0),
        Close(6),
        // a watched directory removed, then the rest
        Rmdir("d/x"),
        Unlink("d/l2"),
        Unlink("d/p"),
        Unlink("d/q"),
        Unlink("d/q2"),
        Rmdir("e"),
        Chmod("d", 0o700),
        Rmdir("d"),
        // IN_EXCL_UNLINK: nothing more about a child once it is unlinked.
        Mkdir("g"),
        Watch("g", IN_MODIFY | IN_CLOSE_WRITE | IN_EXCL_UNLINK), // wd 8
        Open(7, "g/z", O_RDWR | O_CREAT),
        Write(7, b"1", 0),
        Unlink("g/z"),
        Write(7, b"2", 1),
        Close(7),
        // A directory replacing a watched empty directory; link count of a directory.
        Mkdir("g/m"),
        Mkdir("g/n"),
        Watch("g/n", ALL),                      // wd 9
        Watch("g/m", IN_MOVE_SELF | IN_ATTRIB), // wd 10
        Rename("g/m", "g/n", 0),
        Rmdir("g/n"),
        Rmdir("g"),
    ]
}

/// Cookies by first appearance (0 stays 0), so two streams compare by pairing.
struct CookieMap(HashMap<u32, u32>);

impl CookieMap {
    fn norm(&mut self, e: Ev) -> Ev {
        let c = if e.2 == 0 {
            0
        } else {
            let n = self.0.len() as u32 + 1;
            *self.0.entry(e.2).or_insert(n)
        };
        (e.0, e.1, c, e.3)
    }
}

fn show(e: &Ev) -> String {
    let mut s = format!("{} {}", e.0, mask_names(e.1).join(","));
    if e.2 != 0 {
        s.push_str(&format!(" cookie#{}", e.2));
    }
    if !e.3.is_empty() {
        s.push(' ');
        s.push_str(&e.3);
    }
    s
}

fn host_base() -> Result<String, String> {
    for dir in ["/dev/shm", "/tmp", "/run"] {
        let c = cstr(dir);
        // SAFETY: statfs into a zeroed struct.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
            continue;
        }
        if st.f_type as i64 != TMPFS_MAGIC {
            continue;
        }
        // One directory per call: the tests of this file run in parallel.
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = format!("{dir}/bpfvfs-fsnotify-{}-{seq}", std::process::id());
        let _ = std::fs::remove_dir_all(&base);
        if std::fs::create_dir(&base).is_ok() {
            return Ok(base);
        }
    }
    Err("no writable tmpfs directory (/dev/shm, /tmp, /run)".into())
}

#[test]
fn kernel_differential_inotify() {
    let base = match host_base() {
        Ok(b) => b,
        Err(why) => {
            eprintln!("SKIP kernel_differential_inotify: {why}");
            return;
        }
    };
    // SAFETY: plain syscall.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        let _ = std::fs::remove_dir_all(&base);
        eprintln!(
            "SKIP kernel_differential_inotify: inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    let mut host = Host {
        base,
        fd,
        files: HashMap::new(),
    };
    let mut ours = Ours {
        vfs: Vfs::new_memfs(),
        group: Group::default(),
        files: HashMap::new(),
    };
    let (mut hc, mut oc) = (CookieMap(HashMap::new()), CookieMap(HashMap::new()));
    let mut report = Vec::new();
    let mut mismatches = 0;
    let mut total = 0;
    let script = script();
    for (i, op) in script.iter().enumerate() {
        let hr = host.run(op);
        let or = ours.run(op);
        assert_eq!(
            hr.is_ok(),
            or.is_ok(),
            "step {i} {op:?}: host {hr:?}, ours {or:?}"
        );
        let he: Vec<Ev> = host.events().into_iter().map(|e| hc.norm(e)).collect();
        let oe: Vec<Ev> = ours.events().into_iter().map(|e| oc.norm(e)).collect();
        total += he.len();
        let same = he == oe;
        if !same {
            mismatches += 1;
        }
        report.push(format!(
            "{}{i:3} {op:?}\n      host: {:?}\n      ours: {:?}",
            if same { "  " } else { "!!" },
            he.iter().map(show).collect::<Vec<_>>(),
            oe.iter().map(show).collect::<Vec<_>>(),
        ));
    }
    eprintln!(
        "kernel differential: {} steps, {total} kernel events, {mismatches} mismatching steps",
        script.len()
    );
    if mismatches > 0 {
        panic!("event streams differ:\n{}", report.join("\n"));
    }
    if std::env::var_os("FSNOTIFY_DIFF_REPORT").is_some() {
        eprintln!("{}", report.join("\n"));
    }
}

/// Queue overflow against the kernel: a group as deep as the host's `max_queued_events`
/// gets as many events plus one `IN_Q_OVERFLOW` (wd -1), and nothing more until read.
#[test]
fn kernel_differential_overflow() {
    let max: usize = match std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        Some(m) if m <= 1 << 17 => m,
        other => {
            eprintln!("SKIP kernel_differential_overflow: max_queued_events {other:?}");
            return;
        }
    };
    let base = match host_base() {
        Ok(b) => b,
        Err(why) => {
            eprintln!("SKIP kernel_differential_overflow: {why}");
            return;
        }
    };
    // SAFETY: plain syscall.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        let _ = std::fs::remove_dir_all(&base);
        eprintln!("SKIP kernel_differential_overflow: inotify unavailable");
        return;
    }
    let mut host = Host {
        base,
        fd,
        files: HashMap::new(),
    };
    let mut ours = Ours {
        vfs: Vfs::new_memfs(),
        group: Group::new(GroupOptions {
            max_events: max,
            ..Default::default()
        }),
        files: HashMap::new(),
    };
    let names: Vec<&'static str> = (0..max + 20)
        .map(|i| &*Box::leak(format!("o/n{i}").into_boxed_str()))
        .collect();
    for b in [&mut host as &mut dyn Backend, &mut ours] {
        b.run(&Op::Mkdir("o")).unwrap();
        b.run(&Op::Watch("o", IN_CREATE)).unwrap();
        for n in &names {
            b.run(&Op::Mkfifo(n)).unwrap();
        }
    }
    let (he, oe) = (host.events(), ours.events());
    assert_eq!(he.len(), max + 1, "kernel");
    assert_eq!(he.last().unwrap(), &(-1, IN_Q_OVERFLOW, 0, String::new()));
    assert_eq!(he, oe);
    // After the read, the next event is queued normally.
    for b in [&mut host as &mut dyn Backend, &mut ours] {
        b.run(&Op::Mkfifo("o/after")).unwrap();
    }
    assert_eq!(host.events(), ours.events());
    eprintln!(
        "kernel differential overflow: {} events + overflow match",
        max
    );
}
