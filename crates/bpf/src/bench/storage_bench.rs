//! The inode-storage benchmark (seed 001's trade-off, measured): for each storage-pointer
//! layout and each share of inodes carrying storage, the memory per inode and the cost of a
//! get.
//!
//! Each configuration runs on a fresh VFS with `inodes` bare inodes (allocated from the root
//! superblock, no dentries, so the inode is all there is to measure), one inode-storage map
//! with 8-byte values, and elements created through the program path on every k-th inode.
//!
//! Memory, per inode:
//! - RSS deltas (/proc/self/statm) around allocating the inodes and around creating the
//!   storage, after `malloc_trim` so pages freed by the previous configuration are given
//!   back first. Includes everything: allocator headers, the layout's fields, pools.
//! - heap+pools: glibc's in-use bytes (mallinfo2: chunk sizes, headers included) plus the
//!   bytes the storage pools mapped. Independent of page reuse.
//! - accounted: the layout's fields and on-demand structures, plus storage and element
//!   blocks, from the type sizes (see `InodeStorageDomain::layout_bytes`).
//!   Every inode of this build carries all three extension fields (inode word, addons
//!   pointer, blob pointer: 24 bytes, of which the addons pointer predates this work), so the
//!   inode part of the RSS is the same for every layout except where the layout allocates
//!   something per inode (the blob); the report prints the inode struct size.
//!
//! Time, per operation (the caller's epoch guard pinned once, as a program run would):
//! - hit hot: the same inode again and again (cache slot hit; everything in L1).
//! - hit random / miss random, inode warm: inodes in random order, each touched first (the
//!   attributes a VFS operation reads, and the lines holding the three extension fields —
//!   the same touch for every layout), as the hook that runs the program just did; the time
//!   of a touch-only pass over the same order is subtracted, so what remains is reaching the
//!   storage from a warm inode — what differs between layouts.
//! - hit random, cold: the same without touching (every line the get needs is a miss).
//!
//! Every timing is the best of `reps` passes (the machine is shared).
//! - create: first element on an inode (storage + element from the pools, published).
//! - delete: the helper's delete of those elements (storage freed with its last element).
//! - user lookup: `Bpf::inode_storage_lookup` (pins, copies the value into a new Vec).

use crate::maps::inode_storage::{InodeStorageDomain, InodeStorageMap, StorageLayout};
use crate::maps::local_storage::{BPF_LOCAL_STORAGE_GET_F_CREATE, STORAGE_BYTES};
use crate::uapi::*;
use crate::{Bpf, Handle, MapDef, MapType};
use bpfvfs_vfs::{Inode, InodeRef, NewInode, Vfs, S_IFREG};
use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

/// What to run. `Default` reads `BPFVFS_BENCH_INODES` (default 1,000,000).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StorageBenchConfig {
    pub inodes: usize,
    /// Percent of inodes carrying storage (0-100).
    pub percents: Vec<u32>,
    pub layouts: Vec<StorageLayout>,
    pub value_size: u32,
    /// Iterations of the hot-hit loop.
    pub hot_ops: u64,
    /// Cap on the operations of each random-order measurement.
    pub random_ops: usize,
    /// Passes per timing; the best is kept.
    pub reps: usize,
    /// Whole-table runs; each timing cell keeps its best over the runs (memory figures are
    /// the first run's). `STORAGE_BENCH_RUNS`, default 1.
    pub runs: usize,
}

