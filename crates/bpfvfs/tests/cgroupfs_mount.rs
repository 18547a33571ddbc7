//! The cgroup tree through the real FUSE mount: /sys/fs/cgroup in the bpfvfs tree, groups
//! made and removed with mkdir/rmdir, real processes moved with `echo $$ > cgroup.procs`,
//! the kernel's errnos, group ids == st_ino of the group directories (seen through cgroup
//! storage's dump), cgroup storage freed with its group, and `bpfvfs cgroup tree`.

mod common;

use common::*;
use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::Duration;

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

fn ls(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn cgroup_tree_through_fuse() {
    let Some(d) = Daemon::start("cgfs", &[]) else {
        return;
    };
    let cg = d.mnt.join("sys/fs/cgroup");
    assert_eq!(ls(&cg), ["cgroup.controllers", "cgroup.procs"]);
    assert!(d.stats()["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["path"] == "/sys/fs/cgroup" && m["fs_type"] == "cgroup2"));

    // Groups: mkdir makes a directory with its control files.
    std::fs::create_dir(cg.join("a")).unwrap();
    std::fs::create_dir(cg.join("a/b")).unwrap();
    assert_eq!(
        ls(&cg.join("a")),
        ["b", "cgroup.controllers", "cgroup.procs"]
    );

    // The kernel's errnos: no regular files, no device nodes, control files stay.
    let touch = d.sh("touch sys/fs/cgroup/a/x");
    assert!(!touch.status.success());
    assert!(String::from_utf8_lossy(&touch.stderr).contains("Permission denied"));
    let e = std::fs::File::create(cg.join("a/x")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES));
    let e = std::fs::remove_file(cg.join("a/cgroup.procs")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM));
    let mk = d.sh("mknod sys/fs/cgroup/a/p p");
    assert!(String::from_utf8_lossy(&mk.stderr).contains("Operation not permitted"));
    let e = std::fs::remove_dir(cg.join("a")).unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(libc::EBUSY),
        "group with a child group"
    );

    // A real process moves in with echo $$; cat lists it; its group cannot go meanwhile.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("echo $$ > sys/fs/cgroup/a/b/cgroup.procs && exec sleep 30")
        .current_dir(&d.mnt)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(cg.join("a/b/cgroup.procs"))
            .is_ok_and(|s| s.lines().any(|l| l == pid.to_string()))
    }));
    let e = std::fs::remove_dir(cg.join("a/b")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBUSY), "group with a member");
    let out = d.sh_ok("echo $$ > sys/fs/cgroup/a/cgroup.procs && cat sys/fs/cgroup/a/cgroup.procs && echo self $$");
    let mut lines = out.lines();
    let listed = lines.next().unwrap().to_string();
    assert_eq!(format!("self {listed}"), lines.next().unwrap());
    child.kill().unwrap();
    child.wait().unwrap();

    // Cgroup storage keyed by group directory; the dump's id is the directory's st_ino.
    d.cli_ok(&[
        "map",
        "create",
        "/sys/fs/bpf/cs",
        "type",
        "cgrp_storage",
        "key",
        "4",
        "value",
        "8",
        "entries",
        "0",
        "name",
        "cs",
        "flags",
        "1",
    ]);
    let a_host = cg.join("a");
    d.cli_ok(&[
        "map",
        "update",
        "pinned",
        "/sys/fs/bpf/cs",
        "cgroup",
        a_host.to_str().unwrap(),
        "value",
        "7",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
    ]);
    d.cli_ok(&[
        "map",
        "update",
        "pinned",
        "/sys/fs/bpf/cs",
        "file",
        "/sys/fs/cgroup/a/b",
        "value",
        "9",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
    ]);
    let dump = json_of(&d.cli_ok(&["-j", "map", "dump", "pinned", "/sys/fs/bpf/cs"]));
    let entries = dump.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{dump}");
    assert_eq!(d.stat_u64("cgroup_groups"), 3);
    assert_eq!(d.stat_u64("cgrp_storages_live"), 2);
    for (path, first) in [("a", 7), ("a/b", 9)] {
        let ino = std::fs::metadata(cg.join(path)).unwrap().ino();
        let e = entries
            .iter()
            .find(|e| e["inode"] == ino)
            .unwrap_or_else(|| panic!("no element with id {ino} ({path}) in {dump}"));
        assert_eq!(e["file"], format!("/sys/fs/cgroup/{path}"));
        assert_eq!(e["value"][0], format!("0x{first:02x}"));
    }
    let lookup = d.cli(&[
        "map",
        "lookup",
        "pinned",
        "/sys/fs/bpf/cs",
        "cgroup",
        "/sys/fs/cgroup/a/cgroup.procs",
    ]);
    assert!(!lookup.status.success(), "a control file is not a group");

    // Removing a group frees its element.
    std::fs::remove_dir(cg.join("a/b")).unwrap();
    let dump = json_of(&d.cli_ok(&["-j", "map", "dump", "pinned", "/sys/fs/bpf/cs"]));
    assert_eq!(dump.as_array().unwrap().len(), 1, "{dump}");
    d.sh_ok("echo $$ > sys/fs/cgroup/cgroup.procs");
    assert!(wait_until(Duration::from_secs(5), || std::fs::remove_dir(
        cg.join("a")
    )
    .is_ok()));
    assert_eq!(ls(&cg), ["cgroup.controllers", "cgroup.procs"]);
    let dump = json_of(&d.cli_ok(&["-j", "map", "dump", "pinned", "/sys/fs/bpf/cs"]));
    assert_eq!(dump.as_array().unwrap().len(), 0, "{dump}");
    assert_eq!(d.stat_u64("cgroup_groups"), 1);
    assert_eq!(d.stat_u64("cgrp_storages_live"), 0);

    // bpftool's cgroup tree: the header (no programs attached anywhere).
    let tree = d.cli_ok(&["cgroup", "tree"]);
    assert_eq!(
        tree,
        "CgroupPath\nID       AttachType      AttachFlags     Name           \n"
    );
    assert_eq!(
        json_of(&d.cli_ok(&["-j", "cgroup", "tree"])),
        serde_json::json!([])
    );
}

