//! Security and tracing hooks: where each one is called, with which arguments, what a denial
//! leaves behind (nothing: no entry, no watch event, no open file), that nothing is called
//! when the hooks are off, trace entry/exit pairs and their return values, eviction, and
//! operations racing with hooks being switched on and off.
//!
//! The recorder renders each call as one line: dentries as paths ("/d/f"), inodes as
//! "#INO", modes in octal, trace entries as "NAME> ARGS" and exits as "NAME< ARGS = RET".

use bpfvfs_vfs::fsnotify::*;
use bpfvfs_vfs::oflags::*;
use bpfvfs_vfs::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

macro_rules! ok {
    ($e:expr) => {{
        match $e {
            Ok(v) => v,
            Err(got) => panic!("`{}` failed with {:?}", stringify!($e), got),
        }
    }};
}

fn r() -> Cred {
    Cred::root()
}

/// Path of a dentry from its filesystem's root, by its current name and parent.
fn dpath(d: &Dentry) -> String {
    let mut parts = Vec::new();
    let mut cur: Option<Arc<Dentry>> = None;
    loop {
        let this: &Dentry = cur.as_deref().unwrap_or(d);
        let Some(p) = this.parent() else { break };
        parts.push(String::from_utf8_lossy(&this.name()).into_owned());
        cur = Some(p);
    }
    parts.reverse();
    format!("/{}", parts.join("/"))
}

fn fdesc(f: &File) -> String {
    format!(
        "{}{}",
        dpath(f.path().dentry.arc()),
        if f.is_open() { "" } else { " (unopened)" }
    )
}

fn attr_desc(a: &SetAttr) -> String {
    let t = |t: &Option<TimeSet>| match t {
        None => None,
        Some(TimeSet::Now) => Some("now".to_string()),
        Some(TimeSet::At(ts)) => Some(format!("{}", ts.sec)),
    };
    let mut out = Vec::new();
    if let Some(m) = a.mode {
        out.push(format!("mode={m:o}"));
    }
    if let Some(u) = a.uid {
        out.push(format!("uid={u}"));
    }
    if let Some(g) = a.gid {
        out.push(format!("gid={g}"));
    }
    if let Some(s) = a.size {
        out.push(format!("size={s}"));
    }
    if let Some(s) = t(&a.atime) {
        out.push(format!("atime={s}"));
    }
    if let Some(s) = t(&a.mtime) {
        out.push(format!("mtime={s}"));
    }
    if out.is_empty() {
        "-".into()
    } else {
        out.join(" ")
    }
}

/// Records every call; denies the hooks it is told to.
#[derive(Default)]
struct Rec {
    log: Mutex<Vec<(ThreadId, String)>>,
    deny: Mutex<HashMap<&'static str, Errno>>,
    /// Record only calls from this thread (None: all).
    only: Mutex<Option<ThreadId>>,
}

impl Rec {
    fn push(&self, line: String) {
        let me = std::thread::current().id();
        if let Some(t) = *self.only.lock().unwrap() {
            if t != me {
                return;
            }
        }
        self.log.lock().unwrap().push((me, line));
    }
    fn lsm(&self, hook: &'static str, args: String) -> Result<()> {
        self.push(format!("{hook} {args}"));
        match self.deny.lock().unwrap().get(hook) {
            Some(e) => Err(*e),
            None => Ok(()),
        }
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
            .into_iter()
            .map(|(_, s)| s)
            .collect()
    }
    fn take_all(&self) -> Vec<(ThreadId, String)> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
    fn deny(&self, hook: &'static str, e: Errno) {
        self.deny.lock().unwrap().insert(hook, e);
    }
    fn allow_all(&self) {
        self.deny.lock().unwrap().clear();
    }
}

fn trace_args(p: &TracePoint<'_>) -> String {
    match p {
        TracePoint::VfsOpen { at, file } => {
            assert!(Arc::ptr_eq(at.dentry.arc(), file.path().dentry.arc()));
            fdesc(file)
        }
        TracePoint::VfsRead { file, count, pos } | TracePoint::VfsWrite { file, count, pos } => {
            format!("{} {count} {pos}", fdesc(file))
        }
        TracePoint::VfsUnlink { parent, victim } | TracePoint::VfsRmdir { parent, victim } => {
            format!("{} {}", dpath(parent), dpath(victim))
        }
        TracePoint::VfsMkdir {
            parent,
            name,
            mode,
            created,
        } => {
            let mut s = format!(
                "{} {} {mode:o}",
                dpath(parent),
                String::from_utf8_lossy(name)
            );
            if let Some(c) = created {
                s.push_str(&format!(" created={}", dpath(c)));
            }
            s
        }
        TracePoint::VfsRename {
            old_parent,
            old,
            new_parent,
            new_name,
        } => format!(
            "{} {} {} {}",
            dpath(old_parent),
            dpath(old),
            dpath(new_parent),
            String::from_utf8_lossy(new_name)
        ),
        TracePoint::Evict { inode } => format!("#{}", inode.ino()),
    }
}

