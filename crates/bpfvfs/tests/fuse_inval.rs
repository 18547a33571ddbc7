//! The FUSE mount sees the daemon's own changes at once (bpfvfs_fuse's inval.rs): pins and
//! unlinks over the control socket, exposed files that go with their bpffs pin. Every
//! daemon here runs with a 60 s entry/attribute TTL, so a kernel cache that was not
//! invalidated would show the old state for the whole test: each check below fails without
//! the invalidations.

mod common;

use common::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const LONG_TTL: &[&str] = &["--ttl", "60"];

fn array_map(c: &mut Ctl) -> serde_json::Value {
    c.ok(
        "map_create",
        json!({"map_type": "array", "key_size": 4, "value_size": 4, "max_entries": 1}),
    )["handle"]
        .clone()
}

fn stat_fails_enoent(d: &Daemon, rel: &str) -> bool {
    let out = d.sh(&format!("stat {rel}"));
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("No such file")
}

#[test]
fn control_socket_pins_and_unlinks_show_at_once() {
    let Some(d) = Daemon::start("finvalctl", LONG_TTL) else {
        return;
    };
    let mut c = Ctl::open(&d.sock);
    let h = array_map(&mut c);
    c.ok("mkdir", json!({"path": "/sys/fs/bpf/dir"}));
    c.ok("obj_pin", json!({"handle": h, "path": "/sys/fs/bpf/dir/a"}));
    // The kernel lists the directory and caches `a` (and `dir`) for 60 s.
    assert_eq!(d.sh_ok("ls sys/fs/bpf/dir"), "a\n");
    let ino_a = d.sh_ok("stat -c %i sys/fs/bpf/dir/a");
    assert!(stat_fails_enoent(&d, "sys/fs/bpf/dir/b"));

    // A pin made over the control socket (the CLI): listed and found by the next command.
    d.cli_ok(&[
        "map",
        "pin",
        "pinned",
        "/sys/fs/bpf/dir/a",
        "/sys/fs/bpf/dir/b",
    ]);
    assert_eq!(d.sh_ok("ls sys/fs/bpf/dir"), "a\nb\n");
    d.sh_ok("stat sys/fs/bpf/dir/b >/dev/null");

    // Unpinned over the control socket: the next stat is ENOENT, though the kernel had the
    // entry and its attributes cached for another minute.
    c.ok("unlink", json!({"path": "/sys/fs/bpf/dir/b"}));
    assert!(stat_fails_enoent(&d, "sys/fs/bpf/dir/b"));
    assert_eq!(d.sh_ok("ls sys/fs/bpf/dir"), "a\n");

    // The name re-bound to another object: the next stat shows the new inode.
    c.ok("unlink", json!({"path": "/sys/fs/bpf/dir/a"}));
    let h2 = array_map(&mut c);
    c.ok(
        "obj_pin",
        json!({"handle": h2, "path": "/sys/fs/bpf/dir/a"}),
    );
    let ino_new = d.sh_ok("stat -c %i sys/fs/bpf/dir/a");
    assert_ne!(ino_a, ino_new, "stale inode for a re-bound name");

    // A true pin in a directory of the in-memory filesystem made over the socket; the
    // directory's attributes (link count, size) follow too.
    d.sh_ok("mkdir proj && stat proj >/dev/null && ls proj");
    let nlink = d.sh_ok("stat -c %h proj");
    c.ok("mkdir", json!({"path": "/proj/sub"}));
    c.ok("obj_pin", json!({"handle": h2, "path": "/proj/m"}));
    assert_eq!(d.sh_ok("ls proj"), "m\nsub\n");
    let nlink2 = d.sh_ok("stat -c %h proj");
    assert_eq!(
        nlink2.trim().parse::<u32>().unwrap(),
        nlink.trim().parse::<u32>().unwrap() + 1,
        "the directory's link count is stale"
    );
    c.ok("unlink", json!({"path": "/proj/m"}));
    assert!(stat_fails_enoent(&d, "proj/m"));

    let st = d.stats();
    assert!(st["fuse_inval_sent"].as_u64().unwrap() > 0, "{st}");
    assert_eq!(st["fuse_inval_dropped"], 0, "{st}");
}

