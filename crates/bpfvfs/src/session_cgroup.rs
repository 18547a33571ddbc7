//! The cgroup tree over the socket: `cgroup_tree` (what `bpfvfs cgroup tree` prints), and
//! cgroup-storage maps' element operations. Linux keys cgroup storage by an fd of the
//! group's cgroup v2 directory; here, as for inode storage, the request names the group by
//! `"file": PATH` (its directory in the bpfvfs tree; `"cgroup"` is accepted too) or passes
//! the directory's descriptor (`"file_fd": true`). Anything that is not a group directory is
//! EBADF, as `cgroup_v1v2_get_from_fd` answers. `map_dump` lists
//! `{"inode": ID, "path": P, "value": [...]}` per element: ID is the cgroup id (the
//! directory's inode number in local mode), P the directory's path in the tree.

use super::*;
use bpfvfs_bpf::maps::cgrp_storage::CgrpStorageMap;
use bpfvfs_cgroup::{Cgroup, CgroupMode, WalkOrder};

impl BpfSession {
    /// Whether the request's map handle names a cgroup-storage map.
    pub(super) fn is_cgrp_storage(&self, a: &Args) -> bool {
        let Ok(h) = self.handle(a, "handle") else {
            return false;
        };
        h.map().is_ok_and(|m| CgrpStorageMap::of(m).is_some())
    }

    /// The group a cgroup-storage operation is about, and the name used in messages.
    fn cgrp_target(&mut self, a: &Args) -> Result<(Arc<Cgroup>, String), ControlError> {
        let tree = self
            .bpf
            .cgroup_tree()
            .ok_or_else(|| ControlError::new(libc::EBADF, format!("{}: no cgroup tree", a.op)))?;
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
            let g = tree
                .of_inode(at.inode().ino())
                .ok_or_else(|| errno(&format!("{} fd", a.op), Errno::EBADF))?;
            return Ok((g, "fd".into()));
        }
        let key = if a.get("cgroup").is_some() {
            "cgroup"
        } else {
            "file"
        };
        let path = a.str(key)?;
        let g = self
            .bpf
            .cgroup_of_path(&self.cred, path.as_bytes())
            .map_err(|e| errno(&format!("{} {path}", a.op), e))?;
        Ok((g, path.to_string()))
    }

    pub(super) fn cgrp_storage_lookup(&mut self, a: &Args) -> Result<Value, ControlError> {
        let (g, name) = self.cgrp_target(a)?;
        let h = self.handle(a, "handle")?;
        let v = self
            .bpf
            .cgrp_storage_lookup(h, &g)
            .map_err(|e| errno(&format!("{} {name}", a.op), e))?;
        Ok(json!({"value": bytes_json(&v), "inode": g.id()}))
    }

    pub(super) fn cgrp_storage_update(&mut self, a: &Args) -> Result<Value, ControlError> {
        let (g, name) = self.cgrp_target(a)?;
        let h = self.handle(a, "handle")?;
        let value = a.bytes("value")?;
        let flags = a.u64_or("flags", 0)?;
        self.bpf
            .cgrp_storage_update(h, &g, &value, flags)
            .map_err(|e| errno(&format!("{} {name}", a.op), e))?;
        Ok(json!({}))
    }

    pub(super) fn cgrp_storage_delete(&mut self, a: &Args) -> Result<Value, ControlError> {
        let (g, name) = self.cgrp_target(a)?;
        let h = self.handle(a, "handle")?;
        self.bpf
            .cgrp_storage_delete(h, &g)
            .map_err(|e| errno(&format!("{} {name}", a.op), e))?;
        Ok(json!({}))
    }

    pub(super) fn cgrp_storage_dump(&mut self, a: &Args) -> Result<Value, ControlError> {
        let h = self.handle(a, "handle")?;
        let elems = self.bpf.cgrp_storage_dump(h).map_err(|e| errno(a.op, e))?;
        let tree = self.bpf.cgroup_tree();
        let entries: Vec<Value> = elems
            .iter()
            .map(|(id, v)| {
                let path = tree
                    .as_ref()
                    .and_then(|t| t.by_id(*id))
                    .map(|g| group_dir(t_mount(&tree), &g));
                json!({"inode": id, "path": path, "value": bytes_json(v)})
            })
            .collect();
        Ok(json!({ "entries": entries }))
    }

    /// `cgroup_tree`: every group from the root (or `"path"`, a group directory), in
    /// pre-order, with the exposed files that carry attachment data (view links).
    pub(super) fn cgroup_tree(&mut self, a: &Args) -> Result<Value, ControlError> {
        let tree = self
            .bpf
            .cgroup_tree()
            .ok_or_else(|| ControlError::new(libc::ENOENT, format!("{}: no cgroup tree", a.op)))?;
        let start = match a.get("path") {
            Some(_) => {
                let p = a.str("path")?;
                self.bpf
                    .cgroup_of_path(&self.cred, p.as_bytes())
                    .map_err(|e| errno(&format!("{} {p}", a.op), e))?
            }
            None => tree.root(),
        };
        let mount = tree.mount_path();
        let groups: Vec<Value> = tree
            .walk(&start, WalkOrder::DescendantsPre)
            .iter()
            .map(|g| {
                let programs: Vec<Value> = tree
                    .exposures_in(g)
                    .into_iter()
                    .filter_map(|e| {
                        let m = e.meta?;
                        Some(json!({
                            "id": m.id,
                            "attach_type": m.attach_type,
                            "attach_flags": if e.inherit { "inherit" } else { "" },
                            "name": m.name,
                            "file": String::from_utf8_lossy(&e.file),
                            "inherited": e.inherited_copy,
                        }))
                    })
                    .collect();
                json!({
                    "path": group_dir(mount, g),
                    "id": g.id(),
                    "level": g.level(),
                    "programs": programs,
                })
            })
            .collect();
        let mode = match tree.mode() {
            CgroupMode::Local => "local".to_string(),
            CgroupMode::Host(p) => format!("host:{}", p.display()),
        };
        Ok(json!({"mount": mount, "mode": mode, "groups": groups}))
    }
}

fn t_mount(tree: &Option<Arc<bpfvfs_cgroup::CgroupTree>>) -> &'static str {
    tree.as_ref()
        .map_or(bpfvfs_cgroup::MOUNT_PATH, |t| t.mount_path())
}

/// The group's directory in the bpfvfs tree ("/sys/fs/cgroup/a/b").
fn group_dir(mount: &str, g: &Cgroup) -> String {
    match g.path().as_str() {
        "/" => mount.to_string(),
        p => format!("{mount}{p}"),
    }
}
