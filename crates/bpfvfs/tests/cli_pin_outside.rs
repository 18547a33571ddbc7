//! True pins outside bpffs through the CLI and the FUSE mount with ordinary tools (issue 9
//! items 1 and 7): `bpfvfs map pin MAP FILE` with FILE in the in-memory filesystem makes a
//! 0600 regular file holding the map; ln, mv, rm, rm -r, cat and stat behave as on any file,
//! and the map is freed exactly when the file's inode dies.

mod common;

use common::*;
use std::time::Duration;

fn maps_live(d: &Daemon) -> u64 {
    d.stat_u64("maps_live")
}

/// The id at the start of `N: array ...`.
fn id_of_show(s: &str) -> u64 {
    s.split(':').next().unwrap().trim().parse().unwrap()
}

#[test]
fn map_truly_pinned_in_memfs_through_the_mount() {
    let Some(d) = Daemon::start("clipinout", &[]) else {
        return;
    };
    let base = maps_live(&d);
    d.cli_ok(&[
        "map",
        "create",
        "/sys/fs/bpf/m",
        "type",
        "array",
        "key",
        "4",
        "value",
        "8",
        "entries",
        "4",
        "name",
        "pm",
    ]);
    d.cli_ok(&[
        "map",
        "update",
        "pinned",
        "/sys/fs/bpf/m",
        "key",
        "1",
        "0",
        "0",
        "0",
        "value",
        "42",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
    ]);
    let id = id_of_show(&d.cli_ok(&["map", "show", "pinned", "/sys/fs/bpf/m"]));
    d.sh_ok("mkdir proj");
    // FILE outside bpffs: a true pin, no bpffs mounted over the directory.
    d.cli_ok(&["map", "pin", "pinned", "/sys/fs/bpf/m", "/proj/m"]);
    assert!(
        !d.stats()["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["path"] == "/proj"),
        "{}",
        d.stats()
    );
    let st = d.sh_ok("stat -c '%F %a %s %h' proj/m");
    assert_eq!(st.trim(), "regular empty file 600 0 1");
    // Reading it: EIO, with the reason in the daemon log.
    let out = d.sh("cat proj/m");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Input/output error"),
        "{out:?}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || d
            .log_text()
            .contains(&format!("pinned Map {id} "))),
        "{}",
        d.log_text()
    );
    // The CLI takes the host path under the mount, like any pinned path.
    let host = d.mnt.join("proj/m");
    let shown = d.cli_ok(&["map", "show", "pinned", host.to_str().unwrap()]);
    assert_eq!(id_of_show(&shown), id);
    // -f lists both pins.
    let shown = d.cli_ok(&["-f", "map", "show", "id", &id.to_string()]);
    assert!(shown.contains("pinned /sys/fs/bpf/m"), "{shown}");
    assert!(shown.contains("pinned /proj/m"), "{shown}");
    // watch --held lists the destruction watch the pin holds.
    let held = d.cli_ok(&["watch", "--held"]);
    assert!(
        held.contains(&format!("armed true-pin map {id} /proj/m")),
        "{held}"
    );

    // The bpffs pin goes: the true pin keeps the map.
    d.sh_ok("rm sys/fs/bpf/m");
    assert_eq!(maps_live(&d), base + 1);
    // Hard link, remove the original, rename: still the same map with its value.
    d.sh_ok("ln proj/m proj/m2 && rm proj/m && mv proj/m2 proj/m3 && test \"$(stat -c %h proj/m3)\" = 1");
    let v = d.cli_ok(&[
        "map", "lookup", "pinned", "/proj/m3", "key", "1", "0", "0", "0",
    ]);
    assert!(v.contains("2a 00 00 00"), "{v}");
    assert_eq!(maps_live(&d), base + 1);
    // A second pin in a subdirectory, then rm -r of the whole project.
    d.sh_ok("mkdir -p proj/sub");
    d.cli_ok(&["map", "pin", "pinned", "/proj/m3", "/proj/sub/again"]);
    d.sh_ok("rm -r proj");
    assert!(
        wait_until(Duration::from_secs(10), || maps_live(&d) == base),
        "map not freed after rm -r: {}",
        d.stats()
    );
    assert_eq!(d.cli_ok(&["watch", "--held"]), "");
}

