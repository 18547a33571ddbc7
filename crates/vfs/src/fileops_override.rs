//! Per-inode file operations supplied by a layer above the VFS (issue 9's true pins).
//!
//! A layer that binds its own state to a regular file of any filesystem — a BPF object truly
//! pinned in memfs — must decide what opening and reading that one file does, without the
//! filesystem knowing. [`set_override`] registers a [`FileOpsOverride`] for one inode, in its
//! addons slot ([`AddonSlot::FileOps`]); from then on every open of the inode goes to the
//! override instead of `FileSystem::open`, and the resulting [`File`] remembers it, so its
//! reads, writes, fallocate, release and FUSE direct-I/O choice go to the override too. The
//! VFS's own checks (permissions, hooks, watch events) are unchanged: only the filesystem's
//! file_operations are replaced, as a character device's `f_op` replaces the filesystem's.
//!
//! Rules:
//! - Install-once: an override stays for the inode's life (it is freed with the inode's
//!   memory); a second `set_override` is EBUSY. A layer that needs state to die at eviction
//!   keeps it behind its own lock and clears it from a destruction watch.
//! - Install it before the inode is published ([`crate::Vfs::create_file_bound`]), or accept
//!   that files opened earlier keep the filesystem's operations.
//!
//! Cost when no override exists (every open of every other file): `finish_open` loads the
//! inode's addons pointer and branches on null; an inode with addons (watched, or carrying
//! local storage) costs one more load, of the slot. Reads and writes of ordinary files cost
//! one load and a not-taken branch on the `File` (its override cell is empty).

use crate::addons::AddonSlot;
use crate::errno::{Errno, Result};
use crate::file::File;
use crate::inode::Inode;
use crate::mount::PathRef;
use crate::ops::NewKind;
use crate::Vfs;
use std::any::Any;
use std::sync::Arc;

/// What a layer does instead of the filesystem for one inode's open files. Methods get the
/// `File` (its per-open state is what `open` returned: [`File::private`]).
pub trait FileOpsOverride: Send + Sync {
    /// Prepare per-open state (the VFS already checked access, ran the `file_open` hook).
    /// An error fails the open; nothing is released and no `IN_OPEN` is reported.
    fn open(&self, file: &File) -> Result<Box<dyn Any + Send + Sync>>;
    fn read(&self, file: &File, buf: &mut [u8], offset: u64) -> Result<usize>;
    /// Default: no write method (EINVAL, as a seq_file without `.write`).
    fn write(&self, file: &File, data: &[u8], offset: u64) -> Result<usize> {
        let _ = (file, data, offset);
        Err(Errno::EINVAL)
    }
    /// Default: the file has no space to reserve.
    fn fallocate(&self, file: &File, mode: i32, offset: u64, len: u64) -> Result<()> {
        let _ = (file, mode, offset, len);
        Err(Errno::EOPNOTSUPP)
    }
    /// Contents generated at open with a reported size of 0 (see `FileSystem::direct_io`).
    /// Default: true, which is what generated contents need.
    fn direct_io(&self) -> bool {
        true
    }
    /// The last handle of an opened file goes.
    fn release(&self, file: &File) {
        let _ = file;
    }
}

/// The installed value of [`AddonSlot::FileOps`].
struct Slot(Arc<dyn FileOpsOverride>);

/// Register `ov` for `inode`. EBUSY if the inode already has one (install-once).
pub fn set_override(inode: &Inode, ov: Arc<dyn FileOpsOverride>) -> Result<()> {
    let mine = Arc::as_ptr(&ov) as *const ();
    let v = inode
        .addons_or_alloc()
        .get_or_install(AddonSlot::FileOps, || Box::new(Slot(ov)));
    match v.downcast_ref::<Slot>() {
        Some(s) if std::ptr::eq(Arc::as_ptr(&s.0) as *const (), mine) => Ok(()),
        _ => Err(Errno::EBUSY),
    }
}

/// The override registered for `inode`, if any.
#[inline]
pub fn override_of(inode: &Inode) -> Option<&Arc<dyn FileOpsOverride>> {
    let a = inode.addons()?;
    Some(&a.get(AddonSlot::FileOps)?.downcast_ref::<Slot>()?.0)
}

impl Vfs {
    /// Create the regular file `name` in `parent` as `open(O_CREAT|O_EXCL)` would (name
    /// checks, permission, the `inode_create` hook, the filesystem's `create`, `IN_CREATE`),
    /// calling `bind` with the new inode under the directory lock before the name is
    /// published: no other thread can look the file up, open it or link it before `bind`
    /// has run (the place to [`set_override`] and arm a destruction watch). `mode` is the
    /// permission bits; the caller's umask applies.
    pub fn create_file_bound(
        &self,
        cred: &crate::types::Cred,
        parent: &PathRef,
        name: &[u8],
        mode: u32,
        bind: impl FnOnce(&Arc<Inode>),
    ) -> Result<PathRef> {
        let mut bind = Some(bind);
        let mut f = |i: &Arc<Inode>| {
            if let Some(b) = bind.take() {
                b(i)
            }
        };
        self.create_at_bound(cred, parent, name, NewKind::File, mode, Some(&mut f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{oflags, Cred};

    struct Fixed(&'static [u8]);
    impl FileOpsOverride for Fixed {
        fn open(&self, file: &File) -> Result<Box<dyn Any + Send + Sync>> {
            if file.flags() & oflags::O_ACCMODE != oflags::O_RDONLY {
                return Err(Errno::EACCES);
            }
            Ok(Box::new(self.0))
        }
        fn read(&self, file: &File, buf: &mut [u8], offset: u64) -> Result<usize> {
            let t: &&[u8] = file.private().ok_or(Errno::EINVAL)?;
            let off = (offset as usize).min(t.len());
            let n = buf.len().min(t.len() - off);
            buf[..n].copy_from_slice(&t[off..off + n]);
            Ok(n)
        }
    }

    #[test]
    fn bound_file_uses_the_override_and_others_do_not() {
        let vfs = Vfs::new_memfs();
        let root = Cred::root();
        let mut seen_count = None;
        let at = vfs
            .create_file_bound(&root, &vfs.root(), b"f", 0o644, |i| {
                seen_count = Some(i.ref_count());
                set_override(i, Arc::new(Fixed(b"generated\n"))).unwrap();
            })
            .unwrap();
        // bind ran before the dentry took the first reference (not yet published)
        assert_eq!(seen_count, Some(0));
        assert!(set_override(at.inode(), Arc::new(Fixed(b"x"))) == Err(Errno::EBUSY));
        assert_eq!(vfs.read_file(&root, b"/f").unwrap(), b"generated\n");
        let f = vfs.open(&root, None, b"/f", oflags::O_RDONLY, 0).unwrap();
        assert!(f.ops_override().is_some() && f.direct_io());
        assert_eq!(
            vfs.open(&root, None, b"/f", oflags::O_RDWR, 0).err(),
            Some(Errno::EACCES)
        );
        vfs.write_file(&root, b"/plain", b"data").unwrap();
        let p = vfs.open(&root, None, b"/plain", oflags::O_RDWR, 0).unwrap();
        assert!(p.ops_override().is_none() && !p.direct_io());
        assert_eq!(vfs.read_file(&root, b"/plain").unwrap(), b"data");
        // Same name again: EEXIST, bind not called.
        let mut called = false;
        assert_eq!(
            vfs.create_file_bound(&root, &vfs.root(), b"f", 0o644, |_| called = true)
                .err(),
            Some(Errno::EEXIST)
        );
        assert!(!called);
    }
}
