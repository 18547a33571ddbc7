//! Shared by the packet tests (`packet_programs.rs`, `kernel_test_run.rs`): the clang-built
//! programs of `packet.bpf.c` and `bad.bpf.c`, maps that mirror the kernel's array and hash
//! maps, the four engines (interpreter and JIT, checked and unchecked) running a program on
//! a test-run input through `pktctx`, frame builders, and a raw bpf(2) harness for
//! `BPF_PROG_LOAD`, `BPF_MAP_*` and `BPF_PROG_TEST_RUN` on the host kernel.
#![allow(dead_code)]

use bpfvfs_ebpf::helpers::MemRef;
use bpfvfs_ebpf::insn::{Insn, LdImmKind};
use bpfvfs_ebpf::interp::{LoadOptions, PseudoLoad};
use bpfvfs_ebpf::jit::Jit;
use bpfvfs_ebpf::pktctx::{SkbRun, XdpRun};
use bpfvfs_ebpf::verifier::{
    convert_ctx_accesses, verify, HelperProtos, MapInfo, MapType, ProgTypeSpec, VerifierEnv,
    VerifierError,
};
use bpfvfs_ebpf::{Env, Helpers, Interpreter, MapAccess, Program, Region, RegionKind};
use bpfvfs_ebpf_obj::{LoadedObject, MapSpec, ProgramKind};
use std::cell::RefCell;
use std::process::Command;
use std::ptr::NonNull;

pub const PACKET_C: &str = include_str!("packet.bpf.c");
pub const BAD_C: &str = include_str!("bad.bpf.c");

