//! Differential test against the host kernel: the same map definitions and operation
//! sequences run through bpf(2) and through bpfvfs, and every result (errno, value bytes,
//! keys, get_next_key order) must be identical.
//!
//! Skips, printing why, when not root or when the kernel refuses BPF_MAP_CREATE (EPERM,
//! ENOSYS). The test thread is pinned to CPU 0 so the kernel's per-CPU LRU caches behave the
//! same from run to run.
//!
//! Cases whose difference is known and explained are listed with `known:`; they are reported
//! but do not fail the test.

use bpfvfs_bpf::maps::nr_cpus;
use bpfvfs_bpf::uapi::*;
use bpfvfs_bpf::{Bpf, Handle, MapDef, MapType};
use bpfvfs_vfs::Vfs;

// ---------------------------------------------------------------------------------------
// Raw bpf(2)

const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_LOOKUP_ELEM: i32 = 1;
const BPF_MAP_UPDATE_ELEM: i32 = 2;
const BPF_MAP_DELETE_ELEM: i32 = 3;
const BPF_MAP_GET_NEXT_KEY: i32 = 4;

/// union bpf_attr, as bytes (128 is more than any command here uses; the kernel accepts a
/// larger size as long as the extra bytes are zero).
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(mut self, off: usize, v: u32) -> Attr {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(mut self, off: usize, v: u64) -> Attr {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
}

/// bpf(cmd, attr, sizeof attr): the return value or -errno.
fn sys_bpf(cmd: i32, attr: &mut Attr) -> Result<i64, i32> {
    // SAFETY: `attr` is a valid, writable 128-byte buffer for the duration of the call, and
    // every pointer stored in it (keys, values) points to a live buffer of the size the
    // kernel will read or write for that map (the callers below guarantee it).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr.0.as_mut_ptr(),
            attr.0.len() as libc::c_long,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r)
    }
}

fn ptr_or_null(b: Option<&[u8]>) -> u64 {
    match b {
        Some(b) if !b.is_empty() => b.as_ptr() as u64,
        _ => 0,
    }
}

struct KMap {
    fd: i32,
    key_size: usize,
    value_size: usize,
}

impl Drop for KMap {
    fn drop(&mut self) {
        // SAFETY: `fd` is a map fd this test owns; closed once.
        unsafe { libc::close(self.fd) };
    }
}

fn k_create(def: &MapDef) -> Result<KMap, i32> {
    k_create_btf(def, true)
}

/// Map create; local-storage maps get BTF (an `int` key and a `char[value_size]` value),
/// which the kernel requires for them and bpfvfs does not model, unless `btf` is false.
fn k_create_btf(def: &MapDef, btf: bool) -> Result<KMap, i32> {
    let mut a = Attr::new()
        .u32(0, def.map_type)
        .u32(4, def.key_size)
        .u32(8, def.value_size)
        .u32(12, def.max_entries)
        .u32(16, def.map_flags)
        .u64(64, def.map_extra);
    let name = def.name.as_bytes();
    a.0[28..28 + name.len().min(16)].copy_from_slice(&name[..name.len().min(16)]);
    let storage = matches!(
        def.kind(),
        Some(MapType::InodeStorage | MapType::TaskStorage | MapType::SkStorage)
    );
    let btf_fd = if storage && btf {
        Some(load_btf(def.value_size)?)
    } else {
        None
    };
    if let Some(fd) = &btf_fd {
        a = a.u32(48, fd.0 as u32).u32(52, 1).u32(56, 3);
    }
    let fd = sys_bpf(BPF_MAP_CREATE, &mut a)? as i32;
    let percpu = matches!(def.kind(), Some(MapType::PercpuHash | MapType::PercpuArray));
    let vs = if percpu {
        (def.value_size as usize).div_ceil(8) * 8 * possible_cpus()
    } else {
        def.value_size as usize
    };
    Ok(KMap {
        fd,
        key_size: def.key_size as usize,
        value_size: vs,
    })
}

const BPF_BTF_LOAD: i32 = 18;

struct Fd(i32);
impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: an fd this test owns; closed once.
        unsafe { libc::close(self.0) };
    }
}

