//! Test support: compile `tests/progs/*.bpf.c` with clang once per test binary.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const PROGS: &[&str] = &["maps", "legacy", "globals", "multi", "core", "core_target"];

fn progs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/progs")
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Why compiled objects are unavailable, if they are.
fn skip_reason() -> Option<String> {
    if !have("clang") {
        return Some("clang not found (install clang, llvm and libbpf-dev)".into());
    }
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        return Some("libbpf headers not found at /usr/include/bpf (install libbpf-dev)".into());
    }
    None
}

fn target_arch() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("x86_64", "x86"),
        "aarch64" => ("aarch64", "arm64"),
        "s390x" => ("s390x", "s390"),
        "powerpc64" => ("powerpc64le", "powerpc"),
        "riscv64" => ("riscv64", "riscv"),
        other => (other, other),
    }
}

type Objects = Result<HashMap<&'static str, PathBuf>, String>;

fn build_all() -> &'static Objects {
    static OBJS: OnceLock<Objects> = OnceLock::new();
    OBJS.get_or_init(|| {
        if let Some(r) = skip_reason() {
            return Err(r);
        }
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ebpf-obj-progs");
        std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
        let (multiarch, target_arch) = target_arch();
        let mut map = HashMap::new();
        for name in PROGS {
            let src = progs_dir().join(format!("{name}.bpf.c"));
            let dst = out.join(format!("{name}.bpf.o"));
            let o = Command::new("clang")
                .args(["-O2", "-g", "-target", "bpf"])
                .arg(format!("-D__TARGET_ARCH_{target_arch}"))
                .arg(format!("-I/usr/include/{multiarch}-linux-gnu"))
                .arg("-c")
                .arg(&src)
                .arg("-o")
                .arg(&dst)
                .output()
                .expect("run clang");
            assert!(
                o.status.success(),
                "clang failed on {}:\n{}",
                src.display(),
                String::from_utf8_lossy(&o.stderr)
            );
            map.insert(*name, dst);
        }
        Ok(map)
    })
}

/// Path of a compiled test object, or `None` (after printing why) when the
/// toolchain is missing.
pub fn object_path(name: &str) -> Option<PathBuf> {
    match build_all() {
        Ok(m) => Some(
            m.get(name)
                .unwrap_or_else(|| panic!("no test program {name}"))
                .clone(),
        ),
        Err(reason) => {
            skip_note(reason);
            None
        }
    }
}

/// Print a skip reason once per test binary, past the test harness's output
/// capture so that it shows in ordinary `cargo test` runs.
pub fn skip_note(reason: &str) {
    use std::io::Write;
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (bpfvfs-ebpf-obj tests needing compiled objects): {reason}"
        );
    });
}

/// Bytes of a compiled test object.
pub fn object(name: &str) -> Option<Vec<u8>> {
    object_path(name).map(|p| std::fs::read(p).expect("read object"))
}

/// Path of a test program's source.
pub fn source_path(name: &str) -> PathBuf {
    progs_dir().join(format!("{name}.bpf.c"))
}

/// 1-based line number of the first source line containing `needle`.
pub fn source_line_of(name: &str, needle: &str) -> u32 {
    let src = std::fs::read_to_string(source_path(name)).unwrap();
    src.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in {name}")) as u32
        + 1
}

/// `llvm-objdump -d`: instruction slots per function symbol in `names`
/// (labels that are not in `names` count toward the enclosing function).
pub fn objdump_slots(path: &Path, names: &[&str]) -> Option<HashMap<String, usize>> {
    let tool = [
        "llvm-objdump",
        "llvm-objdump-19",
        "llvm-objdump-16",
        "llvm-objdump-15",
        "llvm-objdump-14",
    ]
    .into_iter()
    .find(|t| have(t));
    let Some(tool) = tool else {
        skip_note("llvm-objdump not found: instruction counts not compared");
        return None;
    };
    let o = Command::new(tool)
        .arg("-d")
        .arg(path)
        .output()
        .expect("run llvm-objdump");
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("Disassembly of section") {
            cur = None;
            continue;
        }
        // "0000000000000000 <name>:"
        if let Some(rest) = line.split_once(" <").map(|x| x.1) {
            if let Some(name) = rest.strip_suffix(">:") {
                if !line.starts_with(' ') && !line.starts_with('\t') {
                    if names.contains(&name) {
                        cur = Some(name.to_owned());
                    }
                    continue;
                }
            }
        }
        // "      12:\t85 10 00 00 19 00 00 00\tcall 25"
        let t = line.trim_start();
        let Some((idx, rest)) = t.split_once(":\t") else {
            continue;
        };
        if idx.parse::<usize>().is_err() {
            continue;
        }
        let bytes = rest
            .split('\t')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .count();
        if let Some(c) = &cur {
            *counts.entry(c.clone()).or_default() += bytes / 8;
        }
    }
    Some(counts)
}

/// Size of the kernel's `struct_name`, as `bpftool btf dump` prints it.
pub fn bpftool_struct_size(struct_name: &str) -> Option<u32> {
    let text = bpftool_vmlinux_raw()?;
    let header = format!("STRUCT '{struct_name}' ");
    let line = text
        .lines()
        .find(|l| l.starts_with('[') && l.contains(&header))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("size="))?
        .parse()
        .ok()
}

fn bpftool_vmlinux_raw() -> Option<&'static str> {
    static RAW: OnceLock<Option<String>> = OnceLock::new();
    RAW.get_or_init(|| {
        if !have_bpftool() {
            return None;
        }
        let o = Command::new("bpftool")
            .args([
                "btf",
                "dump",
                "file",
                "/sys/kernel/btf/vmlinux",
                "format",
                "raw",
            ])
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    })
    .as_deref()
}

/// Offset in bits of `member` in the kernel's `struct_name`, as `bpftool btf
/// dump` prints it for `/sys/kernel/btf/vmlinux`.
pub fn bpftool_member_bits(struct_name: &str, member: &str) -> Option<u64> {
    let text = bpftool_vmlinux_raw()?;
    let header = format!("STRUCT '{struct_name}' ");
    let mut in_struct = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_struct = line.contains(&header);
            continue;
        }
        if in_struct {
            let l = line.trim();
            if let Some(rest) = l.strip_prefix(&format!("'{member}' ")) {
                let bits = rest
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("bits_offset="))?;
                return bits.parse().ok();
            }
        }
    }
    None
}

fn have_bpftool() -> bool {
    Command::new("bpftool")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}
