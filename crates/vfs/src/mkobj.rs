//! vfs_mkobj: create a filesystem object that carries an opaque payload (a pinned BPF object,
//! for bpffs). The VFS checks and locks as for any create; the filesystem decides whether it
//! takes such objects and what the payload means.

use crate::errno::{Errno, Result};
use crate::mount::PathRef;
use crate::types::*;
use crate::Vfs;
use std::any::Any;

impl Vfs {
    /// Create `name` in `parent` as a regular file of `mode` (permission bits; the caller's
    /// umask applies) carrying `payload`.
    pub fn mkobj_at(
        &self,
        cred: &Cred,
        parent: &PathRef,
        name: &[u8],
        mode: u32,
        payload: Box<dyn Any + Send + Sync>,
    ) -> Result<PathRef> {
        if name.is_empty() || name == b"." || name == b".." {
            return Err(Errno::EEXIST);
        }
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if name.contains(&b'/') {
            return Err(Errno::EINVAL);
        }
        let dir = parent.inode();
        if !dir.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let mut children = parent.dentry.lock_children()?;
        if parent.dentry.is_dead() || dir.nlink() == 0 {
            return Err(Errno::ENOENT);
        }
        if children.get(name).is_some() {
            return Err(Errno::EEXIST);
        }
        self.inode_permission(cred, dir, may::WRITE | may::EXEC)?;
        let attrs = crate::inode::NewInode {
            mode: S_IFREG | (mode & 0o7777 & !cred.umask),
            uid: cred.uid,
            gid: if dir.mode() & S_ISGID != 0 {
                dir.gid()
            } else {
                cred.gid
            },
            rdev: 0,
        };
        // vfs_mkobj asks security_inode_create, as any regular-file create.
        if let Some(h) = self.hooks() {
            h.inode_create(parent.dentry.arc(), name, attrs.mode)?;
        }
        let sb = dir.sb().clone();
        let inode = sb.fs().mkobj(&sb, dir, name, &attrs, payload)?;
        let d = self.d_add_locked(&mut children, &parent.dentry, name, &inode);
        // vfs_mkobj reports IN_CREATE like any create (a pin appearing in a watched dir).
        crate::fsnotify::notify_name(dir, crate::fsnotify::IN_CREATE, false, name, 0);
        self.note_entry(crate::changes::ChangeKind::Added, dir, name, &inode, true);
        drop(children);
        Ok(PathRef {
            mnt: parent.mnt.clone(),
            dentry: d,
        })
    }
}
