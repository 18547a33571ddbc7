//! BPF_MAP_TYPE_LRU_HASH: a hash map that, when full, makes room for a new key by evicting
//! an old one instead of failing with E2BIG.
//!
//! Built on the bucket table of [`super::hash`] (lock-free lookups, epoch-deferred frees),
//! plus the kernel's preallocated-node model (kernel/bpf/bpf_lru_list.c): `max_entries` slots,
//! each element owning one. An update first takes a free slot — evicting the owner of another
//! slot if none is free — and only then locks the bucket and checks the flags, exactly as
//! htab_lru_map_update_elem pops a node before looking at the key. So, as in the kernel, an
//! update of a present key also consumes a slot (the old one is freed afterwards), and on a
//! full map an update that fails its flags check (BPF_NOEXIST on a present key, BPF_EXIST on
//! a missing one) may still have evicted an element.
//!
//! Eviction is approximate LRU by second chance (CLOCK): every slot has a reference bit,
//! set by program lookups (`lookup_ptr`, the kernel's bpf_lru_node_set_ref) and by updates
//! that replace a key; user-space lookups leave it alone (htab_lru_map_lookup_elem_sys). The
//! clock hand skips, and clears, referenced slots and evicts the first unreferenced one —
//! what the kernel's active/inactive rotation approximates. ENOMEM if two full sweeps find
//! nothing to evict (every slot busy in a concurrent update).
//!
//! BPF_F_NO_COMMON_LRU gives every CPU ([`super::current_cpu`]) its own share of the slots
//! (max_entries rounded up to a multiple of the CPU count, as the kernel does): an update
//! evicts from its own CPU's share even when another CPU's share has room.
//!
//! Divergence: with the common LRU the kernel moves free nodes to per-CPU caches in batches
//! and may evict before the map holds max_entries elements; here eviction starts only when
//! every slot is in use. (The map's reported max_entries stays as created; the kernel reports
//! the rounded value for BPF_F_NO_COMMON_LRU.)

use super::hash::{check_flags, effective_max_entries, htab_check, ElemRef, Table};
use super::{current_cpu, nr_cpus, read_words, round8, write_words};
use crate::map::{MapDef, MapOps, MapTypeEntry};
use crate::uapi::*;
use bpfvfs_vfs::{Errno, Result};
use crossbeam_epoch::Guard;
use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

pub const ENTRY: MapTypeEntry = MapTypeEntry {
    map_type: MapType::LruHash,
    check: htab_check,
    alloc,
};

fn alloc(def: &MapDef) -> Result<Box<dyn MapOps>> {
    Ok(Box::new(LruHash::new(def)?))
}

/// One LRU list: a contiguous range of slots (all of them for the common LRU).
struct Part {
    base: u32,
    len: u32,
    /// Slots `base + used..` have never been handed out.
    used: u32,
    free: Vec<u32>,
    hand: u32,
    /// Hash of each handed-out slot's owner (index `slot - base`), to find its bucket.
    owner: Vec<u32>,
}

pub struct LruHash {
    t: Table,
    value_size: usize,
    capacity: u32,
    per_part: u32,
    refs: Box<[AtomicBool]>,
    parts: Box<[Mutex<Part>]>,
}

impl LruHash {
    fn new(def: &MapDef) -> Result<LruHash> {
        let capacity = effective_max_entries(def) as u32;
        let nparts = if def.map_flags & BPF_F_NO_COMMON_LRU != 0 {
            nr_cpus() as u32
        } else {
            1
        };
        let per_part = capacity / nparts;
        let refs = Box::<[AtomicBool]>::new_zeroed_slice(capacity as usize);
        // SAFETY: AtomicBool has the bit validity of bool, for which a zero byte is `false`.
        let refs = unsafe { refs.assume_init() };
        Ok(LruHash {
            t: Table::new(
                def.key_size as usize,
                round8(def.value_size as usize),
                capacity as u64,
                def.map_flags & BPF_F_ZERO_SEED != 0,
            )?,
            value_size: def.value_size as usize,
            capacity,
            per_part,
            refs,
            parts: (0..nparts)
                .map(|i| {
                    Mutex::new(Part {
                        base: i * per_part,
                        len: per_part,
                        used: 0,
                        free: Vec::new(),
                        hand: 0,
                        owner: Vec::new(),
                    })
                })
                .collect(),
        })
    }

