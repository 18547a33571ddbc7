//! Reading the host: cgroup v2 mounts, group directories and ids, a process's group.

use bpfvfs_vfs::Errno;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a host hierarchy cannot be mirrored.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a cgroup v2 mount (filesystem magic {magic:#x}, want cgroup2fs {want:#x})", path.display(), want = crate::CGROUP2_SUPER_MAGIC)]
    NotCgroup2 { path: PathBuf, magic: u64 },
    #[error("no cgroup v2 hierarchy is mounted on this host")]
    NoCgroup2,
}

impl HostError {
    pub fn errno(&self) -> Errno {
        match self {
            HostError::Io { source, .. } => Errno(source.raw_os_error().unwrap_or(libc::EIO)),
            HostError::NotCgroup2 { .. } => Errno::EINVAL,
            HostError::NoCgroup2 => Errno::ENOENT,
        }
    }
}

/// statfs f_type of `path`.
fn fs_magic(path: &Path) -> Result<u64, HostError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| HostError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    })?;
    // SAFETY: `c` is a valid NUL-terminated string; `st` is plain data the call fills.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; both pointers are valid for the call.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(HostError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(st.f_type as u64)
}

/// `path` must be the root of a cgroup v2 mount (stat -f -c %T: cgroup2fs).
pub fn check_host_root(path: &Path) -> Result<(), HostError> {
    let magic = fs_magic(path)?;
    if magic != crate::CGROUP2_SUPER_MAGIC {
        return Err(HostError::NotCgroup2 {
            path: path.to_path_buf(),
            magic,
        });
    }
    Ok(())
}

/// The host's cgroup v2 mount: `/sys/fs/cgroup` when it is one, else the first cgroup2
/// mount in /proc/self/mountinfo (hybrid hosts mount it at /sys/fs/cgroup/unified).
pub fn find_host_cgroup2() -> Result<PathBuf, HostError> {
    let default = Path::new("/sys/fs/cgroup");
    if check_host_root(default).is_ok() {
        return Ok(default.to_path_buf());
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| HostError::Io {
        path: "/proc/self/mountinfo".into(),
        source: e,
    })?;
    for line in info.lines() {
        // ... mount_point ... - fstype source options
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        if post.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        if let Some(mp) = pre.split_whitespace().nth(4) {
            let p = PathBuf::from(mp.replace("\\040", " "));
            if check_host_root(&p).is_ok() {
                return Ok(p);
            }
        }
    }
    Err(HostError::NoCgroup2)
}

/// The host cgroup id of the group directory `path` (its inode number, the kernfs id).
pub(crate) fn host_id(path: &Path) -> Option<u64> {
    let m = std::fs::metadata(path).ok()?;
    m.is_dir().then(|| m.ino())
}

/// The child groups of the host directory `path` as (name, id), in creation order (ids
/// grow as groups are created).
pub(crate) fn host_children(path: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if !m.is_dir() {
                continue;
            }
            if let Ok(name) = e.file_name().into_string() {
                out.push((name, m.ino()));
            }
        }
    }
    out.sort_by_key(|&(_, id)| id);
    out
}

/// The cgroup v2 path of `pid` on the host (`0::/a/b` in /proc/PID/cgroup), relative to
/// our cgroup namespace's root.
pub fn host_cgroup_path_of_pid(pid: u32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_end().to_string())
}

/// Whether a process or thread with this id exists on the host.
pub(crate) fn pid_exists(pid: u32) -> bool {
    pid != 0 && Path::new(&format!("/proc/{pid}")).exists()
}

/// The parent process of a process (`PPid:` in /proc/PID/status).
pub(crate) fn ppid_of(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The thread-group id of a task (`Tgid:` in /proc/PID/status).
pub(crate) fn tgid_of(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}