/// BTF with [1] `int` (32-bit signed), [2] `char`, [3] `char[value_size]`.
fn load_btf(value_size: u32) -> Result<Fd, i32> {
    let strs = b"\0int\0char\0";
    let mut types: Vec<u32> = Vec::new();
    // name_off, info (kind << 24), size, then the kind's extra words.
    types.extend([1, 1 << 24, 4, (1 << 24) | 32]); // INT "int", signed, 32 bits
    types.extend([5, 1 << 24, 1, 8]); // INT "char", 8 bits
    types.extend([0, 3 << 24, 0, 2, 1, value_size]); // ARRAY of [2], index [1]
    let type_len = (types.len() * 4) as u32;
    let mut blob = Vec::new();
    blob.extend(0xEB9F_u16.to_ne_bytes());
    blob.extend([1u8, 0u8]);
    for w in [24u32, 0, type_len, type_len, strs.len() as u32] {
        blob.extend(w.to_ne_bytes());
    }
    for w in &types {
        blob.extend(w.to_ne_bytes());
    }
    blob.extend(strs);
    let mut a = Attr::new()
        .u64(0, blob.as_ptr() as u64)
        .u32(16, blob.len() as u32);
    Ok(Fd(sys_bpf(BPF_BTF_LOAD, &mut a)? as i32))
}

fn possible_cpus() -> usize {
    // "0-1" or "0" or "0-3,5"...: count the CPUs listed.
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    s.trim()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap_or(0) - a.parse::<usize>().unwrap_or(0) + 1,
            None => 1,
        })
        .sum::<usize>()
        .max(1)
}

impl KMap {
    fn check_key(&self, key: &[u8]) {
        assert_eq!(key.len(), self.key_size, "test bug: key size");
    }
    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), i32> {
        self.check_key(key);
        assert_eq!(value.len(), self.value_size, "test bug: value size");
        let mut a = Attr::new()
            .u32(0, self.fd as u32)
            .u64(8, ptr_or_null(Some(key)))
            .u64(
                16,
                if value.is_empty() {
                    0
                } else {
                    value.as_ptr() as u64
                },
            )
            .u64(24, flags);
        sys_bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(|_| ())
    }
    fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, i32> {
        self.check_key(key);
        let mut out = vec![0u8; self.value_size.max(1)];
        let mut a = Attr::new()
            .u32(0, self.fd as u32)
            .u64(8, ptr_or_null(Some(key)))
            .u64(16, out.as_mut_ptr() as u64);
        sys_bpf(BPF_MAP_LOOKUP_ELEM, &mut a)?;
        out.truncate(self.value_size);
        Ok(out)
    }
    fn delete(&self, key: &[u8]) -> Result<(), i32> {
        self.check_key(key);
        let mut a = Attr::new()
            .u32(0, self.fd as u32)
            .u64(8, ptr_or_null(Some(key)));
        sys_bpf(BPF_MAP_DELETE_ELEM, &mut a).map(|_| ())
    }
    fn next(&self, key: Option<&[u8]>) -> Result<Vec<u8>, i32> {
        if let Some(k) = key {
            self.check_key(k);
        }
        let mut out = vec![0u8; self.key_size.max(1)];
        let mut a = Attr::new()
            .u32(0, self.fd as u32)
            .u64(8, ptr_or_null(key))
            .u64(16, out.as_mut_ptr() as u64);
        sys_bpf(BPF_MAP_GET_NEXT_KEY, &mut a)?;
        out.truncate(self.key_size);
        Ok(out)
    }
}

/// Pin the calling thread to CPU 0 (the kernel's per-CPU LRU free lists then behave the same
/// on every run).
fn pin_to_cpu0() {
    // nr_cpus() follows the affinity mask the first time it is asked: fix it before pinning.
    let _ = nr_cpus();
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity on the
    // calling thread (pid 0) with its size are the documented use.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Why the kernel side cannot run, if it cannot.
fn kernel_unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    match k_create(&MapDef::new(MapType::Hash, 4, 8, 1)) {
        Ok(_) => None,
        Err(e) if e == libc::EPERM || e == libc::ENOSYS || e == libc::EACCES => {
            Some(format!("bpf(BPF_MAP_CREATE) fails with errno {e}"))
        }
        Err(_) => None,
    }
}

// ---------------------------------------------------------------------------------------
// Cases

#[derive(Clone, Debug)]
enum Op {
    Upd(Vec<u8>, Vec<u8>, u64),
    Look(Vec<u8>),
    Del(Vec<u8>),
    Next(Option<Vec<u8>>),
    /// Every key, in get_next_key order.
    Dump,
    /// Every key, sorted (for maps whose order depends on a random seed).
    Keys,
    /// How many keys get_next_key walks.
    Count,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    Ok,
    Val(Vec<u8>),
    Keys(Vec<Vec<u8>>),
    Count(usize),
    Err(i32),
}

fn out<T>(r: Result<T, i32>, f: impl FnOnce(T) -> Out) -> Out {
    match r {
        Ok(v) => f(v),
        Err(e) => Out::Err(e),
    }
}

struct Case {
    name: String,
    def: MapDef,
    ops: Vec<Op>,
    /// A difference we know about and why.
    known: Option<&'static str>,
    /// Create kernel-side local-storage maps without BTF.
    no_btf: bool,
}