impl Default for StorageBenchConfig {
    fn default() -> Self {
        let inodes = std::env::var("BPFVFS_BENCH_INODES")
            .ok()
            .and_then(|s| s.replace('_', "").parse().ok())
            .unwrap_or(1_000_000);
        StorageBenchConfig {
            inodes,
            percents: vec![0, 1, 10, 100],
            layouts: StorageLayout::ALL.to_vec(),
            value_size: 8,
            hot_ops: 10_000_000,
            random_ops: 1_000_000,
            reps: 3,
            runs: std::env::var("STORAGE_BENCH_RUNS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1),
        }
    }
}

/// One configuration's results. `layout: None` is the baseline: a VFS with no BPF at all.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StorageBenchRow {
    pub layout: Option<StorageLayout>,
    pub percent: u32,
    pub inodes: usize,
    pub with_storage: usize,
    /// RSS growth while allocating the inodes, per inode.
    pub rss_inodes: f64,
    /// RSS growth while creating the storage, per inode (all inodes, not only carriers).
    pub rss_storage: f64,
    /// Heap in use + pool bytes, growth over both steps, per inode.
    pub heap_pools: f64,
    /// Layout fields + on-demand structures + storage + element blocks, per inode.
    pub accounted: f64,
    pub ns_hit_hot: Option<f64>,
    /// Random inodes with storage, inode warm (touch cost subtracted).
    pub ns_hit_random: Option<f64>,
    /// Random inodes with storage, nothing warm.
    pub ns_hit_cold: Option<f64>,
    /// Random inodes without storage, inode warm.
    pub ns_miss_random: Option<f64>,
    pub ns_create: Option<f64>,
    pub ns_delete: Option<f64>,
    pub ns_user_lookup: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StorageBenchReport {
    pub config: Option<StorageBenchConfig>,
    pub rows: Vec<StorageBenchRow>,
    pub inode_struct_bytes: usize,
    pub storage_bytes: usize,
    pub elem_bytes: usize,
    pub machine: String,
    pub date: String,
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_bytes() -> u64 {
    // SAFETY: mallinfo2 only reads allocator statistics.
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as u64
}
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_bytes() -> u64 {
    0
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    bpfvfs_vfs::rcu_barrier();
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn shuffle(&mut self, v: &mut [u32]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

fn ns(t: Instant, n: usize) -> Option<f64> {
    (n > 0).then(|| t.elapsed().as_nanos() as f64 / n as f64)
}

/// Best of `reps` runs of `f`, in ns per op (`n` ops per run).
fn best(reps: usize, n: usize, mut f: impl FnMut()) -> Option<f64> {
    if n == 0 {
        return None;
    }
    (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .reduce(f64::min)
}

/// Warm every line of the inode a get could read, the same for all layouts: attributes a
/// VFS operation reads, the superblock, and the three extension fields themselves (not what
/// they point to: the addons struct and the blob allocation stay cold, as in a real hook).
#[inline(always)]
fn touch(ino: &Inode) -> u64 {
    ino.mode() as u64
        ^ ino.ino()
        ^ ino.nlink() as u64
        ^ ino.sb().dev()
        ^ ino.ext_word().load(std::sync::atomic::Ordering::Relaxed) as u64
        ^ ino.addons().is_some() as u64
}

/// Random-order get cost from a warm inode: (touch + get) - (touch), best of `reps`.
fn warm_random(
    reps: usize,
    order: &[u32],
    inodes: &[Arc<Inode>],
    get: impl Fn(&Inode) -> bool,
) -> Option<f64> {
    let n = order.len();
    let touch_only = best(reps, n, || {
        for &i in order {
            black_box(touch(&inodes[i as usize]));
        }
    })?;
    let both = best(reps, n, || {
        for &i in order {
            let ino = &inodes[i as usize];
            black_box(touch(ino));
            black_box(get(ino));
        }
    })?;
    Some((both - touch_only).max(0.0))
}

fn run_one(cfg: &StorageBenchConfig, layout: Option<StorageLayout>, pct: u32) -> StorageBenchRow {
    let n = cfg.inodes;
    trim();
    let mut slots: Vec<Option<Arc<Inode>>> = vec![None; n];
    let vfs = Vfs::new_memfs();
    let bpf = layout
        .map(|l| Bpf::new_with_inode_storage(vfs.clone(), l).expect("bpf with inode storage"));
    let h: Option<Handle> = bpf.as_ref().map(|b| {
        b.map_create(
            MapDef::new(MapType::InodeStorage, 4, cfg.value_size, 0).with_flags(BPF_F_NO_PREALLOC),
        )
        .expect("inode storage map")
    });
    let ism = h
        .as_ref()
        .map(|h| InodeStorageMap::of(h.map().unwrap()).unwrap());
    let sb = vfs.root().inode().sb().clone();
    let attrs = NewInode {
        mode: S_IFREG | 0o644,
        uid: 0,
        gid: 0,
        rdev: 0,
    };
    let pools = |ism: Option<&InodeStorageMap>| -> u64 {
        ism.map_or(0, |m| m.pool_bytes())
            + bpf
                .as_ref()
                .and_then(|b| b.inode_storage_counts())
                .map_or(0, |c| c.storage_pool_bytes)
    };
    let (rss0, heap0, pools0) = (rss_bytes(), heap_bytes(), pools(ism));
    for s in slots.iter_mut() {
        *s = Some(sb.alloc_inode(&attrs, None, Box::new(())));
    }
    let inodes: Vec<Arc<Inode>> = slots.into_iter().map(|s| s.unwrap()).collect();
    let rss1 = rss_bytes();
    let mut row = StorageBenchRow {
        layout,
        percent: pct,
        inodes: n,
        ..Default::default()
    };
    let with: Vec<u32> = match pct {
        0 => Vec::new(),
        p => {
            let stride = (100 / p.min(100)).max(1) as usize;
            (0..n as u32).step_by(stride).collect()
        }
    };
    let without: Vec<u32> = {
        let mut has = vec![false; n];
        for &i in &with {
            has[i as usize] = true;
        }
        (0..n as u32).filter(|&i| !has[i as usize]).collect()
    };
    row.with_storage = with.len();
    // Pinned as a program run pins; re-pinned every few hundred writes so freed blocks
    // can come back to the pools, as they do between runs.
    let mut guard = crossbeam_epoch::pin();
    if let Some(ism) = ism {
        let t = Instant::now();
        for (k, &i) in with.iter().enumerate() {
            black_box(ism.get(
                Some(&inodes[i as usize]),
                None,
                BPF_LOCAL_STORAGE_GET_F_CREATE,
                &guard,
            ))
            .expect("create");
            if k % 256 == 255 {
                guard.repin();
            }
        }
        row.ns_create = ns(t, with.len());
    }
    let (rss2, heap2, pools2) = (rss_bytes(), heap_bytes(), pools(ism));
    row.rss_inodes = (rss1.saturating_sub(rss0)) as f64 / n as f64;
    row.rss_storage = (rss2 as f64 - rss1 as f64) / n as f64;
    row.heap_pools = ((heap2 + pools2) as f64 - (heap0 + pools0) as f64) / n as f64;
    if let (Some(l), Some(ism)) = (layout, ism) {
        let (always, per) = InodeStorageDomain::layout_bytes(l);
        let frac = with.len() as f64 / n as f64;
        row.accounted = always as f64 + frac * (per + STORAGE_BYTES + ism.elem_bytes()) as f64;
    }
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    if let (Some(ism), Some(h), Some(bpf)) = (ism, h.as_ref(), bpf.as_ref()) {
        if let Some(&i) = with.first() {
            let ino = &inodes[i as usize];
            row.ns_hit_hot = best(cfg.reps, cfg.hot_ops as usize, || {
                for _ in 0..cfg.hot_ops {
                    black_box(ism.get(Some(black_box(ino)), None, 0, &guard));
                }
            });
        }
        let get = |ino: &Inode| ism.get(Some(ino), None, 0, &guard).is_some();
        let mut order = with.clone();
        rng.shuffle(&mut order);
        order.truncate(cfg.random_ops);
        row.ns_hit_random = warm_random(cfg.reps, &order, &inodes, get);
        row.ns_hit_cold = best(cfg.reps, order.len(), || {
            for &i in &order {
                black_box(get(&inodes[i as usize]));
            }
        });
        let mut miss = without.clone();
        rng.shuffle(&mut miss);
        miss.truncate(cfg.random_ops);
        row.ns_miss_random = warm_random(cfg.reps, &miss, &inodes, get);
        order.truncate(200_000);
        row.ns_user_lookup = best(cfg.reps, order.len(), || {
            for &i in &order {
                black_box(bpf.inode_storage_lookup(h, &inodes[i as usize]).ok());
            }
        });
        // Create (when nothing was created above) and delete on a sample.
        let sample: Vec<u32> = if with.is_empty() {
            let mut s = without.clone();
            s.truncate(100_000);
            let t = Instant::now();
            for (k, &i) in s.iter().enumerate() {
                black_box(ism.get(
                    Some(&inodes[i as usize]),
                    None,
                    BPF_LOCAL_STORAGE_GET_F_CREATE,
                    &guard,
                ));
                if k % 256 == 255 {
                    guard.repin();
                }
            }
            row.ns_create = ns(t, s.len());
            s
        } else {
            with.iter().copied().take(100_000).collect()
        };
        let t = Instant::now();
        for (k, &i) in sample.iter().enumerate() {
            black_box(ism.delete(Some(&inodes[i as usize]), &guard));
            if k % 256 == 255 {
                guard.repin();
            }
        }
        row.ns_delete = ns(t, sample.len());
    }
    drop(guard);
    // Evict every inode (the storage goes in the eviction hook), then free the map.
    for ino in &inodes {
        ino.clear_nlink();
        drop(InodeRef::new(ino.clone()));
    }
    drop(inodes);
    drop(h);
    drop(bpf);
    drop(vfs);
    trim();
    row
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(String::new(), |kb| {
            format!(", {:.1} GiB RAM", kb as f64 / 1048576.0)
        });
    format!("{cpu}, {ncpu} CPUs{mem}, Linux {kernel}")
}

fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Run the benchmark: a baseline row (no BPF) then every (layout, percent), `runs` times.
pub fn storage(cfg: &StorageBenchConfig) -> StorageBenchReport {
    let mut rows: Vec<StorageBenchRow> = Vec::new();
    for run in 0..cfg.runs.max(1) {
        let mut these = vec![run_one(cfg, None, 0)];
        for &l in &cfg.layouts {
            for &p in &cfg.percents {
                these.push(run_one(cfg, Some(l), p));
            }
        }
        if run == 0 {
            rows = these;
            continue;
        }
        for (r, t) in rows.iter_mut().zip(these) {
            r.ns_hit_hot = min_opt(r.ns_hit_hot, t.ns_hit_hot);
            r.ns_hit_random = min_opt(r.ns_hit_random, t.ns_hit_random);
            r.ns_hit_cold = min_opt(r.ns_hit_cold, t.ns_hit_cold);
            r.ns_miss_random = min_opt(r.ns_miss_random, t.ns_miss_random);
            r.ns_create = min_opt(r.ns_create, t.ns_create);
            r.ns_delete = min_opt(r.ns_delete, t.ns_delete);
            r.ns_user_lookup = min_opt(r.ns_user_lookup, t.ns_user_lookup);
        }
    }
    let elem_bytes = (32 + (cfg.value_size as usize).div_ceil(8) * 8).next_multiple_of(16);
    StorageBenchReport {
        config: Some(cfg.clone()),
        rows,
        inode_struct_bytes: std::mem::size_of::<Inode>(),
        storage_bytes: STORAGE_BYTES,
        elem_bytes,
        machine: machine(),
        date: utc_now(),
    }
}

impl StorageBenchReport {
    /// The table as Markdown (what docs/benchmarks.md holds).
    pub fn to_markdown(&self) -> String {
        let f = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.1}"));
        let mut s = String::new();
        s.push_str(
            "| layout | % with storage | RSS/inode: inodes | RSS/inode: storage | heap+pools/inode | \
             accounted/inode | hit hot ns | hit random ns (inode warm) | hit random ns (cold) | \
             miss random ns (inode warm) | create ns | delete ns | user lookup ns |\n",
        );
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in &self.rows {
            let name = match r.layout {
                None => "none (no BPF)".to_string(),
                Some(l) => format!("({}) {}", l.letter(), l.name()),
            };
            s.push_str(&format!(
                "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.percent,
                r.rss_inodes,
                r.rss_storage,
                r.heap_pools,
                r.accounted,
                f(r.ns_hit_hot),
                f(r.ns_hit_random),
                f(r.ns_hit_cold),
                f(r.ns_miss_random),
                f(r.ns_create),
                f(r.ns_delete),
                f(r.ns_user_lookup),
            ));
        }
        s.push_str(&format!(
            "\n{} inodes per row; struct Inode = {} bytes (all three extension fields included), \
             storage block = {} bytes, element block = {} bytes ({}-byte values).\n",
            self.rows.first().map_or(0, |r| r.inodes),
            self.inode_struct_bytes,
            self.storage_bytes,
            self.elem_bytes,
            self.config.as_ref().map_or(8, |c| c.value_size),
        ));
        s
    }

    fn row(&self, l: StorageLayout, pct: u32) -> Option<&StorageBenchRow> {
        self.rows
            .iter()
            .find(|r| r.layout == Some(l) && r.percent == pct)
    }

    /// The targets: (what, met, detail).
    pub fn targets(&self) -> Vec<(String, bool, String)> {
        let mut out = Vec::new();
        for l in StorageLayout::ALL {
            if let Some(v) = self
                .rows
                .iter()
                .filter(|r| r.layout == Some(l))
                .filter_map(|r| r.ns_hit_hot)
                .reduce(f64::min)
            {
                out.push((
                    format!("get hit <= 10 ns ({})", l.name()),
                    v <= 10.0,
                    format!("{v:.1} ns"),
                ));
            }
        }
        let d = self.row(StorageLayout::HashTable, 100);
        for l in [
            StorageLayout::InodeField,
            StorageLayout::Addons,
            StorageLayout::Blob,
        ] {
            if let (Some(a), Some(d)) = (self.row(l, 100), d) {
                for (what, x, y) in [
                    ("random hits, inode warm", a.ns_hit_random, d.ns_hit_random),
                    ("random hits, cold", a.ns_hit_cold, d.ns_hit_cold),
                    ("hot hits", a.ns_hit_hot, d.ns_hit_hot),
                ] {
                    if let (Some(x), Some(y)) = (x, y) {
                        out.push((
                            format!(
                                "({}) >= 3x faster than (d), {what}, {} inodes, 100%",
                                l.letter(),
                                a.inodes
                            ),
                            y >= 3.0 * x,
                            format!("{x:.1} vs {y:.1} ns ({:.1}x)", y / x),
                        ));
                    }
                }
            }
        }
        if let (Some(a), Some(b)) = (
            self.row(StorageLayout::InodeField, 0),
            self.row(StorageLayout::Addons, 0),
        ) {
            out.push((
                "(b) costs no more per inode than (a) at 0% (accounted)".into(),
                b.accounted <= a.accounted,
                format!("{:.1} vs {:.1} bytes", b.accounted, a.accounted),
            ));
            out.push((
                "(b) costs no more per inode than (a) at 0% (RSS, 2% tolerance)".into(),
                b.rss_inodes + b.rss_storage <= (a.rss_inodes + a.rss_storage) * 1.02,
                format!(
                    "{:.1} vs {:.1} bytes",
                    b.rss_inodes + b.rss_storage,
                    a.rss_inodes + a.rss_storage
                ),
            ));
        }
        out
    }
}
