//! Mounting and unmounting.
//!
//! [`mount`] mounts the VFS at a host directory (fsname and subtype "bpfvfs", allow_other,
//! auto_unmount, default_permissions) and serves it on `threads` worker threads.
//!
//! Unmounting ([`MountHandle::unmount`], or drop): with auto_unmount, fuser's own unmount only
//! closes its socket to the `fusermount3` helper, which unmounts only a dead filesystem; so
//! we detach the mount ourselves first (`umount2(MNT_DETACH)`, or `fusermount3 -u -z` when
//! not privileged), then let fuser finish and join the workers. A detached mount that is still
//! busy (open files, a cwd inside) keeps the session alive until its users let go; after
//! `unmount_timeout` the connection is aborted through fusectl when that is mounted, and
//! otherwise the session is left to end with the process.
//!
//! auto_unmount is what cleans up after a crash or SIGKILL: fusermount3 notices the daemon's
//! death and unmounts. It needs fusermount3; if that is missing, the mount is retried without
//! it (with a warning). If allow_other is refused (an unprivileged user without
//! `user_allow_other` in /etc/fuse.conf), the mount is retried for the owner only.

use crate::fs::{FuseFs, FuseStats, Shared};
use bpfvfs_vfs::Vfs;
use fuser::{BackgroundSession, Config, MountOption, Session, SessionACL};
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// How to mount.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Worker threads serving requests (at least 2).
    pub threads: usize,
    /// How long the kernel may cache attributes.
    pub attr_ttl: Duration,
    /// How long the kernel may cache name -> inode bindings. Without default_permissions the
    /// kernel skips permission checks on cached path components while this lasts.
    pub entry_ttl: Duration,
    /// Let fusermount3 unmount if the process dies (needs fusermount3).
    pub auto_unmount: bool,
    /// Let every user use the mount (allow_other); otherwise only the mounting user.
    pub allow_other: bool,
    /// Also let the kernel check permissions from our attributes (default_permissions).
    /// The VFS checks every request anyway; this closes the gap the dentry cache opens:
    /// without it the kernel skips search-permission checks on path components it has
    /// cached, so another user could pass a 0700 directory for up to the entry TTL.
    pub default_permissions: bool,
    pub fsname: String,
    pub subtype: String,
    /// One /dev/fuse descriptor per worker (FUSE_DEV_IOC_CLONE).
    pub clone_fd: bool,
    /// How long unmount waits for a busy (lazily detached) mount before aborting it.
    pub unmount_timeout: Duration,
}

impl Default for MountOptions {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        MountOptions {
            threads: cpus.clamp(2, 16),
            attr_ttl: Duration::from_secs(1),
            entry_ttl: Duration::from_secs(1),
            auto_unmount: true,
            allow_other: true,
            default_permissions: true,
            fsname: "bpfvfs".into(),
            subtype: "bpfvfs".into(),
            clone_fd: true,
            unmount_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    MountPoint { path: PathBuf, source: io::Error },
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("cannot mount FUSE: /dev/fuse: {0}")]
    NoFuseDevice(io::Error),
    #[error("cannot mount FUSE at {}: {source}", path.display())]
    Mount { path: PathBuf, source: io::Error },
    #[error("cannot start the FUSE session: {0}")]
    Spawn(io::Error),
    #[error("cannot unmount {}: {source}", path.display())]
    Unmount { path: PathBuf, source: io::Error },
    #[error("the FUSE session at {} did not end within {timeout:?} (is the mount still in use?)", path.display())]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("the FUSE session ended with an error: {0}")]
    Session(io::Error),
}

/// A live mount. Unmounts on [`MountHandle::unmount`] or drop.
pub struct MountHandle {
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
    /// Our change listener in the VFS (taken out first at unmount).
    listener: Option<bpfvfs_vfs::ListenerId>,
    shared: Arc<Shared>,
    /// The mount's device ("major:minor" as in mountinfo), if it could be read.
    dev: Option<(u32, u32)>,
    unmount_timeout: Duration,
}

/// A cheap handle for reading the FUSE edge's counters from other threads.
#[derive(Clone)]
pub struct FuseMonitor(Arc<Shared>);

impl FuseMonitor {
    pub fn stats(&self) -> FuseStats {
        self.0.stats()
    }

    /// The location of the node the kernel knows as `nodeid` (what `st_ino` of a file on the
    /// mount reports), while the kernel holds it (an open file always keeps its node).
    pub fn node(&self, nodeid: u64) -> Option<bpfvfs_vfs::PathRef> {
        self.0.nodes.get(nodeid).ok()
    }
}

