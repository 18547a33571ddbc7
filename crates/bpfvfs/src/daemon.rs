//! `bpfvfs up`: build the VFS, mount it over FUSE, serve the control socket, and run in the
//! foreground until SIGINT or SIGTERM.
//!
//! Signals: SIGINT and SIGTERM are blocked on the main thread before any thread exists, so
//! every thread inherits the mask and only the main thread's `sigtimedwait` receives them.
//! (Children spawned through `std::process::Command`, such as fusermount3, get their mask
//! reset by the standard library.)

use crate::control::{unknown_op, ControlError, Handler, Peer, Server, Session, SocketError};
use crate::session::{BpfSession, SessionCounters};
use bpfvfs_bpf::Bpf;
use bpfvfs_fuse::{FuseMonitor, MountOptions};
use bpfvfs_vfs::memfs::{MemFs, MemFsOptions};
use bpfvfs_vfs::{Errno, Vfs, VfsOptions, LOOKUP_FOLLOW};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// What `bpfvfs up` was asked for.
#[derive(Clone, Debug)]
pub struct UpConfig {
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// Bytes of file data allowed (0 = unlimited).
    pub size: u64,
    /// Inodes allowed (0 = unlimited).
    pub nr_inodes: u64,
    pub threads: usize,
    pub ttl: Duration,
    /// The cgroup tree at /sys/fs/cgroup: local groups, or the host's mirrored.
    pub cgroup: CgroupChoice,
}

/// `--cgroup local | host[=PATH]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CgroupChoice {
    #[default]
    Local,
    /// The host's cgroup v2 mount (found in /proc/self/mountinfo when `None`).
    Host(Option<PathBuf>),
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{}: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("cannot create the filesystem: {0}")]
    Vfs(Errno),
    #[error("cannot set up bpffs at /sys/fs/bpf: {0}")]
    Bpf(Errno),
    #[error("--cgroup host: {0}")]
    CgroupHost(#[from] bpfvfs_cgroup::HostError),
    #[error("cannot set up the cgroup tree at /sys/fs/cgroup: {0}")]
    Cgroup(Errno),
    #[error("control socket: {0}")]
    Socket(#[from] SocketError),
    #[error(transparent)]
    Fuse(#[from] bpfvfs_fuse::Error),
    #[error("signal setup failed: {0}")]
    Signals(std::io::Error),
}

/// What every connection of a running daemon shares.
pub struct DaemonHandler {
    vfs: Arc<Vfs>,
    bpf: Arc<Bpf>,
    runtime: Arc<bpfvfs_runtime::Runtime>,
    fuse: FuseMonitor,
    /// The directory the tree is mounted on (absolute, as the daemon resolved it).
    mount_point: PathBuf,
    counters: Arc<SessionCounters>,
}

impl DaemonHandler {
    pub fn new(bpf: Arc<Bpf>, fuse: FuseMonitor, mount_point: PathBuf) -> DaemonHandler {
        DaemonHandler {
            vfs: bpf.vfs().clone(),
            runtime: bpfvfs_runtime::Runtime::new(bpf.clone()),
            bpf,
            fuse,
            mount_point,
            counters: Arc::new(SessionCounters::default()),
        }
    }

    fn stats(&self) -> Value {
        let mut m = match serde_json::to_value(self.vfs.stats()) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let f = self.fuse.stats();
        m.insert("fuse_nodes".into(), f.nodes.into());
        m.insert("fuse_handles".into(), f.handles.into());
        // Cache invalidations for changes made outside the mount (bpfvfs_fuse::inval).
        m.insert("fuse_inval_sent".into(), f.inval.sent.into());
        m.insert("fuse_inval_dropped".into(), f.inval.dropped.into());
        m.insert("fuse_inval_failed".into(), f.inval.failed.into());
        if let Ok(Value::Object(b)) = serde_json::to_value(self.bpf.registry().stats()) {
            m.extend(b);
        }
        let c = &self.counters;
        m.insert(
            "control_sessions_live".into(),
            c.sessions_live.load(Ordering::Relaxed).into(),
        );
        m.insert(
            "control_sessions_total".into(),
            c.sessions_total.load(Ordering::Relaxed).into(),
        );
        m.insert(
            "control_handles_open".into(),
            c.handles_open.load(Ordering::Relaxed).into(),
        );
        m.insert("mount_point".into(), self.mount_point_str().into());
        if let Some(t) = bpfvfs_cgroup::tree_of(&self.vfs) {
            m.insert("cgroup_groups".into(), t.group_count().into());
            let d = bpfvfs_bpf::maps::cgrp_storage::domain(&t).counts();
            m.insert("cgrp_storages_live".into(), d.storages_live.into());
        }
        let mounts: Vec<Value> = self
            .vfs
            .mounts()
            .into_iter()
            .map(|(path, fs_type, options)| json!({"path": path, "fs_type": fs_type, "options": options}))
            .collect();
        m.insert("mounts".into(), Value::Array(mounts));
        Value::Object(m)
    }

    /// The tree location of a file the client opened on our FUSE mount and passed by
    /// descriptor: its device must be the mount's, and its inode number is the FUSE node id,
    /// which the kernel holds while the file is open. Anything else is EBADF, as bpf(2) says
    /// of an fd that is not what the map wants.
    fn inode_of_fd(
        &self,
        fd: &std::os::fd::OwnedFd,
        op: &str,
    ) -> Result<bpfvfs_vfs::PathRef, ControlError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        // SAFETY: fstat on a descriptor we own into a zeroed stat buffer.
        let st = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd.as_raw_fd(), &mut st) != 0 {
                return Err(ControlError::new(
                    libc::EBADF,
                    format!("{op}: fstat of the passed descriptor failed"),
                ));
            }
            st
        };
        let mount_dev = std::fs::metadata(&self.mount_point)
            .map(|m| m.dev())
            .map_err(|e| {
                ControlError::new(libc::EIO, format!("{op}: stat of the mount point: {e}"))
            })?;
        if st.st_dev != mount_dev {
            return Err(ControlError::new(
                libc::EBADF,
                format!("{op}: the passed descriptor is not a file on the bpfvfs mount"),
            ));
        }
        self.fuse.node(st.st_ino).ok_or_else(|| {
            ControlError::new(
                libc::EBADF,
                format!("{op}: the mount does not know inode {}", st.st_ino),
            )
        })
    }

    fn mount_point_str(&self) -> String {
        self.mount_point.to_string_lossy().into_owned()
    }
}

