//! True pins outside bpffs (issue 9 item 1; Hao Luo's "truly pinning", seed 002/004).
//!
//! `obj_pin` at a path in a filesystem that allows it (`FileSystem::allows_true_pins`:
//! memfs, any filesystem that creates regular files) creates an ordinary regular file there
//! through the VFS's create path (name checks, permission, the `inode_create` hook,
//! `IN_CREATE`), mode `S_IFREG | (0600 & ~umask)`, owned by the pinning cred, as bpffs pins
//! are — and binds the object to that inode. Nothing here knows which filesystem it is.
//!
//! ## Who holds which reference
//! - The pin's record ([`TruePin`]) holds the one object reference, whatever the number of
//!   hard links, renames or open handles of the file.
//! - A destruction watch on the inode (`bpfvfs_vfs::watch_destruction`), armed before the
//!   file's name is published, is the only code that takes that reference out: it fires
//!   exactly once, when the inode is evicted (last link and last reference gone, or its
//!   filesystem unmounted), in the evicting thread, and drops the object there. No
//!   filesystem code and no unlink path is involved, so hard links, `mv`, `rm -r` of the
//!   directory and a file unlinked while open all come down to that one eviction.
//! - The inode's file-operations override (`bpfvfs_vfs::fileops_override`, installed with
//!   the watch) and the instance's [`TruePins`] table hold the *record* (an `Arc<TruePin>`),
//!   never the object: after the watch fired they see an empty record. The table entry is
//!   removed by the same callback; the override goes with the inode's memory.
//! - Open files hold only their generated text (an iterator link's output, produced at
//!   open), not the object.
//!
//! ## Finding the object from the inode
//! By inode number in [`TruePins`] (inode numbers are process-unique and never reused), so
//! `obj_get`, bpftool's `pinned PATH` and the `pinned` lines of `show` work on any
//! filesystem without reading the filesystem's private data.
//!
//! ## Reading the file
//! An iterator link (a link with a `seq` source) runs its iterator once per open, as its
//! bpffs pin does; every other object fails the open with EIO (bpffs's `bpffs_obj_open`),
//! and the daemon log says which object it is and how to read it.

use crate::object::{BpfObject, ObjKind};
use bpfvfs_vfs::fileops_override::{set_override, FileOpsOverride};
use bpfvfs_vfs::{
    oflags, watch_destruction, Cred, Dentry, DestroyState, DestroyWatch, Errno, File, Inode, Mount,
    PathRef, Result, Vfs,
};
use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One truly pinned object (one per pinned inode).
pub struct TruePin {
    /// The pin's reference; `None` once the inode was evicted (taken by the watch).
    obj: Mutex<Option<BpfObject>>,
    kind: ObjKind,
    id: u32,
    ino: u64,
    /// The name the pin was created under (it follows renames; hard links made later are
    /// not tracked), for the `pinned` lines. Memory only, never a counted reference. Set
    /// once the name is published.
    dentry: OnceLock<Weak<Dentry>>,
    mnt: Weak<Mount>,
    /// The destruction watch holding the reference (for `held_watches`).
    watch: OnceLock<DestroyWatch>,
}

impl TruePin {
    /// The object, if the pin still holds it.
    pub fn object(&self) -> Option<BpfObject> {
        lock(&self.obj).clone()
    }
    pub fn ino(&self) -> u64 {
        self.ino
    }
    /// The pin's current path in `vfs` (its creation name, following renames), if that
    /// name still exists.
    pub fn path(&self, vfs: &Vfs) -> Option<String> {
        let d = self.dentry.get()?.upgrade()?;
        let mnt = self.mnt.upgrade()?;
        if !d.is_hashed() {
            return None;
        }
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut cur = d;
        while let Some(p) = cur.parent() {
            parts.push(cur.name());
            cur = p;
        }
        let mut out = match (mnt.parent_mount(), mnt.mountpoint()) {
            (Some(pm), Some(mp)) => {
                let base = vfs.path_of(&PathRef {
                    mnt: pm.clone(),
                    dentry: mp.clone(),
                });
                if base == b"/" {
                    Vec::new()
                } else {
                    base
                }
            }
            _ => Vec::new(),
        };
        for p in parts.iter().rev() {
            out.push(b'/');
            out.extend_from_slice(p);
        }
        if out.is_empty() {
            out.push(b'/');
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }
}

/// Per-open state of a truly pinned file: the text generated at open, or nothing (O_PATH).
enum Opened {
    Text(Vec<u8>),
    Path,
}

impl FileOpsOverride for TruePin {
    fn open(&self, file: &File) -> Result<Box<dyn Any + Send + Sync>> {
        if file.flags() & oflags::O_PATH != 0 {
            return Ok(Box::new(Opened::Path));
        }
        let obj = self.object();
        let seq = match &obj {
            Some(BpfObject::Link(l)) => l.seq(),
            _ => None,
        };
        drop(obj);
        match seq {
            // Outside any lock: the iterator may walk the tree itself.
            Some(s) => Ok(Box::new(Opened::Text(s.read_all()?))),
            None => {
                let how = match self.kind {
                    ObjKind::Map => "read it with `bpfvfs map dump pinned PATH`",
                    ObjKind::Prog => "inspect it with `bpfvfs prog show pinned PATH`",
                    ObjKind::Link => {
                        "only iterator links are readable; inspect it with `bpfvfs link show pinned PATH`"
                    }
                };
                tracing::warn!(
                    "open of pinned {:?} {} (inode {}) outside bpffs: EIO, the object has no read view; {how}",
                    self.kind,
                    self.id,
                    self.ino
                );
                Err(Errno::EIO)
            }
        }
    }
    fn read(&self, file: &File, buf: &mut [u8], offset: u64) -> Result<usize> {
        match file.private::<Opened>() {
            Some(Opened::Text(t)) => {
                let off = offset.min(t.len() as u64) as usize;
                let n = buf.len().min(t.len() - off);
                buf[..n].copy_from_slice(&t[off..off + n]);
                Ok(n)
            }
            _ => Err(Errno::EBADF),
        }
    }
}

/// The instance's table of true pins, by inode number.
#[derive(Default)]
pub struct TruePins {
    by_ino: Mutex<HashMap<u64, Arc<TruePin>>>,
}

/// A destruction watch held on behalf of an object (what `bpfvfs watch --held` lists).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeldWatch {
    /// "true-pin" (holds the object; fires when the pinned file dies) or "exposure" (holds
    /// nothing; fires when the object's bpffs pin dies and removes the exposed file).
    pub purpose: String,
    /// The watched inode.
    pub ino: u64,
    pub kind: ObjKind,
    pub id: u32,
    /// The watched file's path, where known.
    pub path: Option<String>,
    /// Where the exposed file is (exposures only).
    pub exposed_at: Option<String>,
    pub state: String,
}

