//! The cgroup examples of issue 9 through the real FUSE mount, with ordinary tools:
//! (a) examples/cgroup_opens.bpf.c — opens counted per group by a tracing program in
//! cgroup storage, shown by a view exposed in the groups (pinned there from bpffs, and
//! attached with `cgroup attach ... inherit`); (b) examples/cgroup_opens_iter.bpf.c — the
//! same counts from a cgroup iterator pinned in bpffs; and a view whose output is larger
//! than one read buffer, read whole with cat, with dd of several block sizes and with
//! pread at offsets.
//!
//! Opens are attributed to a group by moving a real process there first: a shell writes its
//! own pid to the group's cgroup.procs and then execs `cat FILE...` (same pid), so exactly
//! the cat's opens of FILE count for the group; the shell's open of cgroup.procs happens
//! before the move and counts for the group it came from. Processes a member forks are in
//! its group too, as after a fork in the kernel; one case checks that.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A daemon with a cgroup tree; None (after printing why) when that cannot run here.
fn start(tag: &str) -> Option<Daemon> {
    let d = Daemon::start(tag, &[])?;
    if !d.mnt.join("sys/fs/cgroup").is_dir() {
        skip("this daemon has no cgroup tree");
        return None;
    }
    Some(d)
}

/// Move a fresh process into GROUP (a path under sys/fs/cgroup, "" for the root) and have
/// it open `file` `n` times.
fn opens_in(d: &Daemon, group: &str, file: &str, n: usize) {
    let files = vec![file; n].join(" ");
    let procs = if group.is_empty() {
        "sys/fs/cgroup/cgroup.procs".to_string()
    } else {
        format!("sys/fs/cgroup/{group}/cgroup.procs")
    };
    d.sh_ok(&format!(
        "sh -c 'echo $$ > {procs} && exec cat {files} > /dev/null'"
    ));
}

/// The inode number stat shows for a group directory (its cgroup id).
fn group_id(d: &Daemon, group: &str) -> u64 {
    d.sh_ok(&format!("stat -c %i sys/fs/cgroup/{group}"))
        .trim()
        .parse()
        .unwrap()
}

fn cat(d: &Daemon, rel: &str) -> String {
    d.sh_ok(&format!("cat {rel}"))
}