impl Handler for Arc<DaemonHandler> {
    fn connect(&self, peer: Peer) -> Box<dyn Session> {
        let pid = u32::try_from(peer.pid).unwrap_or(0);
        let mut cred = bpfvfs_fuse::cred::for_request(peer.uid, peer.gid, pid);
        // Objects a client creates through the socket (pins, directories) get the client's
        // umask, as bpf(BPF_OBJ_PIN) and mkdir(2) apply the caller's current_umask(); FUSE
        // requests need none (the kernel applied it before asking us).
        cred.umask = peer_umask(pid);
        tracing::debug!(?peer, "control connection");
        Box::new(DaemonSession {
            watch: None,
            caller: (pid != 0).then_some(bpfvfs_vfs::task::Caller {
                pid,
                uid: peer.uid,
                gid: peer.gid,
            }),
            bpf: BpfSession::new(self.bpf.clone(), cred, self.counters.clone())
                .with_runtime(self.runtime.clone()),
            shared: self.clone(),
        })
    }
}

/// The `Umask:` line of `/proc/PID/status` (0 when unknown: the process is gone, or a
/// kernel older than 4.7).
fn peer_umask(pid: u32) -> u32 {
    if pid == 0 {
        return 0;
    }
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .map_or(0, |m| m & 0o777)
}

/// One connection to the daemon: its credentials and handle table.
pub struct DaemonSession {
    shared: Arc<DaemonHandler>,
    bpf: BpfSession,
    /// This connection's watch group (inotify instance), made on the first `watch_add`;
    /// closed (its marks removed) when the connection ends.
    watch: Option<bpfvfs_vfs::fsnotify::Group>,
    /// The peer as the task helpers see it (None: it lives in another pid namespace).
    caller: Option<bpfvfs_vfs::task::Caller>,
}

