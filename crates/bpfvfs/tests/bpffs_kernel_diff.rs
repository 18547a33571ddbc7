//! Differential test against the kernel's own bpffs: the operations listed in
//! tests/data/bpffs_ops.txt run on a scratch `mount -t bpf` of the host kernel (objects made
//! and pinned with the raw bpf(2) syscall, file operations with std/libc) and on a bpffs
//! mounted inside a live bpfvfs tree (pins and gets through the control socket, file
//! operations through the FUSE mount). Every result must be identical: ok or the errno name,
//! and for stat the file type, mode bits, uid:gid and link count, for readlink the target,
//! for ls the sorted names, for reads the first line. The kernel is the judge.
//!
//! The daemon runs with `--ttl 0` so that the host's FUSE caches never answer for the daemon
//! (mounts and pins made through the socket change the tree behind the host's back).
//!
//! Skipped, with the reason printed, where the test is not root, /dev/fuse is missing, or the
//! kernel refuses a bpffs mount.

mod common;

use common::*;
use serde_json::json;
use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const OPS: &str = include_str!("data/bpffs_ops.txt");

const BPF_MAP_CREATE: i64 = 0;
const BPF_OBJ_PIN: i64 = 6;
const BPF_OBJ_GET: i64 = 7;
const BPF_PROG_LOAD: i64 = 5;
const BPF_RAW_TRACEPOINT_OPEN: i64 = 17;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_F_RDONLY: u32 = 1 << 3;
const BPF_F_WRONLY: u32 = 1 << 4;

fn errname(n: i32) -> String {
    bpfvfs_vfs::Errno(n).name().to_string()
}

