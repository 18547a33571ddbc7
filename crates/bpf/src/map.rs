//! Maps: the object, its definition, and the per-type operations trait (bpf_map_ops).
//!
//! Each map type lives in its own file under `maps/` and registers itself in [`MAP_TYPES`]:
//! a create-time check (the kernel's `map_alloc_check`) and a constructor. Everything common —
//! names, flags valid for every type, ids, references, access modes — is handled here.

use crate::uapi::*;
use bpfvfs_vfs::{Errno, Result};
use crossbeam_epoch::Guard;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What map_create is given (union bpf_attr's map fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapDef {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub name: String,
    #[serde(default)]
    pub map_extra: u64,
    /// For map-in-map types: the id of the inner map template.
    #[serde(default)]
    pub inner_map_id: u32,
}

impl MapDef {
    pub fn new(map_type: MapType, key_size: u32, value_size: u32, max_entries: u32) -> MapDef {
        MapDef {
            map_type: map_type.as_u32(),
            key_size,
            value_size,
            max_entries,
            map_flags: 0,
            name: String::new(),
            map_extra: 0,
            inner_map_id: 0,
        }
    }
    pub fn with_flags(mut self, f: u32) -> MapDef {
        self.map_flags = f;
        self
    }
    pub fn with_name(mut self, n: &str) -> MapDef {
        self.name = n.to_string();
        self
    }
    pub fn kind(&self) -> Option<MapType> {
        MapType::from_u32(self.map_type)
    }
}

/// The operations of one map type. Keys and values are exactly `key_size` / the map's
/// user-visible value size (checked by [`Map`] before calling).
pub trait MapOps: Send + Sync + 'static {
    /// Copy the value for `key` into `out` (ENOENT if absent).
    fn lookup(&self, key: &[u8], out: &mut [u8]) -> Result<()>;
    /// Insert or replace, honouring BPF_ANY / BPF_NOEXIST / BPF_EXIST.
    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<()>;
    fn delete(&self, key: &[u8]) -> Result<()>;
    /// The key after `key`, or the first key when `key` is None or absent (ENOENT at the end).
    fn get_next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<()>;
    /// Bytes this map uses, elements included (bpftool's memlock).
    fn mem_usage(&self) -> u64;
    /// Elements present, where the type can tell (maps.debug's cur_entries).
    fn elem_count(&self) -> u64;
    /// Program side: the address of the value for `key`, valid while `guard` is pinned.
    /// Types whose values programs cannot reach by pointer return None.
    fn lookup_ptr(&self, key: &[u8], guard: &Guard) -> Option<*mut u8> {
        let _ = (key, guard);
        None
    }
    /// Program side: `bpf_map_update_elem` from a program. Flags are already known to be a
    /// valid combination. Per-CPU types write only the running CPU's slot (the kernel's
    /// onallcpus=false path); the default is the user-space update.
    fn prog_update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<()> {
        self.update(key, value, flags)
    }
    /// Bytes of one value as user space sees it (per-CPU maps: one slot per CPU).
    fn user_value_size(&self, def: &MapDef) -> usize {
        def.value_size as usize
    }
    /// Downcast for type-specific operations (ring buffer consume, ...).
    fn as_any(&self) -> &dyn Any;
}

/// One entry of the map-type table.
pub struct MapTypeEntry {
    pub map_type: MapType,
    /// Type-specific create-time validation (map_alloc_check).
    pub check: fn(&MapDef) -> Result<()>,
    pub alloc: fn(&MapDef) -> Result<Box<dyn MapOps>>,
}

/// The map types bpfvfs implements, looked up by type number.
pub static MAP_TYPES: &[MapTypeEntry] = &[
    crate::maps::hash::ENTRY,
    crate::maps::array::ENTRY,
    crate::maps::percpu_hash::ENTRY,
    crate::maps::percpu_array::ENTRY,
    crate::maps::lru_hash::ENTRY,
    crate::maps::ringbuf::ENTRY,
    crate::maps::inode_storage::ENTRY,
    crate::maps::cgrp_storage::ENTRY,
];

fn find_type(t: u32) -> Option<&'static MapTypeEntry> {
    MAP_TYPES.iter().find(|e| e.map_type.as_u32() == t)
}

/// Flags any map may carry at creation (per-type checks narrow this).
const COMMON_FLAGS: u32 = BPF_F_NO_PREALLOC
    | BPF_F_NO_COMMON_LRU
    | BPF_F_NUMA_NODE
    | BPF_F_RDONLY
    | BPF_F_WRONLY
    | BPF_F_ZERO_SEED
    | BPF_F_RDONLY_PROG
    | BPF_F_WRONLY_PROG
    | BPF_F_MMAPABLE
    | BPF_F_PRESERVE_ELEMS
    | BPF_F_INNER_MAP
    | BPF_F_CLONE;