impl Drop for DaemonSession {
    fn drop(&mut self) {
        if let Some(g) = self.watch.take() {
            g.close();
        }
    }
}

/// An event as the socket carries it.
fn event_json(e: &bpfvfs_vfs::fsnotify::Event) -> Value {
    json!({
        "wd": e.wd,
        "mask": e.mask,
        "events": e.mask_names(),
        "cookie": e.cookie,
        "name": e.name.as_ref().map(|n| String::from_utf8_lossy(n).into_owned()),
    })
}

impl DaemonSession {
    fn watch_op(&mut self, op: &str, args: &Map<String, Value>) -> Result<Value, ControlError> {
        use bpfvfs_vfs::fsnotify::{mask_from_name, Group, GroupOptions, ReadError};
        match op {
            "watch_add" => {
                let path = path_arg(op, args)?;
                let mask = match (args.get("mask"), args.get("events")) {
                    (Some(m), _) if !m.is_null() => m
                        .as_u64()
                        .and_then(|m| u32::try_from(m).ok())
                        .ok_or_else(|| {
                            ControlError::invalid("watch_add: \"mask\" must be a u32")
                        })?,
                    (_, Some(Value::Array(names))) => {
                        let mut m = 0;
                        for n in names {
                            let name = n.as_str().unwrap_or("");
                            m |= mask_from_name(name).ok_or_else(|| {
                                ControlError::invalid(format!("watch_add: unknown event {n}"))
                            })?;
                        }
                        m
                    }
                    _ => bpfvfs_vfs::fsnotify::IN_ALL_EVENTS,
                };
                let g = self
                    .watch
                    .get_or_insert_with(|| Group::new(GroupOptions::default()));
                let wd = g
                    .add_watch(&self.shared.vfs, self.bpf.cred(), path.as_bytes(), mask)
                    .map_err(|e| ControlError::vfs(e, &format!("{op} {path}")))?;
                Ok(json!({ "wd": wd }))
            }
            "watch_remove" => {
                let wd = args
                    .get("wd")
                    .and_then(Value::as_i64)
                    .and_then(|w| i32::try_from(w).ok())
                    .ok_or_else(|| {
                        ControlError::invalid("watch_remove: \"wd\" must be an integer")
                    })?;
                let g = self.watch.as_ref().ok_or_else(|| {
                    ControlError::new(libc::EINVAL, "watch_remove: no watches on this connection")
                })?;
                g.remove_watch(wd).map_err(|e| ControlError::vfs(e, op))?;
                Ok(json!({}))
            }
            "watch_read" => {
                let max = args
                    .get("max")
                    .and_then(Value::as_u64)
                    .unwrap_or(256)
                    .clamp(1, 4096);
                // Bounded so one reader never holds a server thread for long.
                let wait = args
                    .get("wait_ms")
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
                    .min(5_000);
                let g = self.watch.as_ref().ok_or_else(|| {
                    ControlError::new(libc::EINVAL, "watch_read: no watches on this connection")
                })?;
                let events = match g.read_events(max as usize, Some(Duration::from_millis(wait))) {
                    Ok(ev) => ev,
                    Err(ReadError::Woken) => Vec::new(),
                    Err(ReadError::Closed) => {
                        return Err(ControlError::new(libc::EBADF, "watch_read: group closed"))
                    }
                };
                Ok(json!({ "events": events.iter().map(event_json).collect::<Vec<_>>() }))
            }
            _ => Err(unknown_op(op)),
        }
    }
}