impl VfsHooks for Rec {
    fn inode_create(&self, parent: &Arc<Dentry>, name: &[u8], mode: u32) -> Result<()> {
        let n = String::from_utf8_lossy(name);
        self.lsm("inode_create", format!("{} {n} {mode:o}", dpath(parent)))
    }
    fn inode_mkdir(&self, parent: &Arc<Dentry>, name: &[u8], mode: u32) -> Result<()> {
        let n = String::from_utf8_lossy(name);
        self.lsm("inode_mkdir", format!("{} {n} {mode:o}", dpath(parent)))
    }
    fn inode_symlink(&self, parent: &Arc<Dentry>, name: &[u8], target: &[u8]) -> Result<()> {
        let (n, t) = (
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(target),
        );
        self.lsm("inode_symlink", format!("{} {n} {t}", dpath(parent)))
    }
    fn inode_link(
        &self,
        old: &Arc<Dentry>,
        new_parent: &Arc<Dentry>,
        new_name: &[u8],
    ) -> Result<()> {
        let n = String::from_utf8_lossy(new_name);
        self.lsm(
            "inode_link",
            format!("{} {} {n}", dpath(old), dpath(new_parent)),
        )
    }
    fn inode_unlink(&self, parent: &Arc<Dentry>, victim: &Arc<Dentry>) -> Result<()> {
        self.lsm(
            "inode_unlink",
            format!("{} {}", dpath(parent), dpath(victim)),
        )
    }
    fn inode_rmdir(&self, parent: &Arc<Dentry>, victim: &Arc<Dentry>) -> Result<()> {
        self.lsm(
            "inode_rmdir",
            format!("{} {}", dpath(parent), dpath(victim)),
        )
    }
    fn inode_rename(
        &self,
        old_parent: &Arc<Dentry>,
        old: &Arc<Dentry>,
        new_parent: &Arc<Dentry>,
        new_name: &[u8],
        new_existing: Option<&Arc<Dentry>>,
    ) -> Result<()> {
        let n = String::from_utf8_lossy(new_name);
        let e = new_existing.map(|d| dpath(d)).unwrap_or_else(|| "-".into());
        self.lsm(
            "inode_rename",
            format!(
                "{} {} {} {n} {e}",
                dpath(old_parent),
                dpath(old),
                dpath(new_parent)
            ),
        )
    }
    fn inode_setattr(&self, dentry: &Arc<Dentry>, attr: &SetAttr) -> Result<()> {
        self.lsm(
            "inode_setattr",
            format!("{} {}", dpath(dentry), attr_desc(attr)),
        )
    }
    fn inode_getattr(&self, at: PathBorrow<'_>) -> Result<()> {
        self.lsm("inode_getattr", dpath(at.dentry))
    }
    fn inode_permission(&self, inode: &Arc<Inode>, mask: u32) -> Result<()> {
        self.lsm("inode_permission", format!("#{} {mask}", inode.ino()))
    }
    fn file_open(&self, file: &File) -> Result<()> {
        self.lsm("file_open", fdesc(file))
    }
    fn file_permission(&self, file: &File, mask: u32) -> Result<()> {
        self.lsm("file_permission", format!("{} {mask}", fdesc(file)))
    }
    fn file_truncate(&self, file: &File) -> Result<()> {
        self.lsm("file_truncate", fdesc(file))
    }
    fn inode_free_security(&self, inode: &Arc<Inode>) {
        self.push(format!("inode_free_security #{}", inode.ino()));
    }
    fn trace(&self, point: TracePoint<'_>, exit: Option<i64>) {
        let args = trace_args(&point);
        match exit {
            None => self.push(format!("{}> {args}", point.name())),
            Some(ret) => self.push(format!("{}< {args} = {ret}", point.name())),
        }
    }
}

/// /d (0755) holding /d/f ("hello", 0644), made before the hooks are on; the recorder
/// installed and enabled, listening to this thread only.
fn setup() -> (Arc<Vfs>, Arc<Rec>) {
    let vfs = Vfs::new_memfs();
    ok!(vfs.mkdir(&r(), None, b"/d", 0o755));
    ok!(vfs.write_file(&r(), b"/d/f", b"hello"));
    let rec = Arc::new(Rec::default());
    *rec.only.lock().unwrap() = Some(std::thread::current().id());
    ok!(vfs.set_hooks(rec.clone()));
    vfs.set_hooks_enabled(true);
    (vfs, rec)
}

fn ino(vfs: &Vfs, path: &str) -> u64 {
    vfs.set_hooks_enabled(false);
    let i = ok!(vfs.stat(&r(), None, path.as_bytes(), false)).ino;
    vfs.set_hooks_enabled(true);
    i
}

fn exists(vfs: &Vfs, path: &str) -> bool {
    vfs.set_hooks_enabled(false);
    let e = vfs.stat(&r(), None, path.as_bytes(), false).is_ok();
    vfs.set_hooks_enabled(true);
    e
}

/// A watch on /d for every event.
fn watch(vfs: &Vfs) -> Group {
    let g = Group::default();
    ok!(g.add_watch(vfs, &r(), b"/d", IN_ALL_EVENTS));
    g
}

fn events(g: &Group) -> Vec<String> {
    ok!(g.try_read_events(usize::MAX))
        .iter()
        .map(|e| {
            let mut s = e.mask_names().join(",");
            if let Some(n) = &e.name {
                s.push(' ');
                s.push_str(&String::from_utf8_lossy(n));
            }
            s
        })
        .collect()
}

fn lines(v: &[String]) -> Vec<&str> {
    v.iter().map(|s| s.as_str()).collect()
}

const DENY: Errno = Errno::ENXIO; // an errno nothing else here produces

// ---- off means off ----

#[test]
fn uninstalled_and_disabled_hooks_are_not_called() {
    let vfs = Vfs::new_memfs();
    assert!(vfs.hooks().is_none());
    let rec = Arc::new(Rec::default());
    let ops = |vfs: &Vfs| {
        ok!(vfs.mkdir(&r(), None, b"/x", 0o755));
        ok!(vfs.write_file(&r(), b"/x/f", b"abc"));
        assert_eq!(ok!(vfs.read_file(&r(), b"/x/f")), b"abc");
        ok!(vfs.stat(&r(), None, b"/x/f", true));
        ok!(vfs.chmod(&r(), b"/x/f", 0o600));
        ok!(vfs.rename(&r(), b"/x/f", b"/x/g", 0));
        ok!(vfs.unlink(&r(), None, b"/x/g"));
        ok!(vfs.rmdir(&r(), None, b"/x"));
    };
    ops(&vfs);
    ok!(vfs.set_hooks(rec.clone()));
    assert_eq!(vfs.set_hooks(rec.clone()).unwrap_err(), Errno::EBUSY);
    // Installed but off.
    assert!(vfs.hooks().is_none());
    ops(&vfs);
    assert_eq!(rec.take(), Vec::<String>::new());
    // On, then off again.
    vfs.set_hooks_enabled(true);
    assert!(vfs.hooks().is_some());
    ops(&vfs);
    assert!(rec.take().len() > 20);
    vfs.set_hooks_enabled(false);
    ops(&vfs);
    assert_eq!(rec.take(), Vec::<String>::new());
}