#[test]
fn pin_refusals_and_errors() {
    let Some(d) = Daemon::start("clipinref", &[]) else {
        return;
    };
    d.cli_ok(&[
        "map",
        "create",
        "/sys/fs/bpf/m",
        "type",
        "hash",
        "key",
        "4",
        "value",
        "4",
        "entries",
        "4",
        "name",
        "h",
    ]);
    d.sh_ok("mkdir p && touch p/taken");
    // An existing name: EEXIST, as bpftool reports it.
    let out = d.cli(&["map", "pin", "pinned", "/sys/fs/bpf/m", "/p/taken"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("File exists")
            || String::from_utf8_lossy(&out.stderr).contains("File exists"),
        "{out:?}"
    );
    // A missing directory: the pin fails, nothing is mounted there.
    let out = d.cli(&["map", "pin", "pinned", "/sys/fs/bpf/m", "/nodir/x"]);
    assert!(!out.status.success(), "{out:?}");
}

/// examples/project_pin.sh (issue 9 example (c)) against a live daemon.
#[test]
fn example_project_pin_script() {
    let Some(d) = Daemon::start("clipinex", &[]) else {
        return;
    };
    let base = maps_live(&d);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/project_pin.sh");
    let out = std::process::Command::new("sh")
        .arg(&script)
        .arg(&d.mnt)
        .env("BPFVFS", BIN)
        .env("BPFVFS_SOCKET", &d.sock)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log_text()
    );
    assert!(
        stdout.contains("project/build/counts: regular empty file, mode 600, 0 bytes"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  /sys/fs/bpf/build_counts\n  /project/build/counts\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("value: 03 00 00 00 00 00 00 00"),
        "{stdout}"
    );
    assert!(stdout.contains("true-pin map"), "{stdout}");
    assert!(stdout.contains("freed"), "{stdout}");
    assert_eq!(maps_live(&d), base);
}

/// Exposure in the cgroup tree (issue 9 item 3) through the CLI and the mount: `map pin` at
/// a path in a group makes a file holding no reference, gone with the bpffs pin; an object
/// with no bpffs pin is refused with a message saying so.
#[test]
fn exposed_in_the_cgroup_tree_through_the_mount() {
    let Some(d) = Daemon::start("cliexpose", &[]) else {
        return;
    };
    if !d.mnt.join("sys/fs/cgroup").is_dir() {
        skip("this daemon has no cgroup tree");
        return;
    }
    let base = maps_live(&d);
    d.cli_ok(&[
        "map",
        "create",
        "/sys/fs/bpf/m",
        "type",
        "array",
        "key",
        "4",
        "value",
        "8",
        "entries",
        "4",
        "name",
        "em",
    ]);
    let id = id_of_show(&d.cli_ok(&["map", "show", "pinned", "/sys/fs/bpf/m"]));
    d.sh_ok("mkdir sys/fs/cgroup/g");
    d.cli_ok(&[
        "map",
        "pin",
        "pinned",
        "/sys/fs/bpf/m",
        "/sys/fs/cgroup/g/m",
    ]);
    let ls = d.sh_ok("ls sys/fs/cgroup/g");
    assert!(ls.lines().any(|l| l == "m"), "{ls}");
    // A map has no view: cat fails with EIO.
    let out = d.sh("cat sys/fs/cgroup/g/m");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Input/output error"),
        "{out:?}"
    );
    let held = d.cli_ok(&["watch", "--held"]);
    assert!(
        held.contains(&format!(
            "armed exposure map {id} /sys/fs/bpf/m exposed at /sys/fs/cgroup/g/m"
        )),
        "{held}"
    );
    // The exposure holds nothing: the bpffs pin goes, the map and the file go.
    d.sh_ok("rm sys/fs/bpf/m");
    assert!(
        wait_until(Duration::from_secs(10), || maps_live(&d) == base),
        "{}",
        d.stats()
    );
    assert!(
        wait_until(Duration::from_secs(10), || !d
            .mnt
            .join("sys/fs/cgroup/g/m")
            .exists()),
        "exposed file still there"
    );
    assert_eq!(d.cli_ok(&["watch", "--held"]), "");
    d.sh_ok("rmdir sys/fs/cgroup/g");

    // No bpffs pin: EPERM with the reason (control protocol message and daemon log).
    d.sh_ok("mkdir sys/fs/cgroup/h");
    let mut c = Ctl::open(&d.sock);
    let h = c.ok(
        "map_create",
        serde_json::json!({"map_type": "array", "key_size": 4, "value_size": 4, "max_entries": 1}),
    )["handle"]
        .clone();
    let v = c.err(
        "obj_pin",
        serde_json::json!({"handle": h, "path": "/sys/fs/cgroup/h/x"}),
        libc::EPERM,
    );
    assert!(
        v["err"]["message"]
            .as_str()
            .unwrap()
            .contains("object has no bpffs pin; pin it in /sys/fs/bpf first or attach a view link"),
        "{v}"
    );
    assert!(d.log_text().contains("has no bpffs pin"));
    assert!(!d.mnt.join("sys/fs/cgroup/h/x").exists());
}

