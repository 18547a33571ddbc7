//! Every example object is a valid kernel object as libbpf sees it (issue 9): each
//! examples/*.bpf.c, built by clang, goes through libbpf's own open and relocation
//! preparation with the C harness tests/kernel/libbpf_check.c (gcc, Debian's libbpf 1.1):
//!
//! - `gen`: bpf_object__open_file, bpf_object__gen_loader, bpf_object__load. In gen_loader
//!   mode libbpf 1.1 does its whole user-space preparation (ELF and BTF checks, maps,
//!   global data, subprogram calls, map relocations, program types, BTF sanitizing) and
//!   emits a loader program instead of calling the kernel; CO-RE relocations are recorded
//!   for the loader there, not resolved, which is why there is a second step.
//! - `core`: an ordinary bpf_object__load, which resolves every CO-RE relocation in user
//!   space against a target BTF before the kernel sees any program: the running kernel's
//!   (/sys/kernel/btf/vmlinux) and bpfvfs's (crates/runtime/src/vmlinux.btf, the BTF of
//!   include/bpfvfs/vmlinux.h). The outcome of each relocation comes from libbpf's debug
//!   log; a relocation with no target field is "poisoned" (libbpf replaces the instruction
//!   by an invalid call). The kernel's verdict on the programs afterwards is not judged
//!   (LSM/fentry programs do not load on these hosts).
//!
//! SEC("view/cgroup") is bpfvfs's, not a kernel program type: libbpf refuses it ("missing
//! BPF prog type"), which `gen-strict` asserts for exactly the objects that have one. The
//! harness otherwise registers a libbpf handler for "view/" as what a view is to a kernel
//! — a tracing program with the iterator attach type, the context of a cgroup iterator —
//! so the rest of those objects, and the view bodies, are checked like any other.
//!
//! A negative control (a CO-RE read of a field no kernel has) shows the check can fail.
//! Skipped with the reason when clang, gcc or libbpf-dev are missing; `core` also when not
//! root (libbpf creates the maps before relocating) or without kernel BTF.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn skip(why: &str) {
    println!("SKIPPED: {why}");
}

fn work_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("bpfvfs-libbpf-valid-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn build_harness(dir: &Path) -> Result<PathBuf, String> {
    if !Path::new("/usr/include/bpf/libbpf.h").exists() {
        return Err("libbpf-dev is not installed (/usr/include/bpf/libbpf.h)".into());
    }
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kernel/libbpf_check.c");
    let out = dir.join("libbpf_check");
    let r = Command::new("gcc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-lbpf")
        .output()
        .map_err(|e| format!("gcc not available: {e}"))?;
    if !r.status.success() {
        return Err(format!(
            "cannot build the libbpf harness: {}",
            String::from_utf8_lossy(&r.stderr)
        ));
    }
    Ok(out)
}

/// clang -target bpf of `src` into `dir`; None when clang is missing.
fn clang(src: &Path, dir: &Path) -> Option<PathBuf> {
    let out = dir.join(
        src.file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".bpf.c", ".bpf.o"),
    );
    let r = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86", "-c"])
        .arg(format!(
            "-I/usr/include/{}-linux-gnu",
            std::env::consts::ARCH
        ))
        .arg(format!(
            "-I{}",
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../include/bpfvfs")
                .display()
        ))
        .arg(src)
        .arg("-o")
        .arg(&out)
        .output();
    match r {
        Err(e) => {
            skip(&format!("clang not available: {e}"));
            None
        }
        Ok(o) => {
            assert!(
                o.status.success(),
                "clang {}: {}",
                src.display(),
                String::from_utf8_lossy(&o.stderr)
            );
            Some(out)
        }
    }
}

/// Every examples/*.bpf.c, compiled: (name, object).
fn examples(dir: &Path) -> Option<Vec<(String, PathBuf)>> {
    let mut srcs: Vec<PathBuf> = std::fs::read_dir(common::examples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    srcs.sort();
    assert!(srcs.len() >= 20, "examples/ lost its programs: {srcs:?}");
    let mut out = Vec::new();
    for s in srcs {
        let name = s
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".bpf.c")
            .to_string();
        out.push((name, clang(&s, dir)?));
    }
    Some(out)
}

struct Run {
    status: i32,
    stdout: String,
}

fn run(harness: &Path, args: &[&str]) -> Run {
    let o = Command::new(harness).args(args).output().unwrap();
    Run {
        status: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
    }
}