// ---- where each hook is called, and with what ----

#[test]
fn open_create_calls_permission_create_and_file_open() {
    let (vfs, rec) = setup();
    let d = ino(&vfs, "/d");
    let cred = Cred {
        umask: 0o022,
        ..Cred::root()
    };
    let f = ok!(vfs.open(&cred, None, b"/d/new", O_CREAT | O_WRONLY, 0o666));
    assert!(f.is_open());
    assert_eq!(
        lines(&rec.take()),
        [
            format!("inode_permission #{d} 3").as_str(),
            "inode_create /d new 100644",
            "vfs_open> /d/new (unopened)",
            "file_open /d/new (unopened)",
            "vfs_open< /d/new = 0",
        ]
    );
    drop(f);
    assert_eq!(rec.take(), Vec::<String>::new(), "close calls nothing");
}

#[test]
fn open_existing_checks_the_final_object_only() {
    let (vfs, rec) = setup();
    let fino = ino(&vfs, "/d/f");
    // The walk through / and /d calls no hook; the final object is checked once.
    let f = ok!(vfs.open(&Cred::user(1, 1), None, b"/d/f", O_RDONLY, 0));
    assert_eq!(
        lines(&rec.take()),
        [
            format!("inode_permission #{fino} 4").as_str(),
            "vfs_open> /d/f (unopened)",
            "file_open /d/f (unopened)",
            "vfs_open< /d/f = 0",
        ]
    );
    drop(f);
    // O_RDWR | O_TRUNC: write+read permission, the open, then handle_truncate.
    let f = ok!(vfs.open(&r(), None, b"/d/f", O_RDWR | O_TRUNC, 0));
    assert_eq!(
        lines(&rec.take()),
        [
            format!("inode_permission #{fino} 6").as_str(),
            "vfs_open> /d/f (unopened)",
            "file_open /d/f (unopened)",
            "vfs_open< /d/f = 0",
            "file_truncate /d/f",
            "inode_setattr /d/f size=0 mtime=now",
        ]
    );
    assert_eq!(vfs.getattr(f.path()).size, 0);
    // O_PATH: no permission check, and no file_open (do_dentry_open stops before it).
    drop(ok!(vfs.open(&r(), None, b"/d/f", O_PATH, 0)));
    assert_eq!(
        lines(&rec.take()),
        ["vfs_open> /d/f (unopened)", "vfs_open< /d/f = 0"]
    );
    // open_at (the FUSE edge's form) is the same operation.
    let at = f.path().clone();
    drop(f);
    drop(ok!(vfs.open_at(&r(), &at, O_RDONLY)));
    assert_eq!(
        lines(&rec.take()),
        [
            format!("inode_permission #{fino} 4").as_str(),
            "vfs_open> /d/f (unopened)",
            "file_open /d/f (unopened)",
            "vfs_open< /d/f = 0",
        ]
    );
}

#[test]
fn mkdir_symlink_mknod_link() {
    let (vfs, rec) = setup();
    let d = ino(&vfs, "/d");
    let perm = format!("inode_permission #{d} 3");
    let cred = Cred {
        umask: 0o022,
        ..Cred::root()
    };
    ok!(vfs.mkdir(&cred, None, b"/d/sub", 0o1777));
    assert_eq!(
        lines(&rec.take()),
        [
            "vfs_mkdir> /d sub 1755",
            perm.as_str(),
            "inode_mkdir /d sub 1755",
            "vfs_mkdir< /d sub 1755 created=/d/sub = 0",
        ]
    );
    ok!(vfs.symlink(&r(), b"f", None, b"/d/l"));
    assert_eq!(lines(&rec.take()), [perm.as_str(), "inode_symlink /d l f"]);
    ok!(vfs.mknod(&r(), None, b"/d/p", S_IFIFO | 0o640, 0));
    ok!(vfs.mknod(&r(), None, b"/d/r", 0o600, 0));
    assert_eq!(
        lines(&rec.take()),
        [
            perm.as_str(),
            "inode_create /d p 10640",
            perm.as_str(),
            "inode_create /d r 100600",
        ]
    );
    ok!(vfs.link(&r(), b"/d/f", b"/d/sub/g", false));
    let sub = ino(&vfs, "/d/sub");
    assert_eq!(
        lines(&rec.take()),
        [
            format!("inode_permission #{sub} 3").as_str(),
            "inode_link /d/f /d/sub g",
        ]
    );
    // The FUSE edge's create_at is the same code.
    let dir = ok!(vfs.resolve(&r(), None, b"/d", 0));
    ok!(vfs.create_at(&r(), &dir, b"n", NewKind::File, 0o600));
    assert_eq!(
        lines(&rec.take()),
        [perm.as_str(), "inode_create /d n 100600"]
    );
}

#[test]
fn unlink_and_rmdir_then_eviction() {
    let (vfs, rec) = setup();
    let d = ino(&vfs, "/d");
    let fino = ino(&vfs, "/d/f");
    let perm = format!("inode_permission #{d} 3");
    ok!(vfs.unlink(&r(), None, b"/d/f"));
    assert_eq!(
        lines(&rec.take()),
        [
            "vfs_unlink> /d /d/f",
            perm.as_str(),
            "inode_unlink /d /d/f",
            "vfs_unlink< /d /d/f = 0",
            // The last reference went after the operation (no lock held).
            format!("evict> #{fino}").as_str(),
            format!("inode_free_security #{fino}").as_str(),
            format!("evict< #{fino} = 0").as_str(),
        ]
    );
    vfs.set_hooks_enabled(false);
    ok!(vfs.mkdir(&r(), None, b"/d/s", 0o755));
    vfs.set_hooks_enabled(true);
    let s = ino(&vfs, "/d/s");
    ok!(vfs.rmdir(&r(), None, b"/d/s"));
    assert_eq!(
        lines(&rec.take()),
        [
            "vfs_rmdir> /d /d/s",
            perm.as_str(),
            "inode_rmdir /d /d/s",
            "vfs_rmdir< /d /d/s = 0",
            format!("evict> #{s}").as_str(),
            format!("inode_free_security #{s}").as_str(),
            format!("evict< #{s} = 0").as_str(),
        ]
    );
}

