//! # bpfvfs
//!
//! The daemon and command-line tool: `bpfvfs up DIR` serves a fresh VFS (memfs root, bpffs
//! at /sys/fs/bpf) over FUSE at DIR and answers a control socket ([`control`]), one session
//! per connection with its own BPF handle table ([`session`]); the other subcommands are
//! clients of that socket: `stats`, and `map`/`prog`/`link` in bpftool's grammar and output
//! ([`bpftool`]).

pub mod bpftool;
pub mod cli;
pub mod control;
pub mod daemon;
pub mod session;