fn case(name: &str, def: MapDef, ops: Vec<Op>) -> Case {
    Case {
        name: name.to_string(),
        def,
        ops,
        known: None,
        no_btf: false,
    }
}

trait Side {
    fn update(&self, k: &[u8], v: &[u8], f: u64) -> Result<(), i32>;
    fn lookup(&self, k: &[u8]) -> Result<Vec<u8>, i32>;
    fn delete(&self, k: &[u8]) -> Result<(), i32>;
    fn next(&self, k: Option<&[u8]>) -> Result<Vec<u8>, i32>;
}

impl Side for KMap {
    fn update(&self, k: &[u8], v: &[u8], f: u64) -> Result<(), i32> {
        KMap::update(self, k, v, f)
    }
    fn lookup(&self, k: &[u8]) -> Result<Vec<u8>, i32> {
        KMap::lookup(self, k)
    }
    fn delete(&self, k: &[u8]) -> Result<(), i32> {
        KMap::delete(self, k)
    }
    fn next(&self, k: Option<&[u8]>) -> Result<Vec<u8>, i32> {
        KMap::next(self, k)
    }
}

struct Ours<'a> {
    bpf: &'a Bpf,
    h: Handle,
}

impl Side for Ours<'_> {
    fn update(&self, k: &[u8], v: &[u8], f: u64) -> Result<(), i32> {
        self.bpf.map_update_elem(&self.h, k, v, f).map_err(|e| e.0)
    }
    fn lookup(&self, k: &[u8]) -> Result<Vec<u8>, i32> {
        self.bpf.map_lookup_elem(&self.h, k).map_err(|e| e.0)
    }
    fn delete(&self, k: &[u8]) -> Result<(), i32> {
        self.bpf.map_delete_elem(&self.h, k).map_err(|e| e.0)
    }
    fn next(&self, k: Option<&[u8]>) -> Result<Vec<u8>, i32> {
        self.bpf.map_get_next_key(&self.h, k).map_err(|e| e.0)
    }
}

fn walk(s: &dyn Side) -> Result<Vec<Vec<u8>>, i32> {
    let mut keys = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    loop {
        match s.next(cur.as_deref()) {
            Ok(k) => {
                keys.push(k.clone());
                cur = Some(k);
                if keys.len() > 1 << 20 {
                    return Err(-1);
                }
            }
            Err(e) if e == libc::ENOENT => return Ok(keys),
            Err(e) => return Err(e),
        }
    }
}

fn run(s: &dyn Side, ops: &[Op]) -> Vec<Out> {
    ops.iter()
        .map(|op| match op {
            Op::Upd(k, v, f) => out(s.update(k, v, *f), |_| Out::Ok),
            Op::Look(k) => out(s.lookup(k), Out::Val),
            Op::Del(k) => out(s.delete(k), |_| Out::Ok),
            Op::Next(k) => out(s.next(k.as_deref()), Out::Val),
            Op::Dump => out(walk(s), Out::Keys),
            Op::Keys => out(walk(s), |mut k| {
                k.sort();
                Out::Keys(k)
            }),
            Op::Count => out(walk(s), |k| Out::Count(k.len())),
        })
        .collect()
}

/// Run every case on both sides; print a table; fail on unexplained differences.
fn differential(kind: &str, cases: Vec<Case>) {
    if let Some(why) = kernel_unavailable() {
        println!("SKIP kernel differential for {kind}: {why}");
        return;
    }
    pin_to_cpu0();
    let bpf = Bpf::new(Vfs::new_memfs()).expect("bpf");
    let (mut matched, mut known, mut failed) = (0, 0, Vec::new());
    for c in &cases {
        let k = k_create_btf(&c.def, !c.no_btf);
        let o = bpf.map_create(c.def.clone()).map_err(|e| e.0);
        let (kr, or) = match (&k, &o) {
            (Ok(km), Ok(h)) => {
                let ours = Ours {
                    bpf: &bpf,
                    h: h.clone(),
                };
                (run(km, &c.ops), run(&ours, &c.ops))
            }
            _ => (Vec::new(), Vec::new()),
        };
        let kc = k.as_ref().map(|_| ()).map_err(|e| *e);
        let oc = o.as_ref().map(|_| ()).map_err(|e| *e);
        let same = kc == oc && kr == or;
        let status = match (same, c.known) {
            (true, _) => {
                matched += 1;
                "match"
            }
            (false, Some(_)) => {
                known += 1;
                "KNOWN"
            }
            (false, None) => {
                failed.push(c.name.clone());
                "DIFF"
            }
        };
        println!(
            "{kind:14} {status:5} {:48} create kernel={kc:?} ours={oc:?}",
            c.name
        );
        if !same || std::env::var_os("DIFF_VERBOSE").is_some() {
            for (i, (a, b)) in kr.iter().zip(or.iter()).enumerate() {
                if a != b || std::env::var_os("DIFF_VERBOSE").is_some() {
                    println!("      op {i} {:?}: kernel={a:?} ours={b:?}", c.ops[i]);
                }
            }
            if let Some(why) = c.known {
                println!("      known: {why}");
            }
        }
    }
    println!(
        "{kind}: {} cases, {matched} matched, {known} known differences, {} unexplained",
        cases.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{kind}: differences from the kernel: {failed:?}"
    );
}