#[test]
fn rename_plain_replacing_and_exchange() {
    let (vfs, rec) = setup();
    let d = ino(&vfs, "/d");
    let perm = format!("inode_permission #{d} 3");
    vfs.set_hooks_enabled(false);
    ok!(vfs.write_file(&r(), b"/d/t", b"t"));
    ok!(vfs.mkdir(&r(), None, b"/e", 0o755));
    vfs.set_hooks_enabled(true);
    let tino = ino(&vfs, "/d/t");
    let e = ino(&vfs, "/e");

    ok!(vfs.rename(&r(), b"/d/f", b"/d/g", 0));
    assert_eq!(
        lines(&rec.take()),
        [
            "vfs_rename> /d /d/f /d g",
            perm.as_str(),
            perm.as_str(),
            "inode_rename /d /d/f /d g -",
            // At exit the moved dentry has its new name (as in Linux, after d_move).
            "vfs_rename< /d /d/g /d g = 0",
        ]
    );
    // Replacing /d/t: the replaced entry is passed; its inode is evicted afterwards.
    ok!(vfs.rename(&r(), b"/d/g", b"/d/t", 0));
    assert_eq!(
        lines(&rec.take()),
        [
            "vfs_rename> /d /d/g /d t",
            perm.as_str(),
            perm.as_str(),
            "inode_rename /d /d/g /d t /d/t",
            "vfs_rename< /d /d/t /d t = 0",
            format!("evict> #{tino}").as_str(),
            format!("inode_free_security #{tino}").as_str(),
            format!("evict< #{tino} = 0").as_str(),
        ]
    );
    // Exchange across directories: the LSM is asked for both moves, the target's first.
    vfs.set_hooks_enabled(false);
    ok!(vfs.write_file(&r(), b"/e/x", b"x"));
    ok!(vfs.mkdir(&r(), None, b"/d/m", 0o755));
    vfs.set_hooks_enabled(true);
    // A directory changing parent: write permission on it (granted to root, still asked).
    let m = ino(&vfs, "/d/m");
    ok!(vfs.rename(&r(), b"/d/m", b"/e/m", 0));
    assert_eq!(
        lines(&rec.take()),
        [
            "vfs_rename> /d /d/m /e m",
            perm.as_str(),
            format!("inode_permission #{e} 3").as_str(),
            format!("inode_permission #{m} 2").as_str(),
            "inode_rename /d /d/m /e m -",
            "vfs_rename< /d /e/m /e m = 0",
        ]
    );
    ok!(vfs.rename(&r(), b"/d/t", b"/e/x", rename_flags::RENAME_EXCHANGE));
    assert_eq!(
        lines(&rec.take()),
        [
            "vfs_rename> /d /d/t /e x",
            perm.as_str(),
            format!("inode_permission #{e} 3").as_str(),
            "inode_rename /e /e/x /d t /d/t",
            "inode_rename /d /d/t /e x /e/x",
            "vfs_rename< /d /e/x /e x = 0",
        ]
    );
    assert_eq!(ok!(vfs.read_file(&r(), b"/d/t")), b"x");
    rec.take();
    // Renaming a name onto another name of the same file does nothing, inside vfs_rename.
    ok!(vfs.link(&r(), b"/d/t", b"/d/t2", false));
    rec.take();
    ok!(vfs.rename(&r(), b"/d/t", b"/d/t2", 0));
    assert_eq!(
        lines(&rec.take()),
        ["vfs_rename> /d /d/t /d t2", "vfs_rename< /d /d/t /d t2 = 0"]
    );
}

#[test]
fn setattr_through_every_door() {
    let (vfs, rec) = setup();
    let fino = ino(&vfs, "/d/f");
    ok!(vfs.chmod(&r(), b"/d/f", 0o640));
    ok!(vfs.chown(&r(), b"/d/f", Some(7), None, true));
    ok!(vfs.chown(&r(), b"/d/f", None, None, true));
    ok!(vfs.truncate(&r(), b"/d/f", 2));
    ok!(vfs.utimens(&r(), b"/d/f", Some(TimeSet::Now), Some(TimeSet::Now)));
    assert_eq!(
        lines(&rec.take()),
        [
            "inode_setattr /d/f mode=640",
            "inode_setattr /d/f uid=7",
            "inode_setattr /d/f -",
            format!("inode_permission #{fino} 2").as_str(),
            "inode_setattr /d/f size=2 mtime=now",
            "inode_setattr /d/f atime=now mtime=now",
        ]
    );
    // utimens(NULL) by a non-owner who may write: inode_permission(MAY_WRITE) too.
    ok!(vfs.chmod(&r(), b"/d/f", 0o666));
    rec.take();
    ok!(vfs.utimens(
        &Cred::user(1, 1),
        b"/d/f",
        Some(TimeSet::Now),
        Some(TimeSet::Now)
    ));
    assert_eq!(
        lines(&rec.take()),
        [
            format!("inode_permission #{fino} 2").as_str(),
            "inode_setattr /d/f atime=now mtime=now",
        ]
    );
    // Through an open file: ftruncate is file_truncate, then the setattr (no permission
    // check: the file is open for writing).
    let f = ok!(vfs.open(&r(), None, b"/d/f", O_WRONLY, 0));
    rec.take();
    let size1 = SetAttr {
        size: Some(1),
        ..Default::default()
    };
    ok!(vfs.setattr_file(&r(), &f, &size1));
    assert_eq!(
        lines(&rec.take()),
        ["file_truncate /d/f", "inode_setattr /d/f size=1 mtime=now"]
    );
    // A mode change through the file is no truncation.
    let mode = SetAttr {
        mode: Some(0o600),
        ..Default::default()
    };
    ok!(vfs.setattr_file(&r(), &f, &mode));
    assert_eq!(lines(&rec.take()), ["inode_setattr /d/f mode=600"]);
}

