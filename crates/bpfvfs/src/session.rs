//! The BPF side of one control connection: its handle table and the bpf(2)-style operations.
//!
//! A handle is the connection's file descriptor for a BPF object: a small integer naming one
//! reference to the object plus an access mode ([`Handle`]). Handles are numbered from 1 and
//! a number is never given out twice on one connection (a stale number can never name a
//! different object). Closing a handle (`close`) or ending the connection drops its
//! reference; an object nothing else holds (no pin, no other handle, no link) is freed then,
//! as when a process closes its last fd. At most [`MAX_HANDLES`] may be open at once
//! (EMFILE beyond), like RLIMIT_NOFILE.
//!
//! Arguments are checked before anything happens: a missing member or one of the wrong type
//! is EINVAL, a handle number that is not open on this connection is EBADF, byte strings
//! of the wrong size are the map's EINVAL. Errors carry Linux errno values as bpf(2) would
//! return them.

use bpfvfs_bpf::bpffs::pinned_object;
use bpfvfs_bpf::sys::{info_of, Access};
use bpfvfs_bpf::uapi::{MapType, ProgType};
use bpfvfs_bpf::{Bpf, BpfObject, Handle, MapDef, ObjInfo, ObjKind};
use bpfvfs_vfs::{may, Cred, Errno, PathRef, LOOKUP_FOLLOW};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::control::ControlError;

#[path = "session_cgroup.rs"]
mod cgroup_ops;
#[path = "session_iter.rs"]
mod iter_ops;
#[path = "session_prog.rs"]
mod prog_ops;
#[path = "session_storage.rs"]
mod storage_ops;

/// Handles one connection may hold open at once.
pub const MAX_HANDLES: usize = 4096;

/// Counters shared by every session of a daemon.
#[derive(Debug, Default)]
pub struct SessionCounters {
    pub sessions_live: AtomicU64,
    pub sessions_total: AtomicU64,
    pub handles_open: AtomicU64,
}

/// One connection's handle table.
pub struct BpfSession {
    bpf: Arc<Bpf>,
    /// Loads and runs programs (absent in sessions that only manage objects).
    pub(crate) runtime: Option<Arc<bpfvfs_runtime::Runtime>>,
    /// The file a request passed by descriptor (SCM_RIGHTS), resolved by the transport
    /// for the inode-storage operations (`"file_fd": true`).
    pub(crate) fd_target: Option<PathRef>,
    cred: Cred,
    handles: BTreeMap<u32, Handle>,
    next: u32,
    counters: Arc<SessionCounters>,
}

