//! Kernel-object views: what LSM and tracing programs see of inodes, dentries, files and
//! superblocks, and what iterator and view programs see of BPF objects, cgroups and the
//! current task (`bpf_iter_meta`, `bpf_map`, `bpf_prog`, `bpf_link`, `cgroup`, `kernfs_node`,
//! `css_set`, `task_struct`).
//!
//! Programs are written against `include/bpfvfs/vmlinux.h`, which declares `struct inode`,
//! `struct dentry`, `struct file`, ... under the kernel's names and field names, in a layout of
//! our own. For each program run the runtime builds those structs ([`ViewArena`]) from the
//! VFS objects involved — a snapshot of the modelled fields, with pointers between views
//! (`dentry->d_inode`, `inode->i_sb`, `file->f_path.dentry`, the `d_parent` chain) — and lends
//! them to the run as read-only regions. The verifier knows the same layouts
//! ([`struct_specs`]): loading a field that is not modelled is refused at load time with the
//! field's name.
//!
//! Views are snapshots, not the objects: a program cannot write them, and what it reads is
//! what the inode looked like when the hook fired (the kernel's programs read live fields
//! under the locks the hook holds; for the fields modelled here that is the same value).
//!
//! Helpers that take an object (`bpf_inode_storage_get(map, inode, ...)`) get the view's
//! address and find the real object through the arena's table ([`ViewArena::inode_at`]), never
//! through a pointer stored in program-readable memory.

use bpfvfs_ebpf::verifier::{CtxField, StructSpec};
use bpfvfs_ebpf::{Region, RegionKind};
use bpfvfs_vfs::{Dentry, File, Inode, SuperBlock};
use std::sync::Arc;

/// Size of every view of a struct in vmlinux.h (inode, dentry, file, super_block).
pub const VIEW_WORDS: usize = 8;
/// Views per run (d_parent chains are cut at this depth: the last view's parent is itself).
/// A cgroup view takes three slots (its ancestors array), so a run reaching a group at level
/// L needs about 4 * (L + 1) slots.
pub const MAX_VIEWS: usize = 96;
/// `cgroup->ancestors[]` entries modelled: levels 0..CGROUP_ANCESTORS-1. Entries past the
/// group's own level point at the group (never NULL, never outside the view).
pub const CGROUP_ANCESTORS: usize = 16;
/// Bytes of names and strings a run keeps inline (more spill to the heap).
pub const NAME_BUF: usize = 4096;
/// Longest d_parent chain built.
pub const MAX_PARENT_DEPTH: usize = 16;

/// Field offsets of the views (bytes), as in vmlinux.h.
pub mod off {
    pub const SB_MAGIC: usize = 0;
    pub const SB_ID: usize = 8;
    pub const SB_DEV: usize = 40;

    pub const I_MODE: usize = 0;
    pub const I_UID: usize = 4;
    pub const I_GID: usize = 8;
    pub const I_FLAGS: usize = 12;
    pub const I_SB: usize = 16;
    pub const I_NLINK: usize = 24;
    pub const I_INO: usize = 32;
    pub const I_SIZE: usize = 40;

    pub const D_FLAGS: usize = 0;
    pub const D_PARENT: usize = 8;
    pub const D_NAME_HASH: usize = 16;
    pub const D_NAME_LEN: usize = 20;
    pub const D_NAME_NAME: usize = 24;
    pub const D_INODE: usize = 32;
    pub const D_SB: usize = 40;

    pub const F_PATH_MNT: usize = 0;
    pub const F_PATH_DENTRY: usize = 8;
    pub const F_INODE: usize = 16;
    pub const F_FLAGS: usize = 24;
    pub const F_MODE: usize = 28;
    pub const F_POS: usize = 32;

    pub const IA_VALID: usize = 0;
    pub const IA_MODE: usize = 4;
    pub const IA_UID: usize = 8;
    pub const IA_GID: usize = 12;
    pub const IA_SIZE: usize = 16;

    pub const PATH_MNT: usize = 0;
    pub const PATH_DENTRY: usize = 8;

    pub const META_SEQ: usize = 0;
    pub const META_SESSION_ID: usize = 8;
    pub const META_SEQ_NUM: usize = 16;

    pub const MAP_ID: usize = 0;
    pub const MAP_NAME: usize = 4;
    pub const MAP_MAX_ENTRIES: usize = 20;
    pub const MAP_TYPE: usize = 24;
    pub const MAP_KEY_SIZE: usize = 28;
    pub const MAP_VALUE_SIZE: usize = 32;

    pub const AUX_ID: usize = 0;
    pub const AUX_NAME: usize = 4;
    pub const AUX_ATTACH_FUNC_NAME: usize = 24;

    pub const PROG_LEN: usize = 0;
    pub const PROG_TYPE: usize = 4;
    pub const PROG_AUX: usize = 8;

    pub const LINK_ID: usize = 0;
    pub const LINK_TYPE: usize = 4;
    pub const LINK_PROG: usize = 8;

    pub const KN_PARENT: usize = 0;
    pub const KN_NAME: usize = 8;
    pub const KN_ID: usize = 16;

    pub const CGRP_KN: usize = 0;
    pub const CGRP_LEVEL: usize = 8;
    pub const CGRP_ANCESTORS: usize = 16;

    pub const CSS_DFL_CGRP: usize = 0;

