//! The `verifier` target: verify arbitrary instructions, and hold the verifier to its promise
//! by running what it accepts in the interpreter's checked mode.
//!
//! # Input
//! ```text
//! byte 0      program type: value % 6 = syscall, socket_filter, xdp, lsm, tracing, view
//! byte 1      options: bit 0 reject back-edges, bit 1 build the verifier log,
//!             bit 2 give line info
//! bytes 2-3   seed for the context, packet and map contents (little-endian)
//! bytes 4-15  three map descriptors, map i has fd i (see `decode_map`)
//! bytes 16..  instruction slots; a trailing partial slot is ignored
//! ```
//! A fixed header keeps the instructions 8-byte aligned in the input, so libFuzzer's
//! mutations of one slot stay inside it more often.

use crate::maps::{FuzzMaps, GuardedBuf, HANDLE_BASE};
use crate::Rng;
use bpfvfs_ebpf::helpers::{ids, Clock, HelperCtx, HelperError};
use bpfvfs_ebpf::insn::LdImmKind;
use bpfvfs_ebpf::interp::{LoadOptions, PseudoLoad};
use bpfvfs_ebpf::memory::{Region, RegionKind};
use bpfvfs_ebpf::pktctx::{SkbRun, XdpRun};
use bpfvfs_ebpf::verifier::{
    convert_ctx_accesses, verify, CtxField, CtxLayout, FieldKind, HelperProtos, MapInfo, MapType,
    ProgTypeSpec, VerifiedInfo, VerifierEnv, BPF_F_RDONLY_PROG,
};
use bpfvfs_ebpf::{Env, ExecError, Helpers, Insn, Interpreter, Program, TaskInfo};
use std::sync::OnceLock;

pub const HEADER_LEN: usize = 16;
/// Program type names in selector order (`ProgTypeSpec::by_name`).
pub const TYPES: [&str; 6] = ["syscall", "socket_filter", "xdp", "lsm", "tracing", "view"];
pub const OPT_NO_LOOPS: u8 = 1;
pub const OPT_LOG: u8 = 2;
pub const OPT_LINE_INFO: u8 = 4;
pub const MAX_MAPS: usize = 3;

/// Well below Linux's 1,000,000 (the corpus's accepted programs need at most ~3,000): a
/// program that needs more is rejected as too complex, which costs nothing in soundness and
/// keeps one input from taking seconds (an endless loop explored to 200,000 instructions took
/// 3 s under ASan, and 25 s with the log, which records every step).
const MAX_INSNS: u64 = 32_768;
const MAX_INSNS_WITH_LOG: u64 = 8_192;
/// Back-edge budget of a run: the verifier proves termination, not speed.
const RUN_BUDGET: u64 = 1 << 16;
/// `bpf_loop` iterations actually made (see `capped_loop`).
const LOOP_CAP: u64 = 1024;

/// Map kinds of a descriptor's first byte (value % 8); `None` = no map at this fd.
const KINDS: [Option<MapType>; 8] = [
    None,
    Some(MapType::ARRAY),
    Some(MapType::HASH),
    Some(MapType::PERCPU_ARRAY),
    Some(MapType::PERCPU_HASH),
    Some(MapType::LRU_HASH),
    Some(MapType::RINGBUF),
    Some(MapType::INODE_STORAGE),
];
const RINGBUF_SIZE: u32 = 4096;
const ENTRIES_MASK: u8 = 0x1f;
const ENTRIES_RDONLY: u8 = 0x40;
const ENTRIES_SPIN_LOCK: u8 = 0x80;

fn is_hash(t: MapType) -> bool {
    matches!(t, MapType::HASH | MapType::PERCPU_HASH | MapType::LRU_HASH)
}

