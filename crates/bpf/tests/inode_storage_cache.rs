//! Cache slot assignment of inode-storage maps, as Linux assigns `cache_idx`: the
//! least-used of the 16 slots, lowest index on ties, counted per owner type for the whole
//! process (the kernel counts for the whole system). Alone in its binary so no other test
//! creates inode-storage maps meanwhile.

use bpfvfs_bpf::maps::inode_storage::{InodeStorageMap, StorageLayout, INODE_CACHE};
use bpfvfs_bpf::uapi::*;
use bpfvfs_bpf::{Bpf, Handle, MapDef, MapType};
use bpfvfs_vfs::Vfs;

fn mkmap(bpf: &Bpf) -> Handle {
    bpf.map_create(MapDef::new(MapType::InodeStorage, 4, 8, 0).with_flags(BPF_F_NO_PREALLOC))
        .unwrap()
}

fn idx(h: &Handle) -> usize {
    InodeStorageMap::of(h.map().unwrap()).unwrap().cache_idx()
}

#[test]
fn least_used_slot_like_linux() {
    let bpf = Bpf::new_with_inode_storage(Vfs::new_memfs(), StorageLayout::InodeField).unwrap();
    assert_eq!(INODE_CACHE.usage(), [0; 16]);
    let mut maps: Vec<Handle> = (0..16).map(|_| mkmap(&bpf)).collect();
    assert_eq!(
        maps.iter().map(idx).collect::<Vec<_>>(),
        (0..16).collect::<Vec<_>>()
    );
    // The 17th and 18th share slots 0 and 1 with the 1st and 2nd.
    maps.push(mkmap(&bpf));
    maps.push(mkmap(&bpf));
    assert_eq!(idx(&maps[16]), 0);
    assert_eq!(idx(&maps[17]), 1);
    // Freeing the map on slot 5 makes it the least used: the next map takes it.
    let m5 = maps.remove(5);
    drop(m5);
    assert_eq!(INODE_CACHE.usage()[5], 0);
    let again = mkmap(&bpf);
    assert_eq!(idx(&again), 5);
    drop(again);
    drop(maps);
    assert_eq!(INODE_CACHE.usage(), [0; 16]);
}