    pub const TASK_PID: usize = 0;
    pub const TASK_TGID: usize = 4;
    pub const TASK_CGROUPS: usize = 8;
    pub const TASK_COMM: usize = 16;
}

/// The verifier's description of the vmlinux.h structs.
pub fn struct_specs() -> Vec<StructSpec> {
    use off::*;
    let s = CtxField::scalar;
    let p = CtxField::ptr;
    let view = (VIEW_WORDS * 8) as u32;
    vec![
        StructSpec {
            name: "super_block".into(),
            size: view,
            fields: vec![
                s("s_magic", SB_MAGIC as u32, 8),
                s("s_id", SB_ID as u32, 32),
                s("s_dev", SB_DEV as u32, 4),
            ],
        },
        StructSpec {
            name: "inode".into(),
            size: view,
            fields: vec![
                s("i_mode", I_MODE as u32, 2),
                s("i_uid", I_UID as u32, 4),
                s("i_gid", I_GID as u32, 4),
                s("i_flags", I_FLAGS as u32, 4),
                p("i_sb", I_SB as u32, "super_block", false),
                s("i_nlink", I_NLINK as u32, 4),
                s("i_ino", I_INO as u32, 8),
                s("i_size", I_SIZE as u32, 8),
            ],
        },
        StructSpec {
            name: "dentry".into(),
            size: view,
            fields: vec![
                s("d_flags", D_FLAGS as u32, 4),
                p("d_parent", D_PARENT as u32, "dentry", false),
                // hash and len (the kernel refuses an 8-byte hash_len read through BTF too).
                s("d_name.hash", D_NAME_HASH as u32, 4),
                s("d_name.len", D_NAME_LEN as u32, 4),
                // An address for bpf_probe_read_kernel_str, not a pointer the verifier tracks.
                s("d_name.name", D_NAME_NAME as u32, 8),
                p("d_inode", D_INODE as u32, "inode", true),
                p("d_sb", D_SB as u32, "super_block", false),
            ],
        },
        StructSpec {
            name: "file".into(),
            size: view,
            fields: vec![
                CtxField::unsupported(
                    "f_path.mnt",
                    F_PATH_MNT as u32,
                    8,
                    "struct vfsmount is not modelled",
                ),
                p("f_path.dentry", F_PATH_DENTRY as u32, "dentry", false),
                p("f_inode", F_INODE as u32, "inode", false),
                s("f_flags", F_FLAGS as u32, 4),
                s("f_mode", F_MODE as u32, 4),
                s("f_pos", F_POS as u32, 8),
            ],
        },
        StructSpec {
            name: "path".into(),
            size: 16,
            fields: vec![
                CtxField::unsupported("mnt", PATH_MNT as u32, 8, "struct vfsmount is not modelled"),
                p("dentry", PATH_DENTRY as u32, "dentry", false),
            ],
        },
        StructSpec {
            name: "iattr".into(),
            size: 24,
            fields: vec![
                s("ia_valid", IA_VALID as u32, 4),
                s("ia_mode", IA_MODE as u32, 2),
                s("ia_uid", IA_UID as u32, 4),
                s("ia_gid", IA_GID as u32, 4),
                s("ia_size", IA_SIZE as u32, 8),
            ],
        },
        // Opaque: only passed to the seq helpers.
        StructSpec {
            name: "seq_file".into(),
            size: 0,
            fields: vec![],
        },
        StructSpec {
            name: "bpf_iter_meta".into(),
            size: 24,
            fields: vec![
                p("seq", META_SEQ as u32, "seq_file", false),
                s("session_id", META_SESSION_ID as u32, 8),
                s("seq_num", META_SEQ_NUM as u32, 8),
            ],
        },
        StructSpec {
            name: "bpf_map".into(),
            size: 40,
            fields: vec![
                s("id", MAP_ID as u32, 4),
                s("name", MAP_NAME as u32, 16),
                s("max_entries", MAP_MAX_ENTRIES as u32, 4),
                s("map_type", MAP_TYPE as u32, 4),
                s("key_size", MAP_KEY_SIZE as u32, 4),
                s("value_size", MAP_VALUE_SIZE as u32, 4),
            ],
        },
        StructSpec {
            name: "bpf_prog_aux".into(),
            size: 32,
            fields: vec![
                s("id", AUX_ID as u32, 4),
                s("name", AUX_NAME as u32, 16),
                // An address for bpf_probe_read_kernel_str / %s.
                s("attach_func_name", AUX_ATTACH_FUNC_NAME as u32, 8),
            ],
        },
        StructSpec {
            name: "bpf_prog".into(),
            size: 16,
            fields: vec![
                s("len", PROG_LEN as u32, 4),
                s("type", PROG_TYPE as u32, 4),
                p("aux", PROG_AUX as u32, "bpf_prog_aux", false),
            ],
        },
        StructSpec {
            name: "bpf_link".into(),
            size: 16,
            fields: vec![
                s("id", LINK_ID as u32, 4),
                s("type", LINK_TYPE as u32, 4),
                p("prog", LINK_PROG as u32, "bpf_prog", false),
            ],
        },
        StructSpec {
            name: "kernfs_node".into(),
            size: 24,
            fields: vec![
                p("parent", KN_PARENT as u32, "kernfs_node", true),
                s("name", KN_NAME as u32, 8),
                s("id", KN_ID as u32, 8),
            ],
        },
        StructSpec {
            name: "cgroup".into(),
            size: (CGRP_ANCESTORS + 8 * CGROUP_ANCESTORS) as u32,
            fields: {
                let mut f = vec![
                    p("kn", CGRP_KN as u32, "kernfs_node", false),
                    s("level", CGRP_LEVEL as u32, 4),
                ];
                for i in 0..CGROUP_ANCESTORS {
                    f.push(p(
                        &format!("ancestors[{i}]"),
                        (CGRP_ANCESTORS + 8 * i) as u32,
                        "cgroup",
                        false,
                    ));
                }
                f
            },
        },
        StructSpec {
            name: "css_set".into(),
            size: 8,
            fields: vec![p("dfl_cgrp", CSS_DFL_CGRP as u32, "cgroup", false)],
        },
        StructSpec {
            name: "task_struct".into(),
            size: 32,
            fields: vec![
                s("pid", TASK_PID as u32, 4),
                s("tgid", TASK_TGID as u32, 4),
                p("cgroups", TASK_CGROUPS as u32, "css_set", false),
                s("comm", TASK_COMM as u32, 16),
            ],
        },
    ]
}