/// Changes made through the mount are not echoed back to the kernel (it applied our
/// replies itself): nothing is sent for them; the same kind of change made over the control
/// socket is.
#[test]
fn own_requests_are_not_echoed() {
    let Some(d) = Daemon::start("finvalown", LONG_TTL) else {
        return;
    };
    d.sh_ok("mkdir w && ls w");
    let sent = |v: &serde_json::Value| v["fuse_inval_sent"].as_u64().unwrap();
    let before = d.stats();
    d.sh_ok(
        "touch w/f && echo hi > w/f && chmod 600 w/f && ln w/f w/g && mv w/g w/h && \
         rm w/f w/h && mkdir w/d && rmdir w/d",
    );
    let after = d.stats();
    assert_eq!(
        sent(&after),
        sent(&before),
        "before {before}\nafter {after}"
    );
    let mut c = Ctl::open(&d.sock);
    c.ok("mkdir", json!({"path": "/w/d"}));
    let later = d.stats();
    assert!(sent(&later) > sent(&after), "{later}");
}

/// An exposed file in a cgroup directory goes when its bpffs pin is removed with `rm`
/// through the mount. The removal happens when the pin's inode is evicted, which is when
/// the kernel sends FORGET after `rm` returned (asynchronously): the check allows 500 ms
/// for that, against a 60 s TTL that a missing invalidation would leave the file cached for.
#[test]
fn exposed_file_goes_with_its_bpffs_pin() {
    let Some(d) = Daemon::start("finvalexp", LONG_TTL) else {
        return;
    };
    if !d.mnt.join("sys/fs/cgroup").is_dir() {
        skip("this daemon has no cgroup tree");
        return;
    }
    let mut c = Ctl::open(&d.sock);
    let h = array_map(&mut c);
    c.ok("obj_pin", json!({"handle": h, "path": "/sys/fs/bpf/m"}));
    c.ok("close", json!({"handle": h}));
    d.sh_ok("mkdir sys/fs/cgroup/g && ls sys/fs/cgroup/g >/dev/null");
    // Exposed over the control socket: listed at once.
    d.cli_ok(&[
        "map",
        "pin",
        "pinned",
        "/sys/fs/bpf/m",
        "/sys/fs/cgroup/g/m",
    ]);
    let ls = d.sh_ok("ls sys/fs/cgroup/g");
    assert!(ls.lines().any(|l| l == "m"), "{ls}");
    // Cached by the kernel now.
    d.sh_ok("stat sys/fs/cgroup/g/m >/dev/null");

    d.sh_ok("rm sys/fs/bpf/m");
    let mut tries = 0;
    let took = within_500ms(|| {
        tries += 1;
        let ls = d.sh_ok("ls sys/fs/cgroup/g");
        !ls.lines().any(|l| l == "m") && stat_fails_enoent(&d, "sys/fs/cgroup/g/m")
    });
    assert!(
        took.is_some(),
        "exposed file still visible after rm: {}",
        d.stats()
    );
    eprintln!("exposed file gone {took:?} after rm (check {tries})");
    // The group's own files are untouched.
    d.sh_ok("test -f sys/fs/cgroup/g/cgroup.procs");
    d.sh_ok("rmdir sys/fs/cgroup/g");
    assert!(stat_fails_enoent(&d, "sys/fs/cgroup/g"));

    // rmdir through the mount of a group that still shows an exposed file: the group's
    // entries go with it while the kernel holds the group's lock waiting for our reply; the
    // invalidations for them must wait for that reply, not block it (the deadlock rule).
    let h = array_map(&mut c);
    c.ok("obj_pin", json!({"handle": h, "path": "/sys/fs/bpf/m2"}));
    d.sh_ok("mkdir sys/fs/cgroup/h");
    d.cli_ok(&[
        "map",
        "pin",
        "pinned",
        "/sys/fs/bpf/m2",
        "/sys/fs/cgroup/h/m2",
    ]);
    d.sh_ok("stat sys/fs/cgroup/h/m2 sys/fs/cgroup/h/cgroup.procs >/dev/null");
    d.sh_ok("timeout 10 rmdir sys/fs/cgroup/h");
    assert!(stat_fails_enoent(&d, "sys/fs/cgroup/h/m2"));
    assert!(stat_fails_enoent(&d, "sys/fs/cgroup/h"));
    let st = d.stats();
    assert_eq!(st["fuse_inval_dropped"], 0, "{st}");
}