fn k32(i: u32) -> Vec<u8> {
    i.to_ne_bytes().to_vec()
}
fn v64(i: u64) -> Vec<u8> {
    i.to_ne_bytes().to_vec()
}

/// Create-time cases shared by the hash flavours.
fn hash_create_cases(t: MapType, cases: &mut Vec<Case>) {
    let d = |ks, vs, me, fl| MapDef::new(t, ks, vs, me).with_flags(fl);
    let m = 4 << 20; // KMALLOC_MAX_SIZE
    for (name, def) in [
        ("key_size 0", d(0, 8, 4, 0)),
        ("value_size 0", d(4, 0, 4, 0)),
        ("max_entries 0", d(4, 8, 0, 0)),
        ("key_size 1000 (no stack limit)", d(1000, 8, 4, 0)),
        ("key+value = KMALLOC_MAX - 48", d(8, m - 48 - 8, 1, 0)),
        ("key+value = KMALLOC_MAX - 49", d(8, m - 49 - 8, 1, 0)),
        (
            "max_entries 2^27+1 (buckets overflow)",
            d(4, 8, (1 << 27) + 1, 0),
        ),
        ("max_entries 2^31+1", d(4, 8, (1 << 31) + 1, 0)),
        ("max_entries u32::MAX", d(4, 8, u32::MAX, 0)),
        ("BPF_F_NO_PREALLOC", d(4, 8, 4, BPF_F_NO_PREALLOC)),
        ("BPF_F_NO_COMMON_LRU", d(4, 8, 4, BPF_F_NO_COMMON_LRU)),
        ("BPF_F_NUMA_NODE (node 0)", d(4, 8, 4, BPF_F_NUMA_NODE)),
        (
            "NUMA_NODE | NO_COMMON_LRU",
            d(4, 8, 4, BPF_F_NUMA_NODE | BPF_F_NO_COMMON_LRU),
        ),
        ("BPF_F_ZERO_SEED", d(4, 8, 4, BPF_F_ZERO_SEED)),
        ("BPF_F_MMAPABLE", d(4, 8, 4, BPF_F_MMAPABLE)),
        ("BPF_F_INNER_MAP", d(4, 8, 4, BPF_F_INNER_MAP)),
        ("BPF_F_PRESERVE_ELEMS", d(4, 8, 4, BPF_F_PRESERVE_ELEMS)),
        (
            "BPF_F_RDONLY | BPF_F_WRONLY",
            d(4, 8, 4, BPF_F_RDONLY | BPF_F_WRONLY),
        ),
        (
            "RDONLY_PROG | WRONLY_PROG",
            d(4, 8, 4, BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG),
        ),
        ("BPF_F_RDONLY_PROG", d(4, 8, 4, BPF_F_RDONLY_PROG)),
        ("unknown flag 1<<20", d(4, 8, 4, 1 << 20)),
        ("percpu value 32768", d(4, 32768, 4, 0)),
        ("percpu value 32769", d(4, 32769, 4, 0)),
        ("bad name", d(4, 8, 4, 0).with_name("a-b")),
    ] {
        cases.push(case(&format!("create {name}"), def, vec![]));
    }
}