/// `prog NAME SECTION TYPE` lines.
fn progs(out: &str) -> Vec<(String, String, String)> {
    out.lines()
        .filter_map(|l| l.strip_prefix("prog "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

/// CO-RE outcome per (program, relocation): "ok", or "poisoned: SPEC" if any line of
/// that relocation says so.
fn relos(out: &str) -> BTreeMap<(String, u32), String> {
    let mut m = BTreeMap::new();
    for l in out.lines().filter_map(|l| l.strip_prefix("relo ")) {
        let (prog, rest) = l.split_once(" #").unwrap();
        let (n, what) = rest.split_once(' ').unwrap();
        let e = m
            .entry((prog.to_string(), n.parse::<u32>().unwrap()))
            .or_insert_with(|| what.to_string());
        if what.starts_with("poisoned") {
            *e = what.to_string();
        }
    }
    m
}

#[test]
fn every_example_passes_libbpf_open_and_gen_loader_preparation() {
    let dir = work_dir();
    let harness = match build_harness(&dir) {
        Ok(h) => h,
        Err(why) => return skip(&why),
    };
    let Some(objs) = examples(&dir) else {
        return;
    };
    let mut report = String::new();
    for (name, obj) in &objs {
        let o = obj.to_str().unwrap();
        let r = run(&harness, &["gen", o]);
        let ps = progs(&r.stdout);
        assert!(
            !ps.is_empty(),
            "{name}: libbpf found no program:\n{}",
            r.stdout
        );
        assert!(
            r.status == 0 && r.stdout.lines().any(|l| l == "gen ok"),
            "{name}: libbpf's preparation failed:\n{}",
            r.stdout
        );
        for (p, sec, ty) in &ps {
            assert_ne!(ty, "unknown", "{name}: {p} in {sec} has no program type");
        }
        // Without the view handler: refused exactly for the objects with a view section,
        // with libbpf's message naming it, and nothing else wrong with them.
        let strict = run(&harness, &["gen-strict", o]);
        let views: Vec<&(String, String, String)> = ps
            .iter()
            .filter(|(_, s, _)| s.starts_with("view/"))
            .collect();
        if views.is_empty() {
            assert_eq!(strict.status, 0, "{name}:\n{}", strict.stdout);
        } else {
            assert_eq!(strict.status, 1, "{name}:\n{}", strict.stdout);
            let (p, sec, _) = views[0];
            assert!(
                strict.stdout.contains(&format!(
                    "prog '{p}': missing BPF prog type, check ELF section name '{sec}'"
                )),
                "{name}:\n{}",
                strict.stdout
            );
        }
        report.push_str(&format!(
            "{name}: {} program(s), gen_loader ok{}\n",
            ps.len(),
            if views.is_empty() {
                ""
            } else {
                " (view/ typed by the harness; refused by plain libbpf)"
            }
        ));
    }
    print!("{report}");
}

#[test]
fn every_example_core_relocates_against_the_kernel_btf_and_bpfvfs_btf() {
    // SAFETY: no failure modes.
    if unsafe { libc::geteuid() } != 0 {
        return skip("not root: libbpf creates the maps in the kernel before relocating");
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return skip("the kernel has no BTF (/sys/kernel/btf/vmlinux)");
    }
    let dir = work_dir();
    let harness = match build_harness(&dir) {
        Ok(h) => h,
        Err(why) => return skip(&why),
    };
    let Some(mut objs) = examples(&dir) else {
        return;
    };
    let ours = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/vmlinux.btf");
    let ours = ours.to_str().unwrap();

    // Negative control: a field no kernel and no bpfvfs model has.
    let neg_src = dir.join("no_such_field.bpf.c");
    std::fs::write(
        &neg_src,
        r#"#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
struct cgroup___bpfvfs { int bpfvfs_only_field; } __attribute__((preserve_access_index));
SEC("iter/cgroup")
int neg(struct bpf_iter__cgroup *ctx)
{
	struct cgroup___bpfvfs *c = (void *)ctx->cgroup;
	if (!c)
		return 0;
	return c->bpfvfs_only_field & 1;
}
char LICENSE[] SEC("license") = "GPL";
"#,
    )
    .unwrap();
    let neg = clang(&neg_src, &dir).unwrap();
    for btf in [None, Some(ours)] {
        let mut args = vec!["core", neg.to_str().unwrap()];
        args.extend(btf);
        let r = relos(&run(&harness, &args).stdout);
        assert_eq!(r.len(), 2, "{btf:?}: {r:?}");
        assert_eq!(r[&("neg".into(), 0)], "ok", "{r:?}");
        let v = &r[&("neg".into(), 1)];
        assert!(
            v.starts_with("poisoned: ") && v.contains("struct cgroup___bpfvfs.bpfvfs_only_field"),
            "{btf:?}: {r:?}"
        );
    }

    let mut report = String::new();
    let mut total = 0;
    for (name, obj) in objs.drain(..) {
        let o = obj.to_str().unwrap();
        let host = run(&harness, &["core", o]);
        let model = run(&harness, &["core", o, ours]);
        let (rh, rm) = (relos(&host.stdout), relos(&model.stdout));
        let bad = |r: &BTreeMap<(String, u32), String>| -> Vec<String> {
            r.iter()
                .filter(|(_, v)| *v != "ok")
                .map(|((p, n), v)| format!("{p} #{n} {v}"))
                .collect()
        };
        assert!(
            bad(&rh).is_empty(),
            "{name} against the kernel's BTF: {:?}\n{}",
            bad(&rh),
            host.stdout
        );
        assert!(
            bad(&rm).is_empty(),
            "{name} against bpfvfs's BTF: {:?}\n{}",
            bad(&rm),
            model.stdout
        );
        // The same relocations, found in both.
        assert_eq!(
            rh.keys().collect::<Vec<_>>(),
            rm.keys().collect::<Vec<_>>(),
            "{name}"
        );
        total += rh.len();
        let load = host
            .stdout
            .lines()
            .find(|l| l.starts_with("load "))
            .unwrap_or("load ?")
            .to_string();
        report.push_str(&format!(
            "{name}: {} CO-RE relocation(s) resolved against both; kernel {load}\n",
            rh.len()
        ));
    }
    assert!(
        total > 50,
        "too few CO-RE relocations seen ({total}): is the log parsed?"
    );
    print!("{report}");
}