fn io_err(e: &std::io::Error) -> String {
    e.raw_os_error()
        .map(errname)
        .unwrap_or_else(|| format!("{e}"))
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// A bpf_attr buffer (128 bytes is more than any command used here needs).
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(mut self, off: usize, v: u32) -> Attr {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(mut self, off: usize, v: u64) -> Attr {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
}

/// bpf(2): the returned fd (or 0), or the errno.
fn sys_bpf(cmd: i64, attr: &mut Attr) -> Result<i32, i32> {
    // SAFETY: `attr` is a valid, writable 128-byte bpf_attr for the whole call; every
    // pointer stored in it (path strings, info buffers) is owned by the caller and outlives
    // the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), attr.0.len()) };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(r as i32)
    }
}

fn close_fd(fd: i32) {
    // SAFETY: an fd this test opened and owns.
    unsafe { libc::close(fd) };
}

/// BPF_OBJ_GET of `path` with `flags`: the fd or the errno.
fn kernel_obj_get(path: &Path, flags: u32) -> Result<i32, i32> {
    let c = cpath(path);
    let mut a = Attr::new().u64(0, c.as_ptr() as u64).u32(12, flags);
    sys_bpf(BPF_OBJ_GET, &mut a)
}

fn flags_of(word: Option<&str>) -> u32 {
    match word {
        None | Some("rdwr") => 0,
        Some("rdonly") => BPF_F_RDONLY,
        Some("wronly") => BPF_F_WRONLY,
        Some("both") => BPF_F_RDONLY | BPF_F_WRONLY,
        Some(w) => panic!("unknown get flag {w}"),
    }
}

/// Where the operations run: the kernel's bpffs or bpfvfs's.
trait Side {
    /// The host path of the current scratch bpffs.
    fn root(&self) -> PathBuf;
    /// Mount a fresh bpffs with `opts`; it becomes the current one.
    fn remount(&mut self, opts: &str) -> String;
    /// Pin the side's object of `kind` at `rel`.
    fn pin(&mut self, kind: &str, rel: &str) -> String;
    /// BPF_OBJ_GET; must work in a child process that changed its uid.
    fn get(&self, rel: &str, flags: u32) -> String;
    /// The filesystem magic of `rel`.
    fn statfs(&self, rel: &str) -> String;
    /// Make the objects pins refer to (after the first mount).
    fn setup_objects(&mut self) -> Result<(), String>;
}

struct Kernel {
    base: PathBuf,
    mounts: Vec<PathBuf>,
    map_fd: i32,
    prog_fd: i32,
    link_fd: i32,
}

impl Kernel {
    fn new(base: PathBuf) -> Kernel {
        Kernel {
            base,
            mounts: Vec::new(),
            map_fd: -1,
            prog_fd: -1,
            link_fd: -1,
        }
    }
}

impl Side for Kernel {
    /// The objects: an array map made by root, maps.debug's link and its program.
    fn setup_objects(&mut self) -> Result<(), String> {
        let mut a = Attr::new()
            .u32(0, BPF_MAP_TYPE_ARRAY)
            .u32(4, 4)
            .u32(8, 8)
            .u32(12, 4);
        self.map_fd = sys_bpf(BPF_MAP_CREATE, &mut a)
            .map_err(|e| format!("BPF_MAP_CREATE: {}", errname(e)))?;
        // A socket filter `r0 = 0; exit`, and a link: the program reloaded as a raw
        // tracepoint program attached (doing nothing) to sched_process_free. maps.debug's own
        // link cannot be used: the kernel refuses BPF_OBJ_GET on it (ENOENT).
        let insns: [u8; 16] = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
        let load = |prog_type: u32| {
            let mut a = Attr::new()
                .u32(0, prog_type)
                .u32(4, 2)
                .u64(8, insns.as_ptr() as u64)
                .u64(16, c"GPL".as_ptr() as u64);
            sys_bpf(BPF_PROG_LOAD, &mut a)
                .map_err(|e| format!("BPF_PROG_LOAD type {prog_type}: {}", errname(e)))
        };
        self.prog_fd = load(BPF_PROG_TYPE_SOCKET_FILTER)?;
        let raw = load(BPF_PROG_TYPE_RAW_TRACEPOINT)?;
        let mut a = Attr::new()
            .u64(0, c"sched_process_free".as_ptr() as u64)
            .u32(8, raw as u32);
        let link = sys_bpf(BPF_RAW_TRACEPOINT_OPEN, &mut a);
        close_fd(raw);
        self.link_fd = link.map_err(|e| format!("BPF_RAW_TRACEPOINT_OPEN: {}", errname(e)))?;
        Ok(())
    }
    fn root(&self) -> PathBuf {
        self.mounts
            .last()
            .cloned()
            .unwrap_or_else(|| self.base.clone())
    }
    fn remount(&mut self, opts: &str) -> String {
        let dir = self.base.join(format!("m{}", self.mounts.len()));
        std::fs::create_dir(&dir).unwrap();
        let data = CString::new(opts).unwrap();
        // SAFETY: valid NUL-terminated strings.
        let r = unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                cpath(&dir).as_ptr(),
                c"bpf".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if r != 0 {
            let e = last_errno();
            let _ = std::fs::remove_dir(&dir);
            return errname(e);
        }
        self.mounts.push(dir);
        "ok".into()
    }
    fn pin(&mut self, kind: &str, rel: &str) -> String {
        let fd = match kind {
            "map" => self.map_fd,
            "prog" => self.prog_fd,
            _ => self.link_fd,
        };
        let c = cpath(&self.root().join(rel));
        let mut a = Attr::new().u64(0, c.as_ptr() as u64).u32(8, fd as u32);
        match sys_bpf(BPF_OBJ_PIN, &mut a) {
            Ok(_) => "ok".into(),
            Err(e) => errname(e),
        }
    }
    fn get(&self, rel: &str, flags: u32) -> String {
        match kernel_obj_get(&self.root().join(rel), flags) {
            Ok(fd) => {
                close_fd(fd);
                "ok".into()
            }
            Err(e) => errname(e),
        }
    }
    fn statfs(&self, rel: &str) -> String {
        // SAFETY: a zeroed statfs is a valid out-buffer.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid path and out-buffer.
        if unsafe { libc::statfs(cpath(&self.root().join(rel)).as_ptr(), &mut st) } != 0 {
            return errname(last_errno());
        }
        format!("ok magic {:#x}", st.f_type as u64)
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        for fd in [self.map_fd, self.prog_fd, self.link_fd] {
            if fd >= 0 {
                close_fd(fd);
            }
        }
        for m in self.mounts.iter().rev() {
            // SAFETY: valid path; unmounting drops the pins made there.
            unsafe { libc::umount2(cpath(m).as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

struct Ours {
    d: Daemon,
    ctl: Ctl,
    /// The tree path of the scratch directory (under the tree's root).
    base: String,
    mounts: Vec<String>,
    handles: Option<(u64, u64, u64)>,
}

impl Ours {
    fn tree(&self, rel: &str) -> String {
        format!("{}/{rel}", self.mounts.last().unwrap())
    }
    fn record(v: &serde_json::Value) -> String {
        match v["err"]["errno"].as_i64() {
            Some(n) => errname(n as i32),
            None => "ok".into(),
        }
    }
}

impl Side for Ours {
    fn setup_objects(&mut self) -> Result<(), String> {
        let m = self.ctl.ok(
            "map_create",
            json!({"map_type": "array", "key_size": 4, "value_size": 8, "max_entries": 4}),
        );
        // bpfvfs has no program loading over the socket: use the preloaded iterator link
        // behind maps.debug (found by id, as BPF_OBJ_GET on maps.debug is refused) and its
        // program.
        let id = self.ctl.ok("get_next_id", json!({"kind": "link"}));
        let l = self
            .ctl
            .ok("get_by_id", json!({"kind": "link", "obj_id": id["id"]}));
        let info = self.ctl.ok("obj_get_info", json!({"handle": l["handle"]}));
        let p = self.ctl.ok(
            "get_by_id",
            json!({"kind": "prog", "obj_id": info["prog_id"]}),
        );
        self.handles = Some((
            m["handle"].as_u64().unwrap(),
            p["handle"].as_u64().unwrap(),
            l["handle"].as_u64().unwrap(),
        ));
        Ok(())
    }
    fn root(&self) -> PathBuf {
        self.d
            .mnt
            .join(self.mounts.last().unwrap().trim_start_matches('/'))
    }
    fn remount(&mut self, opts: &str) -> String {
        let tree = format!("{}/m{}", self.base, self.mounts.len());
        std::fs::create_dir(self.d.mnt.join(tree.trim_start_matches('/'))).unwrap();
        let v = self.ctl.req(
            "mount",
            json!({"fs_type": "bpf", "path": tree, "options": opts}),
        );
        let r = Self::record(&v);
        if r == "ok" {
            self.mounts.push(tree);
        } else {
            let _ = std::fs::remove_dir(self.d.mnt.join(tree.trim_start_matches('/')));
        }
        r
    }
    fn pin(&mut self, kind: &str, rel: &str) -> String {
        let (m, p, l) = self.handles.unwrap();
        let h = match kind {
            "map" => m,
            "prog" => p,
            _ => l,
        };
        let path = self.tree(rel);
        Self::record(&self.ctl.req("obj_pin", json!({"handle": h, "path": path})))
    }
    fn get(&self, rel: &str, flags: u32) -> String {
        // A fresh connection: the daemon takes the caller's credentials at connect time.
        let mut c = Ctl::open(&self.d.sock);
        Self::record(&c.req(
            "obj_get",
            json!({"path": self.tree(rel), "file_flags": flags}),
        ))
    }
    fn statfs(&self, rel: &str) -> String {
        // FUSE always reports its own magic to statfs(2); ask the daemon instead.
        let mut c = Ctl::open(&self.d.sock);
        let v = c.req("statfs", json!({"path": self.tree(rel)}));
        match v["ok"]["magic"].as_u64() {
            Some(m) => format!("ok magic {m:#x}"),
            None => Self::record(&v),
        }
    }
}

fn stat_record(md: &std::fs::Metadata) -> String {
    let t = match md.mode() & libc::S_IFMT {
        libc::S_IFDIR => "d",
        libc::S_IFREG => "-",
        libc::S_IFLNK => "l",
        libc::S_IFIFO => "p",
        libc::S_IFCHR => "c",
        libc::S_IFBLK => "b",
        libc::S_IFSOCK => "s",
        _ => "?",
    };
    format!(
        "ok {t} {:04o} {}:{} n{}",
        md.mode() & 0o7777,
        md.uid(),
        md.gid(),
        md.nlink()
    )
}

fn octal(s: &str) -> u32 {
    u32::from_str_radix(s, 8).unwrap_or_else(|_| panic!("bad mode {s}"))
}

fn libc_result(r: libc::c_int) -> String {
    if r == 0 {
        "ok".into()
    } else {
        errname(last_errno())
    }
}

/// The file operations, the same code on both sides (host paths).
fn file_op(side: &dyn Side, w: &[&str]) -> String {
    let p = |i: usize| side.root().join(w[i]);
    let io = |r: std::io::Result<()>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => io_err(&e),
    };
    match w[0] {
        "get" => side.get(w[1], flags_of(w.get(2).copied())),
        "statfs" => side.statfs(w[1]),
        "stat" => match std::fs::symlink_metadata(p(1)) {
            Ok(md) => stat_record(&md),
            Err(e) => io_err(&e),
        },
        "stat_follow" => match std::fs::metadata(p(1)) {
            Ok(md) => stat_record(&md),
            Err(e) => io_err(&e),
        },
        "ls" => match std::fs::read_dir(p(1)) {
            Ok(rd) => {
                let mut names: Vec<String> = rd
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                format!("ok [{}]", names.join(" "))
            }
            Err(e) => io_err(&e),
        },
        "readlink" => match std::fs::read_link(p(1)) {
            Ok(t) => format!("ok -> {}", t.display()),
            Err(e) => io_err(&e),
        },
        "read_first_line" => match std::fs::read(p(1)) {
            Ok(b) => {
                let s = String::from_utf8_lossy(&b);
                format!("ok {:?}", s.lines().next().unwrap_or(""))
            }
            Err(e) => io_err(&e),
        },
        "open" => io(std::fs::File::open(p(1)).map(drop)),
        "create" => io(std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(p(1))
            .map(drop)),
        "mkdir" => {
            // SAFETY: valid path.
            libc_result(unsafe { libc::mkdir(cpath(&p(1)).as_ptr(), octal(w[2])) })
        }
        "mknod" => {
            let t = match w[2] {
                "fifo" => libc::S_IFIFO,
                "reg" => libc::S_IFREG,
                x => panic!("mknod type {x}"),
            };
            // SAFETY: valid path.
            libc_result(unsafe { libc::mknod(cpath(&p(1)).as_ptr(), t | 0o644, 0) })
        }
        "rmdir" => io(std::fs::remove_dir(p(1))),
        "unlink" => io(std::fs::remove_file(p(1))),
        "symlink" => io(std::os::unix::fs::symlink(w[1], p(2))),
        "link" => io(std::fs::hard_link(p(1), p(2))),
        "rename" => io(std::fs::rename(p(1), p(2))),
        "rename_noreplace" | "rename_exchange" => {
            let flags = if w[0] == "rename_noreplace" {
                libc::RENAME_NOREPLACE
            } else {
                libc::RENAME_EXCHANGE
            };
            let (a, b) = (cpath(&p(1)), cpath(&p(2)));
            // SAFETY: valid paths.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_renameat2,
                    libc::AT_FDCWD,
                    a.as_ptr(),
                    libc::AT_FDCWD,
                    b.as_ptr(),
                    flags,
                )
            };
            libc_result(r as i32)
        }
        "chmod" => io(std::fs::set_permissions(
            p(1),
            std::fs::Permissions::from_mode(octal(w[2])),
        )),
        "chown" => io(std::os::unix::fs::chown(
            p(1),
            Some(w[2].parse().unwrap()),
            Some(w[3].parse().unwrap()),
        )),
        x => panic!("unknown op {x}"),
    }
}

/// Run `f` in a forked child with uid and gid `uid` and no supplementary groups.
fn run_as(uid: u32, f: impl FnOnce() -> String) -> String {
    let mut fds = [0i32; 2];
    // SAFETY: valid out-array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child only makes syscalls, runs `f` and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY (whole block): plain syscalls on our own credentials and fds.
        unsafe {
            libc::close(fds[0]);
            let out = if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(uid, uid, uid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                format!("setresuid failed: {}", errname(last_errno()))
            } else {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                    .unwrap_or_else(|_| "child panicked".into())
            };
            libc::write(fds[1], out.as_ptr().cast(), out.len());
            libc::_exit(0);
        }
    }
    close_fd(fds[1]);
    let mut out = String::new();
    // SAFETY: the read end is ours; the File takes ownership and closes it.
    let mut r = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) };
    r.read_to_string(&mut out).unwrap();
    let mut status = 0;
    // SAFETY: our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    out
}

