//! BPF_MAP_TYPE_ARRAY: `max_entries` preallocated, zero-filled values indexed by a u32 key.
//! Elements always exist: delete is EINVAL and BPF_NOEXIST is EEXIST.

use crate::map::{MapDef, MapOps, MapTypeEntry};
use crate::uapi::*;
use crate::value::{words_for, ValueBuf};
use bpfvfs_vfs::{Errno, Result};
use crossbeam_epoch::Guard;
use std::any::Any;

pub const ENTRY: MapTypeEntry = MapTypeEntry {
    map_type: MapType::Array,
    check,
    alloc,
};

/// ARRAY_CREATE_FLAG_MASK.
const ARRAY_CREATE_FLAG_MASK: u32 = BPF_F_NUMA_NODE
    | BPF_F_RDONLY
    | BPF_F_WRONLY
    | BPF_F_RDONLY_PROG
    | BPF_F_WRONLY_PROG
    | BPF_F_MMAPABLE
    | BPF_F_PRESERVE_ELEMS
    | BPF_F_INNER_MAP;

/// The start of array_map_alloc_check shared by every array type: a u32 key, a non-empty
/// value, at least one entry, and only ARRAY_CREATE_FLAG_MASK flags, else EINVAL.
pub(super) fn check_layout_and_flags(def: &MapDef) -> Result<()> {
    if def.max_entries == 0
        || def.key_size != 4
        || def.value_size == 0
        || def.map_flags & !ARRAY_CREATE_FLAG_MASK != 0
    {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// array_map_alloc_check.
fn check(def: &MapDef) -> Result<()> {
    check_layout_and_flags(def)?;
    if def.map_flags & BPF_F_PRESERVE_ELEMS != 0 {
        return Err(Errno::EINVAL); // only for perf event arrays
    }
    if def.value_size as u64 >= KMALLOC_MAX_SIZE {
        return Err(Errno::E2BIG);
    }
    let total = (words_for(def.value_size as usize) as u64 * 8).checked_mul(def.max_entries as u64);
    match total {
        Some(t) if t <= (1u64 << 32) => Ok(()),
        _ => Err(Errno::ENOMEM),
    }
}

fn alloc(def: &MapDef) -> Result<Box<dyn MapOps>> {
    Ok(Box::new(ArrayMap {
        value_size: def.value_size as usize,
        stride: words_for(def.value_size as usize) * 8,
        max_entries: def.max_entries,
        data: ValueBuf::zeroed(words_for(def.value_size as usize) * 8 * def.max_entries as usize),
    }))
}

pub struct ArrayMap {
    value_size: usize,
    stride: usize,
    max_entries: u32,
    data: ValueBuf,
}

impl ArrayMap {
    /// Where the values are: `max_entries` values `stride` bytes apart from the base, at a
    /// fixed address for the map's life (what a JIT may address directly).
    pub fn layout(&self) -> (*mut u8, u32, usize) {
        (self.data.as_ptr(), self.max_entries, self.stride)
    }

    fn index(&self, key: &[u8]) -> Option<usize> {
        let i = u32::from_ne_bytes(key.try_into().ok()?);
        (i < self.max_entries).then_some(i as usize)
    }
}

impl MapOps for ArrayMap {
    fn lookup(&self, key: &[u8], out: &mut [u8]) -> Result<()> {
        let i = self.index(key).ok_or(Errno::ENOENT)?;
        self.data
            .read_into(i * self.stride, &mut out[..self.value_size]);
        Ok(())
    }
    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<()> {
        let i = self.index(key).ok_or(Errno::E2BIG)?;
        if flags & 3 == BPF_NOEXIST {
            return Err(Errno::EEXIST);
        }
        self.data.write_from(i * self.stride, value);
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
        (self.stride * self.max_entries as usize) as u64
    }
    fn elem_count(&self) -> u64 {
        self.max_entries as u64
    }
    fn lookup_ptr(&self, key: &[u8], _guard: &Guard) -> Option<*mut u8> {
        let i = self.index(key)?;
        // Arithmetic on the base address only; dereferencing is the program's business.
        Some(self.data.as_ptr().wrapping_add(i * self.stride))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