/// A map descriptor `[kind, key, value, entries]`: key size `1 + key % 64` for hashes (4 for
/// arrays and local storage, 0 for ring buffers), value size `1 + value`, `1 + (entries &
/// 0x1f)` entries (ring buffers: 4096 bytes; local storage: 0), `entries & 0x40`: read-only
/// for programs, `entries & 0x80`: a `bpf_spin_lock` at offset 0 (if the value holds one).
/// Small on purpose: the run allocates every entry.
pub fn decode_map(d: [u8; 4], fd: i32) -> Option<MapInfo> {
    let t = KINDS[d[0] as usize % KINDS.len()]?;
    let (key, value, entries) = match t {
        MapType::RINGBUF => (0, 0, RINGBUF_SIZE),
        MapType::INODE_STORAGE => (4, 1 + d[2] as u32, 0),
        t if is_hash(t) => (
            1 + (d[1] % 64) as u32,
            1 + d[2] as u32,
            1 + (d[3] & ENTRIES_MASK) as u32,
        ),
        _ => (4, 1 + d[2] as u32, 1 + (d[3] & ENTRIES_MASK) as u32),
    };
    let mut m = MapInfo::new(fd, t, key, value, entries);
    if t != MapType::RINGBUF && d[3] & ENTRIES_RDONLY != 0 {
        m.flags = BPF_F_RDONLY_PROG;
    }
    if t != MapType::RINGBUF && d[3] & ENTRIES_SPIN_LOCK != 0 && value >= 4 {
        m.spin_lock_off = Some(0);
    }
    Some(m)
}

/// The descriptor that decodes to `m` (with fd `m.fd`), if there is one.
pub fn encode_map(m: &MapInfo) -> Option<[u8; 4]> {
    let kind = KINDS.iter().position(|k| *k == Some(m.map_type))? as u8;
    let key = if is_hash(m.map_type) {
        m.key_size.checked_sub(1)?
    } else {
        0
    };
    let value = m.value_size.saturating_sub(1);
    let mut entries = m.max_entries.saturating_sub(1);
    if m.map_type == MapType::RINGBUF || m.map_type == MapType::INODE_STORAGE {
        entries = 0;
    }
    let mut e = u8::try_from(entries).ok()?;
    if m.flags == BPF_F_RDONLY_PROG {
        e |= ENTRIES_RDONLY;
    }
    if m.spin_lock_off == Some(0) {
        e |= ENTRIES_SPIN_LOCK;
    }
    let d = [kind, u8::try_from(key).ok()?, u8::try_from(value).ok()?, e];
    (decode_map(d, m.fd).as_ref() == Some(m)).then_some(d)
}

/// A whole input for `verify`-ing `insns` (raw slots) as `prog_type` with `maps` (fd = index).
pub fn encode(prog_type: &str, options: u8, maps: &[MapInfo], insns: &[u8]) -> Option<Vec<u8>> {
    if maps.len() > MAX_MAPS || maps.iter().enumerate().any(|(i, m)| m.fd != i as i32) {
        return None;
    }
    let mut out = vec![
        TYPES.iter().position(|t| *t == prog_type)? as u8,
        options,
        0,
        0,
    ];
    for i in 0..MAX_MAPS {
        out.extend(match maps.get(i) {
            Some(m) => encode_map(m)?,
            None => [0; 4],
        });
    }
    out.extend_from_slice(insns);
    Some(out)
}

/// A decoded input.
pub struct Input {
    pub type_index: usize,
    pub options: u8,
    pub seed: u16,
    pub maps: Vec<MapInfo>,
    pub insns: Vec<Insn>,
}

pub fn decode(data: &[u8]) -> Option<Input> {
    let header = data.get(..HEADER_LEN)?;
    let body = &data[HEADER_LEN..];
    let body = &body[..body.len() / 8 * 8];
    if body.is_empty() {
        return None;
    }
    let maps = (0..MAX_MAPS)
        .filter_map(|i| {
            let d: [u8; 4] = header[4 + 4 * i..8 + 4 * i].try_into().ok()?;
            decode_map(d, i as i32)
        })
        .collect();
    Some(Input {
        type_index: header[0] as usize % TYPES.len(),
        options: header[1],
        seed: u16::from_le_bytes([header[2], header[3]]),
        maps,
        insns: Insn::slots_from_bytes(body).ok()?,
    })
}

fn specs() -> &'static [ProgTypeSpec] {
    static S: OnceLock<Vec<ProgTypeSpec>> = OnceLock::new();
    S.get_or_init(|| {
        TYPES
            .iter()
            .map(|t| ProgTypeSpec::by_name(t).expect("built-in type"))
            .collect()
    })
}

