//! Inode local storage: a thin criterion bench (get hit, get miss, create+delete per layout
//! on a small population) and, with `STORAGE_BENCH_TABLE=1`, the full table of
//! `bpfvfs_bpf::bench::storage` (memory per inode and ns per get for every layout and share
//! of inodes with storage; `BPFVFS_BENCH_INODES` sets the population, default 1M).
//!
//!     STORAGE_BENCH_TABLE=1 cargo bench -p bpfvfs-bpf --bench storage
//!     cargo bench -p bpfvfs-bpf --bench storage -- get_hit

use bpfvfs_bpf::bench::{storage, StorageBenchConfig};
use bpfvfs_bpf::maps::inode_storage::{InodeStorageMap, StorageLayout};
use bpfvfs_bpf::maps::local_storage::BPF_LOCAL_STORAGE_GET_F_CREATE as F_CREATE;
use bpfvfs_bpf::uapi::*;
use bpfvfs_bpf::{Bpf, MapDef, MapType};
use bpfvfs_vfs::{Inode, InodeRef, NewInode, Vfs, S_IFREG};
use criterion::{criterion_group, Criterion};
use std::hint::black_box;
use std::sync::Arc;

const N: usize = 10_000;

fn bench(c: &mut Criterion) {
    for l in StorageLayout::ALL {
        let vfs = Vfs::new_memfs();
        let bpf = Bpf::new_with_inode_storage(vfs.clone(), l).unwrap();
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
        let inodes: Vec<Arc<Inode>> = (0..N)
            .map(|_| sb.alloc_inode(&attrs, None, Box::new(())))
            .collect();
        for ino in inodes.iter().step_by(2) {
            let g = crossbeam_epoch::pin();
            m.get(Some(ino), None, F_CREATE, &g).unwrap();
        }
        let name = l.name();
        let g = crossbeam_epoch::pin();
        c.bench_function(&format!("get_hit/{name}"), |b| {
            let ino = &inodes[0];
            b.iter(|| black_box(m.get(Some(black_box(ino)), None, 0, &g)))
        });
        c.bench_function(&format!("get_miss/{name}"), |b| {
            let ino = &inodes[1];
            b.iter(|| black_box(m.get(Some(black_box(ino)), None, 0, &g)))
        });
        drop(g);
        // One pin per create+delete, as one program run would: freed blocks come back.
        c.bench_function(&format!("create_delete/{name}"), |b| {
            let ino = &inodes[1];
            b.iter(|| {
                let g = crossbeam_epoch::pin();
                black_box(m.get(Some(ino), None, F_CREATE, &g));
                black_box(m.delete(Some(ino), &g))
            })
        });
        for ino in &inodes {
            ino.clear_nlink();
            drop(InodeRef::new(ino.clone()));
        }
    }
}

criterion_group!(benches, bench);

fn main() {
    if std::env::var_os("STORAGE_BENCH_TABLE").is_some() {
        let cfg = StorageBenchConfig::default();
        let r = storage(&cfg);
        println!("{}\n{}", r.date, r.machine);
        println!("{}", r.to_markdown());
        for (what, ok, detail) in r.targets() {
            println!("{} {what}: {detail}", if ok { "MET " } else { "MISS" });
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
