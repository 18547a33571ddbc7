//! BPF objects, their ids, and their references.
//!
//! An object is an `Arc`: every holder — a handle (the fd of bpf(2)), a bpffs pin (the pinned
//! inode's private data), a link (holding its program) — owns one clone, and the object is
//! freed exactly when the last goes (`Drop`). The [`Registry`] maps ids to `Weak` references,
//! so enumerating (get_next_id) and opening by id (get_fd_by_id) never keep anything alive.
//! Ids are allocated like Linux's idr_alloc_cyclic(1, INT_MAX): increasing, wrapping, never 0,
//! never one that is still in use.

use crate::map::Map;
use crate::prog::{Link, Prog};
use bpfvfs_vfs::{Errno, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

const ID_MAX: u32 = i32::MAX as u32;

struct IdTable<T> {
    next: u32,
    live: BTreeMap<u32, Weak<T>>,
}

impl<T> Default for IdTable<T> {
    fn default() -> Self {
        IdTable {
            next: 1,
            live: BTreeMap::new(),
        }
    }
}

impl<T> IdTable<T> {
    fn alloc(&mut self) -> Result<u32> {
        if self.live.len() as u64 >= ID_MAX as u64 {
            return Err(Errno::ENOSPC);
        }
        let mut id = self.next;
        while self.live.contains_key(&id) {
            id = if id >= ID_MAX { 1 } else { id + 1 };
        }
        self.next = if id >= ID_MAX { 1 } else { id + 1 };
        Ok(id)
    }
}

/// The kind of a BPF object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjKind {
    Map,
    Prog,
    Link,
}

/// Live-object counters of one registry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjStats {
    pub maps_live: u64,
    pub progs_live: u64,
    pub links_live: u64,
    pub maps_freed_total: u64,
    pub progs_freed_total: u64,
    pub links_freed_total: u64,
}

/// The id namespace of one bpfvfs instance (the kernel's map_idr, prog_idr, link_idr).
#[derive(Default)]
pub struct Registry {
    maps: Mutex<IdTable<Map>>,
    progs: Mutex<IdTable<Prog>>,
    links: Mutex<IdTable<Link>>,
    maps_freed: AtomicU64,
    progs_freed: AtomicU64,
    links_freed: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

macro_rules! table_ops {
    ($add:ident, $remove:ident, $get:ident, $next:ident, $all:ident, $field:ident, $freed:ident, $ty:ty) => {
        pub(crate) fn $add(&self, make: impl FnOnce(u32) -> $ty) -> Result<Arc<$ty>> {
            let mut t = lock(&self.$field);
            let id = t.alloc()?;
            let obj = Arc::new(make(id));
            t.live.insert(id, Arc::downgrade(&obj));
            Ok(obj)
        }
        pub(crate) fn $remove(&self, id: u32) {
            lock(&self.$field).live.remove(&id);
            self.$freed.fetch_add(1, Ordering::Relaxed);
        }
        /// The live object with this id (get_fd_by_id), ENOENT otherwise.
        pub fn $get(&self, id: u32) -> Result<Arc<$ty>> {
            lock(&self.$field)
                .live
                .get(&id)
                .and_then(Weak::upgrade)
                .ok_or(Errno::ENOENT)
        }
        /// The smallest live id above `start` (get_next_id), ENOENT when none.
        pub fn $next(&self, start: u32) -> Result<u32> {
            let t = lock(&self.$field);
            t.live
                .range(start.saturating_add(1)..)
                .find(|(_, w)| w.strong_count() > 0)
                .map(|(&id, _)| id)
                .ok_or(Errno::ENOENT)
        }
        /// Every live object, by id.
        pub fn $all(&self) -> Vec<Arc<$ty>> {
            lock(&self.$field)
                .live
                .values()
                .filter_map(Weak::upgrade)
                .collect()
        }
    };
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    table_ops!(
        add_map,
        remove_map,
        map_by_id,
        next_map_id,
        maps,
        maps,
        maps_freed,
        Map
    );
    table_ops!(
        add_prog,
        remove_prog,
        prog_by_id,
        next_prog_id,
        progs,
        progs,
        progs_freed,
        Prog
    );
    table_ops!(
        add_link,
        remove_link,
        link_by_id,
        next_link_id,
        links,
        links,
        links_freed,
        Link
    );

    pub fn next_id(&self, kind: ObjKind, start: u32) -> Result<u32> {
        match kind {
            ObjKind::Map => self.next_map_id(start),
            ObjKind::Prog => self.next_prog_id(start),
            ObjKind::Link => self.next_link_id(start),
        }
    }

    pub fn by_id(&self, kind: ObjKind, id: u32) -> Result<BpfObject> {
        Ok(match kind {
            ObjKind::Map => BpfObject::Map(self.map_by_id(id)?),
            ObjKind::Prog => BpfObject::Prog(self.prog_by_id(id)?),
            ObjKind::Link => BpfObject::Link(self.link_by_id(id)?),
        })
    }

    pub fn stats(&self) -> ObjStats {
        ObjStats {
            maps_live: lock(&self.maps).live.len() as u64,
            progs_live: lock(&self.progs).live.len() as u64,
            links_live: lock(&self.links).live.len() as u64,
            maps_freed_total: self.maps_freed.load(Ordering::Relaxed),
            progs_freed_total: self.progs_freed.load(Ordering::Relaxed),
            links_freed_total: self.links_freed.load(Ordering::Relaxed),
        }
    }
}

/// A counted reference to any BPF object (what a pin or a handle holds).
#[derive(Clone, Debug)]
pub enum BpfObject {
    Map(Arc<Map>),
    Prog(Arc<Prog>),
    Link(Arc<Link>),
}

impl BpfObject {
    pub fn kind(&self) -> ObjKind {
        match self {
            BpfObject::Map(_) => ObjKind::Map,
            BpfObject::Prog(_) => ObjKind::Prog,
            BpfObject::Link(_) => ObjKind::Link,
        }
    }
    pub fn id(&self) -> u32 {
        match self {
            BpfObject::Map(m) => m.id(),
            BpfObject::Prog(p) => p.id(),
            BpfObject::Link(l) => l.id(),
        }
    }
    pub fn as_map(&self) -> Result<&Arc<Map>> {
        match self {
            BpfObject::Map(m) => Ok(m),
            _ => Err(Errno::EINVAL),
        }
    }
    pub fn as_prog(&self) -> Result<&Arc<Prog>> {
        match self {
            BpfObject::Prog(p) => Ok(p),
            _ => Err(Errno::EINVAL),
        }
    }
    pub fn as_link(&self) -> Result<&Arc<Link>> {
        match self {
            BpfObject::Link(l) => Ok(l),
            _ => Err(Errno::EINVAL),
        }
    }
}