fn protos() -> &'static HelperProtos {
    static P: OnceLock<HelperProtos> = OnceLock::new();
    P.get_or_init(HelperProtos::standard)
}

/// `bpf_loop` making at most `LOOP_CAP` iterations: a verified program may ask for 2^23, each
/// a callback run, which would make single inputs take seconds. The count is a scalar to the
/// verifier, so returning a smaller one cannot hide a memory-safety bug.
fn capped_loop(ctx: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
    let (nr, func, cb_ctx) = (a[0] as u32 as u64, a[1], a[2]);
    if a[3] != 0 {
        return Ok((-22i64) as u64);
    }
    for i in 0..nr.min(LOOP_CAP) {
        if ctx.call_function(func, [i, cb_ctx, 0, 0, 0])? != 0 {
            return Ok(i + 1);
        }
    }
    Ok(nr)
}

fn helpers() -> &'static Helpers {
    static H: OnceLock<Helpers> = OnceLock::new();
    H.get_or_init(|| {
        let mut h = Helpers::standard();
        h.register(ids::LOOP, "bpf_loop", capped_loop);
        h
    })
}

fn fixed_clock(c: Clock) -> u64 {
    match c {
        Clock::Monotonic => 1_000_000_007,
        Clock::Boot => 2_000_000_011,
    }
}

/// Struct pointers are followed this deep (the built-in types need one level).
const MAX_STRUCT_DEPTH: usize = 3;

/// Points the pointer fields of `fields` (in `buf`) at new struct buffers.
fn fill_pointers(
    spec: &ProgTypeSpec,
    fields: &[CtxField],
    buf: &GuardedBuf,
    structs: &mut Vec<GuardedBuf>,
    rng: &mut Rng,
    depth: usize,
) {
    for f in fields {
        let FieldKind::Ptr { target, nullable } = &f.kind else {
            continue;
        };
        let mut addr = 0u64;
        let null = *nullable && rng.next_u64().is_multiple_of(4);
        if let (false, Some(i)) = (null || depth >= MAX_STRUCT_DEPTH, spec.find_struct(target)) {
            let s = &spec.structs[i];
            let b = GuardedBuf::new(s.size as usize);
            let mut init = vec![0u8; s.size as usize];
            rng.fill(&mut init);
            b.write(0, &init);
            fill_pointers(spec, &s.fields, &b, structs, rng, depth + 1);
            addr = b.addr();
            structs.push(b);
        }
        buf.write(f.off as usize, &addr.to_ne_bytes());
    }
}

/// Which bytes of each type's context a program may change: those some write the type's
/// context check accepts covers (the same question the verifier asks).
fn writable_masks() -> &'static [Vec<bool>] {
    static M: OnceLock<Vec<Vec<bool>>> = OnceLock::new();
    M.get_or_init(|| {
        specs()
            .iter()
            .map(|spec| match &spec.ctx {
                CtxLayout::Buffer { .. } => Vec::new(),
                CtxLayout::Fields { size, .. } => {
                    let mut w = vec![false; *size as usize];
                    for width in [1usize, 2, 4, 8] {
                        for off in (0..w.len()).step_by(width) {
                            if spec.ctx_access(off as i64, width as u32, true).is_ok() {
                                for b in w.iter_mut().skip(off).take(width) {
                                    *b = true;
                                }
                            }
                        }
                    }
                    w
                }
            })
            .collect()
    })
}

/// A packet for XDP and socket-filter runs: an Ethernet frame of 14 to 269 bytes. Half carry
/// an EtherType nobody parses (the kernel's test run refuses IP frames too short for their
/// header, so random ones are often refused).
fn packet(rng: &mut Rng) -> Vec<u8> {
    let mut p = vec![0u8; 14 + (rng.next_u64() % 256) as usize];
    rng.fill(&mut p);
    if rng.next_u64().is_multiple_of(2) || p.len() < 60 {
        p[12..14].copy_from_slice(&[0x88, 0xb5]);
    } else {
        p[12..14].copy_from_slice(&[0x08, 0x00]);
        p[14] = 0x45;
    }
    p
}