/// Compiles C to a BPF object with `clang -O2 -g -target bpf`; `Err(reason)` to skip.
pub fn compile(src: &str, tag: &str) -> Result<Vec<u8>, String> {
    let dir = std::env::temp_dir().join(format!("bpfvfs-pkt-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let c = dir.join(format!("{tag}.bpf.c"));
    let o = dir.join(format!("{tag}.o"));
    std::fs::write(&c, src).map_err(|e| e.to_string())?;
    let out = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf"])
        .arg(format!(
            "-I/usr/include/{}-linux-gnu",
            std::env::consts::ARCH
        ))
        .arg("-c")
        .arg(&c)
        .arg("-o")
        .arg(&o)
        .output()
        .map_err(|e| format!("clang not available: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "clang failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let data = std::fs::read(&o).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(data)
}

/// Parses a compiled object.
pub fn object(data: &[u8], name: &str) -> LoadedObject {
    LoadedObject::parse(data, name).expect("parse object")
}

/// How a program is test-run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Xdp,
    Skb,
    Syscall,
}

impl Kind {
    pub fn of(k: ProgramKind) -> Kind {
        match k {
            ProgramKind::Xdp => Kind::Xdp,
            ProgramKind::SocketFilter => Kind::Skb,
            ProgramKind::Syscall => Kind::Syscall,
            other => panic!("no packet test run for {other:?}"),
        }
    }

    pub fn spec(self) -> ProgTypeSpec {
        match self {
            Kind::Xdp => ProgTypeSpec::xdp(),
            Kind::Skb => ProgTypeSpec::socket_filter(),
            Kind::Syscall => ProgTypeSpec::syscall(),
        }
    }

    /// Linux's program type and load flags (syscall programs are sleepable).
    pub fn kernel(self) -> (u32, u32) {
        match self {
            Kind::Xdp => (6, 0),
            Kind::Skb => (1, 0),
            Kind::Syscall => (31, 1 << 4),
        }
    }
}

/// A program of an object, with map references patched by `handle(map_index)`.
pub fn program_insns(
    obj: &LoadedObject,
    name: &str,
    handle: impl FnMut(usize) -> Option<u32>,
) -> (Kind, Vec<Insn>) {
    let mut p = obj.program(name).expect("program").clone();
    p.patch_map_references(handle).expect("patch maps");
    let insns = p.insns.iter().map(|i| Insn::from_u64(i.to_u64())).collect();
    (Kind::of(p.kind), insns)
}

/// Map handles on our side: map index + 1.
pub fn handle_of(index: usize) -> u32 {
    index as u32 + 1
}

pub fn map_infos(obj: &LoadedObject) -> Vec<MapInfo> {
    obj.maps
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut mi = MapInfo::new(
                handle_of(i) as i32,
                MapType(m.map_type),
                m.key_size,
                m.value_size,
                m.max_entries,
            );
            mi.name = m.name.clone();
            mi.flags = m.map_flags;
            mi
        })
        .collect()
}

/// Verifies a program of `obj` (with source lines in the log) for its type.
pub fn verify_program(
    obj: &LoadedObject,
    name: &str,
) -> Result<(Kind, Vec<Insn>, bpfvfs_ebpf::verifier::VerifiedInfo), VerifierError> {
    let (kind, insns) = program_insns(obj, name, |i| Some(handle_of(i)));
    let spec = kind.spec();
    let maps = map_infos(obj);
    let protos = HelperProtos::standard();
    let env = VerifierEnv::new(&spec, &maps, &protos);
    let p = obj.program(name).unwrap();
    let li = |i: usize| {
        p.line_info_for(i)
            .map(|l| format!("{} @ {}:{}", l.source.trim(), l.file_name, l.line))
    };
    let info = verify(&insns, &env, Some(&li))?;
    Ok((kind, insns, info))
}

/// A verified program, converted for its run-time context and prepared.
pub struct Prepared {
    pub name: String,
    pub kind: Kind,
    pub program: Program,
    pub max_ctx_offset: u32,
}

pub fn prepare(obj: &LoadedObject, name: &str) -> Prepared {
    let (kind, insns, info) =
        verify_program(obj, name).unwrap_or_else(|e| panic!("{name} rejected: {e}\n{}", e.log));
    let insns = convert_ctx_accesses(&insns, &kind.spec(), &info).expect("convert");
    let resolve = |pl: &PseudoLoad| -> Result<u64, String> {
        match pl.kind {
            LdImmKind::MapFd => Ok(pl.imm as u32 as u64),
            k => Err(format!("{k:?} is not used by these tests")),
        }
    };
    let program = Program::load(
        &insns,
        LoadOptions {
            resolve: Some(&resolve),
        },
    )
    .expect("prepare");
    Prepared {
        name: name.into(),
        kind,
        program,
        max_ctx_offset: info.max_ctx_offset,
    }
}

// ---------------------------------------------------------------------------------------------
// Maps mirroring the kernel's array and hash maps
// ---------------------------------------------------------------------------------------------

/// A value with a stable address, freed on drop (programs write it through raw pointers).
struct RawVal {
    ptr: NonNull<u64>,
    words: usize,
    len: usize,
}

impl RawVal {
    fn new(bytes: &[u8]) -> RawVal {
        let words = bytes.len().div_ceil(8).max(1);
        let b: Box<[u64]> = vec![0u64; words].into_boxed_slice();
        let ptr = NonNull::new(Box::into_raw(b).cast::<u64>()).unwrap();
        let v = RawVal {
            ptr,
            words,
            len: bytes.len(),
        };
        v.write(bytes);
        v
    }

    fn write(&self, bytes: &[u8]) {
        // SAFETY: `ptr` holds `words * 8 >= len` bytes; no Rust reference to it exists.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().cast::<u8>(), self.len)
        }
    }

    fn read(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.len];
        // SAFETY: as `write`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().cast::<u8>(),
                out.as_mut_ptr(),
                self.len,
            )
        };
        out
    }

    fn mem(&self) -> MemRef {
        MemRef {
            ptr: self.ptr.cast::<u8>(),
            len: self.len,
            writable: true,
        }
    }
}

impl Drop for RawVal {
    fn drop(&mut self) {
        // SAFETY: allocated by `new` as a boxed slice of `words` u64s.
        unsafe {
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr(),
                self.words,
            )))
        };
    }
}

struct TestMap {
    spec: MapSpec,
    array: Vec<RawVal>,
    /// Hash elements in insertion order.
    hash: RefCell<Vec<(Vec<u8>, RawVal)>>,
}