impl Session for DaemonSession {
    fn handle_with_fds(
        &mut self,
        op: &str,
        args: &Map<String, Value>,
        fds: &mut std::collections::VecDeque<std::os::fd::OwnedFd>,
    ) -> Result<Value, ControlError> {
        if args.get("file_fd").is_some_and(|v| !v.is_null()) {
            let fd = fds.pop_front().ok_or_else(|| {
                ControlError::new(
                    libc::EBADF,
                    format!("{op}: no descriptor passed with the request"),
                )
            })?;
            self.bpf.fd_target = Some(self.shared.inode_of_fd(&fd, op)?);
        }
        // The kernel runs BPF_PROG_TEST_RUN in the calling task: the program's task and
        // cgroup helpers see the peer (as the FUSE edge records each request's process).
        // Only test runs: other ops keep the daemon's thread as `current`.
        let test_run = op == "prog_test_run";
        if test_run {
            bpfvfs_vfs::task::set_caller(self.caller);
        }
        let r = self.handle(op, args);
        if test_run {
            bpfvfs_vfs::task::set_caller(None);
        }
        self.bpf.fd_target = None;
        // What this request changed (pins, unlinks, exposed files) reaches the FUSE mount's
        // kernel caches before the client hears back (bpfvfs_fuse's inval.rs).
        self.shared.vfs.sync_changes();
        r
    }

    fn handle(&mut self, op: &str, args: &Map<String, Value>) -> Result<Value, ControlError> {
        let d = &self.shared;
        match op {
            "ping" => Ok(json!({
                "pong": true,
                "version": env!("CARGO_PKG_VERSION"),
                "pid": std::process::id(),
                "mount_point": d.mount_point_str(),
            })),
            "stats" => Ok(d.stats()),
            "statfs" => {
                let path = path_arg(op, args)?;
                let at = d
                    .vfs
                    .resolve(self.bpf.cred(), None, path.as_bytes(), LOOKUP_FOLLOW)
                    .map_err(|e| ControlError::vfs(e, op))?;
                let sb = at.inode().sb();
                Ok(json!({"fs_type": sb.fs_type(), "magic": sb.magic()}))
            }
            "mount" => {
                let path = path_arg(op, args)?;
                let fs_type = match args.get("fs_type") {
                    Some(Value::String(s)) => s.as_str(),
                    _ => return Err(ControlError::invalid("mount: \"fs_type\" must be a string")),
                };
                let options = match args.get("options") {
                    None | Some(Value::Null) => "",
                    Some(Value::String(s)) => s.as_str(),
                    _ => return Err(ControlError::invalid("mount: \"options\" must be a string")),
                };
                d.vfs
                    .mount_type(self.bpf.cred(), fs_type, options, path.as_bytes())
                    .map_err(|e| ControlError::vfs(e, op))?;
                Ok(json!({}))
            }
            "watch_add" | "watch_remove" | "watch_read" => self.watch_op(op, args),
            // What libbpf does with plain syscalls around pinning: make the pin directory,
            // remove a pin again.
            "mkdir" => {
                let path = path_arg(op, args)?;
                let mode = match args.get("mode") {
                    None | Some(Value::Null) => 0o755,
                    Some(v) => v.as_u64().filter(|m| *m <= 0o7777).ok_or_else(|| {
                        ControlError::invalid("mkdir: \"mode\" must be 0..=0o7777")
                    })? as u32,
                };
                d.vfs
                    .mkdir(self.bpf.cred(), None, path.as_bytes(), mode)
                    .map_err(|e| ControlError::vfs(e, op))?;
                Ok(json!({}))
            }
            "unlink" => {
                let path = path_arg(op, args)?;
                d.vfs
                    .unlink(self.bpf.cred(), None, path.as_bytes())
                    .map_err(|e| ControlError::vfs(e, op))?;
                Ok(json!({}))
            }
            _ => match self.bpf.dispatch(op, args) {
                Some(r) => r,
                None => Err(unknown_op(op)),
            },
        }
    }
}

fn path_arg<'a>(op: &str, args: &'a Map<String, Value>) -> Result<&'a str, ControlError> {
    match args.get("path") {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(ControlError::invalid(format!("{op}: missing \"path\""))),
        Some(_) => Err(ControlError::invalid(format!(
            "{op}: \"path\" must be a string"
        ))),
    }
}

