//! BPF_MAP_TYPE_PERCPU_HASH: a hash map whose elements hold one value per CPU.
//!
//! "CPU" means per-CPU slot ([`super::nr_cpus`] of them, [`super::current_cpu`] for the
//! calling thread). Each slot's value is rounded up to 8 bytes. User space sees all slots
//! concatenated — `round_up(value_size, 8) * nr_cpus` bytes ([`MapOps::user_value_size`]) —
//! for lookup and update alike, as bpf(2) does; programs (`lookup_ptr`,
//! [`PercpuHash::update_current_cpu`]) see only their own slot.
//!
//! Built on the bucket table of [`super::hash`]. Updating a present key writes the values in
//! place (the kernel's percpu maps do too), so the element, and a program's pointer into it,
//! stays the same; a new key must fit under max_entries (E2BIG).

use super::hash::{check_flags, htab_check, Table};
use super::{current_cpu, nr_cpus, read_words, round8, write_words};
use crate::map::{MapDef, MapOps, MapTypeEntry};
use crate::uapi::*;
use bpfvfs_vfs::{Errno, Result};
use crossbeam_epoch::Guard;
use std::any::Any;

pub const ENTRY: MapTypeEntry = MapTypeEntry {
    map_type: MapType::PercpuHash,
    check: htab_check,
    alloc,
};

fn alloc(def: &MapDef) -> Result<Box<dyn MapOps>> {
    Ok(Box::new(PercpuHash::new(def)?))
}

pub struct PercpuHash {
    t: Table,
    max_entries: u32,
    value_size: usize,
    /// round_up(value_size, 8): one slot's bytes.
    stride: usize,
    ncpus: usize,
}

impl PercpuHash {
    fn new(def: &MapDef) -> Result<PercpuHash> {
        let stride = round8(def.value_size as usize);
        let ncpus = nr_cpus();
        Ok(PercpuHash {
            t: Table::new(
                def.key_size as usize,
                stride * ncpus,
                def.max_entries as u64,
                def.map_flags & BPF_F_ZERO_SEED != 0,
            )?,
            max_entries: def.max_entries,
            value_size: def.value_size as usize,
            stride,
            ncpus,
        })
    }

    /// Insert or update `key` as a program would (bpf_map_update_elem from a program): only
    /// the calling thread's slot is written (`value_size` bytes); a new element's other slots
    /// are zero (pcpu_init_value with onallcpus=false).
    pub fn update_current_cpu(&self, key: &[u8], value: &[u8], flags: u64) -> Result<()> {
        if key.len() != self.t.key_size() || value.len() != self.value_size {
            return Err(Errno::EINVAL);
        }
        let cpu = current_cpu();
        self.update_with(key, flags, |words| {
            let w = self.stride / 8;
            write_words(&words[cpu * w..(cpu + 1) * w], value);
        })
    }

    /// __htab_percpu_map_update_elem: under the bucket lock, check flags; a present element
    /// is written in place; a new one must fit (E2BIG), is filled by `fill`, and published.
    fn update_with(
        &self,
        key: &[u8],
        flags: u64,
        fill: impl FnOnce(&[std::sync::atomic::AtomicU64]),
    ) -> Result<()> {
        if flags > BPF_EXIST {
            return Err(Errno::EINVAL);
        }
        let hash = self.t.hash(key);
        let guard = crossbeam_epoch::pin();
        let b = self.t.lock(hash);
        let old = b.find(key, hash, &guard);
        check_flags(old.is_some(), flags)?;
        match old {
            Some(e) => fill(self.t.value_of(e)),
            None => {
                if !self.t.try_inc_count(self.max_entries) {
                    return Err(Errno::E2BIG);
                }
                let new = match b.new_elem(key, hash, 0) {
                    Ok(n) => n,
                    Err(e) => {
                        self.t.dec_count();
                        return Err(e);
                    }
                };
                fill(self.t.value_of(new.elem()));
                b.push_head(new);
            }
        }
        Ok(())
    }
}

impl MapOps for PercpuHash {
    fn prog_update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<()> {
        self.update_current_cpu(key, value, flags)
    }
    /// bpf_percpu_hash_copy: every slot, `round_up(value_size, 8)` bytes each.
    fn lookup(&self, key: &[u8], out: &mut [u8]) -> Result<()> {
        let guard = crossbeam_epoch::pin();
        let e = self.t.find(key, &guard).ok_or(Errno::ENOENT)?;
        read_words(self.t.value_of(e), out);
        Ok(())
    }

    /// User-space update: `value` holds every slot (onallcpus).
    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<()> {
        self.update_with(key, flags, |words| write_words(words, value))
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.t.delete(key)
    }

    fn get_next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<()> {
        self.t.get_next_key(key, next)
    }

    fn mem_usage(&self) -> u64 {
        self.t.mem_usage() + std::mem::size_of::<Self>() as u64
    }

    fn elem_count(&self) -> u64 {
        self.t.count() as u64
    }

    /// The calling thread's slot of the value (this_cpu_ptr).
    #[inline]
    fn lookup_ptr(&self, key: &[u8], guard: &Guard) -> Option<*mut u8> {
        let e = self.t.find(key, guard)?;
        Some(
            self.t
                .value_ptr(e)
                .wrapping_add(current_cpu() * self.stride),
        )
    }

    fn user_value_size(&self, _def: &MapDef) -> usize {
        self.stride * self.ncpus
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