#[test]
fn stat_getattr_access() {
    let (vfs, rec) = setup();
    let fino = ino(&vfs, "/d/f");
    let st = ok!(vfs.stat(&r(), None, b"/d/f", true));
    assert_eq!(st.ino, fino);
    let at = ok!(vfs.resolve(&r(), None, b"/d/f", 0));
    assert_eq!(ok!(vfs.stat_at(&at)).ino, fino);
    // getattr is the unchecked accessor (no stat): no hook.
    vfs.getattr(&at);
    assert_eq!(
        lines(&rec.take()),
        ["inode_getattr /d/f", "inode_getattr /d/f"]
    );
    ok!(vfs.access_at(&Cred::user(1, 1), &at, may::READ));
    // F_OK checks nothing; a DAC refusal stops before the hook.
    ok!(vfs.access_at(&Cred::user(1, 1), &at, 0));
    assert_eq!(
        vfs.access_at(&Cred::user(1, 1), &at, may::WRITE),
        Err(Errno::EACCES)
    );
    assert_eq!(
        lines(&rec.take()),
        [format!("inode_permission #{fino} 4").as_str()]
    );
    // Symlinks: stat follows, lstat does not; the hook sees the object stat'ed.
    vfs.set_hooks_enabled(false);
    ok!(vfs.symlink(&r(), b"f", None, b"/d/l"));
    vfs.set_hooks_enabled(true);
    ok!(vfs.stat(&r(), None, b"/d/l", true));
    ok!(vfs.stat(&r(), None, b"/d/l", false));
    assert_eq!(
        lines(&rec.take()),
        ["inode_getattr /d/f", "inode_getattr /d/l"]
    );
}

/// `stat` hands `inode_getattr` the location from the lockless walk, validated before the
/// hook runs: with renames racing (each one invalidates walks in flight, forcing some back
/// to the counted walk) the hook still runs exactly once per stat, on the object stat'ed.
#[test]
fn stat_runs_getattr_once_per_call_while_renames_race() {
    let (vfs, rec) = setup();
    ok!(vfs.mkdir(&r(), None, b"/a", 0o755));
    ok!(vfs.write_file(&r(), b"/a/x", b"x"));
    rec.take();
    let stop = Arc::new(AtomicBool::new(false));
    let renamer = {
        let (vfs, stop) = (vfs.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                ok!(vfs.rename(&r(), b"/a/x", b"/a/y", 0));
                ok!(vfs.rename(&r(), b"/a/y", b"/a/x", 0));
                n += 2;
            }
            n
        })
    };
    const STATS: usize = 20_000;
    let fino = ino(&vfs, "/d/f");
    for _ in 0..STATS {
        assert_eq!(ok!(vfs.stat(&r(), None, b"/d/f", true)).ino, fino);
    }
    stop.store(true, Ordering::Relaxed);
    let renames = renamer.join().unwrap();
    let calls = rec.take();
    assert_eq!(calls.len(), STATS, "one inode_getattr per stat");
    assert!(
        calls.iter().all(|c| c == "inode_getattr /d/f"),
        "{:?}",
        &calls[..3]
    );
    assert!(renames > 0);
    // Without renames every stat's walk is lockless, hooks on or not.
    let before = vfs.stats();
    for _ in 0..100 {
        ok!(vfs.stat(&r(), None, b"/d/f", true));
    }
    assert_eq!(vfs.stats().walks_lockless - before.walks_lockless, 100);
    assert_eq!(rec.take().len(), 100);
}

#[test]
fn read_write_fallocate_file_permission_and_traces() {
    let (vfs, rec) = setup();
    let f = ok!(vfs.open(&r(), None, b"/d/f", O_RDWR, 0));
    rec.take();
    let mut buf = [0u8; 10];
    assert_eq!(ok!(vfs.read(&f, &mut buf, 1)), 4);
    assert_eq!(ok!(vfs.write(&f, b"xy", 5)), 2);
    ok!(vfs.fallocate(&f, 0, 0, 100));
    assert_eq!(
        lines(&rec.take()),
        [
            "vfs_read> /d/f 10 1",
            "file_permission /d/f 4",
            "vfs_read< /d/f 10 1 = 4",
            "vfs_write> /d/f 2 5",
            "file_permission /d/f 2",
            "vfs_write< /d/f 2 5 = 2",
            "file_permission /d/f 2",
        ]
    );
    // Failures are traced with -errno; checks before rw_verify_area come before the hook.
    let ro = ok!(vfs.open(&r(), None, b"/d/f", O_RDONLY, 0));
    let dir = ok!(vfs.open(&r(), None, b"/d", O_RDONLY | O_DIRECTORY, 0));
    rec.take();
    assert_eq!(vfs.write(&ro, b"z", 0), Err(Errno::EBADF));
    assert_eq!(vfs.read(&ro, &mut buf, u64::MAX), Err(Errno::EINVAL));
    assert_eq!(vfs.read(&dir, &mut buf, 0), Err(Errno::EISDIR));
    assert_eq!(
        lines(&rec.take()),
        [
            "vfs_write> /d/f 1 0",
            "vfs_write< /d/f 1 0 = -9",
            format!("vfs_read> /d/f 10 {}", u64::MAX).as_str(),
            format!("vfs_read< /d/f 10 {} = -22", u64::MAX).as_str(),
            "vfs_read> /d 10 0",
            "file_permission /d 4",
            "vfs_read< /d 10 0 = -21",
        ]
    );
}

