//! Inode-storage maps over the socket. Linux keys these maps by an open file descriptor; a
//! control connection has no fd table of ours, so the element operations take `"file"`: a
//! path in the bpfvfs tree (the CLI translates host paths under the mount point), resolved
//! with the connection's credentials, symlinks followed. `map_dump` of such a map lists
//! `{"inode": N, "path": P, "value": [...]}` per element, the path found by walking the
//! tree (absent when the inode has no name any more, e.g. unlinked but open).

use super::*;
use bpfvfs_vfs::{FileType, Vfs};
use std::collections::HashMap;

/// Upper bound on names visited when looking up paths for a dump.
const DUMP_WALK_LIMIT: usize = 200_000;

impl BpfSession {
    /// The inode a storage operation is about: `"file_fd": true` (the descriptor passed with
    /// the request) or `"file": PATH`; the name used in messages.
    fn storage_target(&mut self, a: &Args) -> Result<(PathRef, String), ControlError> {
        if a.get("file_fd").is_some() {
            let at = self.fd_target.take().ok_or_else(|| {
                ControlError::new(
                    libc::EBADF,
                    format!(
                        "{}: \"file_fd\" needs a descriptor passed with the request",
                        a.op
                    ),
                )
            })?;
            return Ok((at, "fd".into()));
        }
        let path = a.str("file")?;
        let at = self
            .bpf
            .inode_storage_resolve(&self.cred, path.as_bytes())
            .map_err(|e| errno(&format!("{} {path}", a.op), e))?;
        Ok((at, path.to_string()))
    }

    pub(super) fn storage_lookup(&mut self, a: &Args) -> Result<Value, ControlError> {
        let (at, _) = self.storage_target(a)?;
        let h = self.handle(a, "handle")?;
        let v = self
            .bpf
            .inode_storage_lookup(h, at.inode())
            .map_err(|e| errno(a.op, e))?;
        Ok(json!({"value": bytes_json(&v), "inode": at.inode().ino()}))
    }

    pub(super) fn storage_update(&mut self, a: &Args) -> Result<Value, ControlError> {
        let (at, name) = self.storage_target(a)?;
        let h = self.handle(a, "handle")?;
        let value = a.bytes("value")?;
        let flags = a.u64_or("flags", 0)?;
        self.bpf
            .inode_storage_update(h, at.inode(), &value, flags)
            .map_err(|e| errno(&format!("{} {name}", a.op), e))?;
        Ok(json!({}))
    }

    pub(super) fn storage_delete(&mut self, a: &Args) -> Result<Value, ControlError> {
        let (at, name) = self.storage_target(a)?;
        let h = self.handle(a, "handle")?;
        self.bpf
            .inode_storage_delete(h, at.inode())
            .map_err(|e| errno(&format!("{} {name}", a.op), e))?;
        Ok(json!({}))
    }

    pub(super) fn storage_dump(&mut self, a: &Args) -> Result<Value, ControlError> {
        let h = self.handle(a, "handle")?;
        let elems = self.bpf.inode_storage_dump(h).map_err(|e| errno(a.op, e))?;
        let wanted: std::collections::HashSet<u64> = elems.iter().map(|(i, _)| *i).collect();
        let paths = paths_of(self.bpf.vfs(), &self.cred, &wanted);
        let entries: Vec<Value> = elems
            .iter()
            .map(|(ino, v)| json!({"inode": ino, "path": paths.get(ino), "value": bytes_json(v)}))
            .collect();
        Ok(json!({ "entries": entries }))
    }
}

/// A path for each wanted inode number, by a breadth-first walk of the tree (first name
/// found wins; bounded).
fn paths_of(
    vfs: &Vfs,
    cred: &Cred,
    wanted: &std::collections::HashSet<u64>,
) -> HashMap<u64, String> {
    let mut found = HashMap::new();
    if wanted.is_empty() {
        return found;
    }
    let mut queue = std::collections::VecDeque::from([String::from("/")]);
    let mut visited = 0usize;
    while let Some(dir) = queue.pop_front() {
        let Ok(entries) = list_dir(vfs, cred, &dir) else {
            continue;
        };
        for (name, ino, ftype) in entries {
            visited += 1;
            if visited > DUMP_WALK_LIMIT || found.len() == wanted.len() {
                return found;
            }
            let path = if dir == "/" {
                format!("/{}", String::from_utf8_lossy(&name))
            } else {
                format!("{dir}/{}", String::from_utf8_lossy(&name))
            };
            if wanted.contains(&ino) {
                found.entry(ino).or_insert_with(|| path.clone());
            }
            if ftype == FileType::Directory {
                queue.push_back(path);
            }
        }
    }
    found
}

/// The names in `dir` (no "." or ".."), if the caller may read it.
fn list_dir(
    vfs: &Vfs,
    cred: &Cred,
    dir: &str,
) -> bpfvfs_vfs::Result<Vec<(Vec<u8>, u64, FileType)>> {
    let at = vfs.resolve(cred, None, dir.as_bytes(), LOOKUP_FOLLOW)?;
    vfs.access_at(cred, &at, may::READ)?;
    let mut out = Vec::new();
    let mut off = 0;
    loop {
        let batch = vfs.readdir(&at, off, 512)?;
        let Some(last) = batch.last() else {
            return Ok(out);
        };
        off = last.offset;
        for e in batch {
            if e.name != b"." && e.name != b".." {
                out.push((e.name, e.ino, e.kind));
            }
        }
    }
}