/// The maps of one object, as `MapAccess` (handle = index + 1). Deleted values are kept
/// until the maps are dropped, so pointers a run obtained stay valid (the kernel's RCU).
pub struct TestMaps {
    maps: Vec<TestMap>,
    graveyard: RefCell<Vec<RawVal>>,
}

const BPF_NOEXIST: u64 = 1;
const BPF_EXIST: u64 = 2;

impl TestMaps {
    pub fn new(specs: &[MapSpec]) -> TestMaps {
        let maps = specs
            .iter()
            .map(|s| {
                assert!(matches!(s.map_type, 1 | 2), "only hash and array maps here");
                TestMap {
                    spec: s.clone(),
                    array: if s.map_type == 2 {
                        (0..s.max_entries)
                            .map(|_| RawVal::new(&vec![0u8; s.value_size as usize]))
                            .collect()
                    } else {
                        Vec::new()
                    },
                    hash: RefCell::new(Vec::new()),
                }
            })
            .collect();
        TestMaps {
            maps,
            graveyard: RefCell::new(Vec::new()),
        }
    }

    fn map(&self, h: u64) -> Option<&TestMap> {
        (h as usize).checked_sub(1).and_then(|i| self.maps.get(i))
    }

    /// The contents of map `index`, sorted by key (array maps: every index).
    pub fn dump(&self, index: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let m = &self.maps[index];
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = if m.spec.map_type == 2 {
            m.array
                .iter()
                .enumerate()
                .map(|(i, v)| ((i as u32).to_ne_bytes().to_vec(), v.read()))
                .collect()
        } else {
            m.hash
                .borrow()
                .iter()
                .map(|(k, v)| (k.clone(), v.read()))
                .collect()
        };
        out.sort();
        out
    }
}

// SAFETY: values live at stable addresses until the maps are dropped (deleted ones in the
// graveyard), which outlives the runs of these tests.
unsafe impl MapAccess for TestMaps {
    fn key_size(&self, map: u64) -> Option<usize> {
        self.map(map).map(|m| m.spec.key_size as usize)
    }

    fn value_size(&self, map: u64) -> Option<usize> {
        self.map(map).map(|m| m.spec.value_size as usize)
    }

    fn lookup(&self, map: u64, key: &[u8]) -> Option<MemRef> {
        let m = self.map(map)?;
        if m.spec.map_type == 2 {
            let i = u32::from_ne_bytes(key.try_into().ok()?) as usize;
            return m.array.get(i).map(RawVal::mem);
        }
        let h = m.hash.borrow();
        h.iter().find(|(k, _)| k == key).map(|(_, v)| v.mem())
    }

    fn update(&self, map: u64, key: &[u8], value: &[u8], flags: u64) -> i64 {
        let Some(m) = self.map(map) else {
            return -22;
        };
        if flags > BPF_EXIST {
            return -22;
        }
        if m.spec.map_type == 2 {
            let i = u32::from_ne_bytes(key.try_into().unwrap()) as usize;
            if i >= m.array.len() {
                return -7;
            }
            if flags == BPF_NOEXIST {
                return -17;
            }
            m.array[i].write(value);
            return 0;
        }
        let mut h = m.hash.borrow_mut();
        match h.iter().find(|(k, _)| k == key) {
            Some((_, v)) => {
                if flags == BPF_NOEXIST {
                    return -17;
                }
                v.write(value);
                0
            }
            None => {
                if flags == BPF_EXIST {
                    return -2;
                }
                if h.len() >= m.spec.max_entries as usize {
                    return -7;
                }
                h.push((key.to_vec(), RawVal::new(value)));
                0
            }
        }
    }

