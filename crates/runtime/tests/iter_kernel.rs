//! Iterators against the host kernel: the same clang-built object run by the kernel (libbpf
//! in a small C harness, tests/kernel/iter_run.c: link created, its iterator fd read) and by
//! bpfvfs must print the same bytes — a `bpf_map_elem` iterator over an array filled with the
//! same values, and a cgroup iterator over a scratch subtree of the host's cgroup v2
//! hierarchy (bpfvfs in host mode, mirroring it) in every order. And a program built against
//! the kernel's own vmlinux.h (bpftool's dump of /sys/kernel/btf/vmlinux) loads unchanged
//! into bpfvfs and reads `cgroup->kn->id` through CO-RE. Each test skips with the reason when
//! not root, without gcc/libbpf/bpftool, or without cgroup v2.

mod common;

use bpfvfs_bpf::Handle;
use bpfvfs_cgroup::{find_host_cgroup2, CgroupMode};
use bpfvfs_runtime::iter::{CgroupOrder, IterTarget};
use bpfvfs_runtime::{LoadedObj, Runtime};
use bpfvfs_vfs::Cred;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmpdir(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bpfvfs-iter-kernel-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn build_harness(dir: &Path) -> Result<PathBuf, String> {
    common::build_libbpf_harness("iter_run", dir)
}

/// The kernel's output, or why the kernel could not run it.
fn kernel_side(harness: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let out = Command::new(harness).args(args).output().unwrap();
    match out.status.code() {
        Some(0) => Ok(out.stdout),
        Some(2) => Err(format!(
            "the kernel refused: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        _ => panic!(
            "iter harness failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// examples/NAME.bpf.c compiled and written next to the harness.
fn example_obj(dir: &Path, name: &str) -> Option<(PathBuf, Vec<u8>)> {
    let bytes = common::example(name)?;
    let p = dir.join(format!("{name}.bpf.o"));
    std::fs::write(&p, &bytes).unwrap();
    Some((p, bytes))
}

use common::load;

fn prog<'a>(o: &'a LoadedObj, name: &str) -> &'a Handle {
    &o.progs.iter().find(|(n, _)| n == name).expect(name).1
}

fn read_link(link: &Handle) -> Vec<u8> {
    link.obj
        .as_link()
        .unwrap()
        .seq()
        .expect("an iterator link")
        .read_all()
        .unwrap()
}

#[test]
fn map_elem_iterator_output_is_the_kernels() {
    let dir = tmpdir("elem");
    let harness = match build_harness(&dir) {
        Ok(h) => h,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let Some((path, bytes)) = example_obj(&dir, "iter_map_elem") else {
        return;
    };
    let values: [u64; 8] = [5, 6, 7, 100, 0, 1 << 40, 3, u64::MAX];
    let vals: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    let mut args = vec![path.to_str().unwrap(), "dump_elems", "map", "counts"];
    args.extend(vals.iter().map(|s| s.as_str()));
    let kernel = match kernel_side(&harness, &args) {
        Ok(k) => k,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    for cfg in common::configs() {
        let (_vfs, bpf, rt) = common::instance(cfg);
        let o = load(&rt, "iter_map_elem", &bytes);
        let counts = &o.maps.iter().find(|(n, _)| n == "counts").unwrap().1;
        for (k, v) in values.iter().enumerate() {
            bpf.map_update_elem(counts, &(k as u32).to_ne_bytes(), &v.to_ne_bytes(), 0)
                .unwrap();
        }
        let link = rt
            .iter_link_create(
                prog(&o, "dump_elems"),
                IterTarget::Map(counts.obj.as_map().unwrap().clone()),
            )
            .unwrap();
        let ours = read_link(&link);
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&kernel),
            "{cfg:?}"
        );
    }
}

/// A scratch subtree of the host's cgroup v2 hierarchy, removed on drop.
struct Scratch {
    dirs: Vec<PathBuf>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn cgroup_iterator_output_is_the_kernels_on_the_host_tree() {
    let dir = tmpdir("cgroup");
    let harness = match build_harness(&dir) {
        Ok(h) => h,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let host = match find_host_cgroup2() {
        Ok(p) => p,
        Err(e) => {
            println!("SKIPPED: no cgroup v2 hierarchy: {e}");
            return;
        }
    };
    let Some((path, bytes)) = example_obj(&dir, "iter_cgroup_ids") else {
        return;
    };
    let top_name = format!("bpfvfs-iter-{}", std::process::id());
    let top = host.join(&top_name);
    let mut scratch = Scratch { dirs: Vec::new() };
    for rel in ["", "a", "a/b", "c", "a/d"] {
        let p = if rel.is_empty() {
            top.clone()
        } else {
            top.join(rel)
        };
        std::fs::create_dir(&p).expect("scratch cgroup");
        scratch.dirs.push(p);
    }
    let vfs = bpfvfs_vfs::Vfs::new_memfs();
    let bpf = bpfvfs_bpf::Bpf::new(vfs.clone()).unwrap();
    let rt = Runtime::new(bpf.clone());
    let tree = bpfvfs_cgroup::install(&vfs, CgroupMode::Host(host.clone())).unwrap();
    let o = load(&rt, "iter_cgroup_ids", &bytes);
    let data = &o.maps.iter().find(|(n, _)| n.ends_with(".data")).unwrap().1;
    // The id of a/b: the program returns 1 there (stop after this group).
    let ab_id = std::fs::metadata(top.join("a/b")).unwrap().ino();
    for (start, order, stop_after) in [
        ("", CgroupOrder::DescendantsPre, u64::MAX),
        ("", CgroupOrder::DescendantsPost, u64::MAX),
        ("a/b", CgroupOrder::AncestorsUp, u64::MAX),
        ("a", CgroupOrder::SelfOnly, u64::MAX),
        ("", CgroupOrder::DescendantsPre, ab_id),
    ] {
        let host_dir = if start.is_empty() {
            top.clone()
        } else {
            top.join(start)
        };
        let num = (order as u32).to_string();
        let stop = stop_after.to_string();
        bpf.map_update_elem(data, &0u32.to_ne_bytes(), &stop_after.to_ne_bytes(), 0)
            .unwrap();
        let kernel = match kernel_side(
            &harness,
            &[
                path.to_str().unwrap(),
                "cgroup_ids",
                "cgroup",
                host_dir.to_str().unwrap(),
                &num,
                &stop,
            ],
        ) {
            Ok(k) => k,
            Err(why) => {
                println!("SKIPPED: {why}");
                return;
            }
        };
        let gpath = if start.is_empty() {
            format!("/{top_name}")
        } else {
            format!("/{top_name}/{start}")
        };
        let group = tree.by_path(&gpath).unwrap_or_else(|| panic!("{gpath}"));
        let link = rt
            .iter_link_create(
                prog(&o, "cgroup_ids"),
                IterTarget::Cgroup {
                    group: Some(group),
                    order: Some(order),
                },
            )
            .unwrap();
        let ours = read_link(&link);
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&kernel),
            "{order:?} from {gpath}, stop after {stop_after}"
        );
        // Not vacuous: the walk saw the scratch groups.
        let text = String::from_utf8_lossy(&ours).into_owned();
        assert!(text.contains(" name "), "{text}");
        if stop_after == ab_id {
            assert!(
                text.contains(" name b\n") && !text.contains(" name c\n"),
                "{text}"
            );
        }
    }
    drop(scratch);
}

/// A program written against the kernel's own vmlinux.h (every struct with the kernel's
/// layout) loads into bpfvfs unchanged: CO-RE relocates `cgrp->kn->id` and `cgrp->level` to
/// bpfvfs's views, and it prints the ids stat shows.
#[test]
fn program_built_against_the_kernels_vmlinux_h_reads_our_views() {
    let dir = tmpdir("kvmlinux");
    let kdir = dir.join("k");
    std::fs::create_dir_all(&kdir).unwrap();
    let dump = Command::new("bpftool")
        .args([
            "btf",
            "dump",
            "file",
            "/sys/kernel/btf/vmlinux",
            "format",
            "c",
        ])
        .output();
    let header = match dump {
        Ok(o) if o.status.success() => o.stdout,
        Ok(o) => {
            println!(
                "SKIPPED: bpftool cannot dump the kernel's BTF: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            println!("SKIPPED: bpftool not available: {e}");
            return;
        }
    };
    std::fs::write(kdir.join("vmlinux.h"), header).unwrap();
    let src = dir.join("kernel_ids.bpf.c");
    std::fs::write(
        &src,
        r#"#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

SEC("iter/cgroup")
int kernel_ids(struct bpf_iter__cgroup *ctx)
{
	struct cgroup *cgrp = ctx->cgroup;
	if (!cgrp)
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "%llu %d\n", BPF_CORE_READ(cgrp, kn, id), cgrp->level);
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
"#,
    )
    .unwrap();
    let arch_inc = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let obj = dir.join("kernel_ids.bpf.o");
    let r = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-c", "-D__TARGET_ARCH_x86"])
        .arg(format!("-I{arch_inc}"))
        .arg(format!("-I{}", kdir.display()))
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output();
    match r {
        Err(e) => {
            println!("SKIPPED: clang not available: {e}");
            return;
        }
        Ok(o) if !o.status.success() => panic!(
            "clang against the kernel's vmlinux.h: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Ok(_) => {}
    }
    let bytes = std::fs::read(&obj).unwrap();
    for cfg in common::configs() {
        let (vfs, _bpf, rt) = common::instance(cfg);
        let tree = bpfvfs_cgroup::install(&vfs, CgroupMode::Local).unwrap();
        let root = Cred::root();
        for d in ["x", "x/y"] {
            vfs.mkdir(&root, None, format!("/sys/fs/cgroup/{d}").as_bytes(), 0o755)
                .unwrap();
        }
        let o = load(&rt, "kernel_ids", &bytes);
        let link = rt
            .iter_link_create(
                prog(&o, "kernel_ids"),
                IterTarget::Cgroup {
                    group: None,
                    order: Some(CgroupOrder::DescendantsPre),
                },
            )
            .unwrap();
        let ino = |p: &str| vfs.stat(&root, None, p.as_bytes(), true).unwrap().ino;
        let want = format!(
            "{} 0\n{} 1\n{} 2\n",
            ino("/sys/fs/cgroup"),
            ino("/sys/fs/cgroup/x"),
            ino("/sys/fs/cgroup/x/y")
        );
        assert_eq!(tree.root().id(), ino("/sys/fs/cgroup"));
        assert_eq!(
            String::from_utf8(read_link(&link)).unwrap(),
            want,
            "{cfg:?}"
        );
    }
}

/// seq_file buffering as the kernel's: objects of 20000 and 32767 bytes are all shown (one
/// per 8-page buffer), one of 32768 bytes fails the read with E2BIG before anything is
/// shown. The kernel lists its own maps (a number that varies), so what is compared is
/// the shape: the final call's 4 bytes plus a whole number of objects, or E2BIG.
#[test]
fn buffer_overflow_rules_are_the_kernels() {
    let dir = tmpdir("big");
    let harness = match build_harness(&dir) {
        Ok(h) => h,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let Some((path, bytes)) = example_obj(&dir, "iter_big") else {
        return;
    };
    let shape = |len: usize, err: Option<i32>, per: usize| -> String {
        match err {
            Some(e) => format!("error {e}"),
            None if len >= per + 4 && (len - 4).is_multiple_of(per) => "whole objects".to_string(),
            None => format!("{len} bytes"),
        }
    };
    for per in [20000usize, 32767, 32768] {
        let k = match kernel_side(
            &harness,
            &[
                path.to_str().unwrap(),
                "big_maps",
                "plain",
                &per.to_string(),
            ],
        ) {
            Ok(k) => String::from_utf8(k).unwrap(),
            Err(why) => {
                println!("SKIPPED: {why}");
                return;
            }
        };
        let klen: usize = k
            .lines()
            .find_map(|l| l.strip_prefix("bytes "))
            .unwrap()
            .parse()
            .unwrap();
        let kerr: Option<i32> = k
            .lines()
            .find_map(|l| l.strip_prefix("read error "))
            .map(|e| e.parse().unwrap());
        let (_vfs, bpf, rt) = common::instance(Default::default());
        let o = load(&rt, "iter_big", &bytes);
        let data = &o.maps.iter().find(|(n, _)| n.ends_with(".data")).unwrap().1;
        bpf.map_update_elem(data, &0u32.to_ne_bytes(), &(per as u32).to_ne_bytes(), 0)
            .unwrap();
        let link = rt
            .iter_link_create(prog(&o, "big_maps"), IterTarget::Plain)
            .unwrap();
        let ours = link.obj.as_link().unwrap().seq().unwrap().read_all();
        let (olen, oerr) = match &ours {
            Ok(b) => (b.len(), None),
            Err(e) => (0, Some(e.0)),
        };
        assert_eq!(
            shape(olen, oerr, per),
            shape(klen, kerr, per),
            "{per} bytes per object"
        );
    }
}

/// bpf_seq_printf's conversions print what the kernel prints: each element's value through
/// signed, unsigned, hex, padded, left-aligned, char and pointer-free conversions.
#[test]
fn seq_printf_formats_are_the_kernels() {
    let dir = tmpdir("formats");
    let harness = match build_harness(&dir) {
        Ok(h) => h,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let src = dir.join("iter_formats.bpf.c");
    std::fs::write(
        &src,
        r#"#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

SEC("iter/bpf_map_elem")
int formats(struct bpf_iter__bpf_map_elem *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	__u32 *key = ctx->key;
	__u64 *value = ctx->value;
	__u64 v;
	if (!key || !value) {
		BPF_SEQ_PRINTF(seq, "%%done %s\n", ctx->map->name);
		return 0;
	}
	v = *value;
	BPF_SEQ_PRINTF(seq, "%u: %d %i %u %x %X|%lld %llu %llx|", *key, (int)v, (int)v,
		       (unsigned)v, (unsigned)v, (unsigned)v, v, v, v);
	BPF_SEQ_PRINTF(seq, "%8d|%-8d|%08d|%+d|% d|%5u|%-5x|%c\n", (int)v, (int)v, (int)v,
		       (int)v, (int)v, (unsigned)v & 0xffff, (unsigned)v & 0xfff,
		       'a' + (char)(v & 7));
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
"#,
    )
    .unwrap();
    let Some(bytes) = common::compile(&src) else {
        return;
    };
    let path = dir.join("iter_formats.bpf.o");
    std::fs::write(&path, &bytes).unwrap();
    let values: [u64; 8] = [
        0,
        1,
        42,
        u64::MAX,
        (-1234i64) as u64,
        0x7fff_ffff,
        0x8000_0000,
        0x1234_5678_9abc_def0,
    ];
    let vals: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    let mut args = vec![path.to_str().unwrap(), "formats", "map", "counts"];
    args.extend(vals.iter().map(|s| s.as_str()));
    let kernel = match kernel_side(&harness, &args) {
        Ok(k) => k,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    for cfg in common::configs() {
        let (_vfs, bpf, rt) = common::instance(cfg);
        let o = load(&rt, "iter_formats", &bytes);
        let counts = &o.maps.iter().find(|(n, _)| n == "counts").unwrap().1;
        for (k, v) in values.iter().enumerate() {
            bpf.map_update_elem(counts, &(k as u32).to_ne_bytes(), &v.to_ne_bytes(), 0)
                .unwrap();
        }
        let link = rt
            .iter_link_create(
                prog(&o, "formats"),
                IterTarget::Map(counts.obj.as_map().unwrap().clone()),
            )
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&read_link(&link)),
            String::from_utf8_lossy(&kernel),
            "{cfg:?}"
        );
    }
}