/// One group of a cgroup view's ancestor chain (root first), described by the crate that
/// knows cgroups: the view records `obj` so helpers find the group again from the address.
pub struct CgroupDesc<'a> {
    /// cgroup id = the kernfs node id.
    pub id: u64,
    pub name: &'a [u8],
    pub obj: Arc<dyn std::any::Any + Send + Sync>,
}

/// What a setattr changes (the kernel's `struct iattr`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Iattr {
    pub valid: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
}

/// `ATTR_*` bits of `ia_valid`.
pub mod attr {
    pub const MODE: u32 = 1 << 0;
    pub const UID: u32 = 1 << 1;
    pub const GID: u32 = 1 << 2;
    pub const SIZE: u32 = 1 << 3;
    pub const ATIME: u32 = 1 << 4;
    pub const MTIME: u32 = 1 << 5;
    pub const CTIME: u32 = 1 << 6;
}

/// Which parts of the views a program can reach (from the verifier's list of the struct
/// fields it reads): what no program load can observe is not built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs {
    /// `dentry->d_parent` is read: build the parent chain.
    pub parent: bool,
    /// `dentry->d_name.*` is read: copy names.
    pub names: bool,
    /// `file->f_path.dentry` or `path->dentry` is read.
    pub file_dentry: bool,
    /// `inode->i_sb` or `dentry->d_sb` is read.
    pub sb: bool,
    /// Any field of any view may be read: a field load the verifier saw, or a helper that
    /// reads memory through a pointer it is given (`bpf_probe_read_kernel` and the like,
    /// which a program can aim at a view without a visible field load). When false, views
    /// are zeroed blocks at distinct addresses: pointer comparisons and the object helpers
    /// (`bpf_inode_storage_get`, which finds the inode by the view's address) still work.
    pub fields: bool,
}

impl Needs {
    pub const NONE: Needs = Needs {
        parent: false,
        names: false,
        file_dentry: false,
        sb: false,
        fields: false,
    };

    pub fn union(self, o: Needs) -> Needs {
        Needs {
            parent: self.parent || o.parent,
            names: self.names || o.names,
            file_dentry: self.file_dentry || o.file_dentry,
            sb: self.sb || o.sb,
            fields: self.fields || o.fields,
        }
    }

    pub const ALL: Needs = Needs {
        parent: true,
        names: true,
        file_dentry: true,
        sb: true,
        fields: true,
    };

    /// Helpers that never read memory through a pointer argument a view could be: map
    /// operations (keys and values live on the stack or in maps), clocks, random numbers,
    /// the task and cgroup ids, `bpf_get_current_comm` (writes only), inode storage (finds the
    /// inode by address).
    const NO_VIEW_READS: [u32; 13] = [1, 2, 3, 5, 7, 8, 14, 15, 16, 80, 125, 145, 146];

    /// From the verifier's (struct, field) read list and the helpers the program calls.
    pub fn of_program(reads: &[(String, String)], helpers_used: &[u32]) -> Needs {
        let fields = !reads.is_empty()
            || helpers_used
                .iter()
                .any(|h| !Self::NO_VIEW_READS.contains(h));
        Needs {
            fields,
            ..Self::from_reads(reads)
        }
    }

    /// From the verifier's (struct, field) read list (`fields` set: any helper may read).
    pub fn from_reads(reads: &[(String, String)]) -> Needs {
        let has = |st: &str, f: &str| reads.iter().any(|(a, b)| a == st && b.starts_with(f));
        Needs {
            parent: has("dentry", "d_parent"),
            names: has("dentry", "d_name"),
            file_dentry: has("file", "f_path.dentry") || has("path", "dentry"),
            sb: has("inode", "i_sb") || has("dentry", "d_sb"),
            fields: true,
        }
    }
}