/// A clang-built view program (examples/view_cgroup_info.bpf.c) exposed in a group two
/// ways: pinned there from bpffs (gone with its bpffs pin), and through a view link with
/// inherit (in every descendant, gone with the link). `cat` shows the group it is read in.
#[test]
fn clang_built_view_exposed_by_pin_and_by_link() {
    let Some(d) = Daemon::start("cliview", &[]) else {
        return;
    };
    if !d.mnt.join("sys/fs/cgroup").is_dir() {
        skip("this daemon has no cgroup tree");
        return;
    }
    let Some(o) = example_bpf("view_cgroup_info", d.tmp.path()) else {
        return;
    };
    let o = o.to_str().unwrap().to_string();
    d.cli_ok(&["prog", "loadall", &o, "/sys/fs/bpf/vci"]);
    // prog pin FILE outside bpffs: a true pin of the program, listed by -f.
    d.sh_ok("mkdir proj");
    d.cli_ok(&[
        "prog",
        "pin",
        "pinned",
        "/sys/fs/bpf/vci/cgroup_info",
        "/proj/info",
    ]);
    let show = d.cli_ok(&["-f", "prog", "show", "pinned", "/proj/info"]);
    assert!(show.contains("pinned /proj/info"), "{show}");
    assert!(
        show.contains("pinned /sys/fs/bpf/vci/cgroup_info"),
        "{show}"
    );
    d.sh_ok("mkdir -p sys/fs/cgroup/g/sub");
    let gid = d.sh_ok("stat -c %i sys/fs/cgroup/g").trim().to_string();
    d.cli_ok(&[
        "prog",
        "pin",
        "pinned",
        "/sys/fs/bpf/vci/cgroup_info",
        "/sys/fs/cgroup/g/info",
    ]);
    let text = d.sh_ok("cat sys/fs/cgroup/g/info");
    assert!(
        text.starts_with(&format!("0 id {gid} level 1 name g root ")),
        "{text}"
    );
    // Small reads at offsets see the same text.
    let dd = d.sh_ok("dd if=sys/fs/cgroup/g/info bs=3 status=none");
    assert_eq!(dd.split(" cur ").next(), text.split(" cur ").next());

    // The link API: a file named after the program in g and (inherit) in g/sub and in a
    // group created afterwards.
    let mut c = Ctl::open(&d.sock);
    let p = c.ok(
        "obj_get",
        serde_json::json!({"path": "/sys/fs/bpf/vci/cgroup_info"}),
    )["handle"]
        .clone();
    let l = c.ok(
        "link_create",
        serde_json::json!({"handle": p, "attach_type": "view", "target": "/sys/fs/cgroup/g", "inherit": true}),
    )["handle"]
        .clone();
    d.sh_ok("mkdir sys/fs/cgroup/g/later");
    for g in ["g", "g/sub", "g/later"] {
        let id = d.sh_ok(&format!("stat -c %i sys/fs/cgroup/{g}"));
        let t = d.sh_ok(&format!("cat sys/fs/cgroup/{g}/cgroup_info"));
        assert!(
            t.starts_with(&format!("0 id {} level ", id.trim())),
            "{g}: {t}"
        );
    }
    c.ok("link_detach", serde_json::json!({"handle": l}));
    // Removed inside the daemon: the kernel sees it once its entry cache times out.
    for g in ["g", "g/sub", "g/later"] {
        let f = d.mnt.join(format!("sys/fs/cgroup/{g}/cgroup_info"));
        assert!(wait_until(Duration::from_secs(10), || !f.exists()), "{g}");
    }
    // bpftool's grammar: `cgroup attach CGROUP view PROG inherit`; the daemon keeps the
    // attachment after the CLI exits; `cgroup tree` lists it; `cgroup detach` ends it.
    let host_g = d.mnt.join("sys/fs/cgroup/g");
    let host_g = host_g.to_str().unwrap();
    let prog = ["pinned", "/sys/fs/bpf/vci/cgroup_info"];
    assert_eq!(
        d.cli_ok(&["cgroup", "attach", host_g, "view", prog[0], prog[1], "inherit"]),
        ""
    );
    let t = d.sh_ok("cat sys/fs/cgroup/g/sub/cgroup_info");
    assert!(t.contains(" level 2 name sub "), "{t}");
    let tree = d.cli_ok(&["cgroup", "tree"]);
    assert!(tree.contains("view"), "{tree}");
    assert!(tree.contains("cgroup_info"), "{tree}");
    let out = d.cli(&["cgroup", "attach", host_g, "egress", prog[0], prog[1]]);
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid attach type"));
    assert_eq!(
        d.cli_ok(&[
            "cgroup",
            "detach",
            "/sys/fs/cgroup/g",
            "view",
            prog[0],
            prog[1]
        ]),
        ""
    );
    let f = d.mnt.join("sys/fs/cgroup/g/sub/cgroup_info");
    assert!(wait_until(Duration::from_secs(10), || !f.exists()));
    let out = d.cli(&[
        "cgroup",
        "detach",
        "/sys/fs/cgroup/g",
        "view",
        prog[0],
        prog[1],
    ]);
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed to detach program"));

    // The pinned exposure goes with the bpffs pins.
    d.sh_ok("rm -r sys/fs/bpf/vci");
    drop(c);
    assert!(
        wait_until(Duration::from_secs(10), || !d
            .mnt
            .join("sys/fs/cgroup/g/info")
            .exists()),
        "exposed file still there"
    );
    d.sh_ok("rmdir sys/fs/cgroup/g/later sys/fs/cgroup/g/sub sys/fs/cgroup/g");
    // The true pin still holds the program; rm -r of its directory frees it.
    let progs = d.stat_u64("progs_live");
    d.sh_ok("rm -r proj");
    assert!(
        wait_until(Duration::from_secs(10), || d.stat_u64("progs_live") < progs),
        "{}",
        d.stats()
    );
}

