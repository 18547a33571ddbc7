//! Shared by the verifier tests: the corpus format and a raw bpf(2) loader for the kernel
//! differential.
//!
//! A corpus file is assembler text (the conformance suite's syntax, see `asm.rs`) with
//! directives in comments and a few pseudo-instructions:
//!
//! ```text
//! # type: socket_filter                (syscall, xdp, lsm, tracing, view)
//! # map: array key=4 value=8 entries=4 [flags=0x80] [spin_lock=0]
//! # expect: accept | reject <message substring>
//! # option: no_loops                   (reject back-edges)
//! # kernel: skip <reason>               (not loaded into the host kernel)
//! ldmap %r1, 0                          lddw %r1, map[fd:0]   (maps are numbered in order)
//! ldmapval %r1, 0, 8                    lddw %r1, map[fd:0][0]+8
//! ldfunc %r2, label                     lddw %r2, subprog[label]
//! ```
#![allow(dead_code)]

use bpfvfs_ebpf::asm::assemble;
use bpfvfs_ebpf::insn::{decode, CallTarget, Insn, Instruction};
use bpfvfs_ebpf::verifier::{MapInfo, MapType};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    Accept,
    Reject(String),
}

#[derive(Clone, Debug)]
pub struct MapDef {
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
    pub spin_lock_off: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct CorpusProgram {
    pub name: String,
    pub prog_type: String,
    pub maps: Vec<MapDef>,
    pub expect: Expect,
    pub no_loops: bool,
    pub kernel_skip: Option<String>,
    pub insns: Vec<Insn>,
}

impl CorpusProgram {
    /// Map infos for the verifier: map N has fd N.
    pub fn map_infos(&self) -> Vec<MapInfo> {
        self.maps
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut info = MapInfo::new(
                    i as i32,
                    m.map_type,
                    m.key_size,
                    m.value_size,
                    m.max_entries,
                );
                info.flags = m.flags;
                info.spin_lock_off = m.spin_lock_off;
                info
            })
            .collect()
    }
}

const MARK_MAP: i32 = 0x7ead_0001;
const MARK_MAPVAL: i32 = 0x7ead_0002;
const MARK_FUNC: i64 = 0x7ead_0004;

fn num(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let (neg, b) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let v = if let Some(h) = b.strip_prefix("0x") {
        i64::from_str_radix(h, 16)
    } else {
        b.parse::<i64>()
    }
    .map_err(|_| format!("bad number `{s}`"))?;
    Ok(if neg { -v } else { v })
}

fn map_type(name: &str) -> Result<MapType, String> {
    Ok(match name {
        "hash" => MapType::HASH,
        "array" => MapType::ARRAY,
        "percpu_hash" => MapType::PERCPU_HASH,
        "percpu_array" => MapType::PERCPU_ARRAY,
        "lru_hash" => MapType::LRU_HASH,
        "ringbuf" => MapType::RINGBUF,
        "inode_storage" => MapType::INODE_STORAGE,
        "cgrp_storage" => MapType::CGRP_STORAGE,
        _ => return Err(format!("unknown map type {name}")),
    })
}