/// Mount `vfs` at `dir` and start serving it.
pub fn mount(
    vfs: Arc<Vfs>,
    dir: impl AsRef<Path>,
    opts: &MountOptions,
) -> Result<MountHandle, Error> {
    let dir = dir.as_ref();
    let meta = std::fs::metadata(dir).map_err(|source| Error::MountPoint {
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(Error::NotADirectory(dir.to_path_buf()));
    }
    let mountpoint = std::fs::canonicalize(dir).map_err(|source| Error::MountPoint {
        path: dir.to_path_buf(),
        source,
    })?;
    if let Err(e) = std::fs::metadata("/dev/fuse") {
        return Err(Error::NoFuseDevice(e));
    }

    let shared = Arc::new(Shared::new(vfs));
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::FSName(opts.fsname.clone()),
        MountOption::Subtype(opts.subtype.clone()),
    ];
    if opts.default_permissions {
        cfg.mount_options.push(MountOption::DefaultPermissions);
    }
    cfg.acl = if opts.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    cfg.n_threads = Some(opts.threads.max(2));
    cfg.clone_fd = opts.clone_fd;
    let new_fs = || FuseFs {
        shared: shared.clone(),
        attr_ttl: opts.attr_ttl,
        entry_ttl: opts.entry_ttl,
    };

    let owner_only = |e: &io::Error| {
        tracing::warn!(
            "allow_other refused ({}); only the mounting user will be able to use the mount \
             (set user_allow_other in /etc/fuse.conf to allow others)",
            e.to_string().trim()
        );
        let mut c = cfg.clone();
        c.acl = SessionACL::Owner;
        c
    };
    let mut session = Err(io::Error::other("not tried"));
    let mut plain = true;
    if opts.auto_unmount && opts.allow_other {
        let mut auto = cfg.clone();
        auto.mount_options.push(MountOption::AutoUnmount);
        session = Session::new(new_fs(), &mountpoint, &auto);
        match &session {
            Ok(_) => plain = false,
            Err(e) if e.kind() == io::ErrorKind::NotFound => tracing::warn!(
                "fusermount3 not found ({e}); mounting without auto_unmount: \
                 a crash will leave a stale mount"
            ),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                // Without allow_other there is no auto_unmount either.
                session = Session::new(new_fs(), &mountpoint, &owner_only(e));
                plain = false;
            }
            Err(_) => plain = false,
        }
    }
    if plain {
        session = Session::new(new_fs(), &mountpoint, &cfg);
        if let Err(e) = &session {
            if e.kind() == io::ErrorKind::PermissionDenied && opts.allow_other {
                session = Session::new(new_fs(), &mountpoint, &owner_only(e));
            }
        }
    }
    let session = session.map_err(|source| Error::Mount {
        path: mountpoint.clone(),
        source,
    })?;
    // The mount is in place and the handshake done; find its device for a later abort.
    let dev = find_mount(&mountpoint).map(|m| m.dev);
    // Before serving: from the kernel's first lookup on, every change made elsewhere is
    // invalidated (inval.rs; the notifier thread is stopped first at unmount).
    let inval = crate::inval::Inval::start(shared.origin, shared.nodes.clone(), session.notifier())
        .map_err(Error::Spawn)?;
    let _ = shared.inval.set(inval.clone());
    let listener = shared.vfs.add_change_listener(inval);
    let session = match session.spawn() {
        Ok(s) => s,
        Err(e) => {
            stop_inval(&shared, listener);
            return Err(Error::Spawn(e));
        }
    };
    tracing::info!(mountpoint = %mountpoint.display(), threads = opts.threads.max(2), "mounted");
    Ok(MountHandle {
        mountpoint,
        session: Some(session),
        listener: Some(listener),
        shared,
        dev,
        unmount_timeout: opts.unmount_timeout,
    })
}

impl MountHandle {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    pub fn stats(&self) -> FuseStats {
        self.shared.stats()
    }

    pub fn monitor(&self) -> FuseMonitor {
        FuseMonitor(self.shared.clone())
    }