/// The context of one run: the buffers the program may reach through r1.
enum Context {
    /// A context the verifier's layout describes directly (syscall buffer, LSM/tracing
    /// argument arrays), the structs its pointers point to, and the writable-byte mask.
    Plain {
        buf: GuardedBuf,
        structs: Vec<GuardedBuf>,
        writable: Vec<bool>,
    },
    Xdp(XdpRun),
    Skb(SkbRun),
}

impl Context {
    fn build(
        spec: &ProgTypeSpec,
        type_index: usize,
        info: &VerifiedInfo,
        rng: &mut Rng,
    ) -> Option<Context> {
        match spec.name.as_str() {
            "xdp" => return XdpRun::new(&packet(rng), None).ok().map(Context::Xdp),
            "socket_filter" => return SkbRun::new(&packet(rng), None).ok().map(Context::Skb),
            _ => {}
        }
        let (size, fields, writable): (usize, &[CtxField], Vec<bool>) = match &spec.ctx {
            // What BPF_PROG_TEST_RUN would be given: exactly the bytes the program uses.
            CtxLayout::Buffer { .. } => {
                let n = info.max_ctx_offset as usize;
                (n, &[], vec![true; n])
            }
            CtxLayout::Fields { size, fields } => {
                (*size as usize, fields, writable_masks()[type_index].clone())
            }
        };
        let buf = GuardedBuf::new(size);
        let mut init = vec![0u8; size];
        rng.fill(&mut init);
        buf.write(0, &init);
        let mut structs = Vec::new();
        fill_pointers(spec, fields, &buf, &mut structs, rng, 0);
        Some(Context::Plain {
            buf,
            structs,
            writable,
        })
    }

    /// The visible context bytes and which of them the program may change.
    fn visible(&self, type_index: usize) -> Option<(Vec<u8>, &[bool])> {
        match self {
            Context::Plain { buf, writable, .. } => Some((buf.bytes(), writable)),
            Context::Skb(run) => Some((run.sk_buff().to_vec(), &writable_masks()[type_index])),
            // The program cannot write its `xdp_md`; the run-time `xdp_buff` behind it is the
            // adjust helpers' to change.
            Context::Xdp(_) => None,
        }
    }
}

/// Run errors that do not break the verifier's promise: only running out of the back-edge
/// budget (also inside a callback).
fn acceptable(e: &ExecError) -> bool {
    match e {
        ExecError::Budget { .. } => true,
        ExecError::Helper {
            error: HelperError::Callback(inner),
            ..
        } => acceptable(inner),
        _ => false,
    }
}

/// The fuzz target body.
pub fn run(data: &[u8]) {
    let Some(input) = decode(data) else {
        return;
    };
    let spec = &specs()[input.type_index];
    let mut env = VerifierEnv::new(spec, &input.maps, protos());
    env.allow_loops = input.options & OPT_NO_LOOPS == 0;
    env.log = input.options & OPT_LOG != 0;
    env.max_insns = if env.log {
        MAX_INSNS_WITH_LOG
    } else {
        MAX_INSNS
    };
    let lines = |i: usize| {
        i.is_multiple_of(3)
            .then(|| format!("x = {i}; @ fuzz.c:{i}"))
    };
    let line_info: Option<&dyn Fn(usize) -> Option<String>> =
        (input.options & OPT_LINE_INFO != 0).then_some(&lines);
    let Ok(info) = verify(&input.insns, &env, line_info) else {
        return;
    };
    check_accepted(&input, spec, &info);
}

/// XDP helpers that move `data`, `data_meta` or `data_end`.
const XDP_ADJUST_HELPERS: [u32; 3] = [44, 54, 65];