/// Parses one corpus file.
pub fn parse_program(name: &str, text: &str) -> Result<CorpusProgram, String> {
    let mut prog_type = None;
    let mut maps = Vec::new();
    let mut expect = None;
    let mut no_loops = false;
    let mut kernel_skip = None;
    let mut asm = String::new();
    let mut mapval_offs = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(d) = t.strip_prefix('#') {
            let d = d.trim();
            if let Some(v) = d.strip_prefix("type:") {
                prog_type = Some(v.trim().to_string());
            } else if let Some(v) = d.strip_prefix("map:") {
                let mut it = v.split_whitespace();
                let ty = map_type(it.next().ok_or("empty map directive")?)?;
                let mut m = MapDef {
                    map_type: ty,
                    key_size: 0,
                    value_size: 0,
                    max_entries: 1,
                    flags: 0,
                    spin_lock_off: None,
                };
                for kv in it {
                    let (k, v) = kv
                        .split_once('=')
                        .ok_or_else(|| format!("bad map field {kv}"))?;
                    let v = num(v)? as u32;
                    match k {
                        "key" => m.key_size = v,
                        "value" => m.value_size = v,
                        "entries" => m.max_entries = v,
                        "flags" => m.flags = v,
                        "spin_lock" => m.spin_lock_off = Some(v),
                        _ => return Err(format!("bad map field {k}")),
                    }
                }
                maps.push(m);
            } else if let Some(v) = d.strip_prefix("expect:") {
                let v = v.trim();
                expect = Some(if v == "accept" {
                    Expect::Accept
                } else if let Some(m) = v.strip_prefix("reject") {
                    Expect::Reject(m.trim().to_string())
                } else {
                    return Err(format!("bad expect `{v}`"));
                });
            } else if let Some(v) = d.strip_prefix("option:") {
                if v.trim() == "no_loops" {
                    no_loops = true;
                }
            } else if let Some(v) = d.strip_prefix("kernel:") {
                kernel_skip = Some(v.trim().trim_start_matches("skip").trim().to_string());
            }
            continue;
        }
        // Pseudo-instructions.
        let (label, body) = match t.find(':') {
            Some(i) if !t[..i].contains(char::is_whitespace) && !t[..i].is_empty() => {
                (&t[..=i], t[i + 1..].trim())
            }
            _ => ("", t),
        };
        let mut words = body.splitn(2, char::is_whitespace);
        let m = words.next().unwrap_or("");
        let rest = words.next().unwrap_or("");
        let ops: Vec<&str> = rest.split(',').map(str::trim).collect();
        match m {
            "ldmap" => {
                asm.push_str(&format!(
                    "{label} lddw {}, {}\n",
                    ops[0],
                    ((MARK_MAP as i64) << 32) | num(ops[1])?
                ));
            }
            "ldmapval" => {
                mapval_offs.push(num(ops[2])? as i32);
                asm.push_str(&format!(
                    "{label} lddw {}, {}\n",
                    ops[0],
                    ((MARK_MAPVAL as i64) << 32) | num(ops[1])?
                ));
            }
            "ldfunc" => {
                asm.push_str(&format!(
                    "{label} call local {}\n mov {}, {}\n",
                    ops[1], ops[0], MARK_FUNC
                ));
            }
            _ => {
                asm.push_str(line);
                asm.push('\n');
            }
        }
    }
    let mut insns = assemble(&asm).map_err(|e| format!("{name}: {e}"))?;
    // Post-process markers.
    let mut mv = mapval_offs.into_iter();
    let mut i = 0;
    while i < insns.len() {
        let ins = insns[i];
        if ins.code == 0x18 && i + 1 < insns.len() {
            let hi = insns[i + 1].imm;
            if hi == MARK_MAP {
                insns[i].src = 1;
                insns[i + 1].imm = 0;
            } else if hi == MARK_MAPVAL {
                insns[i].src = 2;
                insns[i + 1].imm = mv.next().unwrap_or(0);
            }
            i += 2;
            continue;
        }
        if ins.code == 0x85
            && ins.src == 1
            && i + 1 < insns.len()
            && insns[i + 1].code == 0xb7
            && insns[i + 1].imm as i64 == MARK_FUNC
        {
            let dst = insns[i + 1].dst;
            insns[i] = Insn::new(0x18, dst, 4, 0, ins.imm);
            insns[i + 1] = Insn::new(0, 0, 0, 0, 0);
            i += 2;
            continue;
        }
        i += 1;
    }
    let _ = decode(&insns).map(|d| {
        d.iter()
            .any(|(_, i)| matches!(i, Instruction::Call(CallTarget::Local(_))))
    });
    Ok(CorpusProgram {
        name: name.to_string(),
        prog_type: prog_type.ok_or_else(|| format!("{name}: no `# type:`"))?,
        maps,
        expect: expect.ok_or_else(|| format!("{name}: no `# expect:`"))?,
        no_loops,
        kernel_skip,
        insns,
    })
}

pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verifier-corpus")
}

