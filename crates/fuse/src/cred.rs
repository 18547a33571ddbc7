//! Caller credentials for a FUSE request.
//!
//! The request header carries the caller's fsuid, fsgid and pid (the thread id, in our pid
//! namespace), but not its supplementary groups: those are read from `/proc/<pid>/status`.
//! Nothing is cached, so a `setgroups` takes effect at once. The umask is 0: the kernel has
//! already applied it to the modes it sends (FUSE_DONT_MASK is not requested).

use bpfvfs_vfs::Cred;

/// The credentials of the process that made a request.
pub fn for_request(uid: u32, gid: u32, pid: u32) -> Cred {
    let groups = if uid == 0 {
        // Root passes every check that groups could matter for, except group-based
        // set-group-ID handling, where privilege wins anyway.
        Vec::new()
    } else {
        supplementary_groups(pid)
    };
    Cred {
        uid,
        gid,
        groups,
        umask: 0,
    }
}

/// The "Groups:" line of `/proc/<pid>/status`; empty if the process is gone or pid is 0.
pub fn supplementary_groups(pid: u32) -> Vec<u32> {
    if pid == 0 {
        return Vec::new();
    }
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(s) => parse_groups(&s),
        Err(_) => Vec::new(),
    }
}

fn parse_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_groups_line() {
        let s = "Name:\tsh\nUid:\t1\t1\t1\t1\nGroups:\t4 24 27 \nNgid:\t0\n";
        assert_eq!(parse_groups(s), vec![4, 24, 27]);
        assert_eq!(parse_groups("Groups:\t\n"), Vec::<u32>::new());
        assert_eq!(parse_groups("nothing"), Vec::<u32>::new());
    }

    #[test]
    fn reads_own_groups() {
        // Whatever they are, reading our own status must not fail or panic.
        let _ = supplementary_groups(std::process::id());
        assert!(supplementary_groups(0).is_empty());
    }
}
