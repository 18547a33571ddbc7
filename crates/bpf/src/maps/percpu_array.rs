//! BPF_MAP_TYPE_PERCPU_ARRAY: an array whose entries hold one value per CPU.
//!
//! As [`super::array`] (u32 key, preallocated zero-filled entries that always exist: delete
//! is EINVAL, BPF_NOEXIST is EEXIST, an index past the end is E2BIG on update and ENOENT on
//! lookup), with per-CPU values as in [`super::percpu_hash`]: user space reads and writes
//! `round_up(value_size, 8) * nr_cpus` bytes, programs reach their own slot.
//!
//! Layout: each CPU's values are contiguous (`[cpu][index]`), like the kernel's per-CPU
//! areas, so slots of different CPUs do not share cache lines.

use super::{current_cpu, nr_cpus, round8};
use crate::map::{MapDef, MapOps, MapTypeEntry};
use crate::uapi::*;
use crate::value::ValueBuf;
use bpfvfs_vfs::{Errno, Result};
use crossbeam_epoch::Guard;
use std::any::Any;

pub const ENTRY: MapTypeEntry = MapTypeEntry {
    map_type: MapType::PercpuArray,
    check,
    alloc,
};

/// array_map_alloc_check for BPF_MAP_TYPE_PERCPU_ARRAY, then array_map_alloc's failure.
fn check(def: &MapDef) -> Result<()> {
    // ARRAY_CREATE_FLAG_MASK; NUMA / mmapable / inner-map / preserve-elems are then refused
    // for per-CPU arrays.
    super::array::check_layout_and_flags(def)?;
    if def.map_flags & (BPF_F_NUMA_NODE | BPF_F_MMAPABLE | BPF_F_INNER_MAP | BPF_F_PRESERVE_ELEMS)
        != 0
    {
        return Err(Errno::EINVAL);
    }
    if def.value_size > i32::MAX as u32 {
        return Err(Errno::E2BIG);
    }
    if round8(def.value_size as usize) as u64 > super::hash::PCPU_MIN_UNIT_SIZE {
        return Err(Errno::E2BIG);
    }
    let total = (round8(def.value_size as usize) as u64)
        .checked_mul(def.max_entries as u64)
        .and_then(|t| t.checked_mul(nr_cpus() as u64));
    match total {
        Some(t) if t <= (1u64 << 32) => Ok(()),
        _ => Err(Errno::ENOMEM),
    }
}

fn alloc(def: &MapDef) -> Result<Box<dyn MapOps>> {
    let stride = round8(def.value_size as usize);
    let ncpus = nr_cpus();
    Ok(Box::new(PercpuArray {
        stride,
        ncpus,
        max_entries: def.max_entries,
        data: ValueBuf::zeroed(stride * def.max_entries as usize * ncpus),
    }))
}

pub struct PercpuArray {
    stride: usize,
    ncpus: usize,
    max_entries: u32,
    data: ValueBuf,
}

impl PercpuArray {
    fn index(&self, key: &[u8]) -> Option<usize> {
        let i = u32::from_ne_bytes(key.try_into().ok()?);
        (i < self.max_entries).then_some(i as usize)
    }

    #[inline]
    fn offset(&self, cpu: usize, i: usize) -> usize {
        (cpu * self.max_entries as usize + i) * self.stride
    }

    /// Write `value` (value_size bytes, or fewer) into the calling thread's slot of entry
    /// `key`, as a program's bpf_map_update_elem does.
    pub fn update_current_cpu(&self, key: &[u8], value: &[u8], flags: u64) -> Result<()> {
        if flags > BPF_EXIST || value.len() > self.stride {
            return Err(Errno::EINVAL);
        }
        let i = self.index(key).ok_or(Errno::E2BIG)?;
        if flags == BPF_NOEXIST {
            return Err(Errno::EEXIST);
        }
        self.data.write_from(self.offset(current_cpu(), i), value);
        Ok(())
    }
}

impl MapOps for PercpuArray {
    fn prog_update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<()> {
        self.update_current_cpu(key, value, flags)
    }
    /// bpf_percpu_array_copy.
    fn lookup(&self, key: &[u8], out: &mut [u8]) -> Result<()> {
        let i = self.index(key).ok_or(Errno::ENOENT)?;
        for (cpu, chunk) in out.chunks_mut(self.stride).enumerate().take(self.ncpus) {
            self.data.read_into(self.offset(cpu, i), chunk);
        }
        Ok(())
    }

    /// bpf_percpu_array_update.
    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<()> {
        if flags > BPF_EXIST {
            return Err(Errno::EINVAL);
        }
        let i = self.index(key).ok_or(Errno::E2BIG)?;
        if flags == BPF_NOEXIST {
            return Err(Errno::EEXIST);
        }
        for (cpu, chunk) in value.chunks(self.stride).enumerate().take(self.ncpus) {
            self.data.write_from(self.offset(cpu, i), chunk);
        }
        Ok(())
    }

    fn delete(&self, _key: &[u8]) -> Result<()> {
        Err(Errno::EINVAL)
    }

    fn get_next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<()> {
        let n = match key.and_then(|k| self.index(k)) {
            None => 0u32,
            Some(i) if i as u32 + 1 >= self.max_entries => return Err(Errno::ENOENT),
            Some(i) => i as u32 + 1,
        };
        next.copy_from_slice(&n.to_ne_bytes());
        Ok(())
    }

    fn mem_usage(&self) -> u64 {
        (self.data.byte_len_capacity() + std::mem::size_of::<Self>()) as u64
    }

    fn elem_count(&self) -> u64 {
        self.max_entries as u64
    }

    /// The calling thread's slot of entry `key` (this_cpu_ptr).
    fn lookup_ptr(&self, key: &[u8], _guard: &Guard) -> Option<*mut u8> {
        let i = self.index(key)?;
        // Arithmetic on the base address only; dereferencing is the program's business.
        Some(
            self.data
                .as_ptr()
                .wrapping_add(self.offset(current_cpu(), i)),
        )
    }

    fn user_value_size(&self, _def: &MapDef) -> usize {
        self.stride * self.ncpus
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