/// One run's views: a fixed block of words (so addresses never move while the run holds
/// them), the names `d_name.name` points to, and the table from view address to the object.
pub struct ViewArena {
    words: Box<[u64; MAX_VIEWS * VIEW_WORDS]>,
    used: usize,
    /// Names and strings, bump-allocated (NUL-terminated); `names_used` bytes are in use.
    name_buf: Box<[u8; NAME_BUF]>,
    names_used: usize,
    /// Strings that did not fit in `name_buf`.
    names: Vec<Box<[u8]>>,
    /// Inode views and their inodes, borrowed: kept alive by the caller for the run (a hook's
    /// arguments, or objects under its epoch guard), or by `held`.
    inodes: Vec<(u64, *const Inode)>,
    /// Inodes the arena keeps alive itself: those reached through `d_parent`, which no
    /// caller holds. Released at the end of the hook invocation (`release`).
    held: Vec<Arc<Inode>>,
    sbs: Vec<(u64, *const SuperBlock)>,
    needs: Needs,
    dentries: Vec<(u64, *const Dentry)>,
    /// Cgroup views: (address, id, the group as its crate gave it).
    cgroups: Vec<(u64, u64, Arc<dyn std::any::Any + Send + Sync>)>,
    /// The current task's view, when built for this run (bpf_get_current_task_btf).
    task: u64,
    /// The seq_file view of an iterator or view run.
    seq: u64,
    /// The caller's cgroup id, when looked up for this run (bpf_get_current_cgroup_id).
    current_cgroup: Option<u64>,
}

impl Default for ViewArena {
    fn default() -> Self {
        ViewArena::new()
    }
}

/// One view's bytes, filled field by field at constant offsets before it goes into the arena.
struct ViewBytes([u8; VIEW_WORDS * 8]);

impl ViewBytes {
    const ZERO: ViewBytes = ViewBytes([0; VIEW_WORDS * 8]);

    #[inline(always)]
    fn put(&mut self, off: usize, bytes: &[u8]) {
        self.0[off..off + bytes.len()].copy_from_slice(bytes);
    }
}

/// The view arena ran out of room (a hook with more objects than MAX_VIEWS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("more than {MAX_VIEWS} kernel-object views in one program run")]
pub struct ArenaFull;

impl ViewArena {
    pub fn new() -> ViewArena {
        ViewArena {
            words: Box::new([0; MAX_VIEWS * VIEW_WORDS]),
            used: 0,
            name_buf: Box::new([0; NAME_BUF]),
            names_used: 0,
            names: Vec::new(),
            inodes: Vec::new(),
            held: Vec::new(),
            sbs: Vec::new(),
            needs: Needs::ALL,
            dentries: Vec::new(),
            cgroups: Vec::new(),
            task: 0,
            seq: 0,
            current_cgroup: None,
        }
    }

    /// Forget every view (the memory is reused by the next run), and build only what
    /// `needs` says from now on.
    #[inline]
    pub fn reset(&mut self, needs: Needs) {
        self.clear();
        self.needs = needs;
    }

    /// Forget every view (the memory is reused by the next run).
    #[inline]
    pub fn clear(&mut self) {
        self.used = 0;
        self.names_used = 0;
        if !self.names.is_empty() {
            self.names.clear();
        }
        self.inodes.clear();
        self.release();
        self.sbs.clear();
        self.dentries.clear();
        self.task = 0;
        self.seq = 0;
        self.current_cgroup = None;
    }

