//! # bpfvfs
//!
//! The daemon and command-line tool: `bpfvfs up DIR` serves a fresh VFS (memfs root) over
//! FUSE at DIR and answers a control socket ([`control`]); the other subcommands are clients
//! of that socket.

pub mod cli;
pub mod control;
pub mod daemon;