pub fn load_corpus() -> Vec<CorpusProgram> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("corpus directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "s"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let name = f.file_stem().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(f).unwrap();
            parse_program(&name, &text).unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The host kernel, through the raw bpf(2) syscall.
// ---------------------------------------------------------------------------------------------

pub mod kernel {
    use super::{CorpusProgram, MapDef};
    use bpfvfs_ebpf::insn::Insn;

    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_PROG_LOAD: libc::c_long = 5;

    fn bpf(cmd: libc::c_long, attr: &mut [u8]) -> (i64, i32) {
        let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) };
        let e = if r < 0 {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        } else {
            0
        };
        (r, e)
    }

    fn put32(a: &mut [u8], off: usize, v: u32) {
        a[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn put64(a: &mut [u8], off: usize, v: u64) {
        a[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }

    pub struct Fd(pub i32);

    impl Drop for Fd {
        fn drop(&mut self) {
            unsafe { libc::close(self.0) };
        }
    }

    pub fn create_map(m: &MapDef) -> Result<Fd, String> {
        let mut a = [0u8; 128];
        put32(&mut a, 0, m.map_type.0);
        put32(&mut a, 4, m.key_size);
        put32(&mut a, 8, m.value_size);
        put32(&mut a, 12, m.max_entries);
        put32(&mut a, 16, m.flags);
        let (r, e) = bpf(BPF_MAP_CREATE, &mut a);
        if r < 0 {
            return Err(format!(
                "BPF_MAP_CREATE failed: {}",
                std::io::Error::from_raw_os_error(e)
            ));
        }
        Ok(Fd(r as i32))
    }

    /// Kernel verdict for a program.
    pub enum Verdict {
        Accepted,
        Rejected { errno: i32, log: String },
    }

    pub fn load(prog_type: u32, insns: &[Insn], flags: u32) -> Verdict {
        let bytes: Vec<u8> = insns.iter().flat_map(|i| i.to_bytes()).collect();
        let license = b"GPL\0";
        let mut log = vec![0u8; 1 << 20];
        let mut a = [0u8; 160];
        put32(&mut a, 0, prog_type);
        put32(&mut a, 4, insns.len() as u32);
        put64(&mut a, 8, bytes.as_ptr() as u64);
        put64(&mut a, 16, license.as_ptr() as u64);
        put32(&mut a, 24, 1);
        put32(&mut a, 28, log.len() as u32);
        put64(&mut a, 32, log.as_mut_ptr() as u64);
        put32(&mut a, 44, flags);
        let (r, e) = bpf(BPF_PROG_LOAD, &mut a);
        if r >= 0 {
            unsafe { libc::close(r as i32) };
            return Verdict::Accepted;
        }
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        Verdict::Rejected {
            errno: e,
            log: String::from_utf8_lossy(&log[..end]).into_owned(),
        }
    }

    /// Whether BPF_PROG_LOAD works here at all; `Err(reason)` otherwise.
    pub fn available() -> Result<(), String> {
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        let prog = [Insn::new(0xb7, 0, 0, 0, 0), Insn::new(0x95, 0, 0, 0, 0)];
        match load(1, &prog, 0) {
            Verdict::Accepted => Ok(()),
            Verdict::Rejected { errno, log } => Err(format!(
                "bpf(BPF_PROG_LOAD) refused: {} {log}",
                std::io::Error::from_raw_os_error(errno)
            )),
        }
    }

    /// Kernel program type and load flags for a corpus type, if the kernel can take it here.
    pub fn kernel_type(name: &str) -> Option<(u32, u32)> {
        match name {
            "socket_filter" | "socket" => Some((1, 0)),
            "xdp" => Some((6, 0)),
            "syscall" => Some((31, 1 << 4)),
            _ => None,
        }
    }

    /// Loads a corpus program: creates its maps, patches map fds, loads.
    pub fn load_corpus_program(p: &CorpusProgram) -> Result<Verdict, String> {
        let (ty, flags) = kernel_type(&p.prog_type).ok_or("no kernel type")?;
        let mut fds = Vec::new();
        for m in &p.maps {
            fds.push(create_map(m)?);
        }
        let mut insns = p.insns.clone();
        let mut i = 0;
        while i < insns.len() {
            if insns[i].code == 0x18 {
                if matches!(insns[i].src, 1 | 2) {
                    let idx = insns[i].imm as usize;
                    insns[i].imm = fds.get(idx).ok_or("map index out of range")?.0;
                }
                i += 2;
            } else {
                i += 1;
            }
        }
        Ok(load(ty, &insns, flags))
    }
}
