//! Cache misses per inode-storage get, load-independent: run under callgrind's cache
//! simulator and read the data-read misses of `get_one` (inclusive) divided by the number of
//! gets. The wall-clock benchmark (`bench::storage`) is noisy on a shared machine; this counts
//! what each layout's pointer chase costs in memory accesses.
//!
//!     cargo build --release -p bpfvfs-bpf --example storage_misses
//!     valgrind --tool=callgrind --cache-sim=yes --collect-atstart=no \
//!         --toggle-collect='storage_misses::probe' \
//!         target/release/examples/storage_misses field 200000 100000
//!     callgrind_annotate --inclusive=yes callgrind.out.<pid> | grep -E 'probe|get_one'
//!
//! Arguments: layout (field|addons|blob|hash), inodes, gets, and a mode: `hit` (every
//! inode has storage; the default), `miss` (none has), `half` (even inodes have storage,
//! the odd ones are probed: misses with a populated table). Inodes are visited in random order; each is touched first (the
//! same touch as the benchmark's "inode warm"), inside `probe` but outside `get_one`.

use bpfvfs_bpf::maps::inode_storage::{InodeStorageMap, StorageLayout};
use bpfvfs_bpf::maps::local_storage::BPF_LOCAL_STORAGE_GET_F_CREATE as F_CREATE;
use bpfvfs_bpf::uapi::*;
use bpfvfs_bpf::{Bpf, MapDef, MapType};
use bpfvfs_vfs::{Inode, InodeRef, NewInode, Vfs, S_IFREG};
use crossbeam_epoch::Guard;
use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[inline(never)]
fn get_one(m: &InodeStorageMap, ino: &Inode, g: &Guard) -> bool {
    m.get(Some(ino), None, 0, g).is_some()
}

#[inline(always)]
fn touch(ino: &Inode) -> u64 {
    ino.mode() as u64
        ^ ino.ino()
        ^ ino.nlink() as u64
        ^ ino.sb().dev()
        ^ ino.ext_word().load(Ordering::Relaxed) as u64
        ^ ino.addons().is_some() as u64
}

#[inline(never)]
fn probe(m: &InodeStorageMap, inodes: &[Arc<Inode>], order: &[u32], g: &Guard) -> usize {
    let mut hits = 0;
    for &i in order {
        let ino = &inodes[i as usize];
        black_box(touch(ino));
        hits += get_one(m, ino, g) as usize;
    }
    hits
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let layout = StorageLayout::from_name(args.get(1).map_or("field", |s| s)).expect("layout");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let r: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let mode = args.get(4).map_or("hit", |s| s.as_str());
    let vfs = Vfs::new_memfs();
    let bpf = Bpf::new_with_inode_storage(vfs.clone(), layout).unwrap();
    let h = bpf
        .map_create(MapDef::new(MapType::InodeStorage, 4, 8, 0).with_flags(BPF_F_NO_PREALLOC))
        .unwrap();
    let m = InodeStorageMap::of(h.map().unwrap()).unwrap();
    let sb = vfs.root().inode().sb().clone();
    let attrs = NewInode {
        mode: S_IFREG | 0o644,
        uid: 0,
        gid: 0,
        rdev: 0,
    };
    let inodes: Vec<Arc<Inode>> = (0..n)
        .map(|_| sb.alloc_inode(&attrs, None, Box::new(())))
        .collect();
    if mode != "miss" {
        for (k, ino) in inodes.iter().enumerate() {
            if mode == "half" && k % 2 == 1 {
                continue;
            }
            let g = crossbeam_epoch::pin();
            m.get(Some(ino), None, F_CREATE, &g).expect("create");
            if k % 100_000 == 0 {
                g.flush();
            }
        }
    }
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    if mode == "half" {
        order.retain(|i| i % 2 == 1);
    }
    order.truncate(r);
    let g = crossbeam_epoch::pin();
    let hits = probe(m, &inodes, &order, &g);
    drop(g);
    println!(
        "{} {n} inodes, {} gets, {hits} hits",
        layout.name(),
        order.len()
    );
    for ino in &inodes {
        ino.clear_nlink();
        drop(InodeRef::new(ino.clone()));
    }
}