/// `bpfvfs up --cgroup host`: the host's cgroup v2 hierarchy, read-only, through FUSE.
#[test]
fn host_mode_through_fuse() {
    if !is_root() {
        skip("not root: creating host cgroups needs it");
        return;
    }
    let host = match bpfvfs_cgroup::find_host_cgroup2() {
        Ok(h) => h,
        Err(e) => {
            skip(&e.to_string());
            return;
        }
    };
    let name = format!("bpfvfs-fuse-{}", std::process::id());
    let top = host.join(&name);
    std::fs::create_dir(&top).unwrap();
    std::fs::create_dir(top.join("a")).unwrap();
    struct Cleanup(std::path::PathBuf, std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for d in [self.0.join("a"), self.0.clone()] {
                if let Ok(p) = std::fs::read_to_string(d.join("cgroup.procs")) {
                    for pid in p.lines() {
                        let _ = std::fs::write(self.1.join("cgroup.procs"), pid);
                    }
                }
                let _ = std::fs::remove_dir(&d);
            }
        }
    }
    let _cleanup = Cleanup(top.clone(), host.clone());
    let Some(d) = Daemon::start("cghost", &["--cgroup", &format!("host={}", host.display())])
    else {
        return;
    };
    let mirror = d.mnt.join("sys/fs/cgroup").join(&name);
    assert_eq!(ls(&mirror), ["a", "cgroup.controllers", "cgroup.procs"]);
    // Read-only.
    let e = std::fs::create_dir(mirror.join("x")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    let e = std::fs::remove_dir(mirror.join("a")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    let e = std::fs::write(mirror.join("a/cgroup.procs"), "1\n").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    // A host group made now shows up; membership is the host's.
    std::fs::create_dir(top.join("b")).unwrap();
    assert_eq!(
        ls(&mirror),
        ["a", "b", "cgroup.controllers", "cgroup.procs"]
    );
    std::fs::remove_dir(top.join("b")).unwrap();
    assert_eq!(ls(&mirror), ["a", "cgroup.controllers", "cgroup.procs"]);
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    std::fs::write(top.join("a/cgroup.procs"), format!("{}\n", child.id())).unwrap();
    let listed = std::fs::read_to_string(mirror.join("a/cgroup.procs")).unwrap();
    assert_eq!(listed, format!("{}\n", child.id()));
    child.kill().unwrap();
    child.wait().unwrap();
}