/// Element-operation cases shared by HASH, PERCPU_HASH and (while not full) LRU_HASH.
/// `vs` is the user-visible value size.
fn hash_op_cases(t: MapType, vs: usize, cases: &mut Vec<Case>) {
    let zs = BPF_F_ZERO_SEED;
    let d = |me| MapDef::new(t, 4, 8, me).with_flags(zs);
    let val = |i: u8| vec![i; vs];
    cases.push(case(
        "update/lookup/NOEXIST/EXIST",
        d(8),
        vec![
            Op::Look(k32(1)),
            Op::Upd(k32(1), val(1), BPF_ANY),
            Op::Look(k32(1)),
            Op::Upd(k32(1), val(2), BPF_NOEXIST),
            Op::Upd(k32(2), val(2), BPF_EXIST),
            Op::Upd(k32(1), val(3), BPF_EXIST),
            Op::Look(k32(1)),
            Op::Upd(k32(2), val(4), BPF_NOEXIST),
            Op::Look(k32(2)),
            Op::Dump,
        ],
    ));
    cases.push(case(
        "bad update flags",
        d(8),
        vec![
            Op::Upd(k32(1), val(1), 3),
            Op::Upd(k32(1), val(1), BPF_F_LOCK),
            Op::Upd(k32(1), val(1), 8),
            Op::Upd(k32(1), val(1), 1 << 40),
            Op::Look(k32(1)),
        ],
    ));
    cases.push(case(
        "delete",
        d(8),
        vec![
            Op::Del(k32(1)),
            Op::Upd(k32(1), val(1), BPF_ANY),
            Op::Del(k32(1)),
            Op::Del(k32(1)),
            Op::Look(k32(1)),
            Op::Next(None),
        ],
    ));
    cases.push(case(
        "get_next_key on empty map",
        d(8),
        vec![Op::Next(None), Op::Next(Some(k32(5)))],
    ));
    cases.push(case(
        "get_next_key: missing key restarts, last is ENOENT",
        d(64),
        (0..20)
            .map(|i| Op::Upd(k32(i * 7), val(i as u8), BPF_ANY))
            .chain([
                Op::Next(None),
                Op::Next(Some(k32(1000))),
                Op::Next(Some(k32(7))),
                Op::Dump,
            ])
            .collect(),
    ));
    cases.push(case(
        "zero-seed order of 100 keys in 128 buckets",
        d(128),
        (0..100)
            .map(|i: u32| {
                Op::Upd(
                    k32(i.wrapping_mul(2654435761u32.wrapping_mul(i + 1))),
                    val(i as u8),
                    BPF_ANY,
                )
            })
            .chain([Op::Dump])
            .collect(),
    ));
    cases.push(case(
        "zero-seed order after deletes and re-inserts",
        d(16),
        (0..16)
            .map(|i| Op::Upd(k32(i), val(i as u8), BPF_ANY))
            .chain((0..16).step_by(3).map(|i| Op::Del(k32(i))))
            .chain((0..16).step_by(5).map(|i| Op::Upd(k32(i), val(9), BPF_ANY)))
            .chain([Op::Dump, Op::Count])
            .collect(),
    ));
    cases.push(case(
        "random-seed key set",
        MapDef::new(t, 4, 8, 64),
        (0..40)
            .map(|i| Op::Upd(k32(i * 3), val(i as u8), BPF_ANY))
            .chain([Op::Keys, Op::Count])
            .collect(),
    ));
    let odd = |ks: u32| MapDef::new(t, ks, 8, 256).with_flags(zs);
    for ks in [1u32, 3, 5, 12, 13, 33] {
        cases.push(case(
            &format!("zero-seed order, key_size {ks} (jhash tail)"),
            odd(ks),
            (0..50u32)
                .map(|i| {
                    let mut k = vec![0u8; ks as usize];
                    for (j, b) in k.iter_mut().enumerate() {
                        *b = (i as usize * 31 + j * 7) as u8;
                    }
                    Op::Upd(k, val(i as u8), BPF_ANY)
                })
                .chain([Op::Dump])
                .collect(),
        ));
    }
}

/// Cases for a full map: E2BIG for new keys, flags checked first.
fn full_cases(t: MapType, vs: usize, cases: &mut Vec<Case>) {
    let val = |i: u8| vec![i; vs];
    cases.push(case(
        "full map",
        MapDef::new(t, 4, 8, 4).with_flags(BPF_F_ZERO_SEED),
        (0..4)
            .map(|i| Op::Upd(k32(i), val(i as u8), BPF_ANY))
            .chain([
                Op::Upd(k32(9), val(9), BPF_ANY),
                Op::Upd(k32(9), val(9), BPF_NOEXIST),
                Op::Upd(k32(9), val(9), BPF_EXIST),
                Op::Upd(k32(1), val(7), BPF_NOEXIST),
                Op::Upd(k32(1), val(7), BPF_ANY),
                Op::Upd(k32(2), val(8), BPF_EXIST),
                Op::Look(k32(1)),
                Op::Look(k32(2)),
                Op::Del(k32(0)),
                Op::Upd(k32(9), val(9), BPF_NOEXIST),
                Op::Upd(k32(10), val(9), BPF_NOEXIST),
                Op::Dump,
            ])
            .collect(),
    ));
    cases.push(case(
        "full map with BPF_F_NO_PREALLOC",
        MapDef::new(t, 4, 8, 2).with_flags(BPF_F_NO_PREALLOC),
        vec![
            Op::Upd(k32(1), val(1), BPF_ANY),
            Op::Upd(k32(2), val(2), BPF_ANY),
            Op::Upd(k32(3), val(3), BPF_ANY),
            Op::Upd(k32(2), val(5), BPF_ANY),
            Op::Look(k32(2)),
            Op::Keys,
        ],
    ));
}