fn ops() -> Vec<Vec<&'static str>> {
    OPS.lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect()
}

/// Run every operation on `side`: the records, or why the first mount or the objects failed.
fn interpret(side: &mut dyn Side) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut first = true;
    for w in ops() {
        let w = if w[0] == "except" { w[1..].to_vec() } else { w };
        let r = match w[0] {
            "remount" => {
                let r = side.remount(w.get(1).copied().unwrap_or(""));
                if first {
                    first = false;
                    if r != "ok" {
                        return Err(format!("mount -t bpf: {r}"));
                    }
                    side.setup_objects()?;
                }
                r
            }
            "pin_map" => side.pin("map", w[1]),
            "pin_prog" => side.pin("prog", w[1]),
            "pin_link" => side.pin("link", w[1]),
            "as_user" => {
                let uid: u32 = w[1].parse().unwrap();
                let rest = &w[2..];
                let s: &dyn Side = side;
                run_as(uid, || file_op(s, rest))
            }
            _ => file_op(side, &w),
        };
        out.push(r);
    }
    Ok(out)
}

#[test]
fn bpffs_ops_match_the_kernel() {
    if !is_root() {
        skip("the bpffs differential test needs root (mount -t bpf, bpf(2), setresuid)");
        return;
    }
    let list = ops();
    assert!(list.len() >= 30, "only {} operations", list.len());
    assert_eq!(list[0], ["remount"], "the list starts with a mount");

    // The kernel side first: skip if it cannot mount a bpffs or make the objects.
    let kbase = PathBuf::from(format!("/tmp/bpfvfs-kdiff-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&kbase);
    std::fs::create_dir(&kbase).unwrap();
    std::fs::set_permissions(&kbase, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut kernel = Kernel::new(kbase);
    let k = match interpret(&mut kernel) {
        Ok(k) => k,
        Err(e) => {
            skip(&format!("the kernel refused: {e}"));
            return;
        }
    };
    drop(kernel);

    let Some(d) = Daemon::start("bpffs-kdiff", &["--ttl", "0"]) else {
        return;
    };
    // Unprivileged children must reach the socket and the mount.
    std::fs::set_permissions(&d.sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(d.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let scratch = d.mnt.join("kdiff");
    std::fs::create_dir(&scratch).unwrap();
    std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ctl = Ctl::open(&d.sock);
    let mut ours = Ours {
        d,
        ctl,
        base: "/kdiff".into(),
        mounts: Vec::new(),
        handles: None,
    };
    let o = interpret(&mut ours).expect("bpfvfs: first mount and objects");

    let mut table = String::new();
    let mut differ = 0;
    let mut excepted = 0;
    for (i, w) in list.iter().enumerate() {
        let same = k[i] == o[i];
        let exception = w[0] == "except";
        if !same && !exception {
            differ += 1;
        }
        if exception {
            excepted += 1;
        }
        table.push_str(&format!(
            "{} {:<36} | {:<36} | {}\n",
            match (same, exception) {
                (_, true) => "x",
                (true, false) => " ",
                (false, false) => "!",
            },
            w.join(" "),
            k[i],
            o[i]
        ));
    }
    assert!(
        differ == 0,
        "{differ} of {} operations differ from the kernel (! marks them; x: documented exceptions):\n  {:<36} | {:<36} | bpfvfs\n{table}\ndaemon log:\n{}",
        list.len(),
        "op",
        "kernel",
        ours.d.log_text()
    );
    eprintln!(
        "{} of {} bpffs operations matched the kernel; {excepted} documented exceptions:\n{}",
        list.len() - excepted,
        list.len(),
        table
            .lines()
            .filter(|l| l.starts_with('x'))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// maps.debug reports size 0 but has contents: FUSE must read it without the page cache.
#[test]
fn cat_maps_debug_prints_the_header() {
    let Some(d) = Daemon::start("maps-debug", &[]) else {
        return;
    };
    let out = d.sh_ok("cat sys/fs/bpf/maps.debug");
    assert!(
        out.starts_with("  id name             max_entries  cur_entries\n"),
        "{out:?}"
    );
    let out = d.sh_ok("cat sys/fs/bpf/progs.debug");
    assert!(
        out.starts_with("  id name             attached\n"),
        "{out:?}"
    );
}