    /// Slots in all (the kernel's adjusted max_entries).
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    fn part(&self, i: usize) -> MutexGuard<'_, Part> {
        self.parts[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// bpf_lru_pop_free: a free slot of the caller's list, evicting if there is none.
    fn acquire_slot(&self, hash: u32, guard: &Guard) -> Result<u32> {
        let pi = if self.parts.len() > 1 {
            current_cpu().min(self.parts.len() - 1)
        } else {
            0
        };
        let mut p = self.part(pi);
        let slot = if let Some(s) = p.free.pop() {
            s
        } else if p.used < p.len {
            let s = p.base + p.used;
            p.used += 1;
            p.owner.push(0);
            s
        } else {
            self.evict(&mut p, guard)?
        };
        let base = p.base;
        p.owner[(slot - base) as usize] = hash;
        self.refs[slot as usize].store(false, Relaxed);
        Ok(slot)
    }

    /// Second-chance sweep over a full list. Lock order: list, then bucket (as the kernel's
    /// lru_lock -> bucket lock).
    fn evict(&self, p: &mut Part, guard: &Guard) -> Result<u32> {
        for _ in 0..=2 * p.len as u64 {
            let slot = p.base + p.hand;
            p.hand = (p.hand + 1) % p.len;
            if self.refs[slot as usize].swap(false, Relaxed) {
                continue;
            }
            let hash = p.owner[(slot - p.base) as usize];
            let b = self.t.lock(hash);
            // Not found: the slot's element is being inserted or was just deleted, and its
            // updater will link it or free the slot.
            if let Some(e) = b.find_by(guard, |e| e.aux() == slot) {
                b.remove(e.as_ptr(), guard);
                self.t.dec_count();
                return Ok(slot);
            }
        }
        Err(Errno::ENOMEM)
    }

    /// bpf_lru_push_free.
    fn release_slot(&self, slot: u32) {
        let pi = (slot / self.per_part) as usize;
        self.part(pi.min(self.parts.len() - 1)).free.push(slot);
    }

    #[inline]
    fn mark(&self, e: ElemRef<'_>) {
        let r = &self.refs[e.aux() as usize];
        if !r.load(Relaxed) {
            r.store(true, Relaxed);
        }
    }
}

impl MapOps for LruHash {
    /// User-space lookup: does not mark the element referenced.
    fn lookup(&self, key: &[u8], out: &mut [u8]) -> Result<()> {
        let guard = crossbeam_epoch::pin();
        let e = self.t.find(key, &guard).ok_or(Errno::ENOENT)?;
        read_words(self.t.value_of(e), &mut out[..self.value_size]);
        Ok(())
    }

    /// htab_lru_map_update_elem.
    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<()> {
        if flags > BPF_EXIST {
            return Err(Errno::EINVAL);
        }
        let hash = self.t.hash(key);
        let guard = crossbeam_epoch::pin();
        let slot = self.acquire_slot(hash, &guard)?;
        let res = {
            let b = self.t.lock(hash);
            let old = b.find(key, hash, &guard).map(|e| (e.as_ptr(), e.aux()));
            match check_flags(old.is_some(), flags).and_then(|()| b.new_elem(key, hash, slot)) {
                Err(e) => Err(e),
                Ok(new) => {
                    write_words(self.t.value_of(new.elem()), &value[..self.value_size]);
                    if old.is_some() {
                        self.refs[slot as usize].store(true, Relaxed);
                    }
                    b.push_head(new);
                    match old {
                        Some((o, oslot)) => {
                            b.remove(o, &guard);
                            Ok(Some(oslot))
                        }
                        None => {
                            self.t.inc_count();
                            Ok(None)
                        }
                    }
                }
            }
        };
        match res {
            Err(e) => {
                self.release_slot(slot);
                Err(e)
            }
            Ok(Some(old_slot)) => {
                self.release_slot(old_slot);
                Ok(())
            }
            Ok(None) => Ok(()),
        }
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        let hash = self.t.hash(key);
        let guard = crossbeam_epoch::pin();
        let slot = {
            let b = self.t.lock(hash);
            let e = b.find(key, hash, &guard).ok_or(Errno::ENOENT)?;
            let slot = e.aux();
            b.remove(e.as_ptr(), &guard);
            self.t.dec_count();
            slot
        };
        self.release_slot(slot);
        Ok(())
    }

    fn get_next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<()> {
        self.t.get_next_key(key, next)
    }

    fn mem_usage(&self) -> u64 {
        let lists: usize = self
            .parts
            .iter()
            .map(|p| {
                let p = p.lock().unwrap_or_else(|e| e.into_inner());
                (p.free.capacity() + p.owner.capacity()) * 4
            })
            .sum();
        self.t.mem_usage() + (self.refs.len() + lists + std::mem::size_of::<Self>()) as u64
    }

    fn elem_count(&self) -> u64 {
        self.t.count() as u64
    }

    /// Program-side lookup: marks the element referenced (second chance).
    #[inline]
    fn lookup_ptr(&self, key: &[u8], guard: &Guard) -> Option<*mut u8> {
        let e = self.t.find(key, guard)?;
        self.mark(e);
        Some(self.t.value_ptr(e))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