#[test]
fn kernel_diff_hash() {
    let mut cases = Vec::new();
    hash_create_cases(MapType::Hash, &mut cases);
    hash_op_cases(MapType::Hash, 8, &mut cases);
    full_cases(MapType::Hash, 8, &mut cases);
    cases.push(case(
        "value_size 5",
        MapDef::new(MapType::Hash, 4, 5, 4),
        vec![
            Op::Upd(k32(1), vec![1, 2, 3, 4, 5], BPF_ANY),
            Op::Look(k32(1)),
        ],
    ));
    cases.push(case(
        "key_size 1000",
        MapDef::new(MapType::Hash, 1000, 8, 4),
        vec![
            Op::Upd(vec![7; 1000], v64(1), BPF_ANY),
            Op::Look(vec![7; 1000]),
            Op::Look(vec![8; 1000]),
            Op::Next(None),
        ],
    ));
    differential("hash", cases);
}

#[test]
fn kernel_diff_percpu_hash() {
    let vs = 8 * nr_cpus();
    if possible_cpus() != nr_cpus() {
        println!(
            "SKIP percpu value comparisons: kernel has {} possible CPUs, bpfvfs {}",
            possible_cpus(),
            nr_cpus()
        );
        return;
    }
    let mut cases = Vec::new();
    hash_create_cases(MapType::PercpuHash, &mut cases);
    hash_op_cases(MapType::PercpuHash, vs, &mut cases);
    full_cases(MapType::PercpuHash, vs, &mut cases);
    // value_size 4: each CPU's slot is 8 bytes, padding included both ways.
    let per = |i: u8| -> Vec<u8> { (0..nr_cpus() * 8).map(|j| i + j as u8).collect() };
    cases.push(case(
        "value_size 4: padded slots",
        MapDef::new(MapType::PercpuHash, 4, 4, 4),
        vec![
            Op::Upd(k32(1), per(1), BPF_ANY),
            Op::Look(k32(1)),
            Op::Upd(k32(1), per(9), BPF_EXIST),
            Op::Look(k32(1)),
        ],
    ));
    differential("percpu_hash", cases);
}

#[test]
fn kernel_diff_lru_hash() {
    let mut cases = Vec::new();
    hash_create_cases(MapType::LruHash, &mut cases);
    hash_op_cases(MapType::LruHash, 8, &mut cases);
    let d = |me, fl| MapDef::new(MapType::LruHash, 4, 8, me).with_flags(fl);
    // Overflowing an LRU map evicts instead of failing; which key goes differs (CLOCK here,
    // the kernel's active/inactive lists there), so only counts and the new keys compare.
    cases.push(case(
        "overflow evicts, never E2BIG",
        d(4, 0),
        (0..12)
            .map(|i| Op::Upd(k32(i), v64(i as u64), BPF_ANY))
            .chain([
                Op::Count,
                Op::Look(k32(11)),
                Op::Upd(k32(11), v64(1), BPF_EXIST),
            ])
            .collect(),
    ));
    cases.push(case(
        "full: a failed update still takes (evicts) a node",
        d(4, 0),
        (0..4)
            .map(|i| Op::Upd(k32(i), v64(i as u64), BPF_ANY))
            .chain([
                Op::Count,
                Op::Upd(k32(100), v64(1), BPF_EXIST),
                Op::Count,
                Op::Upd(k32(200), v64(1), BPF_ANY),
                Op::Count,
                Op::Upd(k32(200), v64(1), BPF_NOEXIST),
                Op::Count,
                Op::Look(k32(200)),
            ])
            .collect(),
    ));
    cases.push(case(
        "BPF_F_NO_COMMON_LRU overflow",
        d(8, BPF_F_NO_COMMON_LRU),
        (0..40)
            .map(|i| Op::Upd(k32(i), v64(i as u64), BPF_ANY))
            .chain([Op::Look(k32(39))])
            .collect(),
    ));
    differential("lru_hash", cases);
}

