//! Shared by the runtime tests: compiling the repository's examples/*.bpf.c with clang and
//! a fresh instance (memfs + bpffs + runtime).
#![allow(dead_code)]

use bpfvfs_bpf::Bpf;
use bpfvfs_runtime::{LoadOpts, LoadedObj, Runtime, RuntimeConfig};
use bpfvfs_vfs::Vfs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

/// Load `bytes` as object `name`; a refusal panics with the error and the verifier's log.
pub fn load(rt: &Runtime, name: &str, bytes: &[u8]) -> LoadedObj {
    rt.load_object(bytes, &LoadOpts::new(name))
        .unwrap_or_else(|e| panic!("{name}: {e}\n{}", e.verifier_log().unwrap_or("")))
}

pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Compile `src` (a path, or examples/NAME.bpf.c) into a temp dir; `None` (after printing
/// SKIPPED) when clang is missing.
pub fn compile(src: &std::path::Path) -> Option<Vec<u8>> {
    let out_dir = std::env::temp_dir().join(format!("bpfvfs-runtime-tests-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let stem = src
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(".c", ".o");
    let out = out_dir.join(stem);
    let arch_inc = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let r = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-c"])
        .arg(format!("-I{arch_inc}"))
        .arg(format!(
            "-I{}",
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../include/bpfvfs")
                .display()
        ))
        .arg("-D__TARGET_ARCH_x86")
        .arg(src)
        .arg("-o")
        .arg(&out)
        .output();
    match r {
        Err(e) => {
            println!("SKIPPED: clang not available: {e}");
            None
        }
        Ok(o) if !o.status.success() => panic!(
            "clang failed on {}: {}",
            src.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Ok(_) => Some(std::fs::read(&out).unwrap()),
    }
}

pub fn example(name: &str) -> Option<Vec<u8>> {
    compile(&examples_dir().join(format!("{name}.bpf.c")))
}

pub fn instance(config: RuntimeConfig) -> (Arc<Vfs>, Arc<Bpf>, Arc<Runtime>) {
    let vfs = Vfs::new_memfs();
    let bpf = Bpf::new(vfs.clone()).unwrap();
    let rt = Runtime::with_config(bpf.clone(), config);
    (vfs, bpf, rt)
}

/// Every engine configuration a behaviour test should pass on.
pub fn configs() -> Vec<RuntimeConfig> {
    use bpfvfs_runtime::EngineKind::*;
    let mut v = vec![
        RuntimeConfig {
            engine: Interp,
            checked: false,
        },
        RuntimeConfig {
            engine: Interp,
            checked: true,
        },
    ];
    if cfg!(target_arch = "x86_64") {
        v.push(RuntimeConfig {
            engine: Jit,
            checked: false,
        });
        v.push(RuntimeConfig {
            engine: Jit,
            checked: true,
        });
    }
    v
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Build the libbpf harness `tests/kernel/NAME.c` into `dir` with gcc; why not, if the
/// kernel side cannot run here (not root, no gcc, no libbpf-dev).
pub fn build_libbpf_harness(name: &str, dir: &std::path::Path) -> Result<PathBuf, String> {
    if !is_root() {
        return Err("not root: the kernel side needs CAP_BPF".into());
    }
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/kernel/{name}.c"));
    let out = dir.join(name);
    let r = Command::new("gcc")
        .args(["-O2", "-o"])
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