/// bpf_obj_name_cpy: at most 15 characters from [A-Za-z0-9_.].
pub fn check_obj_name(name: &str) -> Result<()> {
    if name.len() >= BPF_OBJ_NAME_LEN {
        return Err(Errno::EINVAL);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

pub struct Map {
    id: u32,
    def: MapDef,
    ops: Box<dyn MapOps>,
    frozen: AtomicBool,
    pub(crate) registry: Arc<crate::object::Registry>,
}

impl Map {
    /// map_create's checks and allocation. The caller registers the id.
    pub(crate) fn create(def: MapDef, registry: &Arc<crate::object::Registry>) -> Result<Arc<Map>> {
        check_obj_name(&def.name)?;
        if def.map_flags & !COMMON_FLAGS != 0 {
            return Err(Errno::EINVAL);
        }
        if def.map_flags & BPF_F_RDONLY != 0 && def.map_flags & BPF_F_WRONLY != 0 {
            return Err(Errno::EINVAL);
        }
        if def.map_flags & BPF_F_RDONLY_PROG != 0 && def.map_flags & BPF_F_WRONLY_PROG != 0 {
            return Err(Errno::EINVAL);
        }
        let entry = find_type(def.map_type).ok_or(Errno::EINVAL)?;
        (entry.check)(&def)?;
        let ops = (entry.alloc)(&def)?;
        registry.add_map(|id| Map {
            id,
            def,
            ops,
            frozen: AtomicBool::new(false),
            registry: registry.clone(),
        })
    }

    pub fn id(&self) -> u32 {
        self.id
    }
    pub fn def(&self) -> &MapDef {
        &self.def
    }
    pub fn name(&self) -> &str {
        &self.def.name
    }
    pub fn map_type(&self) -> Option<MapType> {
        self.def.kind()
    }
    pub fn key_size(&self) -> usize {
        self.def.key_size as usize
    }
    pub fn value_size(&self) -> usize {
        self.ops.user_value_size(&self.def)
    }
    pub fn ops(&self) -> &dyn MapOps {
        &*self.ops
    }
    pub fn mem_usage(&self) -> u64 {
        self.ops.mem_usage() + std::mem::size_of::<Map>() as u64
    }
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Acquire)
    }
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::Release)
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.len() != self.key_size() {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    pub fn lookup(&self, key: &[u8]) -> Result<Vec<u8>> {
        self.check_key(key)?;
        let mut out = vec![0u8; self.value_size()];
        self.ops.lookup(key, &mut out)?;
        Ok(out)
    }

    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<()> {
        self.check_key(key)?;
        if value.len() != self.value_size() {
            return Err(Errno::EINVAL);
        }
        if self.map_type() == Some(MapType::Ringbuf) && flags & BPF_F_LOCK == 0 {
            // Linux checks only BPF_F_LOCK before the map type; a ring buffer then refuses
            // every element update (ENOTSUPP), whatever the other flags say.
            return self.ops.update(key, value, flags);
        }
        if flags & !(BPF_NOEXIST | BPF_EXIST | BPF_F_LOCK) != 0 || flags & 3 == 3 {
            return Err(Errno::EINVAL);
        }
        if flags & BPF_F_LOCK != 0 {
            // No map type here carries a bpf_spin_lock in its value (no BTF yet).
            return Err(Errno::EINVAL);
        }
        if self.is_frozen() {
            return Err(Errno::EPERM);
        }
        self.ops.update(key, value, flags)
    }

    pub fn delete(&self, key: &[u8]) -> Result<()> {
        self.check_key(key)?;
        if self.is_frozen() {
            return Err(Errno::EPERM);
        }
        self.ops.delete(key)
    }

    pub fn get_next_key(&self, key: Option<&[u8]>) -> Result<Vec<u8>> {
        if let Some(k) = key {
            self.check_key(k)?;
        }
        let mut next = vec![0u8; self.key_size()];
        self.ops.get_next_key(key, &mut next)?;
        Ok(next)
    }

    /// Every (key, value) pair in get_next_key order (a snapshot; concurrent changes may or
    /// may not show, as with bpftool's dump).
    pub fn entries(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut key: Option<Vec<u8>> = None;
        loop {
            let next = match self.get_next_key(key.as_deref()) {
                Ok(k) => k,
                Err(Errno::ENOENT) => return Ok(out),
                Err(e) => return Err(e),
            };
            match self.lookup(&next) {
                Ok(v) => out.push((next.clone(), v)),
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(e),
            }
            key = Some(next);
            if out.len() > (self.def.max_entries as usize).saturating_mul(2) + 1024 {
                return Ok(out); // a map changing under us must not loop forever
            }
        }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        self.registry.remove_map(self.id);
    }
}

impl std::fmt::Debug for Map {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Map({} {} {:?})",
            self.id,
            self.def.name,
            self.map_type()
        )
    }
}