#[test]
fn trace_pairs_with_failures() {
    let (vfs, rec) = setup();
    let d = ino(&vfs, "/d");
    let perm = format!("inode_permission #{d} 3");
    vfs.set_hooks_enabled(false);
    ok!(vfs.mkdir(&r(), None, b"/d/full", 0o755));
    ok!(vfs.mkdir(&r(), None, b"/d/full/x", 0o755));
    ok!(vfs.mkdir(&r(), None, b"/d/empty", 0o755));
    vfs.set_hooks_enabled(true);
    // rmdir of a non-empty directory: vfs_rmdir fails with ENOTEMPTY after the LSM hook.
    assert_eq!(vfs.rmdir(&r(), None, b"/d/full"), Err(Errno::ENOTEMPTY));
    // rename over a non-empty directory: the same inside vfs_rename.
    assert_eq!(
        vfs.rename(&r(), b"/d/empty", b"/d/full", 0),
        Err(Errno::ENOTEMPTY)
    );
    // An unprivileged mkdir in /d (0755, root's): EACCES inside vfs_mkdir.
    assert_eq!(
        vfs.mkdir(&Cred::user(1, 1), None, b"/d/u", 0o755).err(),
        Some(Errno::EACCES)
    );
    assert_eq!(
        lines(&rec.take()),
        [
            "vfs_rmdir> /d /d/full",
            perm.as_str(),
            "inode_rmdir /d /d/full",
            "vfs_rmdir< /d /d/full = -39",
            "vfs_rename> /d /d/empty /d full",
            perm.as_str(),
            perm.as_str(),
            "inode_rename /d /d/empty /d full /d/full",
            "vfs_rename< /d /d/empty /d full = -39",
            "vfs_mkdir> /d u 755",
            "vfs_mkdir< /d u 755 = -13",
        ]
    );
    // Failures decided by the lookup before the kernel function is entered are not traced
    // (Linux: do_unlinkat's lookup says ENOENT, vfs_unlink never runs; filename_create
    // says EEXIST before vfs_mkdir).
    assert_eq!(vfs.unlink(&r(), None, b"/d/missing"), Err(Errno::ENOENT));
    assert_eq!(vfs.rmdir(&r(), None, b"/d/missing"), Err(Errno::ENOENT));
    assert_eq!(
        vfs.rename(&r(), b"/d/missing", b"/d/z", 0),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        vfs.mkdir(&r(), None, b"/d/full", 0o755).err(),
        Some(Errno::EEXIST)
    );
    assert_eq!(rec.take(), Vec::<String>::new());
    // ENOENT from inside the traced function (here an LSM saying so).
    rec.deny("inode_unlink", Errno::ENOENT);
    assert_eq!(vfs.unlink(&r(), None, b"/d/f"), Err(Errno::ENOENT));
    assert_eq!(
        lines(&rec.take()),
        [
            "vfs_unlink> /d /d/f",
            perm.as_str(),
            "inode_unlink /d /d/f",
            "vfs_unlink< /d /d/f = -2",
        ]
    );
}

// ---- denials: the errno comes back, nothing changed, no event ----

/// Run `op` with `hook` denied: it fails with DENY, the hook was called once, and the watch
/// on /d saw nothing.
fn denied<T: std::fmt::Debug>(
    vfs: &Vfs,
    rec: &Rec,
    hook: &'static str,
    op: impl FnOnce() -> Result<T>,
) -> Vec<String> {
    let g = watch(vfs);
    rec.take();
    rec.deny(hook, DENY);
    let res = op();
    rec.allow_all();
    assert_eq!(res.unwrap_err(), DENY, "{hook}");
    let calls = rec.take();
    let prefix = format!("{hook} ");
    assert_eq!(
        calls.iter().filter(|c| c.starts_with(&prefix)).count(),
        1,
        "{hook}: {calls:?}"
    );
    assert_eq!(events(&g), Vec::<String>::new(), "{hook}: events");
    calls
}

#[test]
fn denied_creates_leave_nothing() {
    let (vfs, rec) = setup();
    let before = vfs.stats();
    denied(&vfs, &rec, "inode_create", || {
        vfs.open(&r(), None, b"/d/n", O_CREAT | O_WRONLY, 0o644)
    });
    denied(&vfs, &rec, "inode_create", || {
        vfs.mknod(&r(), None, b"/d/n", S_IFIFO | 0o644, 0)
    });
    let calls = denied(&vfs, &rec, "inode_mkdir", || {
        vfs.mkdir(&r(), None, b"/d/n", 0o755)
    });
    assert_eq!(
        calls.last().map(String::as_str),
        Some(format!("vfs_mkdir< /d n 755 = -{}", DENY.raw()).as_str())
    );
    denied(&vfs, &rec, "inode_symlink", || {
        vfs.symlink(&r(), b"f", None, b"/d/n")
    });
    denied(&vfs, &rec, "inode_link", || {
        vfs.link(&r(), b"/d/f", b"/d/n", false)
    });
    // A permission denial on the directory stops a create before inode_create.
    let calls = denied(&vfs, &rec, "inode_permission", || {
        vfs.mkdir(&r(), None, b"/d/n", 0o755)
    });
    assert!(!calls.iter().any(|c| c.starts_with("inode_mkdir")));
    assert!(!exists(&vfs, "/d/n"));
    vfs.set_hooks_enabled(false);
    assert_eq!(ok!(vfs.stat(&r(), None, b"/d/f", true)).nlink, 1);
    let after = vfs.stats();
    assert_eq!(after.inodes_live, before.inodes_live);
    assert_eq!(after.dentries_hashed, before.dentries_hashed);
}

#[test]
fn denied_removals_and_renames_leave_the_tree() {
    let (vfs, rec) = setup();
    vfs.set_hooks_enabled(false);
    ok!(vfs.mkdir(&r(), None, b"/d/s", 0o755));
    ok!(vfs.write_file(&r(), b"/d/t", b"t"));
    vfs.set_hooks_enabled(true);
    denied(&vfs, &rec, "inode_unlink", || {
        vfs.unlink(&r(), None, b"/d/f")
    });
    denied(&vfs, &rec, "inode_rmdir", || vfs.rmdir(&r(), None, b"/d/s"));
    denied(&vfs, &rec, "inode_rename", || {
        vfs.rename(&r(), b"/d/f", b"/d/g", 0)
    });
    denied(&vfs, &rec, "inode_rename", || {
        vfs.rename(&r(), b"/d/f", b"/d/t", 0)
    });
    // An exchange denied at its first question (the target's move).
    denied(&vfs, &rec, "inode_rename", || {
        vfs.rename(&r(), b"/d/f", b"/d/t", rename_flags::RENAME_EXCHANGE)
    });
    denied(&vfs, &rec, "inode_permission", || {
        vfs.unlink(&r(), None, b"/d/f")
    });
    for p in ["/d/f", "/d/s", "/d/t"] {
        assert!(exists(&vfs, p), "{p}");
    }
    assert!(!exists(&vfs, "/d/g"));
    vfs.set_hooks_enabled(false);
    assert_eq!(ok!(vfs.read_file(&r(), b"/d/f")), b"hello");
    assert_eq!(ok!(vfs.read_file(&r(), b"/d/t")), b"t");
    vfs.set_hooks_enabled(true);
    // Nothing was evicted.
    assert!(!rec.take().iter().any(|c| c.starts_with("evict")));
}