impl Drop for BpfSession {
    fn drop(&mut self) {
        let n = self.handles.len() as u64;
        self.handles.clear();
        self.counters.handles_open.fetch_sub(n, Ordering::Relaxed);
        self.counters.sessions_live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An errno from the BPF layer, with the operation it came from.
fn errno(op: &str, e: Errno) -> ControlError {
    ControlError::new(e.0, format!("{op}: {}", e.message()))
}

fn invalid(op: &str, what: impl std::fmt::Display) -> ControlError {
    ControlError::invalid(format!("{op}: {what}"))
}

// ---- argument helpers ----

struct Args<'a> {
    op: &'a str,
    m: &'a Map<String, Value>,
}

impl<'a> Args<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        match self.m.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }
    fn missing(&self, key: &str) -> ControlError {
        invalid(self.op, format!("missing \"{key}\""))
    }
    fn u64_of(&self, key: &str, v: &Value, max: u64) -> Result<u64, ControlError> {
        match v.as_u64() {
            Some(n) if n <= max => Ok(n),
            _ => Err(invalid(
                self.op,
                format!("\"{key}\" must be an integer from 0 to {max}"),
            )),
        }
    }
    fn u32(&self, key: &str) -> Result<u32, ControlError> {
        let v = self.get(key).ok_or_else(|| self.missing(key))?;
        Ok(self.u64_of(key, v, u32::MAX as u64)? as u32)
    }
    fn u32_or(&self, key: &str, default: u32) -> Result<u32, ControlError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => Ok(self.u64_of(key, v, u32::MAX as u64)? as u32),
        }
    }
    fn u64_or(&self, key: &str, default: u64) -> Result<u64, ControlError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => self.u64_of(key, v, u64::MAX),
        }
    }
    fn str(&self, key: &str) -> Result<&'a str, ControlError> {
        match self.get(key) {
            None => Err(self.missing(key)),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(invalid(self.op, format!("\"{key}\" must be a string"))),
        }
    }
    fn str_or(&self, key: &str, default: &'a str) -> Result<&'a str, ControlError> {
        match self.get(key) {
            None => Ok(default),
            Some(_) => self.str(key),
        }
    }
    fn bytes(&self, key: &str) -> Result<Vec<u8>, ControlError> {
        let v = self.get(key).ok_or_else(|| self.missing(key))?;
        parse_bytes(v).map_err(|why| invalid(self.op, format!("\"{key}\": {why}")))
    }
    fn opt_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, ControlError> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.bytes(key).map(Some),
        }
    }
    fn kind(&self) -> Result<ObjKind, ControlError> {
        match self.str("kind")? {
            "map" => Ok(ObjKind::Map),
            "prog" => Ok(ObjKind::Prog),
            "link" => Ok(ObjKind::Link),
            other => Err(invalid(
                self.op,
                format!("unknown kind {other:?} (map, prog or link)"),
            )),
        }
    }
    /// The handle number: EINVAL if not a number, EBADF if it cannot name a handle.
    fn handle_no(&self, key: &str) -> Result<u32, ControlError> {
        let v = self.get(key).ok_or_else(|| self.missing(key))?;
        match v {
            Value::Number(n) => match n.as_u64() {
                Some(h) if h >= 1 && h <= u32::MAX as u64 => Ok(h as u32),
                _ if n.is_f64() => Err(invalid(self.op, format!("\"{key}\" must be an integer"))),
                _ => Err(ControlError::new(
                    libc::EBADF,
                    format!("{}: no handle {n}", self.op),
                )),
            },
            _ => Err(invalid(
                self.op,
                format!("\"{key}\" must be a handle number"),
            )),
        }
    }
}

/// A byte string: an array of integers 0..=255, or a string of hex digits (two per byte;
/// an optional `0x` prefix; spaces are ignored).
pub fn parse_bytes(v: &Value) -> Result<Vec<u8>, String> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|x| match x.as_u64() {
                Some(b) if b <= 255 => Ok(b as u8),
                _ => Err(format!("{x} is not a byte (0..=255)")),
            })
            .collect(),
        Value::String(s) => {
            let s = s.strip_prefix("0x").unwrap_or(s);
            let digits: Vec<u8> = s.bytes().filter(|b| *b != b' ').collect();
            if digits.len() & 1 == 1 {
                return Err("odd number of hex digits".into());
            }
            digits
                .chunks(2)
                .map(|p| {
                    let hex = |c: u8| (c as char).to_digit(16);
                    match (hex(p[0]), hex(p[1])) {
                        (Some(h), Some(l)) => Ok((h * 16 + l) as u8),
                        _ => Err("not a hex string".to_string()),
                    }
                })
                .collect()
        }
        _ => Err("must be an array of bytes or a hex string".into()),
    }
}

fn bytes_json(b: &[u8]) -> Value {
    Value::Array(b.iter().map(|&x| Value::from(x)).collect())
}

fn kind_name(k: ObjKind) -> &'static str {
    match k {
        ObjKind::Map => "map",
        ObjKind::Prog => "prog",
        ObjKind::Link => "link",
    }
}

fn access_name(a: Access) -> &'static str {
    match (a.read, a.write) {
        (true, true) => "rdwr",
        (true, false) => "rdonly",
        _ => "wronly",
    }
}