    /// Drop the references the arena holds (inodes reached through `d_parent`, cgroups), so
    /// nothing stays alive past the invocation that built the views.
    #[inline]
    pub fn release(&mut self) {
        if !self.held.is_empty() || !self.cgroups.is_empty() {
            self.release_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn release_slow(&mut self) {
        self.held.clear();
        self.cgroups.clear();
    }

    fn alloc(&mut self, words: usize) -> Result<usize, ArenaFull> {
        let words = words.div_ceil(VIEW_WORDS) * VIEW_WORDS;
        if self.used + words > self.words.len() {
            return Err(ArenaFull);
        }
        let at = self.used;
        self.words[at..at + words].fill(0);
        self.used += words;
        Ok(at)
    }

    /// A view built on the stack (`ViewBytes`), copied in whole: no zero fill, no
    /// per-field bounds checks.
    #[inline]
    fn push_view(&mut self, v: &ViewBytes) -> Result<u64, ArenaFull> {
        let at = self.reserve_view()?;
        self.store_view(at, v);
        Ok(self.addr_of(at))
    }

    /// Room for one view, not yet written: the caller stores it whole (`store_view`) before
    /// the run.
    #[inline]
    fn reserve_view(&mut self) -> Result<usize, ArenaFull> {
        let at = self.used;
        if at + VIEW_WORDS > self.words.len() {
            return Err(ArenaFull);
        }
        self.used += VIEW_WORDS;
        Ok(at)
    }

    #[inline]
    fn store_view(&mut self, at: usize, v: &ViewBytes) {
        let dst: &mut [u64; VIEW_WORDS] = (&mut self.words[at..at + VIEW_WORDS])
            .try_into()
            .expect("a view's words");
        for (i, d) in dst.iter_mut().enumerate() {
            *d = u64::from_ne_bytes(v.0[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        }
    }

    fn addr_of(&self, word: usize) -> u64 {
        (self.words.as_ptr() as usize + word * 8) as u64
    }

    fn bytes_mut(&mut self, word: usize) -> &mut [u8] {
        let w = &mut self.words[word..word + VIEW_WORDS];
        // SAFETY: u64 words viewed as bytes; no padding, any byte pattern valid; the borrow
        // is carried over.
        unsafe { std::slice::from_raw_parts_mut(w.as_mut_ptr().cast::<u8>(), w.len() * 8) }
    }

    fn put(&mut self, word: usize, off: usize, bytes: &[u8]) {
        self.bytes_mut(word)[off..off + bytes.len()].copy_from_slice(bytes);
    }

    /// The view of `sb` (one per superblock per run).
    pub fn super_block(&mut self, sb: &Arc<SuperBlock>) -> Result<u64, ArenaFull> {
        let key = Arc::as_ptr(sb);
        if let Some((a, _)) = self.sbs.iter().find(|(_, p)| *p == key) {
            return Ok(*a);
        }
        let w = self.alloc(VIEW_WORDS)?;
        self.put(w, off::SB_MAGIC, &sb.magic().to_ne_bytes());
        let id = sb.fs_type().as_bytes();
        let n = id.len().min(31);
        self.put(w, off::SB_ID, &id[..n]);
        self.put(w, off::SB_DEV, &(sb.dev() as u32).to_ne_bytes());
        let a = self.addr_of(w);
        self.sbs.push((a, key));
        Ok(a)
    }

    /// The view of `inode` (one per inode per run: pointer equality holds between views).
    /// The view of `inode`, which the caller keeps alive for the run (the arena records its
    /// address, for helpers to find it: `inode_at`).
    pub fn inode(&mut self, inode: &Arc<Inode>) -> Result<u64, ArenaFull> {
        self.inode_view(inode, false)
    }

    /// `keep`: the arena holds a reference until `release` (no caller does).
    fn inode_view(&mut self, inode: &Arc<Inode>, keep: bool) -> Result<u64, ArenaFull> {
        let key = Arc::as_ptr(inode);
        if let Some((a, _)) = self.inodes.iter().find(|(_, i)| *i == key) {
            return Ok(*a);
        }
        let mut v = ViewBytes::ZERO;
        if self.needs.fields {
            let sb = if self.needs.sb {
                self.super_block(inode.sb())?
            } else {
                0
            };
            v.put(off::I_MODE, &(inode.mode() as u16).to_ne_bytes());
            v.put(off::I_UID, &inode.uid().to_ne_bytes());
            v.put(off::I_GID, &inode.gid().to_ne_bytes());
            v.put(off::I_SB, &sb.to_ne_bytes());
            v.put(off::I_NLINK, &inode.nlink().to_ne_bytes());
            v.put(off::I_INO, &inode.ino().to_ne_bytes());
            v.put(off::I_SIZE, &inode.size().to_ne_bytes());
        }
        let a = self.push_view(&v)?;
        self.inodes.push((a, key));
        if keep {
            self.held.push(inode.clone());
        }
        Ok(a)
    }

    /// A NUL-terminated copy of `b` the program may read (bpf_probe_read_kernel_str).
    pub fn string(&mut self, b: &[u8]) -> u64 {
        self.name(b)
    }

    fn name(&mut self, name: &[u8]) -> u64 {
        let need = name.len() + 1;
        if self.names_used + need <= NAME_BUF {
            let at = self.names_used;
            self.name_buf[at..at + name.len()].copy_from_slice(name);
            self.name_buf[at + name.len()] = 0;
            self.names_used += need;
            return (self.name_buf.as_ptr() as usize + at) as u64;
        }
        let mut b = Vec::with_capacity(need);
        b.extend_from_slice(name);
        b.push(0);
        let b = b.into_boxed_slice();
        let a = b.as_ptr() as u64;
        self.names.push(b);
        a
    }

    /// A dentry view for `name` under `parent`, positive (`inode`) or negative (`None`: the
    /// name an operation is about to create). Its `d_parent` chain is built up to
    /// [`MAX_PARENT_DEPTH`] levels; the root's (and the cut chain's last) parent is itself.
    pub fn dentry_for(
        &mut self,
        name: &[u8],
        parent: Option<&Arc<Dentry>>,
        inode: Option<&Arc<Inode>>,
        sb: &Arc<SuperBlock>,
    ) -> Result<u64, ArenaFull> {
        let w = self.reserve_view()?;
        let me = self.addr_of(w);
        if !self.needs.fields {
            self.store_view(w, &ViewBytes::ZERO);
            return Ok(me);
        }
        // Only what the programs read (`needs`), as for existing dentries.
        let parent_view = match parent {
            Some(p) if self.needs.parent => self.dentry_chain(p, 1)?,
            _ => me,
        };
        let inode_view = match inode {
            Some(i) => self.inode(i)?,
            None => 0,
        };
        let sb_view = if self.needs.sb {
            self.super_block(sb)?
        } else {
            0
        };
        let (name_at, hash) = if self.needs.names {
            (self.name(name), name_hash(name))
        } else {
            (0, 0)
        };
        let mut v = ViewBytes::ZERO;
        v.put(off::D_PARENT, &parent_view.to_ne_bytes());
        v.put(off::D_NAME_HASH, &hash.to_ne_bytes());
        v.put(off::D_NAME_LEN, &(name.len() as u32).to_ne_bytes());
        v.put(off::D_NAME_NAME, &name_at.to_ne_bytes());
        v.put(off::D_INODE, &inode_view.to_ne_bytes());
        v.put(off::D_SB, &sb_view.to_ne_bytes());
        self.store_view(w, &v);
        Ok(me)
    }

    /// The view of an existing (positive) dentry.
    /// The view of `d`, which the caller keeps valid for the run (a reference, or the epoch
    /// guard it was found under): the arena records its address.
    pub fn dentry(&mut self, d: &Dentry) -> Result<u64, ArenaFull> {
        self.dentry_chain(d, 0)
    }

    fn dentry_chain(&mut self, d: &Dentry, depth: usize) -> Result<u64, ArenaFull> {
        let key: *const Dentry = d;
        if let Some((a, _)) = self.dentries.iter().find(|(_, p)| *p == key) {
            return Ok(*a);
        }
        let w = self.reserve_view()?;
        let me = self.addr_of(w);
        self.dentries.push((me, key));
        if !self.needs.fields {
            self.store_view(w, &ViewBytes::ZERO);
            return Ok(me);
        }
        // Name and parent in one read; the name is copied straight into the arena.
        let (parent, name_at, len, hash) = if self.needs.parent || self.needs.names {
            let (want_parent, want_name) = (self.needs.parent, self.needs.names);
            d.with_parent_and_name(|p, name| {
                let p = match p {
                    Some(p)
                        if want_parent
                            && depth < MAX_PARENT_DEPTH
                            && !std::ptr::eq(Arc::as_ptr(p), d) =>
                    {
                        Some(p.clone())
                    }
                    _ => None,
                };
                if want_name {
                    (p, self.name(name), name.len(), name_hash(name))
                } else {
                    (p, 0, 0, 0)
                }
            })
        } else {
            (None, 0, 0, 0)
        };
        let parent = match parent {
            Some(p) => self.dentry_chain(&p, depth + 1)?,
            None => me,
        };
        // `d` itself is the caller's (it holds its inode); parents are held here.
        let inode = self.inode_view(d.inode(), depth > 0)?;
        let sb = if self.needs.sb {
            self.super_block(d.inode().sb())?
        } else {
            0
        };
        let mut v = ViewBytes::ZERO;
        v.put(off::D_PARENT, &parent.to_ne_bytes());
        v.put(off::D_NAME_HASH, &hash.to_ne_bytes());
        v.put(off::D_NAME_LEN, &(len as u32).to_ne_bytes());
        v.put(off::D_NAME_NAME, &name_at.to_ne_bytes());
        v.put(off::D_INODE, &inode.to_ne_bytes());
        v.put(off::D_SB, &sb.to_ne_bytes());
        self.store_view(w, &v);
        Ok(me)
    }

    /// The view of an open file.
    pub fn file(&mut self, f: &File) -> Result<u64, ArenaFull> {
        if !self.needs.fields {
            // No field readable: nothing behind it (f_inode included) is reachable.
            return self.push_view(&ViewBytes::ZERO);
        }
        let dentry = if self.needs.file_dentry {
            self.dentry(f.path().dentry.arc())?
        } else {
            0
        };
        let inode = self.inode(f.inode())?;
        let mut v = ViewBytes::ZERO;
        v.put(off::F_PATH_DENTRY, &dentry.to_ne_bytes());
        v.put(off::F_INODE, &inode.to_ne_bytes());
        v.put(off::F_FLAGS, &(f.flags() as u32).to_ne_bytes());
        let mut mode = 0u32;
        if f.readable() {
            mode |= 1; // FMODE_READ
        }
        if f.writable() {
            mode |= 2; // FMODE_WRITE
        }
        v.put(off::F_MODE, &mode.to_ne_bytes());
        self.push_view(&v)
    }

    /// A `struct path` for a positive dentry (kept valid by the caller, as for `dentry`).
    pub fn path(&mut self, d: &Dentry) -> Result<u64, ArenaFull> {
        let dentry = if self.needs.file_dentry {
            self.dentry(d)?
        } else {
            0
        };
        let w = self.alloc(2)?;
        self.put(w, off::PATH_DENTRY, &dentry.to_ne_bytes());
        Ok(self.addr_of(w))
    }

    /// A `struct iattr`.
    pub fn iattr(&mut self, a: &Iattr) -> Result<u64, ArenaFull> {
        let w = self.alloc(3)?;
        self.put(w, off::IA_VALID, &a.valid.to_ne_bytes());
        self.put(w, off::IA_MODE, &(a.mode as u16).to_ne_bytes());
        self.put(w, off::IA_UID, &a.uid.to_ne_bytes());
        self.put(w, off::IA_GID, &a.gid.to_ne_bytes());
        self.put(w, off::IA_SIZE, &a.size.to_ne_bytes());
        Ok(self.addr_of(w))
    }

    /// The run's `struct seq_file` (opaque: its address is what the seq helpers check).
    pub fn seq_file(&mut self) -> Result<u64, ArenaFull> {
        if self.seq == 0 {
            let w = self.alloc(1)?;
            self.seq = self.addr_of(w);
        }
        Ok(self.seq)
    }

    /// The seq_file view built for this run (0: none).
    pub fn seq_addr(&self) -> u64 {
        self.seq
    }

    /// A `struct bpf_iter_meta`.
    pub fn iter_meta(&mut self, session_id: u64, seq_num: u64) -> Result<u64, ArenaFull> {
        let seq = self.seq_file()?;
        let w = self.alloc(3)?;
        self.put(w, off::META_SEQ, &seq.to_ne_bytes());
        self.put(w, off::META_SESSION_ID, &session_id.to_ne_bytes());
        self.put(w, off::META_SEQ_NUM, &seq_num.to_ne_bytes());
        Ok(self.addr_of(w))
    }

    /// A `struct bpf_map`.
    pub fn bpf_map(&mut self, m: &bpfvfs_bpf::Map) -> Result<u64, ArenaFull> {
        let w = self.alloc(5)?;
        let d = m.def();
        self.put(w, off::MAP_ID, &m.id().to_ne_bytes());
        let name = m.name().as_bytes();
        self.put(w, off::MAP_NAME, &name[..name.len().min(15)]);
        self.put(w, off::MAP_MAX_ENTRIES, &d.max_entries.to_ne_bytes());
        self.put(w, off::MAP_TYPE, &d.map_type.to_ne_bytes());
        self.put(w, off::MAP_KEY_SIZE, &d.key_size.to_ne_bytes());
        self.put(w, off::MAP_VALUE_SIZE, &d.value_size.to_ne_bytes());
        Ok(self.addr_of(w))
    }

    /// A `struct bpf_prog` and its `bpf_prog_aux`.
    pub fn bpf_prog(&mut self, p: &bpfvfs_bpf::Prog) -> Result<u64, ArenaFull> {
        let info = p.info();
        let attach = self.name(info.attach_to.as_bytes());
        let aux = self.alloc(4)?;
        self.put(aux, off::AUX_ID, &p.id().to_ne_bytes());
        let name = info.name.as_bytes();
        self.put(aux, off::AUX_NAME, &name[..name.len().min(15)]);
        self.put(aux, off::AUX_ATTACH_FUNC_NAME, &attach.to_ne_bytes());
        let aux = self.addr_of(aux);
        let w = self.alloc(2)?;
        self.put(w, off::PROG_LEN, &info.insn_count.to_ne_bytes());
        self.put(w, off::PROG_TYPE, &info.prog_type.to_ne_bytes());
        self.put(w, off::PROG_AUX, &aux.to_ne_bytes());
        Ok(self.addr_of(w))
    }

    /// A `struct bpf_link` (type from its attach type: iter 4, lsm/fentry/fexit 2, the
    /// cgroup-attached kinds 3, else 0) and its program.
    pub fn bpf_link(&mut self, l: &bpfvfs_bpf::Link) -> Result<u64, ArenaFull> {
        let prog = self.bpf_prog(l.prog())?;
        let ty: u32 = match l.attach_type.as_str() {
            "iter" => 4,
            "lsm" | "fentry" | "fexit" | "tracing" => 2,
            "cgroup" | "view" => 3,
            _ => 0,
        };
        let w = self.alloc(2)?;
        self.put(w, off::LINK_ID, &l.id().to_ne_bytes());
        self.put(w, off::LINK_TYPE, &ty.to_ne_bytes());
        self.put(w, off::LINK_PROG, &prog.to_ne_bytes());
        Ok(self.addr_of(w))
    }

    /// The view of the last group of `chain` (root first), with a view per ancestor
    /// (`ancestors[i]`, `kn->parent`). One view per group per run.
    pub fn cgroup_chain(&mut self, chain: &[CgroupDesc<'_>]) -> Result<u64, ArenaFull> {
        let mut addrs: Vec<u64> = Vec::with_capacity(chain.len());
        let mut kns: Vec<u64> = Vec::with_capacity(chain.len());
        for (level, g) in chain.iter().enumerate() {
            if let Some((a, _, _)) = self.cgroups.iter().find(|(_, id, _)| *id == g.id) {
                let a = *a;
                // Its kernfs node view is the word its kn field points to.
                let kn = self.read_word(a, off::CGRP_KN);
                addrs.push(a);
                kns.push(kn);
                continue;
            }
            let name_at = self.name(g.name);
            let kn = self.alloc(3)?;
            let parent_kn = kns.last().copied().unwrap_or(0);
            self.put(kn, off::KN_PARENT, &parent_kn.to_ne_bytes());
            self.put(kn, off::KN_NAME, &name_at.to_ne_bytes());
            self.put(kn, off::KN_ID, &g.id.to_ne_bytes());
            let kn = self.addr_of(kn);
            let w = self.alloc(off::CGRP_ANCESTORS / 8 + CGROUP_ANCESTORS)?;
            let me = self.addr_of(w);
            let mut bytes = [0u8; off::CGRP_ANCESTORS + 8 * CGROUP_ANCESTORS];
            bytes[off::CGRP_KN..off::CGRP_KN + 8].copy_from_slice(&kn.to_ne_bytes());
            bytes[off::CGRP_LEVEL..off::CGRP_LEVEL + 4]
                .copy_from_slice(&(level as u32).to_ne_bytes());
            for i in 0..CGROUP_ANCESTORS {
                let a = addrs.get(i).copied().filter(|_| i < level).unwrap_or(me);
                let o = off::CGRP_ANCESTORS + 8 * i;
                bytes[o..o + 8].copy_from_slice(&a.to_ne_bytes());
            }
            self.put_wide(w, &bytes);
            self.cgroups.push((me, g.id, g.obj.clone()));
            addrs.push(me);
            kns.push(kn);
        }
        addrs.last().copied().ok_or(ArenaFull)
    }

    /// The group (as its crate gave it) whose view starts at `addr`.
    pub fn cgroup_at(&self, addr: u64) -> Option<&Arc<dyn std::any::Any + Send + Sync>> {
        self.cgroups
            .iter()
            .find(|(a, _, _)| *a == addr)
            .map(|(_, _, g)| g)
    }

    /// A `struct task_struct` whose `cgroups->dfl_cgrp` is the view `cgroup` (0: none);
    /// remembered as the run's current task.
    pub fn task(
        &mut self,
        pid: u32,
        tgid: u32,
        comm: &[u8; 16],
        cgroup: u64,
    ) -> Result<u64, ArenaFull> {
        let css = self.alloc(1)?;
        self.put(css, off::CSS_DFL_CGRP, &cgroup.to_ne_bytes());
        let css = self.addr_of(css);
        let w = self.alloc(4)?;
        self.put(w, off::TASK_PID, &pid.to_ne_bytes());
        self.put(w, off::TASK_TGID, &tgid.to_ne_bytes());
        self.put(w, off::TASK_CGROUPS, &css.to_ne_bytes());
        self.put(w, off::TASK_COMM, comm);
        self.task = self.addr_of(w);
        Ok(self.task)
    }

    /// Record the caller's cgroup id for this run.
    pub fn set_current_cgroup(&mut self, id: u64) {
        self.current_cgroup = Some(id);
    }

    /// The caller's cgroup id recorded for this run.
    pub fn current_cgroup(&self) -> Option<u64> {
        self.current_cgroup
    }

    /// A read-only copy of `b` the program may read (an iterator's key).
    pub fn bytes(&mut self, b: &[u8]) -> u64 {
        self.name(b)
    }

    /// The current task's view built for this run (0: none).
    pub fn task_addr(&self) -> u64 {
        self.task
    }

    /// Bytes for a view larger than [`VIEW_WORDS`] words, at word `w`.
    fn put_wide(&mut self, w: usize, bytes: &[u8]) {
        let words = bytes.len().div_ceil(8);
        let dst = &mut self.words[w..w + words];
        // SAFETY: u64 words viewed as bytes; any byte pattern is valid.
        let b = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<u8>(), words * 8) };
        b[..bytes.len()].copy_from_slice(bytes);
    }

    /// The word at byte `off` of the view at `addr` (an address this arena handed out).
    fn read_word(&self, addr: u64, off: usize) -> u64 {
        let base = self.words.as_ptr() as u64;
        let w = ((addr - base) as usize + off) / 8;
        self.words[w]
    }

    /// The inode whose view starts at `addr`, if any.
    /// Valid while the arena's views are (see `inodes`).
    pub fn inode_at(&self, addr: u64) -> Option<*const Inode> {
        self.inodes
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, i)| *i)
    }

    /// The views and names as read-only regions for one run.
    /// The views and names as regions written into `out[..n]`, returning `n`; None when
    /// they do not fit (names spilled to the heap): use [`ViewArena::regions`] then.
    pub fn regions_into<'a>(&'a self, out: &mut [Region<'a>]) -> Option<usize> {
        if !self.names.is_empty() || out.len() < 2 {
            return None;
        }
        let mut n = 0;
        if self.names_used > 0 {
            out[n] = Region::readonly(RegionKind::Other, &self.name_buf[..self.names_used]);
            n += 1;
        }
        if self.used > 0 {
            let bytes = &self.words[..self.used];
            // SAFETY: the words live in self, borrowed for the regions' lifetime.
            let b =
                unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<u8>(), bytes.len() * 8) };
            out[n] = Region::readonly(RegionKind::Other, b);
            n += 1;
        }
        Some(n)
    }

    pub fn regions(&self) -> Vec<Region<'_>> {
        let mut v = Vec::with_capacity(3 + self.names.len());
        if self.names_used > 0 {
            v.push(Region::readonly(
                RegionKind::Other,
                &self.name_buf[..self.names_used],
            ));
        }
        if self.used > 0 {
            let bytes = &self.words[..self.used];
            // SAFETY: the words live in self, borrowed for the regions' lifetime.
            let b =
                unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<u8>(), bytes.len() * 8) };
            v.push(Region::readonly(RegionKind::Other, b));
        }
        for n in &self.names {
            v.push(Region::readonly(RegionKind::Other, n));
        }
        v
    }
}