#[test]
fn kernel_diff_percpu_array() {
    if possible_cpus() != nr_cpus() {
        println!("SKIP percpu_array: CPU counts differ");
        return;
    }
    let t = MapType::PercpuArray;
    let vs = 8 * nr_cpus();
    let d = |ks, vs, me, fl| MapDef::new(t, ks, vs, me).with_flags(fl);
    let mut cases = Vec::new();
    for (name, def) in [
        ("ok", d(4, 8, 4, 0)),
        ("key_size 8", d(8, 8, 4, 0)),
        ("key_size 0", d(0, 8, 4, 0)),
        ("value_size 0", d(4, 0, 4, 0)),
        ("max_entries 0", d(4, 8, 0, 0)),
        ("value 32768", d(4, 32768, 4, 0)),
        ("value 32769", d(4, 32769, 4, 0)),
        ("value 2^31", d(4, 1 << 31, 4, 0)),
        ("BPF_F_MMAPABLE", d(4, 8, 4, BPF_F_MMAPABLE)),
        ("BPF_F_INNER_MAP", d(4, 8, 4, BPF_F_INNER_MAP)),
        ("BPF_F_PRESERVE_ELEMS", d(4, 8, 4, BPF_F_PRESERVE_ELEMS)),
        ("BPF_F_NUMA_NODE", d(4, 8, 4, BPF_F_NUMA_NODE)),
        ("BPF_F_NO_PREALLOC", d(4, 8, 4, BPF_F_NO_PREALLOC)),
        ("BPF_F_ZERO_SEED", d(4, 8, 4, BPF_F_ZERO_SEED)),
        ("BPF_F_NO_COMMON_LRU", d(4, 8, 4, BPF_F_NO_COMMON_LRU)),
        ("BPF_F_RDONLY_PROG", d(4, 8, 4, BPF_F_RDONLY_PROG)),
        ("RDONLY | WRONLY", d(4, 8, 4, BPF_F_RDONLY | BPF_F_WRONLY)),
        // (Not 2^31+1 entries: the kernel really tries to allocate that.)
    ] {
        cases.push(case(&format!("create {name}"), def, vec![]));
    }
    let val = |i: u8| -> Vec<u8> { (0..vs).map(|j| i.wrapping_add(j as u8)).collect() };
    cases.push(case(
        "lookup/update/flags/delete",
        d(4, 8, 4, 0),
        vec![
            Op::Look(k32(0)),
            Op::Look(k32(3)),
            Op::Look(k32(4)),
            Op::Upd(k32(1), val(1), BPF_ANY),
            Op::Look(k32(1)),
            Op::Upd(k32(1), val(2), BPF_NOEXIST),
            Op::Upd(k32(1), val(3), BPF_EXIST),
            Op::Look(k32(1)),
            Op::Upd(k32(4), val(1), BPF_ANY),
            Op::Upd(k32(4), val(1), BPF_NOEXIST),
            Op::Upd(k32(1), val(1), 3),
            Op::Upd(k32(1), val(1), BPF_F_LOCK),
            Op::Del(k32(1)),
            Op::Del(k32(9)),
        ],
    ));
    cases.push(case(
        "get_next_key",
        d(4, 8, 3, 0),
        vec![
            Op::Next(None),
            Op::Next(Some(k32(0))),
            Op::Next(Some(k32(1))),
            Op::Next(Some(k32(2))),
            Op::Next(Some(k32(3))),
            Op::Next(Some(k32(u32::MAX))),
            Op::Dump,
        ],
    ));
    let per4 = |i: u8| -> Vec<u8> { (0..nr_cpus() * 8).map(|j| i + j as u8).collect() };
    cases.push(case(
        "value_size 4: padded slots",
        d(4, 4, 2, 0),
        vec![
            Op::Upd(k32(1), per4(1), BPF_ANY),
            Op::Look(k32(1)),
            Op::Look(k32(0)),
        ],
    ));
    differential("percpu_array", cases);
}

#[test]
fn kernel_diff_ringbuf() {
    let t = MapType::Ringbuf;
    let d = |ks, vs, me, fl| MapDef::new(t, ks, vs, me).with_flags(fl);
    let mut cases = Vec::new();
    for (name, def) in [
        ("4096", d(0, 0, 4096, 0)),
        ("8192", d(0, 0, 8192, 0)),
        ("1 MiB", d(0, 0, 1 << 20, 0)),
        ("0", d(0, 0, 0, 0)),
        ("2048 (not page multiple)", d(0, 0, 2048, 0)),
        ("12288 (not power of 2)", d(0, 0, 12288, 0)),
        ("4097", d(0, 0, 4097, 0)),
        ("key_size 4", d(4, 0, 4096, 0)),
        ("value_size 4", d(0, 4, 4096, 0)),
        ("BPF_F_NUMA_NODE", d(0, 0, 4096, BPF_F_NUMA_NODE)),
        ("BPF_F_RDONLY", d(0, 0, 4096, BPF_F_RDONLY)),
        ("BPF_F_RDONLY_PROG", d(0, 0, 4096, BPF_F_RDONLY_PROG)),
        ("BPF_F_NO_PREALLOC", d(0, 0, 4096, BPF_F_NO_PREALLOC)),
        ("BPF_F_MMAPABLE", d(0, 0, 4096, BPF_F_MMAPABLE)),
        ("BPF_F_ZERO_SEED", d(0, 0, 4096, BPF_F_ZERO_SEED)),
    ] {
        cases.push(case(&format!("create {name}"), def, vec![]));
    }
    cases.push(case(
        "element ops are ENOTSUPP",
        d(0, 0, 4096, 0),
        vec![
            Op::Look(vec![]),
            Op::Upd(vec![], vec![], BPF_ANY),
            Op::Upd(vec![], vec![], BPF_NOEXIST),
            Op::Upd(vec![], vec![], BPF_EXIST),
            Op::Del(vec![]),
            Op::Next(None),
            Op::Dump,
        ],
    ));
    cases.push(case(
        "update with flags 3 / 8",
        d(0, 0, 4096, 0),
        vec![Op::Upd(vec![], vec![], 3), Op::Upd(vec![], vec![], 8)],
    ));
    cases.push(case(
        "update with BPF_F_LOCK",
        d(0, 0, 4096, 0),
        vec![Op::Upd(vec![], vec![], BPF_F_LOCK)],
    ));
    differential("ringbuf", cases);
}