#[test]
fn denied_setattr_getattr_permission() {
    let (vfs, rec) = setup();
    let st0 = vfs.getattr(&ok!(vfs.resolve(&r(), None, b"/d/f", 0)));
    denied(&vfs, &rec, "inode_setattr", || {
        vfs.chmod(&r(), b"/d/f", 0o600)
    });
    denied(&vfs, &rec, "inode_setattr", || {
        vfs.chown(&r(), b"/d/f", Some(5), Some(5), true)
    });
    denied(&vfs, &rec, "inode_setattr", || {
        vfs.truncate(&r(), b"/d/f", 0)
    });
    denied(&vfs, &rec, "inode_setattr", || {
        vfs.utimens(&r(), b"/d/f", Some(TimeSet::Now), None)
    });
    denied(&vfs, &rec, "inode_permission", || {
        vfs.truncate(&r(), b"/d/f", 0)
    });
    let st = vfs.getattr(&ok!(vfs.resolve(&r(), None, b"/d/f", 0)));
    assert_eq!(
        (st.mode, st.uid, st.gid, st.size, st.atime, st.mtime, st.ctime),
        (st0.mode, st0.uid, st0.gid, st0.size, st0.atime, st0.mtime, st0.ctime)
    );
    denied(&vfs, &rec, "inode_getattr", || {
        vfs.stat(&r(), None, b"/d/f", true)
    });
    let at = ok!(vfs.resolve(&r(), None, b"/d/f", 0));
    denied(&vfs, &rec, "inode_getattr", || vfs.stat_at(&at));
    denied(&vfs, &rec, "inode_permission", || {
        vfs.access_at(&r(), &at, may::READ)
    });
    // setxattr's permission check (user namespace).
    denied(&vfs, &rec, "inode_permission", || {
        vfs.setxattr_at(&r(), &at, b"user.k", b"v", 0)
    });
}

#[test]
fn denied_opens_leave_no_file_and_no_event() {
    let (vfs, rec) = setup();
    let files = vfs.stats().files_open;
    let calls = denied(&vfs, &rec, "file_open", || {
        vfs.open(&r(), None, b"/d/f", O_RDWR, 0)
    });
    let fail = format!("vfs_open< /d/f (unopened) = -{}", DENY.raw());
    assert_eq!(calls.last().map(String::as_str), Some(fail.as_str()));
    assert_eq!(vfs.stats().files_open, files);
    // A denied O_TRUNC open does not truncate.
    denied(&vfs, &rec, "file_open", || {
        vfs.open(&r(), None, b"/d/f", O_WRONLY | O_TRUNC, 0)
    });
    denied(&vfs, &rec, "inode_permission", || {
        vfs.open(&r(), None, b"/d/f", O_RDONLY, 0)
    });
    // A created file whose open is denied stays created (as in Linux), with no open file.
    let g = watch(&vfs);
    rec.deny("file_open", DENY);
    assert_eq!(
        vfs.open(&r(), None, b"/d/c", O_CREAT | O_WRONLY, 0o644)
            .unwrap_err(),
        DENY
    );
    rec.allow_all();
    assert_eq!(events(&g), ["CREATE c"]);
    assert_eq!(vfs.stats().files_open, files);
    vfs.set_hooks_enabled(false);
    assert_eq!(ok!(vfs.read_file(&r(), b"/d/f")), b"hello");
}

#[test]
fn denied_read_write_truncate() {
    let (vfs, rec) = setup();
    let f = ok!(vfs.open(&r(), None, b"/d/f", O_RDWR, 0));
    let mut buf = [0u8; 8];
    let calls = denied(&vfs, &rec, "file_permission", || vfs.read(&f, &mut buf, 0));
    assert_eq!(
        lines(&calls),
        [
            "vfs_read> /d/f 8 0",
            "file_permission /d/f 4",
            format!("vfs_read< /d/f 8 0 = -{}", DENY.raw()).as_str(),
        ]
    );
    denied(&vfs, &rec, "file_permission", || vfs.write(&f, b"XX", 0));
    denied(&vfs, &rec, "file_permission", || {
        vfs.fallocate(&f, 0, 0, 1 << 20)
    });
    let size0 = SetAttr {
        size: Some(0),
        ..Default::default()
    };
    denied(&vfs, &rec, "file_truncate", || {
        vfs.setattr_file(&r(), &f, &size0)
    });
    denied(&vfs, &rec, "inode_setattr", || {
        vfs.setattr_file(&r(), &f, &size0)
    });
    drop(f);
    // O_TRUNC refused after the open succeeded: the file was opened and is closed again
    // (IN_OPEN, IN_CLOSE_WRITE, as Linux's handle_truncate failing after vfs_open), but
    // nothing is truncated and no IN_MODIFY is reported.
    let g = watch(&vfs);
    rec.deny("file_truncate", DENY);
    assert_eq!(
        vfs.open(&r(), None, b"/d/f", O_WRONLY | O_TRUNC, 0)
            .unwrap_err(),
        DENY
    );
    rec.allow_all();
    assert_eq!(events(&g), ["OPEN f", "CLOSE_WRITE f"]);
    assert_eq!(vfs.stats().files_open, 0);
    vfs.set_hooks_enabled(false);
    assert_eq!(ok!(vfs.read_file(&r(), b"/d/f")), b"hello");
    assert_eq!(vfs.stats().files_open, 0);
}

// ---- eviction ----

