//! Programs and links as objects. The eBPF engine (its own crate) supplies what a program
//! runs; this layer owns identity, references and attachment.

use crate::object::Registry;
use crate::uapi::ProgType;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::sync::{Arc, Mutex, OnceLock};

/// What `prog show` reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgInfo {
    pub prog_type: u32,
    pub name: String,
    /// First 8 bytes of the SHA-1 of the instructions, as the kernel's prog_tag.
    pub tag: [u8; 8],
    pub insn_count: u32,
    pub license: String,
    pub map_ids: Vec<u32>,
    /// Seconds since the epoch when loaded.
    pub loaded_at: u64,
    pub uid: u32,
    /// Attach point hint from the section name ("file_open", "vfs_read", ...).
    pub attach_to: String,
    /// Bytes of native code (0: interpreted).
    #[serde(default)]
    pub jited_len: u32,
}

pub struct Prog {
    id: u32,
    info: ProgInfo,
    /// The runnable form, supplied by the engine (opaque here).
    exec: Option<Box<dyn Any + Send + Sync>>,
    registry: Arc<Registry>,
}

impl Prog {
    pub(crate) fn create(
        info: ProgInfo,
        exec: Option<Box<dyn Any + Send + Sync>>,
        registry: &Arc<Registry>,
    ) -> bpfvfs_vfs::Result<Arc<Prog>> {
        crate::map::check_obj_name(&info.name)?;
        registry.add_prog(|id| Prog {
            id,
            info,
            exec,
            registry: registry.clone(),
        })
    }
    pub fn id(&self) -> u32 {
        self.id
    }
    pub fn info(&self) -> &ProgInfo {
        &self.info
    }
    pub fn prog_type(&self) -> Option<ProgType> {
        ProgType::from_u32(self.info.prog_type)
    }
    pub fn exec<T: Any>(&self) -> Option<&T> {
        self.exec.as_ref().and_then(|e| e.downcast_ref::<T>())
    }
}

impl Drop for Prog {
    fn drop(&mut self) {
        self.registry.remove_prog(self.id);
    }
}

impl std::fmt::Debug for Prog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Prog({} {})", self.id, self.info.name)
    }
}

/// What reading a pinned iterator link (or a truly pinned one outside bpffs) shows: the
/// whole text of one iterator run, generated at open (seq_file's role).
pub trait SeqSource: Send + Sync {
    fn read_all(&self) -> Result<Vec<u8>, bpfvfs_vfs::Errno>;
}

/// What a link's info reports beyond its attach type and target (the per-type part of
/// `struct bpf_link_info`), set once by whoever creates the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkDetails {
    /// An iterator over one map's elements (`iter.map.map_id`).
    IterMap { map_id: u32 },
    /// A cgroup iterator: its start group and walk order (`iter.cgroup`; the order is the
    /// uapi `enum bpf_cgroup_iter_order` value).
    IterCgroup { cgroup_id: u64, order: u32 },
    /// A bpfvfs view link: the group whose directory shows the view, and whether its
    /// descendants inherit it.
    View { cgroup_id: u64, inherit: bool },
}

/// Called once when a link goes away (its last reference, or an explicit detach).
pub type Detach = Box<dyn FnOnce() + Send>;

/// A program attached somewhere. Holds its program; detaches when dropped or detached.
pub struct Link {
    id: u32,
    prog: Arc<Prog>,
    /// "lsm", "fentry", "iter", ... and the target ("file_open", "/sys/fs/cgroup/a", ...).
    pub attach_type: String,
    pub target: String,
    detach: Mutex<Option<Detach>>,
    /// Set once, by whoever creates an iterator link, right after creation.
    seq: OnceLock<Arc<dyn SeqSource>>,
    /// Set once, by the creator, right after creation (before the link is handed out).
    details: OnceLock<LinkDetails>,
    registry: Arc<Registry>,
}

impl Link {
    pub(crate) fn create(
        prog: Arc<Prog>,
        attach_type: &str,
        target: &str,
        detach: Option<Detach>,
        registry: &Arc<Registry>,
    ) -> bpfvfs_vfs::Result<Arc<Link>> {
        registry.add_link(|id| Link {
            id,
            prog,
            attach_type: attach_type.to_string(),
            target: target.to_string(),
            detach: Mutex::new(detach),
            seq: OnceLock::new(),
            details: OnceLock::new(),
            registry: registry.clone(),
        })
    }
    pub fn id(&self) -> u32 {
        self.id
    }
    pub fn prog(&self) -> &Arc<Prog> {
        &self.prog
    }
    /// Detach now (BPF_LINK_DETACH); the link object lives on, defunct, while referenced.
    pub fn detach(&self) {
        let d = self.detach.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(d) = d {
            d()
        }
    }
    /// Make this an iterator link: reading its pin runs `s`. Only the first call counts (an
    /// iterator link's target never changes).
    pub fn set_seq(&self, s: Arc<dyn SeqSource>) {
        let _ = self.seq.set(s);
    }
    /// The iterator this link runs when read, if it is an iterator link.
    pub fn seq(&self) -> Option<Arc<dyn SeqSource>> {
        self.seq.get().cloned()
    }
    /// Record what the link's info reports about its target. Only the first call counts.
    pub fn set_details(&self, d: LinkDetails) {
        let _ = self.details.set(d);
    }
    /// What the creator recorded about the link's target, if anything.
    pub fn details(&self) -> Option<LinkDetails> {
        self.details.get().copied()
    }
    pub fn is_attached(&self) -> bool {
        self.detach
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.detach();
        self.registry.remove_link(self.id);
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Link({} prog {} {} {})",
            self.id,
            self.prog.id(),
            self.attach_type,
            self.target
        )
    }
}
