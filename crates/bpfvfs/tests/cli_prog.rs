//! `bpfvfs prog load|loadall|run|tracelog` against a live daemon, with the C programs of
//! examples/ compiled by clang: load and pin, maps pinned with pinmaps and visible through the
//! FUSE mount, test runs with ctx files (text and JSON output), a verifier rejection printing
//! the log and exiting non-zero, bad objects and bad arguments, the trace pipe.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn compile(src: &Path, out_dir: &Path) -> Option<PathBuf> {
    compile_bpf(src, out_dir)
}

fn example(name: &str, out_dir: &Path) -> Option<PathBuf> {
    example_bpf(name, out_dir)
}

/// A daemon with examples/inode_counter loaded, its map pinned at
/// /sys/fs/bpf/icmaps/inode_counts; None where the environment cannot run it.
fn daemon_with_inode_counter(tag: &str) -> Option<Daemon> {
    let d = Daemon::start(tag, &[])?;
    let o = example("inode_counter", d.tmp.path())?;
    d.cli_ok(&[
        "prog",
        "loadall",
        s(&o),
        "/sys/fs/bpf/ic",
        "pinmaps",
        "/sys/fs/bpf/icmaps",
    ]);
    Some(d)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn load_pin_and_run_examples() {
    let Some(d) = Daemon::start("cliprog", &[]) else {
        return;
    };
    let tmp = d.tmp.path().to_path_buf();
    let Some(maps_o) = example("maps", &tmp) else {
        return;
    };

    // loadall: every program pinned under the directory, maps under pinmaps.
    assert_eq!(
        d.cli_ok(&[
            "prog",
            "loadall",
            s(&maps_o),
            "/sys/fs/bpf/ex",
            "pinmaps",
            "/sys/fs/bpf/exmaps"
        ]),
        ""
    );
    let bpffs = d.mnt.join("sys/fs/bpf");
    assert!(bpffs.join("ex/count").exists());
    assert!(bpffs.join("ex/forget").exists());
    assert!(bpffs.join("exmaps/counters").exists());
    assert!(bpffs.join("exmaps/last").exists());

    // prog show lists them as syscall programs with their maps.
    let show = d.cli_ok(&["prog", "show", "pinned", "/sys/fs/bpf/ex/count"]);
    assert!(show.contains("syscall  name count  tag "), "{show}");
    assert!(show.contains("map_ids "), "{show}");

    // run with a ctx file; the updated context goes to ctx_out.
    let ctx = tmp.join("ctx.bin");
    let mut bytes = 7u32.to_ne_bytes().to_vec();
    bytes.extend(5u32.to_ne_bytes());
    bytes.extend([0u8; 8]);
    std::fs::write(&ctx, &bytes).unwrap();
    let ctx_out = tmp.join("ctx.out");
    let out = d.cli_ok(&[
        "prog",
        "run",
        "pinned",
        "/sys/fs/bpf/ex/count",
        "ctx_in",
        s(&ctx),
        "ctx_out",
        s(&ctx_out),
    ]);
    assert!(out.starts_with("Return value: 0, duration: "), "{out}");
    let after = std::fs::read(&ctx_out).unwrap();
    assert_eq!(u64::from_ne_bytes(after[8..16].try_into().unwrap()), 5);

    // The issue's short form `ctx FILE` and repeat N (average).
    let out = d.cli_ok(&[
        "prog",
        "run",
        "pinned",
        "/sys/fs/bpf/ex/count",
        "ctx",
        s(&ctx),
        "repeat",
        "10",
    ]);
    assert!(
        out.starts_with("Return value: 0, duration (average): "),
        "{out}"
    );
    // 1 + 10 runs added 5 each.
    let dump = d.cli_ok(&[
        "-j",
        "map",
        "lookup",
        "pinned",
        "/sys/fs/bpf/exmaps/counters",
        "key",
        "7",
        "0",
        "0",
        "0",
    ]);
    let v: Value = serde_json::from_str(&dump).unwrap();
    let val: Vec<u64> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| u64::from_str_radix(x.as_str().unwrap().trim_start_matches("0x"), 16).unwrap())
        .collect();
    assert_eq!(val[0], 55, "{dump}");

    let out = d.cli(&["prog", "run", "pinned", "/sys/fs/bpf/ex/count", "d", "x"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("ambiguous prefix: 'd' could be 'data_in' or 'data_out' or 'data_size_out'"));

    // JSON output: retval and duration; ctx_out "-" as a byte array.
    let out = d.cli_ok(&[
        "-j",
        "prog",
        "run",
        "pinned",
        "/sys/fs/bpf/ex/count",
        "ctx_in",
        s(&ctx),
        "ctx_out",
        "-",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["retval"], 0);
    assert!(v["duration"].is_u64());
    assert_eq!(v["ctx_out"].as_array().unwrap().len(), 16);

    // prog load pins the first program only; the pin can be removed through the mount.
    let Some(glob_o) = example("globals", &tmp) else {
        return;
    };
    assert_eq!(
        d.cli_ok(&["prog", "load", s(&glob_o), "/sys/fs/bpf/glob"]),
        ""
    );
    let mut gctx = 4u32.to_ne_bytes().to_vec();
    gctx.extend([0u8; 28]);
    let gctx_f = tmp.join("g.bin");
    std::fs::write(&gctx_f, &gctx).unwrap();
    let out = d.cli_ok(&[
        "prog",
        "run",
        "pinned",
        "/sys/fs/bpf/glob",
        "ctx_in",
        s(&gctx_f),
    ]);
    assert!(out.starts_with("Return value: 3, "), "{out}");
    std::fs::remove_file(bpffs.join("glob")).unwrap();
    // Nothing else holds the program: it is gone.
    let gone = d.cli(&["prog", "show", "name", "accumulate"]);
    assert!(!String::from_utf8_lossy(&gone.stdout).contains("accumulate"));

    // An XDP program on a packet file: data_out to stdout as bpftool's hex dump.
    let Some(xdp_o) = example("xdp_filter", &tmp) else {
        return;
    };
    d.cli_ok(&["prog", "load", s(&xdp_o), "/sys/fs/bpf/xdp"]);
    let mut frame = vec![0u8; 12];
    frame.extend([
        0x08, 0x00, 0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    frame.extend([0x30, 0x39, 0, 9, 0, 8, 0, 0]);
    let pkt = tmp.join("pkt.bin");
    std::fs::write(&pkt, &frame).unwrap();
    let out = d.cli_ok(&[
        "prog",
        "run",
        "pinned",
        "/sys/fs/bpf/xdp",
        "data_in",
        s(&pkt),
        "data_out",
        "-",
        "repeat",
        "3",
    ]);
    assert!(
        out.starts_with("0000000\t0000 0000 0000 0000 0000 0000 0800 4500 | ........ ......E.\n"),
        "{out}"
    );
    assert!(
        out.ends_with("Return value: 1, duration (average): ")
            || out.contains("Return value: 1, duration (average): "),
        "{out}"
    );

    // -j load prints null.
    assert_eq!(
        d.cli_ok(&["-j", "prog", "load", s(&glob_o), "/sys/fs/bpf/glob2"])
            .trim(),
        "null"
    );
}

#[test]
fn load_errors() {
    let Some(d) = Daemon::start("cliprogerr", &[]) else {
        return;
    };
    let tmp = d.tmp.path().to_path_buf();
    // A program the verifier rejects: log printed, exit 255, nothing pinned.
    let bad = tmp.join("bad.bpf.c");
    std::fs::write(
        &bad,
        r#"#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 4); __type(key, __u32); __type(value, __u64); } a SEC(".maps");
SEC("syscall") int oops(void *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&a, &k);
	return *v; /* no null check */
}
char LICENSE[] SEC("license") = "GPL";
"#,
    )
    .unwrap();
    let Some(bad_o) = compile(&bad, &tmp) else {
        return;
    };
    let out = d.cli(&["prog", "load", s(&bad_o), "/sys/fs/bpf/bad"]);
    assert_eq!(out.status.code(), Some(255));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("-- BEGIN PROG LOAD LOG --"), "{err}");
    assert!(
        err.contains("invalid mem access 'map_value_or_null'"),
        "{err}"
    );
    assert!(err.contains("-- END PROG LOAD LOG --"), "{err}");
    assert!(
        err.ends_with("Error: failed to load object file\n"),
        "{err}"
    );
    assert!(!d.mnt.join("sys/fs/bpf/bad").exists());
    // The failed load left no map or program behind.
    let st = d.stats();
    assert_eq!(st["maps_live"], 0, "{st}");
    assert!(st["progs_live"].as_u64().unwrap_or(0) <= 2, "{st}");

    // Not an ELF file.
    let junk = tmp.join("junk.o");
    std::fs::write(&junk, b"this is not an object").unwrap();
    let out = d.cli(&["prog", "load", s(&junk), "/sys/fs/bpf/j"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).ends_with("Error: failed to open object file\n"));
    // Missing file.
    let out = d.cli(&["prog", "load", "/nonexistent.o", "/sys/fs/bpf/j"]);
    assert_eq!(out.status.code(), Some(255));
    // Bad words.
    let out = d.cli(&["prog", "load", s(&junk), "/sys/fs/bpf/j", "bogus"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("expected no more arguments, 'type', 'map' or 'dev', got: 'bogus'?"));
    let out = d.cli(&[
        "prog",
        "load",
        s(&junk),
        "/sys/fs/bpf/j",
        "type",
        "nosuchtype",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown program type 'nosuchtype'"));
    let out = d.cli(&["prog", "run", "id", "99999", "ctx_in", "/dev/null"]);
    assert_eq!(out.status.code(), Some(255));
    let out = d.cli(&[
        "prog",
        "run",
        "pinned",
        "/sys/fs/bpf/nothing",
        "repeat",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(255));
}

#[test]
fn tracelog_streams_printk_lines() {
    let Some(d) = Daemon::start("clitrace", &[]) else {
        return;
    };
    let tmp = d.tmp.path().to_path_buf();
    let Some(o) = example("printk", &tmp) else {
        return;
    };
    d.cli_ok(&["prog", "load", s(&o), "/sys/fs/bpf/hello"]);
    let child = Command::new(env!("CARGO_BIN_EXE_bpfvfs"))
        .arg("--socket")
        .arg(&d.sock)
        .args(["prog", "tracelog"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ctx = tmp.join("x.bin");
    std::fs::write(&ctx, 6u32.to_ne_bytes()).unwrap();
    d.cli_ok(&[
        "prog",
        "run",
        "pinned",
        "/sys/fs/bpf/hello",
        "ctx_in",
        s(&ctx),
    ]);
    std::thread::sleep(Duration::from_millis(600));
    // SAFETY: plain kill(2) of our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bpf_trace_printk: hello from bpfvfs: x=6"),
        "{text}"
    );
    assert!(text.contains("bpf_trace_printk: x squared is 36"), "{text}");
}

#[test]
fn inode_storage_from_the_command_line() {
    let Some(d) = daemon_with_inode_counter("clistorage") else {
        return;
    };
    d.sh_ok("mkdir -p data && echo a > data/a && echo b > data/b");
    let m = "/sys/fs/bpf/icmaps/inode_counts";
    let host_a = d.mnt.join("data/a");
    // update by host path under the mount (the CLI passes an fd of it, SCM_RIGHTS), lookup
    // by tree path: the same inode.
    let mut args = vec![
        "map",
        "update",
        "pinned",
        m,
        "file",
        host_a.to_str().unwrap(),
        "value",
    ];
    let val: Vec<String> = (0..16).map(|i| i.to_string()).collect();
    args.extend(val.iter().map(String::as_str));
    assert_eq!(d.cli_ok(&args), "");
    let out = d.cli_ok(&["map", "lookup", "pinned", m, "file", "/data/a"]);
    let ino = std::fs::metadata(&host_a).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        out,
        format!(
            "file: /data/a  inode: {}  value: 00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f\n",
            ino.ino()
        )
    );
    // The same by descriptor.
    let out = d.cli_ok(&[
        "map",
        "lookup",
        "pinned",
        m,
        "file",
        host_a.to_str().unwrap(),
    ]);
    assert!(
        out.starts_with(&format!("file: {}  inode: {}", host_a.display(), ino.ino())),
        "{out}"
    );
    // No element on b: ENOENT, like a lookup of a missing key.
    let out = d.cli(&["map", "lookup", "pinned", m, "file", "/data/b"]);
    assert_eq!(out.status.code(), Some(254));
    // dump lists inode, path and value; JSON too.
    let dump = d.cli_ok(&["map", "dump", "pinned", m]);
    assert!(dump.contains("file: /data/a  inode: "), "{dump}");
    assert!(dump.ends_with("Found 1 element\n"), "{dump}");
    let j = d.cli_ok(&["-j", "map", "dump", "pinned", m]);
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert_eq!(v[0]["file"], "/data/a");
    assert_eq!(v[0]["inode"], ino.ino());
    // delete, then nothing left; a missing file is ENOENT with the path in the message.
    assert_eq!(
        d.cli_ok(&["map", "delete", "pinned", m, "file", "/data/a"]),
        ""
    );
    assert!(d
        .cli_ok(&["map", "dump", "pinned", m])
        .ends_with("Found 0 elements\n"));
    let out = d.cli(&[
        "map",
        "update",
        "pinned",
        m,
        "file",
        "/data/none",
        "value",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
    ]);
    assert_ne!(out.status.code(), Some(0));
    // The storage dies with the inode: tag a file, remove it, nothing is left.
    let mut args = vec!["map", "update", "pinned", m, "file", "/data/b", "value"];
    args.extend(val.iter().map(String::as_str));
    d.cli_ok(&args);
    d.sh_ok("rm data/b");
    let ok = wait_until(Duration::from_secs(5), || {
        d.cli_ok(&["map", "dump", "pinned", m])
            .ends_with("Found 0 elements\n")
    });
    assert!(ok, "storage of an evicted inode still listed");
}

#[test]
fn inode_storage_keys_by_descriptor_over_the_socket() {
    use bpfvfs::control::{Client, ClientError};
    use std::os::fd::AsRawFd;
    let Some(d) = daemon_with_inode_counter("clifd") else {
        return;
    };
    d.sh_ok("echo x > f");
    let mut c = Client::connect(&d.sock).unwrap();
    let h = c
        .call(
            "obj_get",
            serde_json::json!({"path": "/sys/fs/bpf/icmaps/inode_counts"}),
        )
        .unwrap()["handle"]
        .clone();
    let f = std::fs::File::open(d.mnt.join("f")).unwrap();
    let value: Vec<u8> = (1..=16).collect();
    c.call_with_fds(
        "map_update_elem",
        serde_json::json!({"handle": h, "file_fd": true, "value": value}),
        &[f.as_raw_fd()],
    )
    .unwrap();
    let v = c
        .call(
            "map_lookup_elem",
            serde_json::json!({"handle": h, "file": "/f"}),
        )
        .unwrap();
    assert_eq!(v["value"].as_array().unwrap().len(), 16);
    assert_eq!(v["value"][0], 1);
    // A descriptor of a file that is not on the mount, or none at all: EBADF.
    let other = std::fs::File::open("/proc/self/status").unwrap();
    let e = c
        .call_with_fds(
            "map_lookup_elem",
            serde_json::json!({"handle": h, "file_fd": true}),
            &[other.as_raw_fd()],
        )
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Remote(ref r) if r.errno == libc::EBADF),
        "{e}"
    );
    let e = c
        .call(
            "map_lookup_elem",
            serde_json::json!({"handle": h, "file_fd": true}),
        )
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Remote(ref r) if r.errno == libc::EBADF),
        "{e}"
    );
    // Extra descriptors are queued (up to 16) and closed with the connection; the daemon
    // keeps serving.
    let fds: Vec<_> = (0..20)
        .map(|_| std::fs::File::open(d.mnt.join("f")).unwrap())
        .collect();
    let raw: Vec<_> = fds.iter().take(16).map(|f| f.as_raw_fd()).collect();
    c.call_with_fds("ping", serde_json::Value::Null, &raw)
        .unwrap();
    drop(c);
    assert!(!d
        .cli_ok(&[
            "map",
            "lookup",
            "pinned",
            "/sys/fs/bpf/icmaps/inode_counts",
            "file",
            "/f"
        ])
        .is_empty());
}