#[test]
fn example_a_view_shows_opens_per_group() {
    let Some(d) = start("cgex-a") else {
        return;
    };
    let Some(o) = example_bpf("cgroup_opens", d.tmp.path()) else {
        return;
    };
    d.cli_ok(&[
        "prog",
        "loadall",
        s(&o),
        "/sys/fs/bpf/cgopens",
        "pinmaps",
        "/sys/fs/bpf/cgopens_maps",
        "autoattach",
    ]);
    d.sh_ok("mkdir -p sys/fs/cgroup/a/b && echo data > f");
    opens_in(&d, "a", "f", 3);
    opens_in(&d, "a/b", "f", 5);

    // Exposed by pinning the bpffs-pinned view program in each group.
    let view = "/sys/fs/bpf/cgopens/show_opens";
    d.cli_ok(&["prog", "pin", "pinned", view, "/sys/fs/cgroup/a/opens"]);
    d.cli_ok(&["prog", "pin", "pinned", view, "/sys/fs/cgroup/a/b/opens"]);
    assert_eq!(cat(&d, "sys/fs/cgroup/a/opens"), "opens: 3\n");
    assert_eq!(cat(&d, "sys/fs/cgroup/a/b/opens"), "opens: 5\n");
    // Reading runs the view for the group read; the reader (in the root group) adds to
    // the root's count only.
    assert_eq!(cat(&d, "sys/fs/cgroup/a/opens"), "opens: 3\n");
    opens_in(&d, "a", "f", 1);
    assert_eq!(cat(&d, "sys/fs/cgroup/a/opens"), "opens: 4\n");
    assert_eq!(cat(&d, "sys/fs/cgroup/a/b/opens"), "opens: 5\n");
    let st = d.sh_ok("stat -c %F sys/fs/cgroup/a/opens");
    assert_eq!(st.trim(), "regular empty file", "{st}");

    // Attached with inherit: a file named after the program in a, in a/b, and in a group
    // created afterwards.
    let host_a = d.mnt.join("sys/fs/cgroup/a");
    assert_eq!(
        d.cli_ok(&[
            "cgroup",
            "attach",
            s(&host_a),
            "view",
            "pinned",
            view,
            "inherit"
        ]),
        ""
    );
    d.sh_ok("mkdir sys/fs/cgroup/a/c");
    assert_eq!(cat(&d, "sys/fs/cgroup/a/show_opens"), "opens: 4\n");
    assert_eq!(cat(&d, "sys/fs/cgroup/a/b/show_opens"), "opens: 5\n");
    assert_eq!(cat(&d, "sys/fs/cgroup/a/c/show_opens"), "opens: 0\n");
    opens_in(&d, "a/c", "f", 2);
    assert_eq!(cat(&d, "sys/fs/cgroup/a/c/show_opens"), "opens: 2\n");
    // Processes a member forks are in its group: three cats run by a moved shell.
    d.sh_ok(
        "sh -c 'echo $$ > sys/fs/cgroup/a/c/cgroup.procs && for i in 1 2 3; do cat f > /dev/null; done'",
    );
    assert_eq!(cat(&d, "sys/fs/cgroup/a/c/show_opens"), "opens: 5\n");
    // Not attached above a: the root has no such file.
    assert!(!d.mnt.join("sys/fs/cgroup/show_opens").exists());

    // The cgroup storage map, dumped: one element per group that opened something, keyed
    // by the group (its directory and cgroup id).
    let dump = d.cli_ok(&["map", "dump", "pinned", "/sys/fs/bpf/cgopens_maps/opens"]);
    for (g, n) in [("a", 4u8), ("a/b", 5), ("a/c", 5)] {
        let line = format!(
            "file: /sys/fs/cgroup/{g}  inode: {}  value: {:02x} 00 00 00 00 00 00 00",
            group_id(&d, g),
            n
        );
        assert!(dump.lines().any(|l| l == line), "{line} not in:\n{dump}");
    }
    // The root group opened files too (the shells' cgroup.procs, the test's cats).
    assert!(dump.contains("file: /sys/fs/cgroup  inode: "), "{dump}");

    // Detach: the inherited files go; the pinned exposures stay until their bpffs pin goes.
    d.cli_ok(&["cgroup", "detach", s(&host_a), "view", "pinned", view]);
    for g in ["a", "a/b", "a/c"] {
        let f = d.mnt.join(format!("sys/fs/cgroup/{g}/show_opens"));
        assert!(wait_until(Duration::from_secs(10), || !f.exists()), "{g}");
    }
    assert_eq!(cat(&d, "sys/fs/cgroup/a/opens"), "opens: 4\n");
    d.sh_ok("rm -r sys/fs/bpf/cgopens");
    for g in ["a", "a/b"] {
        let f = d.mnt.join(format!("sys/fs/cgroup/{g}/opens"));
        assert!(wait_until(Duration::from_secs(10), || !f.exists()), "{g}");
    }
    d.sh_ok("rmdir sys/fs/cgroup/a/c sys/fs/cgroup/a/b sys/fs/cgroup/a");
    // A removed group's storage goes with it; the root's stays.
    let dump = d.cli_ok(&["map", "dump", "pinned", "/sys/fs/bpf/cgopens_maps/opens"]);
    assert!(!dump.contains("/sys/fs/cgroup/a"), "{dump}");
    assert!(dump.contains("file: /sys/fs/cgroup  inode: "), "{dump}");
    assert!(dump.contains("Found 1 element"), "{dump}");
}