#[test]
fn evict_and_free_security_once_per_inode() {
    let (vfs, rec) = setup();
    vfs.set_hooks_enabled(false);
    for i in 0..5 {
        ok!(vfs.write_file(&r(), format!("/d/e{i}").as_bytes(), b"x"));
    }
    vfs.set_hooks_enabled(true);
    let inos: Vec<u64> = (0..5).map(|i| ino(&vfs, &format!("/d/e{i}"))).collect();
    // e0 is held open across its unlink: evicted at close.
    let held = ok!(vfs.open(&r(), None, b"/d/e0", O_RDONLY, 0));
    rec.take();
    for i in 0..5 {
        ok!(vfs.unlink(&r(), None, format!("/d/e{i}").as_bytes()));
    }
    let frees = |calls: &[String]| -> Vec<u64> {
        calls
            .iter()
            .filter_map(|c| c.strip_prefix("inode_free_security #"))
            .map(|n| n.parse().unwrap())
            .collect()
    };
    let calls = rec.take();
    assert_eq!(frees(&calls), inos[1..]);
    drop(held);
    let calls = rec.take();
    assert_eq!(
        lines(&calls),
        [
            format!("evict> #{}", inos[0]).as_str(),
            format!("inode_free_security #{}", inos[0]).as_str(),
            format!("evict< #{} = 0", inos[0]).as_str(),
        ]
    );
    // Tearing the tree down evicts the rest (/, /d): each once.
    *rec.only.lock().unwrap() = None;
    let st = vfs.stats();
    let live = (st.inodes_allocated_total - st.inodes_evicted_total) as i64;
    assert_eq!(live, 3); // /, /d, /d/f
    drop(vfs);
    rcu_barrier(); // the root goes with the last mount-table snapshot, after a grace period
    let calls = rec.take();
    let mut f = frees(&calls);
    let n = f.len();
    f.sort();
    f.dedup();
    assert_eq!(f.len(), n, "an inode freed twice: {calls:?}");
    assert_eq!(n as i64, live, "{calls:?}");
    let evicts = calls.iter().filter(|c| c.starts_with("evict>")).count();
    assert_eq!(evicts, n);
}

// ---- concurrency ----

#[test]
fn ops_race_with_hooks_switching() {
    let vfs = Vfs::new_memfs();
    let rec = Arc::new(Rec::default());
    ok!(vfs.set_hooks(rec.clone()));
    ok!(vfs.mkdir(&r(), None, b"/shared", 0o777));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    const WORKERS: usize = 3;
    let workers: Vec<_> = (0..WORKERS)
        .map(|t| {
            let vfs = vfs.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let c = r();
                let dir = format!("/shared/w{t}");
                for i in 0..1500 {
                    // Errors are expected (denials, races on the shared names): only
                    // panics and deadlocks are failures here.
                    let _ = vfs.mkdir(&c, None, dir.as_bytes(), 0o755);
                    let f = format!("{dir}/f{}", i % 4);
                    if let Ok(fh) = vfs.open(&c, None, f.as_bytes(), O_CREAT | O_RDWR, 0o644) {
                        let _ = vfs.write(&fh, b"data", 0);
                        let mut b = [0u8; 4];
                        let _ = vfs.read(&fh, &mut b, 0);
                        let _ = vfs.setattr_file(
                            &c,
                            &fh,
                            &SetAttr {
                                size: Some(1),
                                ..Default::default()
                            },
                        );
                    }
                    let _ = vfs.stat(&c, None, f.as_bytes(), true);
                    let _ = vfs.rename(
                        &c,
                        f.as_bytes(),
                        format!("/shared/x{}", i % 3).as_bytes(),
                        0,
                    );
                    let _ = vfs.rename(
                        &c,
                        format!("/shared/x{}", (i + 1) % 3).as_bytes(),
                        format!("/shared/x{}", i % 3).as_bytes(),
                        rename_flags::RENAME_EXCHANGE,
                    );
                    let _ = vfs.unlink(&c, None, format!("/shared/x{}", (i + 2) % 3).as_bytes());
                    let _ = vfs.symlink(&c, b"x", None, format!("{dir}/l").as_bytes());
                    let _ = vfs.unlink(&c, None, format!("{dir}/l").as_bytes());
                    if i % 10 == 9 {
                        for k in 0..4 {
                            let _ = vfs.unlink(&c, None, format!("{dir}/f{k}").as_bytes());
                        }
                        let _ = vfs.rmdir(&c, None, dir.as_bytes());
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    let toggler = {
        let (vfs, rec, stop) = (vfs.clone(), rec.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                vfs.set_hooks_enabled(n.is_multiple_of(2));
                match n % 7 {
                    0 => rec.deny("file_permission", DENY),
                    3 => rec.deny("inode_rename", DENY),
                    5 => rec.allow_all(),
                    _ => {}
                }
                n += 1;
                std::thread::sleep(Duration::from_micros(50));
            }
            vfs.set_hooks_enabled(true);
            rec.allow_all();
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while done.load(Ordering::SeqCst) < WORKERS {
        assert!(
            std::time::Instant::now() < deadline,
            "workers stuck (deadlock?)"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for w in workers {
        w.join().expect("worker panicked");
    }
    stop.store(true, Ordering::SeqCst);
    toggler.join().expect("toggler panicked");

    // Every trace entry has its exit, on the same thread, properly nested.
    let log = rec.take_all();
    assert!(
        log.iter().any(|(_, l)| l.contains("vfs_")),
        "hooks never ran"
    );
    let mut stacks: HashMap<ThreadId, Vec<String>> = HashMap::new();
    for (t, line) in &log {
        let head = line.split(' ').next().unwrap();
        if let Some(name) = head.strip_suffix('>') {
            stacks.entry(*t).or_default().push(name.to_string());
        } else if let Some(name) = head.strip_suffix('<') {
            let top = stacks.entry(*t).or_default().pop();
            assert_eq!(top.as_deref(), Some(name), "unpaired exit: {line}");
        }
    }
    for (t, s) in stacks {
        assert!(s.is_empty(), "{t:?}: entries without exits: {s:?}");
    }
    // The tree is still usable and consistent.
    assert_eq!(vfs.stats().files_open, 0);
    ok!(vfs.mkdir(&r(), None, b"/after", 0o755));
    ok!(vfs.rmdir(&r(), None, b"/after"));
}