    fn delete(&self, map: u64, key: &[u8]) -> i64 {
        let Some(m) = self.map(map) else {
            return -22;
        };
        if m.spec.map_type == 2 {
            return -22;
        }
        let mut h = m.hash.borrow_mut();
        match h.iter().position(|(k, _)| k == key) {
            Some(i) => {
                let (_, v) = h.remove(i);
                self.graveyard.borrow_mut().push(v);
                0
            }
            None => -2,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Engines
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Interp,
    InterpUnchecked,
    Jit,
    JitUnchecked,
}

pub const ENGINES: [Engine; 4] = [
    Engine::Interp,
    Engine::InterpUnchecked,
    Engine::Jit,
    Engine::JitUnchecked,
];

/// A test-run input: `data_in`, `ctx_in`, and whether a `ctx_out` buffer is passed.
#[derive(Clone, Debug, Default)]
pub struct Input {
    pub label: String,
    pub data: Option<Vec<u8>>,
    pub ctx: Option<Vec<u8>>,
    pub ctx_out: bool,
    /// A case where this engine knowingly differs from Linux (why): it must fail with
    /// `EOPNOTSUPP` here.
    pub known_difference: Option<&'static str>,
}

/// What a test run gives back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The run was refused with this errno.
    Err(i32),
    Ok {
        retval: u32,
        data_out: Option<Vec<u8>>,
        /// `ctx_out`, or for syscall programs the context copied back over `ctx_in`.
        ctx_out: Option<Vec<u8>>,
    },
}

fn run_on(
    p: &Prepared,
    engine: Engine,
    args: [u64; 5],
    regions: &[Region<'_>],
    env: &mut Env<'_>,
) -> Result<u64, String> {
    let helpers = Helpers::standard();
    match engine {
        Engine::Interp | Engine::InterpUnchecked => {
            let mut i = Interpreter::new(&p.program, &helpers).map_err(|e| e.to_string())?;
            if engine == Engine::Interp {
                i.run(args, regions, env)
            } else {
                // SAFETY: verified, converted for this context type, and `regions` is the
                // context pktctx built for it.
                unsafe { i.run_unchecked(args, regions, env) }
            }
        }
        Engine::Jit | Engine::JitUnchecked => {
            let mut j = Jit::new(&p.program, &helpers).map_err(|e| e.to_string())?;
            if engine == Engine::Jit {
                j.run(args, regions, env)
            } else {
                // SAFETY: as above.
                unsafe { j.run_unchecked(args, regions, env) }
            }
        }
    }
    .map_err(|e| e.to_string())
}

/// Runs `p` on `input` with `engine` and `maps`, building the context as `BPF_PROG_TEST_RUN`
/// does. A run failure (an engine error) panics: verified programs must not fail.
pub fn run_engine(p: &Prepared, engine: Engine, maps: &TestMaps, input: &Input) -> Outcome {
    let mut env = Env::new().with_maps(maps);
    let ctx = (input.ctx.is_some() || input.ctx_out).then(|| input.ctx.as_deref().unwrap_or(&[]));
    let fail = |e: String| -> ! { panic!("{} on {engine:?}, input {}: {e}", p.name, input.label) };
    match p.kind {
        Kind::Xdp => {
            let data = input.data.as_deref().unwrap_or(&[]);
            let mut run = match XdpRun::new(data, ctx) {
                Ok(r) => r,
                Err(e) => return Outcome::Err(e.errno()),
            };
            let args = run.args();
            let regions = run.regions();
            let r0 = run_on(p, engine, args, &regions, &mut env).unwrap_or_else(|e| fail(e));
            Outcome::Ok {
                retval: r0 as u32,
                data_out: Some(run.data_out().to_vec()),
                ctx_out: if input.ctx_out {
                    run.ctx_out().map(|c| c.to_vec())
                } else {
                    None
                },
            }
        }
        Kind::Skb => {
            let data = input.data.as_deref().unwrap_or(&[]);
            let mut run = match SkbRun::new(data, ctx) {
                Ok(r) => r,
                Err(e) => return Outcome::Err(e.errno()),
            };
            let args = run.args();
            let regions = run.regions();
            let r0 = run_on(p, engine, args, &regions, &mut env).unwrap_or_else(|e| fail(e));
            Outcome::Ok {
                retval: r0 as u32,
                data_out: Some(run.data_out().to_vec()),
                ctx_out: if input.ctx_out {
                    run.ctx_out().map(|c| c.to_vec())
                } else {
                    None
                },
            }
        }
        Kind::Syscall => {
            // bpf_prog_test_run_syscall: ctx_in only, at least what the program reads.
            if input.data.is_some() || input.ctx_out {
                return Outcome::Err(22);
            }
            let c = input.ctx.as_deref().unwrap_or(&[]);
            if c.len() < p.max_ctx_offset as usize || c.len() > u16::MAX as usize {
                return Outcome::Err(22);
            }
            let mut words = vec![0u64; c.len().div_ceil(8).max(1)];
            // SAFETY: a u64 buffer viewed as bytes.
            let buf = unsafe {
                std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 8)
            };
            let buf = &mut buf[..c.len()];
            buf.copy_from_slice(c);
            let r0 = if buf.is_empty() {
                run_on(p, engine, [0; 5], &[], &mut env)
            } else {
                let region = Region::writable(RegionKind::Context, buf);
                run_on(p, engine, [region.addr(), 0, 0, 0, 0], &[region], &mut env)
            }
            .unwrap_or_else(|e| fail(e));
            let out = words.iter().flat_map(|w| w.to_ne_bytes()).take(c.len());
            Outcome::Ok {
                retval: r0 as u32,
                data_out: None,
                ctx_out: (!c.is_empty()).then(|| out.collect()),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

pub const HOST_MAC: [u8; 6] = [0; 6];
pub const BCAST_MAC: [u8; 6] = [0xff; 6];
pub const OTHER_MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
pub const SRC_MAC: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];

pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 header (no options) and `payload`.
pub fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    h.extend_from_slice(payload);
    h
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// An Ethernet/IPv4/UDP frame.
pub fn udp_frame(dst: [u8; 6], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    eth(dst, SRC_MAC, 0x0800, &ipv4(17, &udp(sport, dport, payload)))
}

// ---------------------------------------------------------------------------------------------
// The host kernel through raw bpf(2)
// ---------------------------------------------------------------------------------------------

pub mod kernel {
    use bpfvfs_ebpf::insn::Insn;
    use bpfvfs_ebpf_obj::MapSpec;

    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
    const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TEST_RUN: libc::c_long = 10;

    fn bpf(cmd: libc::c_long, attr: &mut [u8]) -> Result<i32, i32> {
        // SAFETY: `attr` is a valid buffer of the given size for the kernel to read and write.
        let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) };
        if r < 0 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(r as i32)
        }
    }

    fn put32(a: &mut [u8], off: usize, v: u32) {
        a[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn put64(a: &mut [u8], off: usize, v: u64) {
        a[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }

    fn get32(a: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(a[off..off + 4].try_into().unwrap())
    }

    pub struct Fd(pub i32);

    impl Drop for Fd {
        fn drop(&mut self) {
            // SAFETY: we own the descriptor.
            unsafe { libc::close(self.0) };
        }
    }

    pub fn errno_name(e: i32) -> String {
        std::io::Error::from_raw_os_error(e).to_string()
    }

    pub fn map_create(m: &MapSpec) -> Result<Fd, String> {
        let mut a = [0u8; 128];
        put32(&mut a, 0, m.map_type);
        put32(&mut a, 4, m.key_size);
        put32(&mut a, 8, m.value_size);
        put32(&mut a, 12, m.max_entries);
        put32(&mut a, 16, m.map_flags);
        bpf(BPF_MAP_CREATE, &mut a)
            .map(Fd)
            .map_err(|e| format!("BPF_MAP_CREATE: {}", errno_name(e)))
    }

    /// Loads a program: the descriptor, or the errno and the verifier log.
    pub fn prog_load(ty: u32, insns: &[Insn], flags: u32) -> Result<Fd, (i32, String)> {
        let bytes: Vec<u8> = insns.iter().flat_map(|i| i.to_bytes()).collect();
        let license = b"GPL\0";
        let mut log = vec![0u8; 1 << 20];
        let mut a = [0u8; 160];
        put32(&mut a, 0, ty);
        put32(&mut a, 4, insns.len() as u32);
        put64(&mut a, 8, bytes.as_ptr() as u64);
        put64(&mut a, 16, license.as_ptr() as u64);
        put32(&mut a, 24, 1);
        put32(&mut a, 28, log.len() as u32);
        put64(&mut a, 32, log.as_mut_ptr() as u64);
        put32(&mut a, 44, flags);
        bpf(BPF_PROG_LOAD, &mut a).map(Fd).map_err(|e| {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            (e, String::from_utf8_lossy(&log[..end]).into_owned())
        })
    }

    /// Whether the kernel loads programs here; `Err(reason)` to skip.
    pub fn available() -> Result<(), String> {
        // SAFETY: plain syscall.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        let prog = [Insn::new(0xb7, 0, 0, 0, 0), Insn::new(0x95, 0, 0, 0, 0)];
        match prog_load(6, &prog, 0) {
            Ok(fd) => {
                let data = [0u8; 64];
                match test_run(&fd, Some(&data), None, false, true) {
                    Ok(_) => Ok(()),
                    Err(e) => Err(format!("BPF_PROG_TEST_RUN refused: {}", errno_name(e))),
                }
            }
            Err((e, log)) => Err(format!("BPF_PROG_LOAD refused: {} {log}", errno_name(e))),
        }
    }

    /// `BPF_PROG_TEST_RUN`. Output buffers: 4096 bytes of data_out when `data_out`, a
    /// 192-byte ctx_out when `ctx_out`. Returns the retval, data_out (at its reported size),
    /// ctx_out (at its reported size) and `ctx_in` as it is afterwards (syscall programs get
    /// their context copied back there).
    #[allow(clippy::type_complexity)]
    pub fn test_run(
        prog: &Fd,
        data_in: Option<&[u8]>,
        ctx_in: Option<&[u8]>,
        ctx_out: bool,
        data_out: bool,
    ) -> Result<(u32, Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>), i32> {
        let mut a = [0u8; 80];
        let mut dout = vec![0u8; 4096];
        let mut cout = vec![0u8; 192];
        let mut cin = ctx_in.map(|c| c.to_vec());
        put32(&mut a, 0, prog.0 as u32);
        if let Some(d) = data_in {
            put32(&mut a, 8, d.len() as u32);
            put64(&mut a, 16, d.as_ptr() as u64);
        }
        if data_out {
            put32(&mut a, 12, dout.len() as u32);
            put64(&mut a, 24, dout.as_mut_ptr() as u64);
        }
        if let Some(c) = &mut cin {
            put32(&mut a, 40, c.len() as u32);
            put64(&mut a, 48, c.as_mut_ptr() as u64);
        }
        if ctx_out {
            put32(&mut a, 44, cout.len() as u32);
            put64(&mut a, 56, cout.as_mut_ptr() as u64);
        }
        bpf(BPF_PROG_TEST_RUN, &mut a)?;
        let retval = get32(&a, 4);
        let dsize = get32(&a, 12) as usize;
        let csize = get32(&a, 44) as usize;
        let dout = data_out.then(|| {
            dout.truncate(dsize.min(4096));
            dout
        });
        let cout = ctx_out.then(|| {
            cout.truncate(csize.min(192));
            cout
        });
        Ok((retval, dout, cout, cin))
    }

    /// The contents of a hash or array map, sorted by key.
    pub fn map_dump(fd: &Fd, m: &MapSpec) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        let mut key: Option<Vec<u8>> = None;
        loop {
            let mut next = vec![0u8; m.key_size as usize];
            let mut a = [0u8; 32];
            put32(&mut a, 0, fd.0 as u32);
            if let Some(k) = &key {
                put64(&mut a, 8, k.as_ptr() as u64);
            }
            put64(&mut a, 16, next.as_mut_ptr() as u64);
            if bpf(BPF_MAP_GET_NEXT_KEY, &mut a).is_err() {
                break;
            }
            let mut value = vec![0u8; m.value_size as usize];
            let mut a = [0u8; 32];
            put32(&mut a, 0, fd.0 as u32);
            put64(&mut a, 8, next.as_ptr() as u64);
            put64(&mut a, 16, value.as_mut_ptr() as u64);
            bpf(BPF_MAP_LOOKUP_ELEM, &mut a).expect("lookup of a listed key");
            out.push((next.clone(), value));
            key = Some(next);
        }
        out.sort();
        out
    }
}
