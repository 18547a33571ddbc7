//! The hook examples of examples/ (issue 8), built by clang, loaded with `prog loadall ...
//! autoattach` on a live daemon and exercised with ordinary tools through the FUSE mount:
//! (a) read/write counters per inode from fentry programs, (b) an LSM policy protecting
//! tagged files from unlink and rename, (c) first-writer tracking, (d) restricting
//! filesystems by magic; plus link lifetime: the pinned links keep the programs attached
//! after the loader exits, `rm -r` of the link directory detaches them.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn compile(name: &str, out_dir: &Path) -> Option<PathBuf> {
    example_bpf(name, out_dir)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn sh(d: &Daemon, script: &str) -> (bool, String) {
    let o = d.sh(script);
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn protect_tagged_files_and_detach_by_rm() {
    let Some(d) = Daemon::start("hookprotect", &[]) else {
        return;
    };
    let Some(o) = compile("protect", d.tmp.path()) else {
        return;
    };
    // bpffs's own maps.debug/progs.debug links are there from the start.
    let links_before = d.stat_u64("links_live");
    d.cli_ok(&[
        "prog",
        "loadall",
        s(&o),
        "/sys/fs/bpf/protect",
        "pinmaps",
        "/sys/fs/bpf/protect_maps",
        "autoattach",
    ]);
    // One link per program, pinned under the directory.
    let links = d.mnt.join("sys/fs/bpf/protect");
    assert!(links.join("protect_unlink").exists());
    assert!(links.join("protect_rename").exists());
    let show = d.cli_ok(&["link", "show"]);
    assert!(show.contains("lsm") || show.contains("tracing"), "{show}");

    d.sh_ok("echo keep > keep && echo other > other");
    let m = "/sys/fs/bpf/protect_maps/protected";
    d.cli_ok(&[
        "map",
        "update",
        "pinned",
        m,
        "file",
        s(&d.mnt.join("keep")),
        "value",
        "1",
        "0",
        "0",
        "0",
    ]);
    let (ok, out) = sh(&d, "rm keep");
    assert!(!ok && out.contains("Operation not permitted"), "{out}");
    let (ok, out) = sh(&d, "mv keep moved");
    assert!(!ok && out.contains("Operation not permitted"), "{out}");
    // Renaming over a protected file is refused too.
    let (ok, _) = sh(&d, "mv other keep");
    assert!(!ok);
    assert!(d.mnt.join("keep").exists() && d.mnt.join("other").exists());
    // Untagged files are not affected.
    d.sh_ok("mv other other2 && rm other2");
    // Untag: allowed again.
    d.cli_ok(&["map", "delete", "pinned", m, "file", "/keep"]);
    d.sh_ok("mv keep k2");
    // Tag again, then detach by removing the links: the policy is gone.
    d.cli_ok(&[
        "map", "update", "pinned", m, "file", "/k2", "value", "1", "0", "0", "0",
    ]);
    assert!(!sh(&d, "rm k2").0);
    std::fs::remove_dir_all(&links).unwrap();
    let ok = wait_until(Duration::from_secs(5), || {
        d.stat_u64("links_live") == links_before
    });
    assert!(ok, "links still live after rm -r: {}", d.stats());
    d.sh_ok("rm k2");
    // The programs are freed with their links, after the grace period (the map is still
    // pinned).
    let ok = wait_until(Duration::from_secs(5), || {
        d.stat_u64("progs_freed_total") == 2
    });
    assert!(ok, "{}", d.stats());
    assert_eq!(d.stat_u64("maps_live"), 1, "{}", d.stats());
}

#[test]
fn count_reads_and_writes_per_inode() {
    let Some(d) = Daemon::start("hookrw", &[]) else {
        return;
    };
    let Some(o) = compile("rw_counter", d.tmp.path()) else {
        return;
    };
    d.cli_ok(&[
        "prog",
        "loadall",
        s(&o),
        "/sys/fs/bpf/rw",
        "pinmaps",
        "/sys/fs/bpf/rwm",
        "autoattach",
    ]);
    d.sh_ok("printf abcdefgh > data && cat data > /dev/null && cat data > /dev/null");
    let dump = d.cli_ok(&["-j", "map", "dump", "pinned", "/sys/fs/bpf/rwm/rw_counts"]);
    let v: serde_json::Value = serde_json::from_str(&dump).unwrap();
    let e = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["file"] == "/data")
        .unwrap_or_else(|| panic!("no element for /data: {dump}"));
    let bytes: Vec<u8> = e["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| u8::from_str_radix(x.as_str().unwrap().trim_start_matches("0x"), 16).unwrap())
        .collect();
    let word = |i: usize| u64::from_ne_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
    assert!(word(0) >= 2, "reads {}", word(0));
    assert!(word(1) >= 16, "read bytes {}", word(1));
    assert!(word(2) >= 1, "writes {}", word(2));
    assert_eq!(word(3), 8, "write bytes");
}

#[test]
fn first_writer_uid_and_time() {
    let Some(d) = Daemon::start("hookfirst", &[]) else {
        return;
    };
    let Some(o) = compile("first_writer", d.tmp.path()) else {
        return;
    };
    d.cli_ok(&[
        "prog",
        "loadall",
        s(&o),
        "/sys/fs/bpf/fw",
        "pinmaps",
        "/sys/fs/bpf/fwm",
        "autoattach",
    ]);
    d.sh_ok("mkdir -m 777 pub && touch pub/a && chmod 666 pub/a");
    let m = "/sys/fs/bpf/fwm/first_writer";
    if let Some(prefix) = nobody_prefix() {
        let o = sh_as_nobody(&prefix, &d.mnt, "echo first > pub/a");
        assert!(o.status.success(), "{o:?}");
    } else {
        d.sh_ok("echo first > pub/a");
    }
    d.sh_ok("echo second >> pub/a");
    let out = d.cli_ok(&["-j", "map", "lookup", "pinned", m, "file", "/pub/a"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let bytes: Vec<u8> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| u8::from_str_radix(x.as_str().unwrap().trim_start_matches("0x"), 16).unwrap())
        .collect();
    let uid = u32::from_ne_bytes(bytes[0..4].try_into().unwrap());
    let time = u64::from_ne_bytes(bytes[8..16].try_into().unwrap());
    let expect_uid = if nobody_prefix().is_some() { 65534 } else { 0 };
    assert_eq!(uid, expect_uid, "the first writer's uid, not the second's");
    assert!(time > 0);
}

#[test]
fn restrict_filesystems_by_magic() {
    let Some(d) = Daemon::start("hookrestrict", &[]) else {
        return;
    };
    let Some(o) = compile("restrict_fs", d.tmp.path()) else {
        return;
    };
    d.cli_ok(&[
        "prog",
        "loadall",
        s(&o),
        "/sys/fs/bpf/rfs",
        "pinmaps",
        "/sys/fs/bpf/rfsm",
        "autoattach",
    ]);
    d.sh_ok("echo hi > f");
    // Deny bpffs (BPF_FS_MAGIC 0xcafe4a11): reading maps.debug fails, memfs files do not.
    d.cli_ok(&[
        "map",
        "update",
        "pinned",
        "/sys/fs/bpf/rfsm/denied_magic",
        "key",
        "hex",
        "11",
        "4a",
        "fe",
        "ca",
        "00",
        "00",
        "00",
        "00",
        "value",
        "1",
    ]);
    let (ok, out) = sh(&d, "cat sys/fs/bpf/maps.debug");
    assert!(!ok && out.contains("Operation not permitted"), "{out}");
    d.sh_ok("cat f");
}