/// One `id level opens` line of the iterator: (id, level, opens).
fn iter_rows(text: &str) -> Vec<(u64, u32, u64)> {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id       level opens"), "{text}");
    lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 3, "{l:?} in:\n{text}");
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn example_b_iterator_reports_the_same_counts_as_the_views() {
    let Some(d) = start("cgex-b") else {
        return;
    };
    let (Some(a), Some(b)) = (
        example_bpf("cgroup_opens", d.tmp.path()),
        example_bpf("cgroup_opens_iter", d.tmp.path()),
    ) else {
        return;
    };
    // (a) with its views, and (b) as its header says: loadall (the counter attached, the
    // counts map pinned by name), then `iter pin` of the same object.
    d.cli_ok(&[
        "prog",
        "loadall",
        s(&a),
        "/sys/fs/bpf/cgopens",
        "pinmaps",
        "/sys/fs/bpf/cgopens_maps",
        "autoattach",
    ]);
    d.cli_ok(&[
        "prog",
        "loadall",
        s(&b),
        "/sys/fs/bpf/cgopens_iter",
        "autoattach",
    ]);
    assert!(
        d.mnt.join("sys/fs/bpf/cgroup_opens").exists(),
        "pinned by name"
    );
    d.cli_ok(&[
        "iter",
        "pin",
        s(&b),
        "/sys/fs/bpf/cgroup_opens_report",
        "cgroup",
        "/sys/fs/cgroup",
        "order",
        "descendants_pre",
    ]);
    d.sh_ok("mkdir -p sys/fs/cgroup/a/b sys/fs/cgroup/z && echo data > f");
    let view = "/sys/fs/bpf/cgopens/show_opens";
    for g in ["", "a", "a/b", "z"] {
        let at = if g.is_empty() {
            "/sys/fs/cgroup/opens".to_string()
        } else {
            format!("/sys/fs/cgroup/{g}/opens")
        };
        d.cli_ok(&["prog", "pin", "pinned", view, &at]);
    }
    opens_in(&d, "a", "f", 3);
    opens_in(&d, "a/b", "f", 5);
    opens_in(&d, "z", "f", 1);

    // The root's view first: its own open is the last the root group made before the
    // iterator's file is opened (one more).
    let root_view = cat(&d, "sys/fs/cgroup/opens");
    let text = cat(&d, "sys/fs/bpf/cgroup_opens_report");
    let rows = iter_rows(&text);
    // descendants_pre from the root: root, a, a/b, z (creation order among siblings).
    let want: Vec<(&str, u32)> = vec![("", 0), ("a", 1), ("a/b", 2), ("z", 1)];
    assert_eq!(rows.len(), want.len(), "{text}");
    for ((g, level), (id, lv, n)) in want.iter().zip(&rows) {
        assert_eq!(*id, group_id(&d, g), "{g}: {text}");
        assert_eq!(lv, level, "{g}: {text}");
        if g.is_empty() {
            let v: u64 = root_view
                .trim()
                .strip_prefix("opens: ")
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(*n, v + 1, "root: view {root_view:?}, iterator {text}");
        } else {
            assert_eq!(
                cat(&d, &format!("sys/fs/cgroup/{g}/opens")),
                format!("opens: {n}\n"),
                "{g}"
            );
        }
    }
    assert_eq!(
        rows.iter().skip(1).map(|r| r.2).collect::<Vec<_>>(),
        vec![3, 5, 1],
        "{text}"
    );

    // Another order from a start group: ancestors_up from a/b.
    d.cli_ok(&[
        "iter",
        "pin",
        s(&b),
        "/sys/fs/bpf/up",
        "cgroup",
        "/sys/fs/cgroup/a/b",
        "order",
        "ancestors_up",
    ]);
    let up = iter_rows(&cat(&d, "sys/fs/bpf/up"));
    assert_eq!(
        up.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
        vec![
            (group_id(&d, "a/b"), 2),
            (group_id(&d, "a"), 1),
            (group_id(&d, ""), 0)
        ]
    );
}

/// The view of the seq_file test: 12000 numbered lines of its group (about 260 KB), far
/// more than a view's first buffer (4 KiB), the iterators' read buffer (32 KiB) or a FUSE
/// read (128 KiB), written by bpf_loop.
const BIG_VIEW: &str = r#"
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct loop_ctx {
	struct seq_file *seq;
	__u64 id;
};

static long one_line(__u32 i, struct loop_ctx *c)
{
	BPF_SEQ_PRINTF(c->seq, "group %llu line %06u\n", c->id, i);
	return 0;
}