/// Runs an accepted program once, checked, and panics if it breaks the verifier's promise.
fn check_accepted(input: &Input, spec: &ProgTypeSpec, info: &VerifiedInfo) {
    let fail = |what: String| -> ! {
        panic!(
            "the verifier accepted a {} program that {what}\nmaps: {:?}\n{}\nverifier log:\n{}",
            spec.name,
            input.maps,
            bpfvfs_ebpf::disassemble(&input.insns).unwrap_or_default(),
            info.log
        )
    };
    let mut rng = Rng::new(input.seed as u64);
    let maps = FuzzMaps::new(&input.maps, &mut rng);
    let map_index = |p: &PseudoLoad| -> Result<usize, String> {
        match p.kind {
            LdImmKind::MapIdx | LdImmKind::MapIdxValue => Ok(p.imm as usize),
            _ => input
                .maps
                .iter()
                .position(|m| m.fd == p.imm)
                .ok_or_else(|| format!("no map with fd {}", p.imm)),
        }
    };
    let resolve = |p: &PseudoLoad| -> Result<u64, String> {
        let i = map_index(p)?;
        match p.kind {
            LdImmKind::MapFd | LdImmKind::MapIdx => Ok(HANDLE_BASE + i as u64),
            LdImmKind::MapValue | LdImmKind::MapIdxValue => maps
                .direct_value(i)
                .map(|v| v.addr() + p.next_imm as u32 as u64)
                .ok_or_else(|| format!("map {i} has no direct value")),
            k => Err(format!("{k:?} is not resolved here")),
        }
    };
    let insns = match convert_ctx_accesses(&input.insns, spec, info) {
        Ok(i) => i,
        Err(e) => fail(format!("has context accesses without a run-time form: {e}")),
    };
    let prog = match Program::load(
        &insns,
        LoadOptions {
            resolve: Some(&resolve),
        },
    ) {
        Ok(p) => p,
        Err(e) => fail(format!("the interpreter cannot load: {e}")),
    };
    // Helpers outside `Helpers::standard` (local storage, seq_file) belong to other crates:
    // such programs are verified but not run.
    let Ok(mut vm) = Interpreter::new(&prog, helpers()) else {
        return;
    };
    vm.set_budget(Some(RUN_BUDGET));

    let Some(mut ctx) = Context::build(spec, input.type_index, info, &mut rng) else {
        return;
    };
    let before = ctx.visible(input.type_index).map(|(b, _)| b);
    let mut env = Env {
        maps: Some(&maps),
        trace: None,
        task: TaskInfo {
            pid: 4242,
            tgid: 4240,
            uid: 1000,
            gid: 100,
            comm: [0; 16],
            cpu: Some(0),
        }
        .with_comm("fuzz"),
        clock: fixed_clock,
        prandom: rng.next_u64() | 1,
        user: None,
    };
    let direct = maps.direct_regions();
    let result = match &mut ctx {
        Context::Plain { buf, structs, .. } => {
            let mut regions = vec![buf.region(RegionKind::Context, true)];
            regions.extend(structs.iter().map(|s| s.region(RegionKind::Other, false)));
            regions.extend(direct);
            vm.run([buf.addr(), 0, 0, 0, 0], &regions, &mut env)
        }
        Context::Skb(run) => {
            let args = run.args();
            let mut regions = run.regions().to_vec();
            regions.extend(direct);
            vm.run(args, &regions, &mut env)
        }
        Context::Xdp(run) => {
            let args = run.args();
            // Without the adjust helpers the packet cannot move, so the program may touch
            // exactly [data_meta, data_end): lend only that, not the whole frame, to catch
            // accesses the verifier's range proofs wrongly allowed.
            let adjusts = info
                .helpers_used
                .iter()
                .any(|h| XDP_ADJUST_HELPERS.contains(h));
            let packet = (
                run.meta().as_ptr() as u64,
                run.meta().len() + run.data().len(),
            );
            let [buff, frame] = run.regions();
            let mut regions = vec![buff];
            if adjusts {
                regions.push(frame);
            } else {
                let p = std::ptr::with_exposed_provenance_mut::<u8>(packet.0 as usize);
                // SAFETY: `[data_meta, data_end)` lies inside the frame that `run.regions()`
                // just lent writable (exposing its provenance) for this run; the region is
                // dropped with `regions` right after it.
                regions
                    .push(unsafe { Region::from_raw_parts(RegionKind::Packet, p, packet.1, true) });
            }
            regions.extend(direct);
            vm.run(args, &regions, &mut env)
        }
    };

    match result {
        Ok(r0) => {
            let r = if spec.ret_32bit {
                r0 as i32 as i64
            } else {
                r0 as i64
            };
            if let Some((lo, hi)) = spec.ret_range {
                if !(lo..=hi).contains(&r) {
                    fail(format!("returned {r} outside [{lo}, {hi}]"));
                }
            }
        }
        Err(e) if acceptable(&e) => {}
        Err(e) => fail(format!("failed at run time: {e}")),
    }
    if let (Some(before), Some((after, writable))) = (before, ctx.visible(input.type_index)) {
        if let Some(i) = (0..after.len()).find(|&i| after[i] != before[i] && !writable[i]) {
            fail(format!("changed read-only context byte {i}"));
        }
    }
    let guards_ok = match &ctx {
        Context::Plain { buf, structs, .. } => {
            buf.guards_intact() && structs.iter().all(GuardedBuf::guards_intact)
        }
        _ => true,
    };
    if !guards_ok || !maps.guards_intact() {
        fail("wrote outside a context, struct or map buffer".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_descriptors_round_trip() {
        let mut ro = MapInfo::new(1, MapType::ARRAY, 4, 16, 1);
        ro.flags = BPF_F_RDONLY_PROG;
        let mut locked = MapInfo::new(2, MapType::ARRAY, 4, 16, 1);
        locked.spin_lock_off = Some(0);
        for m in [
            MapInfo::new(0, MapType::ARRAY, 4, 8, 4),
            MapInfo::new(0, MapType::HASH, 8, 8, 16),
            MapInfo::new(0, MapType::RINGBUF, 0, 0, 4096),
            MapInfo::new(0, MapType::INODE_STORAGE, 4, 8, 0),
            ro,
            locked,
        ] {
            let d = encode_map(&m).unwrap_or_else(|| panic!("{m:?} not encodable"));
            assert_eq!(decode_map(d, m.fd), Some(m));
        }
        assert!(encode_map(&MapInfo::new(0, MapType::HASH, 8, 8, 100)).is_none());
    }

    #[test]
    fn accepted_program_runs() {
        // r0 = *(u64 *)(r1 + 8); *(u64 *)(r1 + 16) = r0; r0 = 0; exit
        let insns: Vec<u8> = [
            Insn::new(0x79, 0, 1, 8, 0),
            Insn::new(0x7b, 1, 0, 16, 0),
            Insn::new(0xb7, 0, 0, 0, 0),
            Insn::new(0x95, 0, 0, 0, 0),
        ]
        .iter()
        .flat_map(|i| i.to_bytes())
        .collect();
        let data = encode("syscall", 0, &[], &insns).unwrap();
        let input = decode(&data).unwrap();
        let env = VerifierEnv::new(&specs()[0], &[], protos());
        let info = verify(&input.insns, &env, None).unwrap();
        assert_eq!(info.max_ctx_offset, 24);
        run(&data);
    }

    /// The oracle itself: a program the verifier did *not* vouch for, run as if it had, is
    /// caught (here: the context buffer is one word shorter than the program reads).
    #[test]
    #[should_panic(expected = "failed at run time: insn 0: invalid read of 8 bytes")]
    fn oracle_catches_out_of_bounds_context_read() {
        let insns = Insn::slots_to_bytes(&[
            Insn::new(0x79, 0, 1, 16, 0),
            Insn::new(0xb7, 0, 0, 0, 0),
            Insn::new(0x95, 0, 0, 0, 0),
        ]);
        let input = decode(&encode("syscall", 0, &[], &insns).unwrap()).unwrap();
        let spec = &specs()[0];
        let mut info = verify(&input.insns, &VerifierEnv::new(spec, &[], protos()), None).unwrap();
        info.max_ctx_offset -= 8;
        check_accepted(&input, spec, &info);
    }

    #[test]
    #[should_panic(expected = "returned 1 outside [0, 0]")]
    fn oracle_catches_return_value_out_of_range() {
        let insns =
            Insn::slots_to_bytes(&[Insn::new(0xb7, 0, 0, 0, 1), Insn::new(0x95, 0, 0, 0, 0)]);
        let input = decode(&encode("tracing", 0, &[], &insns).unwrap()).unwrap();
        let syscall = &specs()[0];
        let info = verify(
            &input.insns,
            &VerifierEnv::new(syscall, &[], protos()),
            None,
        )
        .unwrap();
        check_accepted(&input, &specs()[4], &info);
    }
}