/// An iterator link truly pinned in the in-memory filesystem (`iter pin OBJ /proj/maps`):
/// `cat` runs it as for a bpffs pin; unlinked while a shell holds it open, the link lives
/// until that descriptor closes.
#[test]
fn iterator_truly_pinned_read_with_cat_and_unlinked_while_open() {
    let Some(d) = Daemon::start("cliiterout", &[]) else {
        return;
    };
    let Some(o) = example_bpf("iter_maps", d.tmp.path()) else {
        return;
    };
    d.sh_ok("mkdir proj");
    let host = d.mnt.join("proj/maps");
    d.cli_ok(&["iter", "pin", o.to_str().unwrap(), host.to_str().unwrap()]);
    let st = d.sh_ok("stat -c '%F %a' proj/maps");
    assert_eq!(st.trim(), "regular empty file 600");
    let text = d.sh_ok("cat proj/maps");
    assert!(text.contains("end seq_num "), "{text}");
    let links = d.stat_u64("links_live");
    // A shell holds it open on fd 3 and removes the name; it waits on stdin.
    use std::io::{BufRead, Write};
    let mut sh = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            "exec 3<proj/maps && rm proj/maps && echo ready && read x && grep -c 'end seq_num' <&3",
        )
        .current_dir(&d.mnt)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(sh.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    assert!(!d.mnt.join("proj/maps").exists());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        d.stat_u64("links_live"),
        links,
        "the open descriptor keeps the pin"
    );
    // Read through the descriptor (the iterator ran at open), then the shell exits.
    sh.stdin.take().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "1\n");
    assert!(sh.wait().unwrap().success());
    // The shell exited: its descriptor closed, the inode is evicted, the link freed.
    assert!(
        wait_until(Duration::from_secs(10), || d.stat_u64("links_live") < links),
        "{}",
        d.stats()
    );
}