fn termination_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialize it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Block SIGINT and SIGTERM in this thread (and so in every thread it spawns later).
pub fn block_termination_signals() -> std::io::Result<libc::sigset_t> {
    let set = termination_signals();
    // SAFETY: valid set; the old mask is not needed.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(std::io::Error::from_raw_os_error(r));
    }
    Ok(set)
}

/// Whether one of `set` (blocked in this thread) is pending; consumes it.
pub fn poll_signal(set: &libc::sigset_t) -> bool {
    wait_signal(set, Duration::ZERO).is_some()
}

/// Wait up to `timeout` for one of `set`; the signal number, or None on timeout.
fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: valid set and timespec; siginfo is not requested.
    let r = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (r > 0).then_some(r)
}

/// Run the daemon until SIGINT/SIGTERM (or until the mount goes away).
pub fn up(cfg: &UpConfig) -> Result<(), DaemonError> {
    let meta = std::fs::metadata(&cfg.dir).map_err(|source| DaemonError::Dir {
        path: cfg.dir.clone(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(DaemonError::NotADirectory(cfg.dir.clone()));
    }
    // Before any thread exists.
    let signals = block_termination_signals().map_err(DaemonError::Signals)?;

    let memfs = MemFs::new(MemFsOptions {
        max_bytes: cfg.size,
        max_inodes: cfg.nr_inodes,
        ..MemFsOptions::default()
    });
    let vfs = Vfs::new(Arc::new(memfs), VfsOptions::default()).map_err(DaemonError::Vfs)?;
    // The BPF side: bpffs registered and mounted at /sys/fs/bpf before anyone can look.
    let bpf = Bpf::new(vfs.clone()).map_err(DaemonError::Bpf)?;
    // The cgroup tree: FUSE requests are attributed to the requesting pid's group.
    let cgroup_mode = match &cfg.cgroup {
        CgroupChoice::Local => bpfvfs_cgroup::CgroupMode::Local,
        CgroupChoice::Host(p) => {
            let p = match p {
                Some(p) => p.clone(),
                None => bpfvfs_cgroup::find_host_cgroup2()?,
            };
            bpfvfs_cgroup::check_host_root(&p)?;
            bpfvfs_cgroup::CgroupMode::Host(p)
        }
    };
    bpfvfs_cgroup::install(&vfs, cgroup_mode).map_err(DaemonError::Cgroup)?;
    let mount_point = std::fs::canonicalize(&cfg.dir).unwrap_or_else(|_| cfg.dir.clone());

    // The socket first: a second daemon on the same socket fails before mounting anything.
    // It starts serving once the mount exists (the handler needs the mount's counters), so
    // bind it here and attach the handler afterwards through a slot.
    let slot: Arc<HandlerSlot> = Arc::new(HandlerSlot::default());
    let server = Server::start(&cfg.socket, slot.clone())?;

    let opts = MountOptions {
        threads: cfg.threads.max(2),
        attr_ttl: cfg.ttl,
        entry_ttl: cfg.ttl,
        ..MountOptions::default()
    };
    let mount = bpfvfs_fuse::mount(vfs.clone(), &cfg.dir, &opts)?;
    slot.set(Arc::new(Arc::new(DaemonHandler::new(
        bpf.clone(),
        mount.monitor(),
        mount_point,
    ))));

    eprintln!(
        "bpfvfs: serving {} (control socket {})",
        cfg.dir.display(),
        server.path().display()
    );

    let mut warned = false;
    loop {
        if let Some(sig) = wait_signal(&signals, Duration::from_millis(500)) {
            tracing::info!(signal = sig, "shutting down");
            break;
        }
        if !mount.is_running() {
            if !mount.is_mounted() {
                eprintln!("bpfvfs: {} was unmounted; shutting down", cfg.dir.display());
                break;
            }
            if !warned {
                tracing::error!("a FUSE worker thread died; the remaining workers keep serving");
                warned = true;
            }
        }
    }
    server.stop();
    match mount.unmount() {
        // The mount is detached from the tree, but processes still inside it (a shell's
        // cwd, open files) kept the session alive; they will see errors once we exit.
        Err(e @ bpfvfs_fuse::Error::Timeout { .. }) => {
            eprintln!("bpfvfs: warning: {e}; the mount was detached, its remaining users will get ENOTCONN");
            Ok(())
        }
        r => r.map_err(DaemonError::from),
    }
}

/// A handler installed after the socket is bound. A connection accepted before that gets a
/// session that answers EAGAIN until the handler exists, then connects to it.
#[derive(Default)]
struct HandlerSlot(Arc<std::sync::OnceLock<Arc<dyn Handler>>>);

impl HandlerSlot {
    fn set(&self, h: Arc<dyn Handler>) {
        let _ = self.0.set(h);
    }
}

impl Handler for HandlerSlot {
    fn connect(&self, peer: Peer) -> Box<dyn Session> {
        match self.0.get() {
            Some(h) => h.connect(peer),
            None => Box::new(SlotSession {
                slot: self.0.clone(),
                peer,
                inner: None,
            }),
        }
    }
}

struct SlotSession {
    slot: Arc<std::sync::OnceLock<Arc<dyn Handler>>>,
    peer: Peer,
    inner: Option<Box<dyn Session>>,
}

impl Session for SlotSession {
    fn handle(&mut self, op: &str, args: &Map<String, Value>) -> Result<Value, ControlError> {
        if self.inner.is_none() {
            match self.slot.get() {
                Some(h) => self.inner = Some(h.connect(self.peer)),
                None => {
                    return Err(ControlError::new(
                        libc::EAGAIN,
                        "the daemon is still starting",
                    ))
                }
            }
        }
        match &mut self.inner {
            Some(s) => s.handle(op, args),
            None => Err(ControlError::new(
                libc::EAGAIN,
                "the daemon is still starting",
            )),
        }
    }
}

/// Print a `stats` reply as `name: value` lines (mounts last).
pub fn format_stats(v: &Value) -> String {
    let mut out = String::new();
    if let Value::Object(m) = v {
        for (k, val) in m {
            if k == "mounts" {
                continue;
            }
            match val {
                Value::String(s) => out.push_str(&format!("{k}: {s}\n")),
                other => out.push_str(&format!("{k}: {other}\n")),
            }
        }
        if let Some(Value::Array(mounts)) = m.get("mounts") {
            for mnt in mounts {
                let f = |key: &str| {
                    mnt.get(key)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                let opts = f("options");
                let line = format!("mount: {} {} {}", f("path"), f("fs_type"), opts);
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_text() {
        let v = json!({"inodes_live": 3, "fuse_nodes": 1, "mounts": [{"path": "/", "fs_type": "tmpfs", "options": "mode=1777"}]});
        let s = format_stats(&v);
        assert!(s.contains("inodes_live: 3\n"));
        assert!(s.contains("fuse_nodes: 1\n"));
        assert!(s.ends_with("mount: / tmpfs mode=1777\n"));
    }

    struct Fixed;
    struct FixedSession;
    impl Handler for Fixed {
        fn connect(&self, _peer: Peer) -> Box<dyn Session> {
            Box::new(FixedSession)
        }
    }
    impl Session for FixedSession {
        fn handle(&mut self, _op: &str, _args: &Map<String, Value>) -> Result<Value, ControlError> {
            Ok(json!({"pong": true}))
        }
    }

    #[test]
    fn handler_slot_before_start() {
        let h = HandlerSlot::default();
        let peer = Peer {
            pid: 1,
            uid: 0,
            gid: 0,
        };
        let mut early = h.connect(peer);
        assert_eq!(
            early.handle("ping", &Map::new()).unwrap_err().errno,
            libc::EAGAIN
        );
        h.set(Arc::new(Fixed));
        // The early connection is served once the handler exists.
        assert_eq!(early.handle("ping", &Map::new()).unwrap()["pong"], true);
        assert_eq!(
            h.connect(peer).handle("ping", &Map::new()).unwrap()["pong"],
            true
        );
    }
}