    /// False once the session's supervisor thread ended: the mount went away (someone ran
    /// `umount`), or a worker thread died (fuser stops supervising at the first dead
    /// worker, while the others keep serving). See [`MountHandle::is_mounted`].
    pub fn is_running(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| !s.guard.is_finished())
    }

    /// Whether our mount is still at the mount point (per /proc/self/mountinfo).
    pub fn is_mounted(&self) -> bool {
        match find_mount(&self.mountpoint) {
            Some(m) => m.fstype.starts_with("fuse") && self.dev.is_none_or(|d| d == m.dev),
            None => false,
        }
    }

    /// Unmount and wait for the workers to finish.
    pub fn unmount(mut self) -> Result<(), Error> {
        self.do_unmount()
    }

    fn do_unmount(&mut self) -> Result<(), Error> {
        if let Some(l) = self.listener.take() {
            stop_inval(&self.shared, l);
        }
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let detach_result = self.detach();
        let (tx, rx) = mpsc::channel();
        let joiner = std::thread::Builder::new()
            .name("fuse-unmount".into())
            .spawn(move || {
                let _ = tx.send(session.umount_and_join());
            })
            .map_err(Error::Spawn)?;
        let result = match rx.recv_timeout(self.unmount_timeout) {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(
                    mountpoint = %self.mountpoint.display(),
                    "FUSE session still busy after {:?}; aborting the connection",
                    self.unmount_timeout
                );
                if !self.abort_connection() {
                    detach_result?;
                    return Err(Error::Timeout {
                        path: self.mountpoint.clone(),
                        timeout: self.unmount_timeout,
                    });
                }
                match rx.recv_timeout(Duration::from_secs(2)) {
                    Ok(r) => r,
                    Err(_) => {
                        return Err(Error::Timeout {
                            path: self.mountpoint.clone(),
                            timeout: self.unmount_timeout,
                        })
                    }
                }
            }
        };
        let _ = joiner.join();
        // The kernel has let go of everything: drop what it held.
        self.shared.nodes.clear();
        self.shared.files.clear();
        detach_result?;
        result.map_err(Error::Session)?;
        tracing::info!(mountpoint = %self.mountpoint.display(), "unmounted");
        Ok(())
    }

    /// Lazily unmount our mount, if it is still the one at the mount point.
    fn detach(&self) -> Result<(), Error> {
        match find_mount(&self.mountpoint) {
            Some(m) if self.dev.is_none_or(|d| d == m.dev) && m.fstype.starts_with("fuse") => {}
            _ => return Ok(()), // already gone (someone ran umount), or covered by another
        }
        let c =
            CString::new(self.mountpoint.as_os_str().as_bytes()).map_err(|_| Error::Unmount {
                path: self.mountpoint.clone(),
                source: io::Error::from_raw_os_error(libc::EINVAL),
            })?;
        // SAFETY: c is a valid NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINVAL) {
            return Ok(()); // not a mount point any more
        }
        // Not privileged: the setuid helper can do it.
        let status = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg("-q")
            .arg(&self.mountpoint)
            .status();
        match status {
            Ok(s) if s.success() => Ok(()),
            _ => Err(Error::Unmount {
                path: self.mountpoint.clone(),
                source: err,
            }),
        }
    }

    /// Abort the FUSE connection through fusectl (`/sys/fs/fuse/connections/N/abort`).
    fn abort_connection(&self) -> bool {
        let Some((major, minor)) = self.dev else {
            return false;
        };
        let id = (u64::from(major) << 20) | u64::from(minor);
        let path = format!("/sys/fs/fuse/connections/{id}/abort");
        match std::fs::write(&path, b"1") {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("cannot abort the FUSE connection ({path}: {e})");
                false
            }
        }
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if let Err(e) = self.do_unmount() {
            tracing::warn!("{e}");
        }
    }
}

/// Take the change listener out of the VFS and stop the notifier thread. Runs while the
/// workers still serve, so a notification waiting for a lock the kernel holds until one of
/// them replies can finish.
fn stop_inval(shared: &Shared, listener: bpfvfs_vfs::ListenerId) {
    shared.vfs.remove_change_listener(listener);
    if let Some(i) = shared.inval.get() {
        i.stop(Duration::from_secs(2));
    }
}

/// One line of /proc/self/mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MountInfo {
    pub(crate) dev: (u32, u32),
    pub(crate) mountpoint: PathBuf,
    pub(crate) fstype: String,
}

/// The topmost mount at `path` (which must be canonical), from /proc/self/mountinfo.
pub(crate) fn find_mount(path: &Path) -> Option<MountInfo> {
    let s = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_mountinfo(&s)
        .into_iter()
        .rev()
        .find(|m| m.mountpoint == path)
}

pub(crate) fn parse_mountinfo(s: &str) -> Vec<MountInfo> {
    s.lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let _id = f.next()?;
            let _parent = f.next()?;
            let (ma, mi) = f.next()?.split_once(':')?;
            let _root = f.next()?;
            let mp = f.next()?;
            let rest: Vec<&str> = f.collect();
            let sep = rest.iter().position(|&x| x == "-")?;
            let fstype = rest.get(sep + 1)?;
            Some(MountInfo {
                dev: (ma.parse().ok()?, mi.parse().ok()?),
                mountpoint: PathBuf::from(std::ffi::OsStr::from_bytes(&unescape(mp))),
                fstype: fstype.to_string(),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = (oct[0] - b'0') as u32 * 64
                    + (oct[1] - b'0') as u32 * 8
                    + (oct[2] - b'0') as u32;
                if v <= 255 {
                    out.push(v as u8);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let s = "45 27 0:42 / /tmp/fuse\\040mnt rw,relatime shared:1 - fuse.bpfvfs bpfvfs rw,user_id=0\n\
                 22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                 garbage\n";
        let v = parse_mountinfo(s);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].dev, (0, 42));
        assert_eq!(v[0].mountpoint, PathBuf::from("/tmp/fuse mnt"));
        assert_eq!(v[0].fstype, "fuse.bpfvfs");
        assert_eq!(v[1].fstype, "ext4");
        assert_eq!(unescape("a\\134b\\011"), b"a\\b\t");
        assert_eq!(unescape("tail\\"), b"tail\\");
        assert_eq!(unescape("x\\9zz"), b"x\\9zz");
    }
}
