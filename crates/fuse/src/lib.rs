//! # bpfvfs-fuse
//!
//! The FUSE front end: serves an `Arc<bpfvfs_vfs::Vfs>` at a host directory with fuser.
//!
//! - **Node ids.** Inode numbers from the VFS are unique in the process, so a FUSE node id is
//!   the inode number, except that the VFS root and FUSE_ROOT_ID (1) are swapped. The node
//!   table ([`nodes`]) keeps, per node id the kernel knows, a [`bpfvfs_vfs::PathRef`] and the
//!   kernel's lookup count; `forget` drops the reference at zero, which is what lets an
//!   unlinked inode be evicted.
//! - **Permissions.** The VFS does every check with the caller's credentials ([`cred`]), and
//!   `access` is implemented. The mount also sets `default_permissions` (on by default in
//!   [`MountOptions`]) so the kernel checks cached path components too, which it otherwise
//!   skips for as long as the entry TTL lasts.
//! - **Open files.** A table maps each FUSE file handle to an `Arc<bpfvfs_vfs::File>`.
//! - **Invalidation.** Changes made to the tree other than by this mount's requests (the
//!   control socket, a filesystem's own entries, in-process calls) are sent to the kernel as
//!   cache invalidations by a notifier thread ([`inval`]), so they show at once instead of
//!   after the entry/attribute TTL.
//! - **Mounting.** [`mount`] mounts and serves on worker threads; [`MountHandle`] unmounts
//!   cleanly on [`MountHandle::unmount`] or drop (see that type for the auto_unmount dance).

pub mod cred;
mod fs;
pub mod inval;
mod mount;
pub mod nodes;

pub use fs::FuseStats;
pub use mount::{mount, Error, FuseMonitor, MountHandle, MountOptions};
