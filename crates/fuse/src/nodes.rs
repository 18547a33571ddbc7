//! The node table: FUSE node id -> (location, kernel lookup count), and the open-file table.
//!
//! Every reply that hands the kernel a node id (lookup, create, mkdir, mknod, symlink, link)
//! counts one lookup; `forget` subtracts. While the count is above zero the table holds a
//! [`PathRef`], which keeps the dentry and so the inode alive; at zero the reference is
//! dropped (outside the table's locks), and an unlinked inode can be evicted.
//!
//! Node ids are VFS inode numbers (unique in the process), except that the VFS root's number
//! and FUSE_ROOT_ID (1) trade places. The root is not counted: the kernel holds it for the
//! whole mount.

use bpfvfs_vfs::{Errno, File, PathRef};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// FUSE_ROOT_ID.
pub const ROOT_ID: u64 = 1;

const SHARDS: usize = 64;

fn shard_of(key: u64) -> usize {
    // Node ids and handles are sequential; mix them so neighbours spread over shards.
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % SHARDS
}

struct Node {
    path: PathRef,
    nlookup: u64,
}

pub struct NodeTable {
    root: PathRef,
    root_ino: u64,
    shards: Box<[RwLock<HashMap<u64, Node>>]>,
}

impl NodeTable {
    pub fn new(root: PathRef) -> NodeTable {
        let root_ino = root.inode().ino();
        NodeTable {
            root,
            root_ino,
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
        }
    }

    /// The node id the kernel knows a VFS inode number by (also `st_ino` and `d_ino`).
    pub fn nodeid_of(&self, ino: u64) -> u64 {
        if ino == self.root_ino {
            ROOT_ID
        } else if ino == ROOT_ID {
            self.root_ino
        } else {
            ino
        }
    }

    fn shard(&self, nodeid: u64) -> &RwLock<HashMap<u64, Node>> {
        &self.shards[shard_of(nodeid)]
    }

    /// The location of a node the kernel holds; ESTALE if it holds none by that id.
    pub fn get(&self, nodeid: u64) -> Result<PathRef, Errno> {
        if nodeid == ROOT_ID {
            return Ok(self.root.clone());
        }
        let shard = self.shard(nodeid).read().unwrap_or_else(|e| e.into_inner());
        match shard.get(&nodeid) {
            Some(n) => Ok(n.path.clone()),
            None => Err(Errno(libc::ESTALE)),
        }
    }

    /// Count one lookup of `path` (call before replying) and return its node id. The newest
    /// location replaces the stored one: for a hard-linked file any name will do, and the
    /// newest is the one most likely still linked.
    pub fn remember(&self, path: &PathRef) -> u64 {
        let nodeid = self.nodeid_of(path.inode().ino());
        if nodeid == ROOT_ID {
            return ROOT_ID;
        }
        let old;
        {
            let mut shard = self
                .shard(nodeid)
                .write()
                .unwrap_or_else(|e| e.into_inner());
            match shard.get_mut(&nodeid) {
                Some(n) => {
                    n.nlookup += 1;
                    old = Some(std::mem::replace(&mut n.path, path.clone()));
                }
                None => {
                    shard.insert(
                        nodeid,
                        Node {
                            path: path.clone(),
                            nlookup: 1,
                        },
                    );
                    old = None;
                }
            }
        }
        drop(old);
        nodeid
    }

    /// The kernel forgot `n` lookups of `nodeid`. Returns true if the node left the table.
    pub fn forget(&self, nodeid: u64, n: u64) -> bool {
        if nodeid == ROOT_ID {
            return false;
        }
        let removed;
        {
            let mut shard = self
                .shard(nodeid)
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let Some(node) = shard.get_mut(&nodeid) else {
                tracing::debug!(nodeid, n, "forget of an unknown node");
                return false;
            };
            node.nlookup = node.nlookup.saturating_sub(n);
            if node.nlookup > 0 {
                return false;
            }
            removed = shard.remove(&nodeid);
        }
        // Dropped with no table lock held: this may evict the inode (and run evict hooks).
        drop(removed);
        true
    }

    /// Node ids currently held for the kernel (the root not included).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kernel's lookup count for a node (0 if unknown), for tests and diagnostics.
    pub fn lookup_count(&self, nodeid: u64) -> u64 {
        self.shard(nodeid)
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&nodeid)
            .map(|n| n.nlookup)
            .unwrap_or(0)
    }

    /// Drop every node (at unmount), outside the locks.
    pub fn clear(&self) {
        for s in self.shards.iter() {
            let taken = std::mem::take(&mut *s.write().unwrap_or_else(|e| e.into_inner()));
            drop(taken);
        }
    }
}

type FileShard = Mutex<HashMap<u64, Arc<File>>>;

/// Open files and directories by FUSE file handle.
pub struct FileTable {
    next: AtomicU64,
    shards: Box<[FileShard]>,
}

impl Default for FileTable {
    fn default() -> Self {
        FileTable {
            next: AtomicU64::new(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl FileTable {
    pub fn insert(&self, f: Arc<File>) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.shards[shard_of(fh)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fh, f);
        fh
    }

    pub fn get(&self, fh: u64) -> Result<Arc<File>, Errno> {
        self.shards[shard_of(fh)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fh)
            .cloned()
            .ok_or(Errno::EBADF)
    }

    pub fn remove(&self, fh: u64) -> Option<Arc<File>> {
        self.shards[shard_of(fh)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fh)
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) {
        for s in self.shards.iter() {
            let taken = std::mem::take(&mut *s.lock().unwrap_or_else(|e| e.into_inner()));
            drop(taken);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfvfs_vfs::{rcu_barrier, Cred, NewKind, Vfs};

    #[test]
    fn lookup_counts_and_eviction() {
        let vfs = Vfs::new_memfs();
        let root = Cred::root();
        let t = NodeTable::new(vfs.root());
        assert_eq!(
            t.get(ROOT_ID).unwrap().inode().ino(),
            vfs.root().inode().ino()
        );
        let f = vfs
            .create_at(&root, &vfs.root(), b"f", NewKind::File, 0o644)
            .unwrap();
        let id = t.remember(&f);
        assert_ne!(id, ROOT_ID);
        assert_eq!(t.remember(&f), id);
        assert_eq!(t.lookup_count(id), 2);
        drop(f);
        vfs.unlink_at(&root, &vfs.root(), b"f").unwrap();
        let before = vfs.stats().inodes_evicted_total;
        assert!(!t.forget(id, 1));
        assert_eq!(
            vfs.stats().inodes_evicted_total,
            before,
            "still held by the table"
        );
        assert!(t.get(id).is_ok());
        assert!(t.forget(id, 1));
        assert_eq!(vfs.stats().inodes_evicted_total, before + 1);
        assert_eq!(t.get(id).unwrap_err(), Errno(libc::ESTALE));
        assert!(!t.forget(id, 1), "unknown node ids are ignored");
        rcu_barrier();
    }

    #[test]
    fn root_swaps_with_one() {
        let vfs = Vfs::new_memfs();
        let t = NodeTable::new(vfs.root());
        let r = vfs.root().inode().ino();
        assert_eq!(t.nodeid_of(r), ROOT_ID);
        if r != ROOT_ID {
            assert_eq!(t.nodeid_of(ROOT_ID), r);
        }
        assert_eq!(t.remember(&vfs.root()), ROOT_ID);
        assert!(t.is_empty());
        assert!(!t.forget(ROOT_ID, 100));
    }
}