#[test]
fn kernel_diff_inode_storage() {
    let t = MapType::InodeStorage;
    let np = BPF_F_NO_PREALLOC;
    let d = |ks, vs, me, fl| MapDef::new(t, ks, vs, me).with_flags(fl);
    let mut cases = Vec::new();
    let mut extra = d(4, 8, 0, np);
    extra.map_extra = 1;
    for (name, def) in [
        ("ok", d(4, 8, 0, np)),
        ("NO_PREALLOC | CLONE", d(4, 8, 0, np | BPF_F_CLONE)),
        ("without NO_PREALLOC", d(4, 8, 0, 0)),
        ("CLONE without NO_PREALLOC", d(4, 8, 0, BPF_F_CLONE)),
        ("max_entries 1", d(4, 8, 1, np)),
        ("key_size 8", d(8, 8, 0, np)),
        ("key_size 0", d(0, 8, 0, np)),
        ("value_size 0", d(4, 0, 0, np)),
        ("value_size 1", d(4, 1, 0, np)),
        ("value_size 4096", d(4, 4096, 0, np)),
        ("value_size 65407 (max)", d(4, 65407, 0, np)),
        ("value_size 65408", d(4, 65408, 0, np)),
        ("value_size 65535", d(4, 65535, 0, np)),
        ("value_size u32::MAX", d(4, u32::MAX, 0, np)),
        ("value_size 65408, max_entries 1", d(4, 65408, 1, np)),
        ("BPF_F_RDONLY_PROG", d(4, 8, 0, np | BPF_F_RDONLY_PROG)),
        ("BPF_F_RDONLY", d(4, 8, 0, np | BPF_F_RDONLY)),
        (
            "BPF_F_RDONLY | BPF_F_WRONLY",
            d(4, 8, 0, np | BPF_F_RDONLY | BPF_F_WRONLY),
        ),
        ("BPF_F_NUMA_NODE", d(4, 8, 0, np | BPF_F_NUMA_NODE)),
        ("BPF_F_MMAPABLE", d(4, 8, 0, np | BPF_F_MMAPABLE)),
        ("BPF_F_ZERO_SEED", d(4, 8, 0, np | BPF_F_ZERO_SEED)),
        ("unknown flag 1<<20", d(4, 8, 0, np | (1 << 20))),
        ("map_extra 1", extra),
        ("bad name", d(4, 8, 0, np).with_name("a-b")),
    ] {
        cases.push(case(&format!("create {name}"), def, vec![]));
    }
    cases.push(Case {
        known: Some(
            "MapDef carries no BTF ids, so bpfvfs cannot refuse a local-storage map created \
             without them (the kernel: EINVAL, 'Enforce BTF for userspace sk dumping')",
        ),
        no_btf: true,
        ..case("create without BTF", d(4, 8, 0, np), vec![])
    });
    // Keys are fds: -1 and a large number are never open, so both sides answer EBADF (fd 0
    // would be the test's stdin on the kernel side). No key iteration: ENOTSUPP.
    let bad = [k32(u32::MAX), k32(1 << 30)];
    cases.push(case(
        "element ops with fds that are not open",
        d(4, 8, 0, np),
        bad.iter()
            .flat_map(|k| {
                [
                    Op::Look(k.clone()),
                    Op::Upd(k.clone(), v64(1), BPF_ANY),
                    Op::Upd(k.clone(), v64(1), BPF_NOEXIST),
                    Op::Upd(k.clone(), v64(1), BPF_EXIST),
                    Op::Del(k.clone()),
                ]
            })
            .chain([Op::Next(None), Op::Next(Some(k32(3))), Op::Dump])
            .collect(),
    ));
    differential("inode_storage", cases);
}