pub(crate) fn state_name(s: DestroyState) -> &'static str {
    match s {
        DestroyState::Armed => "armed",
        DestroyState::Fired => "fired",
        DestroyState::Cancelled => "cancelled",
    }
}

impl TruePins {
    /// The record of the true pin at `inode`, if it is one.
    pub fn of_inode(&self, inode: &Inode) -> Option<Arc<TruePin>> {
        lock(&self.by_ino).get(&inode.ino()).cloned()
    }

    /// Live true pins (records whose watch has not fired).
    pub fn all(&self) -> Vec<Arc<TruePin>> {
        let mut v: Vec<_> = lock(&self.by_ino).values().cloned().collect();
        v.sort_by_key(|p| p.ino);
        v
    }

    pub fn held_watches(&self, vfs: &Vfs) -> Vec<HeldWatch> {
        self.all()
            .into_iter()
            .map(|p| HeldWatch {
                purpose: "true-pin".into(),
                ino: p.ino,
                kind: p.kind,
                id: p.id,
                path: p.path(vfs),
                exposed_at: None,
                state: p
                    .watch
                    .get()
                    .map_or("armed", |w| state_name(w.state()))
                    .into(),
            })
            .collect()
    }

    /// Create `name` in `parent` as a true pin of `obj` (see the module docs).
    pub(crate) fn pin(
        self: &Arc<Self>,
        vfs: &Vfs,
        cred: &Cred,
        parent: &PathRef,
        name: &[u8],
        obj: &BpfObject,
    ) -> Result<()> {
        let table = Arc::downgrade(self);
        let mut failed = None;
        let at = vfs.create_file_bound(cred, parent, name, 0o600, |inode| {
            let pin = Arc::new(TruePin {
                obj: Mutex::new(Some(obj.clone())),
                kind: obj.kind(),
                id: obj.id(),
                ino: inode.ino(),
                dentry: OnceLock::new(),
                mnt: Arc::downgrade(&parent.mnt),
                watch: OnceLock::new(),
            });
            let rec = pin.clone();
            // The callback is the only place the reference is taken out: exactly once, at
            // eviction (or dropped uncalled on cancel, which nothing does).
            let w = watch_destruction(inode, move |_inode| {
                let released = lock(&rec.obj).take();
                if let Some(t) = table.upgrade() {
                    lock(&t.by_ino).remove(&rec.ino);
                }
                drop(released); // no lock held: a link's detach may do anything
            });
            match w {
                Ok(w) => {
                    let _ = pin.watch.set(w);
                }
                Err(e) => {
                    // Cannot happen for an inode nobody else can reach yet; if it did,
                    // the record must not hold a reference nothing would release.
                    lock(&pin.obj).take();
                    failed = Some(e);
                    return;
                }
            }
            if set_override(inode, pin.clone()).is_err() {
                failed = Some(Errno::EBUSY);
            }
            lock(&self.by_ino).insert(inode.ino(), pin);
        });
        let at = at?;
        if let Some(e) = failed {
            // The file exists but is not a pin; take it away again.
            let _ = vfs.unlink_at(&Cred::root(), parent, name);
            return Err(e);
        }
        // Record the name (a Weak: memory only) now that the dentry exists.
        if let Some(p) = self.of_inode(at.inode()) {
            let _ = p.dentry.set(Arc::downgrade(at.dentry.arc()));
        }
        Ok(())
    }
}
