//! Writes the seed corpora: `seeds REPO_ROOT OUT_DIR [OBJ_DIR]` fills `OUT_DIR/{loader,
//! verifier,equiv}` from
//! - the verifier corpus (`crates/ebpf/tests/verifier-corpus/*.s`, read with the corpus
//!   reader of crates/ebpf's tests): verifier inputs with their maps, and equiv inputs for
//!   the programs without maps;
//! - the eBPF conformance suite (`REPO_ROOT/../shared/conformance/tests/*.data`, if present):
//!   equiv inputs with the test's memory, and syscall-type verifier inputs;
//! - the clang-built objects in `OBJ_DIR` (scripts/fuzz.sh compiles them): loader inputs (the
//!   object and its raw `.BTF`) and equiv inputs for the programs without maps.
//!
//! Seeds are generated at fuzz time rather than committed: they follow the corpus, the suite
//! and the compiler automatically, and the repository holds no binary blobs.

#[path = "../../../crates/ebpf/tests/verifier_common/mod.rs"]
mod verifier_common;

use bpfvfs_ebpf::{conformance, Insn};
use bpfvfs_ebpf_obj::LoadedObject;
use bpfvfs_fuzz::{equiv, verifier};
use std::path::{Path, PathBuf};

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == ext))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

struct Out {
    dir: PathBuf,
    written: usize,
}

impl Out {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let d = self.dir.join(target);
        std::fs::create_dir_all(&d).expect("create seed directory");
        std::fs::write(d.join(format!("seed-{name}")), bytes).expect("write seed");
        self.written += 1;
    }
}

fn has_pseudo_lddw(insns: &[Insn]) -> bool {
    insns.iter().any(|i| i.code == 0x18 && i.src != 0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: seeds REPO_ROOT OUT_DIR [OBJ_DIR]");
        std::process::exit(2);
    }
    let root = PathBuf::from(&args[1]);
    let mut out = Out {
        dir: PathBuf::from(&args[2]),
        written: 0,
    };

    for f in files(&root.join("crates/ebpf/tests/verifier-corpus"), "s") {
        let name = stem(&f);
        let text = std::fs::read_to_string(&f).expect("read corpus file");
        let p = match verifier_common::parse_program(&name, &text) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("seeds: skipping {}: {e}", f.display());
                continue;
            }
        };
        let bytes = Insn::slots_to_bytes(&p.insns);
        let options = verifier::OPT_LOG
            | if p.no_loops {
                verifier::OPT_NO_LOOPS
            } else {
                0
            };
        let ty = if p.prog_type == "socket" {
            "socket_filter"
        } else {
            &p.prog_type
        };
        match verifier::encode(ty, options, &p.map_infos(), &bytes) {
            Some(seed) => out.put("verifier", &name, &seed),
            None => eprintln!("seeds: {name}: maps not expressible in the verifier input"),
        }
        if !has_pseudo_lddw(&p.insns) {
            out.put(
                "equiv",
                &name,
                &equiv::encode(&[], &bytes).expect("empty memory"),
            );
        }
    }

    let suite = root.join("../shared/conformance/tests");
    for f in files(&suite, "data") {
        let name = stem(&f);
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let Ok(t) = conformance::parse(&name, &text) else {
            continue;
        };
        let Ok(bytes) = conformance::program_bytes(&t) else {
            continue;
        };
        if let Some(seed) = equiv::encode(&t.mem, &bytes) {
            out.put("equiv", &format!("conf-{name}"), &seed);
        }
        if let Some(seed) = verifier::encode("syscall", 0, &[], &bytes) {
            out.put("verifier", &format!("conf-{name}"), &seed);
        }
    }

    if let Some(objs) = args.get(3) {
        for f in files(Path::new(objs), "o") {
            let name = stem(&f);
            let data = std::fs::read(&f).expect("read object");
            out.put("loader", &name, &data);
            let Ok(obj) = LoadedObject::parse(&data, &name) else {
                eprintln!("seeds: {} does not parse", f.display());
                continue;
            };
            if let Some(btf) = &obj.btf {
                out.put("loader", &format!("{name}-btf"), btf.raw_bytes());
            }
            for p in obj.programs.iter().filter(|p| p.map_relocs.is_empty()) {
                let bytes = p.insn_bytes();
                if let Some(seed) = equiv::encode(&[0; 64], &bytes) {
                    out.put("equiv", &format!("{name}-{}", p.name), &seed);
                }
            }
        }
    }
    println!(
        "seeds: wrote {} inputs under {}",
        out.written,
        out.dir.display()
    );
}
