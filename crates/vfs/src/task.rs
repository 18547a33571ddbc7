//! The process an operation is done for (the kernel's `current`), as far as the VFS knows it.
//!
//! Operations reach the VFS on server threads (FUSE workers, the control socket), not in the
//! caller's context; the edge that accepted a request records who made it on the serving
//! thread before calling in, and hooks (and the programs they run) read it back. One thread
//! serves one request at a time, so a thread-local is exact.

use std::cell::Cell;

/// Who made the request being served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// Thread id of the caller (what the kernel reports as the pid of a task).
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
}

thread_local! {
    static CURRENT: Cell<Option<Caller>> = const { Cell::new(None) };
}

/// Record the caller of the request this thread is about to serve (`None`: the thread acts
/// for itself).
pub fn set_caller(c: Option<Caller>) {
    CURRENT.with(|cur| cur.set(c));
}

/// The caller of the request this thread is serving, if an edge recorded one.
pub fn caller() -> Option<Caller> {
    CURRENT.with(|cur| cur.get())
}