SEC("view/cgroup")
int big_lines(struct bpf_iter__cgroup *ctx)
{
	struct loop_ctx c = { .seq = ctx->meta->seq };
	struct cgroup *cgrp = ctx->cgroup;

	if (!cgrp)
		return 0;
	c.id = cgrp->kn->id;
	bpf_loop(12000, one_line, &c, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"#;

#[test]
fn seq_file_view_larger_than_a_read_buffer() {
    let Some(d) = start("cgex-seq") else {
        return;
    };
    let src = d.tmp.path().join("big_lines.bpf.c");
    std::fs::write(&src, BIG_VIEW).unwrap();
    let Some(o) = compile_bpf(&src, d.tmp.path()) else {
        return;
    };
    d.cli_ok(&["prog", "loadall", s(&o), "/sys/fs/bpf/big"]);
    d.sh_ok("mkdir sys/fs/cgroup/g");
    d.cli_ok(&[
        "prog",
        "pin",
        "pinned",
        "/sys/fs/bpf/big/big_lines",
        "/sys/fs/cgroup/g/lines",
    ]);
    let id = group_id(&d, "g");
    let want: String = (0..12000)
        .map(|i| format!("group {id} line {i:06}\n"))
        .collect();
    assert!(want.len() > 200 * 1024, "{}", want.len());
    let rel = "sys/fs/cgroup/g/lines";
    assert_eq!(cat(&d, rel), want, "cat");
    assert_eq!(
        d.sh_ok(&format!("wc -c < {rel}")).trim(),
        want.len().to_string()
    );
    for bs in [4096, 7, 1] {
        let got = d.sh_ok(&format!("dd if={rel} bs={bs} status=none"));
        assert!(
            got == want,
            "dd bs={bs}: {} bytes, first difference at {:?}",
            got.len(),
            got.bytes().zip(want.bytes()).position(|(x, y)| x != y)
        );
    }
    // Small reads starting mid-file (dd skip), as a reader resuming at an offset.
    let got = d.sh_ok(&format!(
        "dd if={rel} bs=3 skip=40000 count=1000 status=none"
    ));
    assert_eq!(got, want[120000..123000], "dd skip");

    // pread at offsets around the buffer sizes, across a line, at and past the end.
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(d.mnt.join(rel)).unwrap();
    let len = want.len() as u64;
    for (off, n) in [
        (0u64, 10usize),
        (4095, 2),
        (4096, 4096),
        (32767, 3),
        (65536, 100),
        (131071, 131072),
        (len - 5, 5),
        (len - 5, 50),
        (len, 10),
        (len + 100, 10),
    ] {
        let mut buf = vec![0u8; n];
        let mut got = 0;
        // A short read is allowed; keep reading until EOF or n bytes.
        while got < n {
            let k = f.read_at(&mut buf[got..], off + got as u64).unwrap();
            if k == 0 {
                break;
            }
            got += k;
        }
        let lo = (off as usize).min(want.len());
        let hi = (off as usize + n).min(want.len());
        assert_eq!(&buf[..got], &want.as_bytes()[lo..hi], "pread {n} at {off}");
    }
}

/// The views of the read benchmark (same source as crates/runtime/benches/view_read.rs):
/// 13 bytes, 3968 bytes (one view buffer) and 64 KiB (view rerun with doubled buffers).
const BENCH_VIEWS: &str = r#"
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct loop_ctx {
	struct seq_file *seq;
};

static long one_line(__u32 i, struct loop_ctx *c)
{
	BPF_SEQ_PRINTF(c->seq, "line %058u\n", i);
	return 0;
}

static int lines(struct bpf_iter__cgroup *ctx, __u32 n)
{
	struct loop_ctx c = { .seq = ctx->meta->seq };

	if (!ctx->cgroup)
		return 0;
	bpf_loop(n, one_line, &c, 0);
	return 0;
}

SEC("view/cgroup")
int small(struct bpf_iter__cgroup *ctx)
{
	struct cgroup *cgrp = ctx->cgroup;

	if (!cgrp)
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "opens: %06llu\n", cgrp->kn->id);
	return 0;
}

SEC("view/cgroup")
int page(struct bpf_iter__cgroup *ctx)
{
	return lines(ctx, 62);
}

SEC("view/cgroup")
int big(struct bpf_iter__cgroup *ctx)
{
	return lines(ctx, 1024);
}

char LICENSE[] SEC("license") = "GPL";
"#;

/// Median and 90th percentile of `samples` (ns).
fn median_p90(mut samples: Vec<u128>) -> (u128, u128) {
    samples.sort_unstable();
    (samples[samples.len() / 2], samples[samples.len() * 9 / 10])
}

/// Time to read an exposed view through the FUSE mount against a plain file of the same
/// bytes: open + read to the end (128 KiB requests) + close from this process, warm, and
/// `cat FILE` spawned per read. Prints a table; run in release:
/// `cargo test --release -p bpfvfs --test cgroup_examples -- --ignored --nocapture`.
#[test]
#[ignore = "prints timing figures for docs/benchmarks.md, asserts nothing: run with -- --ignored --nocapture"]
fn view_read_cost_through_fuse() {
    use std::io::Read;
    use std::time::Instant;
    let Some(d) = start("cgex-bench") else {
        return;
    };
    let src = d.tmp.path().join("bench_views.bpf.c");
    std::fs::write(&src, BENCH_VIEWS).unwrap();
    let Some(o) = compile_bpf(&src, d.tmp.path()) else {
        return;
    };
    d.cli_ok(&["prog", "loadall", s(&o), "/sys/fs/bpf/vb"]);
    d.sh_ok("mkdir sys/fs/cgroup/g");
    println!(
        "{:<6} {:>7} {:>13} {:>13} {:>13} {:>13} {:>6} {:>10} {:>10}",
        "view",
        "bytes",
        "view med ns",
        "view p90 ns",
        "plain med ns",
        "plain p90 ns",
        "ratio",
        "cat view",
        "cat plain"
    );
    for name in ["small", "page", "big"] {
        d.cli_ok(&[
            "prog",
            "pin",
            "pinned",
            &format!("/sys/fs/bpf/vb/{name}"),
            &format!("/sys/fs/cgroup/g/{name}"),
        ]);
        let view = d.mnt.join(format!("sys/fs/cgroup/g/{name}"));
        let plain = d.mnt.join(format!("plain_{name}"));
        let bytes = std::fs::read(&view).unwrap();
        std::fs::write(&plain, &bytes).unwrap();
        let mut buf = vec![0u8; 128 * 1024];
        let mut read_once = |p: &Path| -> usize {
            let mut f = std::fs::File::open(p).unwrap();
            let mut n = 0;
            loop {
                let k = f.read(&mut buf).unwrap();
                if k == 0 {
                    return n;
                }
                n += k;
            }
        };
        let rounds = if name == "big" { 500 } else { 2000 };
        let mut time = |p: &Path| -> (u128, u128) {
            for _ in 0..rounds / 10 {
                assert_eq!(read_once(p), bytes.len());
            }
            let v = (0..rounds)
                .map(|_| {
                    let t = Instant::now();
                    let n = read_once(p);
                    let e = t.elapsed().as_nanos();
                    assert_eq!(n, bytes.len());
                    e
                })
                .collect();
            median_p90(v)
        };
        let (vm, v90) = time(&view);
        let (pm, p90) = time(&plain);
        let cat = |p: &Path| -> u128 {
            let v = (0..100)
                .map(|_| {
                    let t = Instant::now();
                    let st = std::process::Command::new("cat")
                        .arg(p)
                        .stdout(std::process::Stdio::null())
                        .status()
                        .unwrap();
                    assert!(st.success());
                    t.elapsed().as_nanos()
                })
                .collect();
            median_p90(v).0
        };
        let (cv, cp) = (cat(&view), cat(&plain));
        println!(
            "{name:<6} {:>7} {vm:>13} {v90:>13} {pm:>13} {p90:>13} {:>6.2} {:>10} {:>10}",
            bytes.len(),
            vm as f64 / pm as f64,
            cv,
            cp
        );
    }
}