/// The dcache's name hash is ours to choose; this is a stable FNV-1a folded to 32 bits.
fn name_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in name {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

// SAFETY: the raw pointers in the tables are only compared, never dereferenced; the views
// and names are plain bytes.
unsafe impl Send for ViewArena {}

#[cfg(test)]
mod tests {
    use super::Needs;

    fn reads(r: &[(&str, &str)]) -> Vec<(String, String)> {
        r.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn views_are_filled_when_anything_could_read_them() {
        // Nothing read, only helpers that read no memory: nothing to fill.
        assert!(!Needs::of_program(&[], &[]).fields);
        assert!(!Needs::of_program(&[], &[1, 145, 146, 5]).fields);
        // A field load, or a helper that reads through a pointer (probe_read_kernel,
        // trace_printk's %s), needs the contents.
        assert!(Needs::of_program(&reads(&[("inode", "i_ino")]), &[]).fields);
        assert!(Needs::of_program(&[], &[113]).fields);
        assert!(Needs::of_program(&[], &[6]).fields);
        let n = Needs::of_program(&reads(&[("dentry", "d_parent")]), &[]);
        assert!(n.fields && n.parent && !n.names);
        // A union keeps whatever any program needs.
        assert!(Needs::NONE.union(Needs::of_program(&[], &[113])).fields);
    }
}