/// Many pins and unpins over the control socket while a shell lists the directory through
/// the mount in a loop: no hang, no daemon error, and the final listing (and every stat)
/// right at once.
#[test]
fn stress_control_pins_while_listing() {
    let Some(d) = Daemon::start("finvalstress", LONG_TTL) else {
        return;
    };
    let mut c = Ctl::open(&d.sock);
    let h = array_map(&mut c);
    c.ok("mkdir", json!({"path": "/sys/fs/bpf/s"}));
    // Two shells list (and stat every entry of) the directory in a loop until told to stop;
    // a third makes and removes subdirectories in it, so the kernel holds the directory's
    // lock for our replies while invalidations for it are being sent.
    const LIST: &str = "i=0; while [ ! -e ../stop ] && [ $i -lt 100000 ]; do \
                        ls -l sys/fs/bpf/s >/dev/null 2>&1; i=$((i+1)); done; echo $i";
    const DIRS: &str = "i=0; while [ ! -e ../stop ] && [ $i -lt 100000 ]; do \
                        mkdir sys/fs/bpf/s/d$i && rmdir sys/fs/bpf/s/d$i || exit 1; \
                        i=$((i+1)); done; echo $i";
    let listers: Vec<_> = [LIST, LIST, DIRS]
        .into_iter()
        .map(|script| {
            std::process::Command::new("timeout")
                .args(["120", "sh", "-c", script])
                .current_dir(&d.mnt)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut live = BTreeSet::new();
    let t = Instant::now();
    const N: usize = 3000;
    for i in 0..N {
        let name = format!("p{}", i % 37);
        let path = format!("/sys/fs/bpf/s/{name}");
        if live.contains(&name) {
            c.ok("unlink", json!({ "path": path }));
            live.remove(&name);
        } else {
            c.ok("obj_pin", json!({"handle": h, "path": path}));
            live.insert(name);
        }
        if i % 250 == 0 {
            // Interleave checks through the mount with the churn.
            let ls: BTreeSet<String> = d
                .sh_ok("ls sys/fs/bpf/s")
                .lines()
                .filter(|l| !l.starts_with('d'))
                .map(str::to_string)
                .collect();
            assert_eq!(ls, live, "listing after {i} changes");
        }
    }
    let churn = t.elapsed();
    std::fs::write(d.tmp.path().join("stop"), b"").unwrap();
    let mut loops = Vec::new();
    for l in listers {
        // timeout(1) exits 124 if a lister hung.
        let out = l.wait_with_output().unwrap();
        assert!(out.status.success(), "lister: {out:?}");
        loops.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let ls: BTreeSet<String> = d
        .sh_ok("ls sys/fs/bpf/s")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ls, live);
    for i in 0..37 {
        let name = format!("p{i}");
        let rel = format!("sys/fs/bpf/s/{name}");
        if live.contains(&name) {
            d.sh_ok(&format!("stat {rel} >/dev/null"));
        } else {
            assert!(stat_fails_enoent(&d, &rel), "{rel} still visible");
        }
    }
    let st = d.stats();
    let log = d.log_text();
    assert!(
        !log.contains("ERROR") && !log.contains("panicked"),
        "daemon log:\n{log}"
    );
    assert_eq!(st["fuse_inval_dropped"], 0, "{st}");
    eprintln!(
        "{N} control pins/unpins in {churn:?} while shells ran ls -l, ls -l, mkdir+rmdir \
         {loops:?} times; \
         invalidations sent {}, failed {}",
        st["fuse_inval_sent"], st["fuse_inval_failed"]
    );
}

/// Poll `f` for up to 500 ms (a change made while serving a request reaches the kernel
/// from the notifier thread just after that request's reply); how long it took.
fn within_500ms(mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    loop {
        if f() {
            return Some(t.elapsed());
        }
        if t.elapsed() > Duration::from_millis(500) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Host mode: a host group removed is found gone on the next listing, and a stat of the
/// group the kernel had cached fails at once instead of for the rest of the TTL.
#[test]
fn host_mode_groups_go_at_once() {
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
    let name = format!("bpfvfs-inval-{}", std::process::id());
    let top = host.join(&name);
    std::fs::create_dir(&top).unwrap();
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(self.0.join("b"));
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _cleanup = Cleanup(top.clone());
    let hostarg = format!("host={}", host.display());
    let Some(d) = Daemon::start("finvalhost", &["--cgroup", &hostarg, "--ttl", "60"]) else {
        return;
    };
    let rel = format!("sys/fs/cgroup/{name}");
    std::fs::create_dir(top.join("b")).unwrap();
    let ls = d.sh_ok(&format!("ls {rel}"));
    assert!(ls.lines().any(|l| l == "b"), "{ls}");
    d.sh_ok(&format!(
        "stat {rel}/b >/dev/null && stat {rel}/b/cgroup.procs >/dev/null"
    ));
    std::fs::remove_dir(top.join("b")).unwrap();
    let ls = d.sh_ok(&format!("ls {rel}"));
    assert!(!ls.lines().any(|l| l == "b"), "{ls}");
    let took = within_500ms(|| stat_fails_enoent(&d, &format!("{rel}/b")));
    assert!(
        took.is_some(),
        "removed host group still cached: {}",
        d.stats()
    );
    eprintln!("host group gone from the kernel's cache {took:?} after the listing");
}

/// A mount made over the control socket on a directory the kernel has cached: the next
/// listing shows the mounted filesystem, not the covered directory.
#[test]
fn control_socket_mount_shows_at_once() {
    let Some(d) = Daemon::start("finvalmnt", LONG_TTL) else {
        return;
    };
    d.sh_ok("mkdir over && touch over/under && ls over >/dev/null");
    let ino = d.sh_ok("stat -c %i over");
    let mut c = Ctl::open(&d.sock);
    c.ok("mount", json!({"path": "/over", "fs_type": "tmpfs"}));
    assert_eq!(d.sh_ok("ls over"), "");
    assert_ne!(d.sh_ok("stat -c %i over"), ino);
}

/// A view link (the reviewers' alternative to pinning) attached with inherit, its files read
/// through the mount, then detached over the control socket: the next stat of every file
/// is ENOENT and they are gone from the listings; a group made while the link is attached
/// shows its file at once. Same with `bpfvfs cgroup attach`/`detach`.
#[test]
fn view_link_detach_shows_at_once() {
    let Some(d) = Daemon::start("finvalview", LONG_TTL) else {
        return;
    };
    if !d.mnt.join("sys/fs/cgroup").is_dir() {
        skip("this daemon has no cgroup tree");
        return;
    }
    let Some(o) = example_bpf("view_cgroup_info", d.tmp.path()) else {
        return;
    };
    d.cli_ok(&["prog", "loadall", o.to_str().unwrap(), "/sys/fs/bpf/vci"]);
    d.sh_ok("mkdir -p sys/fs/cgroup/g/sub && ls sys/fs/cgroup/g sys/fs/cgroup/g/sub");
    let mut c = Ctl::open(&d.sock);
    let p = c.ok("obj_get", json!({"path": "/sys/fs/bpf/vci/cgroup_info"}))["handle"].clone();
    let l = c.ok(
        "link_create",
        json!({"handle": p, "attach_type": "view", "target": "/sys/fs/cgroup/g", "inherit": true}),
    )["handle"]
        .clone();
    d.sh_ok("mkdir sys/fs/cgroup/g/later");
    let groups = ["g", "g/sub", "g/later"];
    for g in groups {
        let ls = d.sh_ok(&format!("ls sys/fs/cgroup/{g}"));
        assert!(ls.lines().any(|x| x == "cgroup_info"), "{g}: {ls}");
        d.sh_ok(&format!("cat sys/fs/cgroup/{g}/cgroup_info >/dev/null"));
    }
    c.ok("link_detach", json!({"handle": l}));
    for g in groups {
        assert!(
            stat_fails_enoent(&d, &format!("sys/fs/cgroup/{g}/cgroup_info")),
            "{g}"
        );
        let ls = d.sh_ok(&format!("ls sys/fs/cgroup/{g}"));
        assert!(!ls.lines().any(|x| x == "cgroup_info"), "{g}: {ls}");
    }
    // The CLI's attach/detach.
    let host_g = d.mnt.join("sys/fs/cgroup/g");
    let host_g = host_g.to_str().unwrap();
    let prog = ["pinned", "/sys/fs/bpf/vci/cgroup_info"];
    d.cli_ok(&[
        "cgroup", "attach", host_g, "view", prog[0], prog[1], "inherit",
    ]);
    d.sh_ok("cat sys/fs/cgroup/g/sub/cgroup_info >/dev/null");
    d.cli_ok(&["cgroup", "detach", host_g, "view", prog[0], prog[1]]);
    assert!(stat_fails_enoent(&d, "sys/fs/cgroup/g/sub/cgroup_info"));
    d.sh_ok("rmdir sys/fs/cgroup/g/later sys/fs/cgroup/g/sub sys/fs/cgroup/g");
}