impl BpfSession {
    pub fn new(bpf: Arc<Bpf>, cred: Cred, counters: Arc<SessionCounters>) -> BpfSession {
        counters.sessions_live.fetch_add(1, Ordering::Relaxed);
        counters.sessions_total.fetch_add(1, Ordering::Relaxed);
        BpfSession {
            bpf,
            runtime: None,
            fd_target: None,
            cred,
            handles: BTreeMap::new(),
            next: 1,
            counters,
        }
    }

    /// Let this session load and run programs with `rt`.
    pub fn with_runtime(mut self, rt: Arc<bpfvfs_runtime::Runtime>) -> BpfSession {
        self.runtime = Some(rt);
        self
    }

    pub fn cred(&self) -> &Cred {
        &self.cred
    }

    /// Handles open on this connection.
    pub fn open_handles(&self) -> usize {
        self.handles.len()
    }

    fn install(&mut self, h: Handle) -> Result<u32, ControlError> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(ControlError::new(
                libc::EMFILE,
                format!("too many open handles (at most {MAX_HANDLES} per connection)"),
            ));
        }
        // Never reuse a number on this connection; on wrap-around skip the ones in use.
        let mut n = self.next;
        while n == 0 || self.handles.contains_key(&n) {
            n = n.wrapping_add(1);
        }
        self.next = n.wrapping_add(1);
        self.handles.insert(n, h);
        self.counters.handles_open.fetch_add(1, Ordering::Relaxed);
        Ok(n)
    }

    fn handle(&self, a: &Args, key: &str) -> Result<&Handle, ControlError> {
        let n = a.handle_no(key)?;
        self.handles
            .get(&n)
            .ok_or_else(|| ControlError::new(libc::EBADF, format!("{}: no handle {n}", a.op)))
    }

    fn opened(&mut self, h: Handle) -> Result<Value, ControlError> {
        let (id, kind, access) = (h.obj.id(), h.obj.kind(), h.access);
        let n = self.install(h)?;
        Ok(json!({"handle": n, "id": id, "kind": kind_name(kind), "access": access_name(access)}))
    }

    /// Run a BPF operation; None if `op` is not one.
    pub fn dispatch(
        &mut self,
        op: &str,
        args: &Map<String, Value>,
    ) -> Option<Result<Value, ControlError>> {
        let a = Args { op, m: args };
        let r = match op {
            "map_create" => self.map_create(&a),
            "map_lookup_elem" => self.map_lookup_elem(&a),
            "map_update_elem" => self.map_update_elem(&a),
            "map_delete_elem" => self.map_delete_elem(&a),
            "map_get_next_key" => self.map_get_next_key(&a),
            "map_dump" => self.map_dump(&a),
            "map_freeze" => self.map_freeze(&a),
            "obj_pin" => self.obj_pin(&a),
            "obj_get" => self.obj_get(&a),
            "obj_get_info" => self.obj_get_info(&a),
            "get_next_id" => self.get_next_id(&a),
            "get_by_id" => self.get_by_id(&a),
            "close" => self.close(&a),
            "list_pins" => self.list_pins(&a),
            "held_watches" => Ok(json!({"watches": self.bpf.held_watches()})),
            "handles" => Ok(self.list_handles()),
            "prog_load" => self.prog_load(&a),
            "prog_test_run" => self.prog_test_run(&a),
            "trace_read" => self.trace_read(&a),
            "link_create" => self.link_create(&a),
            "iter_link_create" => self.iter_link_create(&a),
            "link_detach" => self.link_detach(&a),
            "view_attach" => self.view_attach(&a),
            "view_detach" => self.view_detach(&a),
            "cgroup_tree" => self.cgroup_tree(&a),
            _ => return None,
        };
        Some(r)
    }

    fn map_create(&mut self, a: &Args) -> Result<Value, ControlError> {
        let map_type = match a.get("map_type") {
            None => return Err(a.missing("map_type")),
            Some(Value::String(s)) => MapType::from_name(s)
                .ok_or_else(|| invalid(a.op, format!("unknown map type {s:?}")))?
                .as_u32(),
            Some(v) => a.u64_of("map_type", v, u32::MAX as u64)? as u32,
        };
        let inner_map_id = match a.get("inner_map") {
            None => 0,
            Some(_) => self
                .handle(a, "inner_map")?
                .map()
                .map_err(|e| errno(a.op, e))?
                .id(),
        };
        let def = MapDef {
            map_type,
            key_size: a.u32("key_size")?,
            value_size: a.u32("value_size")?,
            max_entries: a.u32("max_entries")?,
            map_flags: a.u32_or("map_flags", 0)?,
            name: a.str_or("name", "")?.to_string(),
            map_extra: a.u64_or("map_extra", 0)?,
            inner_map_id,
        };
        let h = self.bpf.map_create(def).map_err(|e| errno(a.op, e))?;
        self.opened(h)
    }

    fn map_lookup_elem(&mut self, a: &Args) -> Result<Value, ControlError> {
        if self.is_cgrp_storage(a) {
            return self.cgrp_storage_lookup(a);
        }
        if a.get("file").is_some() || a.get("file_fd").is_some() {
            return self.storage_lookup(a);
        }
        let h = self.handle(a, "handle")?;
        let key = a.bytes("key")?;
        let v = self
            .bpf
            .map_lookup_elem(h, &key)
            .map_err(|e| errno(a.op, e))?;
        Ok(json!({"value": bytes_json(&v)}))
    }

    fn map_update_elem(&mut self, a: &Args) -> Result<Value, ControlError> {
        if self.is_cgrp_storage(a) {
            return self.cgrp_storage_update(a);
        }
        if a.get("file").is_some() || a.get("file_fd").is_some() {
            return self.storage_update(a);
        }
        let h = self.handle(a, "handle")?;
        let key = a.bytes("key")?;
        let value = a.bytes("value")?;
        let flags = a.u64_or("flags", 0)?;
        self.bpf
            .map_update_elem(h, &key, &value, flags)
            .map_err(|e| errno(a.op, e))?;
        Ok(json!({}))
    }

    fn map_delete_elem(&mut self, a: &Args) -> Result<Value, ControlError> {
        if self.is_cgrp_storage(a) {
            return self.cgrp_storage_delete(a);
        }
        if a.get("file").is_some() || a.get("file_fd").is_some() {
            return self.storage_delete(a);
        }
        let h = self.handle(a, "handle")?;
        let key = a.bytes("key")?;
        self.bpf
            .map_delete_elem(h, &key)
            .map_err(|e| errno(a.op, e))?;
        Ok(json!({}))
    }

    fn map_get_next_key(&mut self, a: &Args) -> Result<Value, ControlError> {
        let h = self.handle(a, "handle")?;
        let key = a.opt_bytes("key")?;
        let next = self
            .bpf
            .map_get_next_key(h, key.as_deref())
            .map_err(|e| errno(a.op, e))?;
        Ok(json!({"next_key": bytes_json(&next)}))
    }

    /// Every entry, in get_next_key order, as bpftool's dump walks them. An entry that
    /// vanishes between the two steps is skipped; other lookup errors are reported per entry.
    fn map_dump(&mut self, a: &Args) -> Result<Value, ControlError> {
        if self.is_cgrp_storage(a) {
            return self.cgrp_storage_dump(a);
        }
        let h = self.handle(a, "handle")?;
        if bpfvfs_bpf::maps::inode_storage::InodeStorageMap::of(
            h.map().map_err(|e| errno(a.op, e))?,
        )
        .is_some()
        {
            return self.storage_dump(a);
        }
        let limit = h.map().map_err(|e| errno(a.op, e))?.def().max_entries as usize;
        let limit = limit.saturating_mul(2).saturating_add(1024);
        let mut entries = Vec::new();
        let mut key: Option<Vec<u8>> = None;
        loop {
            let next = match self.bpf.map_get_next_key(h, key.as_deref()) {
                Ok(k) => k,
                Err(Errno::ENOENT) => break,
                Err(e) if entries.is_empty() && key.is_none() => return Err(errno(a.op, e)),
                Err(e) => {
                    entries.push(json!({"error": {"errno": e.0, "name": e.name()}}));
                    break;
                }
            };
            match self.bpf.map_lookup_elem(h, &next) {
                Ok(v) => entries.push(json!({"key": bytes_json(&next), "value": bytes_json(&v)})),
                Err(e) => entries.push(json!({
                    "key": bytes_json(&next),
                    "error": {"errno": e.0, "name": e.name()},
                })),
            }
            key = Some(next);
            if entries.len() > limit {
                break; // a map changing under us must not loop forever
            }
        }
        Ok(json!({"entries": entries}))
    }

    fn map_freeze(&mut self, a: &Args) -> Result<Value, ControlError> {
        let h = self.handle(a, "handle")?;
        self.bpf.map_freeze(h).map_err(|e| errno(a.op, e))?;
        Ok(json!({}))
    }

    fn obj_pin(&mut self, a: &Args) -> Result<Value, ControlError> {
        let h = self.handle(a, "handle")?;
        let path = a.str("path")?;
        let flags = a.u32_or("file_flags", 0)?;
        // The refusal's reason in the message (e.g. pinning in the cgroup tree an object
        // with no bpffs pin).
        self.bpf
            .obj_pin_detailed(&self.cred, h, None, path.as_bytes(), flags)
            .map_err(|e| ControlError::new(e.errno().0, format!("{}: {e}", a.op)))?;
        Ok(json!({}))
    }

    fn obj_get(&mut self, a: &Args) -> Result<Value, ControlError> {
        let path = a.str("path")?;
        let flags = a.u32_or("file_flags", 0)?;
        let h = self
            .bpf
            .obj_get(&self.cred, None, path.as_bytes(), flags)
            .map_err(|e| errno(a.op, e))?;
        self.opened(h)
    }

    fn obj_get_info(&mut self, a: &Args) -> Result<Value, ControlError> {
        let h = self.handle(a, "handle")?;
        let info = info_of(&h.obj);
        let mut v = match serde_json::to_value(&info) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        match (&info, &h.obj) {
            (ObjInfo::Map { map_type, .. }, BpfObject::Map(m)) => {
                if let Some(t) = MapType::from_u32(*map_type) {
                    v.insert("type_name".into(), t.name().into());
                }
                v.insert("user_value_size".into(), m.value_size().into());
                v.insert("elem_count".into(), m.ops().elem_count().into());
            }
            (ObjInfo::Prog { info, .. }, _) => {
                if let Some(t) = ProgType::from_u32(info.prog_type) {
                    v.insert("type_name".into(), t.name().into());
                }
                // The kernel's figure: the program image (header + instructions) in pages.
                let bytes = 72 + 8 * info.insn_count as u64;
                v.insert(
                    "memlock".into(),
                    bytes.div_ceil(4096).saturating_mul(4096).into(),
                );
            }
            _ => {}
        }
        v.insert("access".into(), access_name(h.access).into());
        // The pin walk covers every bpffs; callers that do not need it can skip it.
        if let Some(Value::Bool(false)) = a.get("with_pins") {
            return Ok(Value::Object(v));
        }
        let (kind, id) = (h.obj.kind(), h.obj.id());
        let pinned: Vec<Value> = self
            .pins(Some(kind))
            .into_iter()
            .filter(|(_, k, i)| *k == kind && *i == id)
            .map(|(p, _, _)| Value::from(p))
            .collect();
        v.insert("pinned".into(), Value::Array(pinned));
        Ok(Value::Object(v))
    }

    fn get_next_id(&mut self, a: &Args) -> Result<Value, ControlError> {
        let kind = a.kind()?;
        let start = a.u32_or("start", 0)?;
        let id = self
            .bpf
            .get_next_id(&self.cred, kind, start)
            .map_err(|e| errno(a.op, e))?;
        Ok(json!({"id": id}))
    }

    fn get_by_id(&mut self, a: &Args) -> Result<Value, ControlError> {
        let kind = a.kind()?;
        // "id" is the request's own id in the protocol.
        let id = a.u32("obj_id")?;
        let flags = a.u32_or("file_flags", 0)?;
        let h = self
            .bpf
            .get_by_id(&self.cred, kind, id, flags)
            .map_err(|e| errno(a.op, e))?;
        self.opened(h)
    }

    fn close(&mut self, a: &Args) -> Result<Value, ControlError> {
        let n = a.handle_no("handle")?;
        match self.handles.remove(&n) {
            Some(h) => {
                self.counters.handles_open.fetch_sub(1, Ordering::Relaxed);
                drop(h);
                Ok(json!({}))
            }
            None => Err(ControlError::new(
                libc::EBADF,
                format!("{}: no handle {n}", a.op),
            )),
        }
    }

    fn list_pins(&mut self, a: &Args) -> Result<Value, ControlError> {
        let kind = match a.get("kind") {
            None => None,
            Some(_) => Some(a.kind()?),
        };
        let pins: Vec<Value> = self
            .pins(kind)
            .into_iter()
            .map(|(path, k, id)| json!({"path": path, "kind": kind_name(k), "id": id}))
            .collect();
        Ok(json!({"pins": pins}))
    }

    fn list_handles(&self) -> Value {
        let hs: Vec<Value> = self
            .handles
            .iter()
            .map(|(n, h)| {
                json!({"handle": n, "kind": kind_name(h.obj.kind()), "id": h.obj.id(),
                       "access": access_name(h.access)})
            })
            .collect();
        json!({"handles": hs})
    }

    /// Every pinned object under every bpf mount, as bpftool's `-f` finds them (nftw over
    /// each bpffs mount, symlinks not followed), seen with this connection's credentials:
    /// directories it may not read or search are skipped.
    fn pins(&self, kind: Option<ObjKind>) -> Vec<(String, ObjKind, u32)> {
        let vfs = self.bpf.vfs();
        let mut out = Vec::new();
        for (path, fs_type, _) in vfs.mounts() {
            if fs_type != "bpf" {
                continue;
            }
            if let Ok(at) = vfs.resolve(&self.cred, None, path.as_bytes(), LOOKUP_FOLLOW) {
                let prefix = if path == "/" {
                    Vec::new()
                } else {
                    path.into_bytes()
                };
                self.walk(&at, prefix, kind, &mut out, 0);
            }
        }
        // True pins outside bpffs (issue 9), by the name each was created under.
        for p in self.bpf.true_pins().all() {
            if let (Some(o), Some(path)) = (p.object(), p.path(vfs)) {
                if kind.is_none_or(|k| k == o.kind()) {
                    out.push((path, o.kind(), o.id()));
                }
            }
        }
        out
    }

    fn walk(
        &self,
        dir: &PathRef,
        prefix: Vec<u8>,
        kind: Option<ObjKind>,
        out: &mut Vec<(String, ObjKind, u32)>,
        depth: u32,
    ) {
        let vfs = self.bpf.vfs();
        if depth > 64
            || vfs
                .access_at(&self.cred, dir, may::READ | may::EXEC)
                .is_err()
        {
            return;
        }
        let mut off = 0;
        while let Ok(ents) = vfs.readdir(dir, off, 256) {
            if ents.is_empty() {
                break;
            }
            for e in &ents {
                off = e.offset;
                if e.name == b"." || e.name == b".." {
                    continue;
                }
                let Ok(child) = vfs.lookup_at(&self.cred, dir, &e.name) else {
                    continue;
                };
                let mut p = prefix.clone();
                p.push(b'/');
                p.extend_from_slice(&e.name);
                let inode = child.inode();
                if inode.is_dir() {
                    self.walk(&child, p, kind, out, depth + 1);
                } else if inode.is_symlink() {
                    continue;
                } else if let Some(o) = pinned_object(inode) {
                    if kind.is_none_or(|k| k == o.kind()) {
                        out.push((String::from_utf8_lossy(&p).into_owned(), o.kind(), o.id()));
                    }
                }
            }
        }
    }
}
