//! The bpf(2)-equivalent API: map and object commands with Linux's errno results.
//!
//! [`Bpf`] is one bpfvfs instance's BPF side: the id registry, the VFS it pins into, and
//! bpffs registered as filesystem type "bpf" and mounted at /sys/fs/bpf. Handles ([`Handle`])
//! play the role of file descriptors: each holds one reference and an access mode
//! (read-only / write-only / read-write), enforced on every map command.

use crate::bpffs::{pinned_object, BpfFs, BpfFsOptions, DebugKind};
use crate::expose::{Exposures, PinError, ViewFactory};
use crate::map::{Map, MapDef};
use crate::object::{BpfObject, ObjKind, Registry};
use crate::pin_outside::{HeldWatch, TruePins};
use crate::prog::{Link, Prog, ProgInfo};
use crate::uapi::*;
use bpfvfs_vfs::{oflags, Cred, Errno, FileSystem, PathRef, Result, Vfs, LOOKUP_FOLLOW};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// Access mode of a handle (the fd's f_mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    pub read: bool,
    pub write: bool,
}

impl Access {
    pub const RDWR: Access = Access {
        read: true,
        write: true,
    };
    pub const RDONLY: Access = Access {
        read: true,
        write: false,
    };
    pub const WRONLY: Access = Access {
        read: false,
        write: true,
    };

    /// bpf_get_file_flag: BPF_F_RDONLY / BPF_F_WRONLY (both: EINVAL).
    pub fn from_file_flags(flags: u32) -> Result<Access> {
        match (flags & BPF_F_RDONLY != 0, flags & BPF_F_WRONLY != 0) {
            (true, true) => Err(Errno::EINVAL),
            (true, false) => Ok(Access::RDONLY),
            (false, true) => Ok(Access::WRONLY),
            (false, false) => Ok(Access::RDWR),
        }
    }
}

/// A handle to an object: one reference plus an access mode.
#[derive(Clone, Debug)]
pub struct Handle {
    pub obj: BpfObject,
    pub access: Access,
}

impl Handle {
    pub fn map(&self) -> Result<&Arc<Map>> {
        self.obj.as_map()
    }
    fn readable_map(&self) -> Result<&Arc<Map>> {
        let m = self.obj.as_map()?;
        if !self.access.read || m.def().map_flags & BPF_F_WRONLY != 0 {
            return Err(Errno::EPERM);
        }
        Ok(m)
    }
    fn writable_map(&self) -> Result<&Arc<Map>> {
        let m = self.obj.as_map()?;
        if !self.access.write || m.def().map_flags & BPF_F_RDONLY != 0 {
            return Err(Errno::EPERM);
        }
        Ok(m)
    }
}

/// What obj_get_info_by_fd returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ObjInfo {
    Map {
        id: u32,
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
        name: String,
        memlock: u64,
        frozen: bool,
    },
    Prog {
        id: u32,
        #[serde(flatten)]
        info: ProgInfo,
    },
    Link {
        id: u32,
        prog_id: u32,
        attach_type: String,
        target: String,
        attached: bool,
        /// `bpf_map_elem` iterators: the map walked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        map_id: Option<u32>,
        /// `cgroup` iterators: the start group; view links: the group showing the view.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cgroup_id: Option<u64>,
        /// `cgroup` iterators: the walk order (uapi `enum bpf_cgroup_iter_order`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order: Option<u32>,
        /// View links: whether descendant groups inherit the view.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inherit: Option<bool>,
    },
}

/// The kernel's preloaded iterator programs (one pair per instance) and the links each bpffs
/// mount pins as maps.debug / progs.debug.
pub(crate) struct Preload {
    progs: Mutex<Option<(Arc<Prog>, Arc<Prog>)>>,
}

impl Preload {
    pub(crate) fn link(&self, kind: DebugKind, registry: &Arc<Registry>) -> Result<Arc<Link>> {
        let mut g = self.progs.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            let mk = |name: &str, attach: &str| {
                Prog::create(
                    ProgInfo {
                        prog_type: ProgType::Tracing.as_u32(),
                        name: name.to_string(),
                        tag: [0; 8],
                        insn_count: 0,
                        license: "GPL".to_string(),
                        map_ids: Vec::new(),
                        loaded_at: now_secs(),
                        uid: 0,
                        attach_to: attach.to_string(),
                        jited_len: 0,
                    },
                    None,
                    registry,
                )
            };
            *g = Some((
                mk("dump_bpf_map", "bpf_iter_bpf_map")?,
                mk("dump_bpf_prog", "bpf_iter_bpf_prog")?,
            ));
        }
        let (m, p) = g.as_ref().expect("just set");
        let prog = if kind == DebugKind::Maps {
            m.clone()
        } else {
            p.clone()
        };
        Link::create(
            prog,
            "iter",
            if kind == DebugKind::Maps {
                "bpf_map"
            } else {
                "bpf_prog"
            },
            None,
            registry,
        )
    }
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One bpfvfs instance's BPF side.
pub struct Bpf {
    vfs: Arc<Vfs>,
    registry: Arc<Registry>,
    /// Objects truly pinned outside bpffs (`pin_outside.rs`).
    true_pins: Arc<TruePins>,
    /// Files exposed in the cgroup tree (`expose.rs`).
    exposures: Arc<Exposures>,
}

impl Bpf {
    /// Register bpffs with `vfs` as type "bpf" and mount an instance at /sys/fs/bpf.
    pub fn new(vfs: Arc<Vfs>) -> Result<Arc<Bpf>> {
        crate::storage_api::attach_default(&vfs);
        let registry = Registry::new();
        let preload = Arc::new(Preload {
            progs: Mutex::new(None),
        });
        let (r, p) = (registry.clone(), preload.clone());
        vfs.register_fs_type(
            "bpf",
            Arc::new(move |opts: &str| {
                Ok(
                    Arc::new(BpfFs::new(BpfFsOptions::parse(opts)?, r.clone(), p.clone()))
                        as Arc<dyn FileSystem>,
                )
            }),
        );
        let root = Cred::root();
        for dir in [&b"/sys"[..], b"/sys/fs", b"/sys/fs/bpf"] {
            match vfs.mkdir(&root, None, dir, 0o755) {
                Ok(_) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
        vfs.mount_type(&root, "bpf", "", b"/sys/fs/bpf")?;
        Ok(Arc::new(Bpf {
            vfs,
            registry,
            true_pins: Arc::default(),
            exposures: Arc::default(),
        }))
    }

    pub fn vfs(&self) -> &Arc<Vfs> {
        &self.vfs
    }
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }
    /// The objects truly pinned outside bpffs.
    pub fn true_pins(&self) -> &Arc<TruePins> {
        &self.true_pins
    }
    /// The destruction watches pins outside bpffs hold (true pins, then exposures).
    pub fn held_watches(&self) -> Vec<HeldWatch> {
        let mut v = self.true_pins.held_watches(&self.vfs);
        v.extend(self.exposures.held_watches());
        v
    }
    /// The files exposed in the cgroup tree.
    pub fn exposures(&self) -> &Arc<Exposures> {
        &self.exposures
    }
    /// Install what turns a view program into the show function of an exposed file (the
    /// runtime does, as it knows how to run programs; this crate does not).
    pub fn set_view_factory(&self, f: ViewFactory) {
        self.exposures.views.set(f);
    }
    /// The reviewers' alternative to pinning in the cgroup tree: a "view" link from `prog`
    /// to the group directory `group_dir` that exposes a file named after the program
    /// (`expose.rs`). The runtime checks the program type first.
    pub fn view_link_create(
        &self,
        cred: &Cred,
        prog: &Handle,
        group_dir: &[u8],
        inherit: bool,
    ) -> std::result::Result<Handle, PinError> {
        self.exposures
            .view_link_create(self, cred, prog, group_dir, inherit, false)
    }
    /// `cgroup attach GROUP view PROG`: a view link the instance keeps (as the kernel keeps
    /// a BPF_PROG_ATTACH attachment) until [`Bpf::view_detach`] or the group's removal.
    pub fn view_attach(
        &self,
        cred: &Cred,
        prog: &Handle,
        group_dir: &[u8],
        inherit: bool,
    ) -> std::result::Result<Handle, PinError> {
        self.exposures
            .view_link_create(self, cred, prog, group_dir, inherit, true)
    }
    /// `cgroup detach GROUP view PROG`: drop the kept view link of program `prog_id`.
    pub fn view_detach(
        &self,
        cred: &Cred,
        group_dir: &[u8],
        prog_id: u32,
    ) -> std::result::Result<(), PinError> {
        self.exposures.view_detach(self, cred, group_dir, prog_id)
    }

    // ---- maps ----

    /// BPF_MAP_CREATE. Returns a read-write handle (or as the map's BPF_F_RDONLY/WRONLY say).
    pub fn map_create(&self, def: MapDef) -> Result<Handle> {
        let map = Map::create(def, &self.registry)?;
        Ok(Handle {
            obj: BpfObject::Map(map),
            access: Access::RDWR,
        })
    }

    pub fn map_lookup_elem(&self, h: &Handle, key: &[u8]) -> Result<Vec<u8>> {
        h.readable_map()?.lookup(key)
    }
    pub fn map_update_elem(&self, h: &Handle, key: &[u8], value: &[u8], flags: u64) -> Result<()> {
        h.writable_map()?.update(key, value, flags)
    }
    pub fn map_delete_elem(&self, h: &Handle, key: &[u8]) -> Result<()> {
        h.writable_map()?.delete(key)
    }
    pub fn map_get_next_key(&self, h: &Handle, key: Option<&[u8]>) -> Result<Vec<u8>> {
        h.readable_map()?.get_next_key(key)
    }
    /// BPF_MAP_FREEZE: no more writes from user space.
    pub fn map_freeze(&self, h: &Handle) -> Result<()> {
        h.writable_map()?.freeze();
        Ok(())
    }

    // ---- programs and links (loaded by the engine layer) ----

    /// Register a loaded program (the engine has verified it; `exec` is its runnable form).
    pub fn prog_add(
        &self,
        info: ProgInfo,
        exec: Option<Box<dyn std::any::Any + Send + Sync>>,
    ) -> Result<Handle> {
        Ok(Handle {
            obj: BpfObject::Prog(Prog::create(info, exec, &self.registry)?),
            access: Access::RDWR,
        })
    }

    /// Make a link holding `prog`; `detach` runs once when the link is detached or freed.
    pub fn link_create(
        &self,
        prog: &Handle,
        attach_type: &str,
        target: &str,
        detach: Option<crate::prog::Detach>,
    ) -> Result<Handle> {
        let p = prog.obj.as_prog()?.clone();
        Ok(Handle {
            obj: BpfObject::Link(Link::create(
                p,
                attach_type,
                target,
                detach,
                &self.registry,
            )?),
            access: Access::RDWR,
        })
    }

    // ---- objects ----

    /// BPF_OBJ_PIN: pin `h`'s object at `path` (absolute in the bpfvfs tree, or relative to
    /// `base`). The pin holds its own reference. In bpffs, a bpffs pin; in a filesystem
    /// that allows it, a true pin (`pin_outside.rs`); elsewhere EPERM.
    pub fn obj_pin(
        &self,
        cred: &Cred,
        h: &Handle,
        base: Option<&PathRef>,
        path: &[u8],
        file_flags: u32,
    ) -> Result<()> {
        self.obj_pin_detailed(cred, h, base, path, file_flags)
            .map_err(|e| e.errno())
    }

    /// `obj_pin` with the reason of a refusal (for messages at the edges).
    pub fn obj_pin_detailed(
        &self,
        cred: &Cred,
        h: &Handle,
        base: Option<&PathRef>,
        path: &[u8],
        file_flags: u32,
    ) -> std::result::Result<(), PinError> {
        if file_flags & !BPF_F_PATH_FD != 0 {
            return Err(Errno::EINVAL.into());
        }
        let (parent, last, trailing) = self.vfs.resolve_parent(cred, base, path)?;
        if trailing {
            return Err(Errno::ENOENT.into());
        }
        if last == b"." || last == b".." {
            return Err(Errno::EEXIST.into());
        }
        if self.vfs.lookup_at(cred, &parent, &last).is_ok() {
            return Err(Errno::EEXIST.into());
        }
        let sb = parent.inode().sb().clone();
        match sb.fs_type() {
            "bpf" => {
                self.vfs
                    .mkobj_at(cred, &parent, &last, 0o600, Box::new(h.obj.clone()))?;
                Ok(())
            }
            // A kernfs-like tree cannot hold a reference: expose instead (`expose.rs`).
            "cgroup2" => self
                .exposures
                .expose_pinned(self, cred, &parent, &last, &h.obj),
            _ if sb.fs().allows_true_pins() => Ok(self
                .true_pins
                .pin(&self.vfs, cred, &parent, &last, &h.obj)?),
            _ => Err(Errno::EPERM.into()),
        }
    }

    /// BPF_OBJ_GET: a new handle for the object pinned at `path` (symlinks followed).
    pub fn obj_get(
        &self,
        cred: &Cred,
        base: Option<&PathRef>,
        path: &[u8],
        file_flags: u32,
    ) -> Result<Handle> {
        if file_flags & !(BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_PATH_FD) != 0 {
            return Err(Errno::EINVAL);
        }
        let access = Access::from_file_flags(file_flags)?;
        let at = self.vfs.resolve(cred, base, path, LOOKUP_FOLLOW)?;
        let mut mask = 0;
        if access.read {
            mask |= bpfvfs_vfs::may::READ;
        }
        if access.write {
            mask |= bpfvfs_vfs::may::WRITE;
        }
        self.vfs.access_at(cred, &at, mask)?;
        let obj = self.object_at(at.inode()).ok_or(Errno::EACCES)?;
        match &obj {
            BpfObject::Link(_) if access != Access::RDWR => Err(Errno::EINVAL),
            BpfObject::Prog(_) => Ok(Handle {
                obj,
                access: Access::RDWR,
            }),
            _ => Ok(Handle { obj, access }),
        }
    }

    /// The object pinned at a resolved location (no access check; for the CLI's `pinned PATH`).
    pub fn pinned_at(&self, at: &PathRef) -> Result<BpfObject> {
        self.object_at(at.inode()).ok_or(Errno::EACCES)
    }

    /// The object pinned at `inode`: a bpffs pin, or a true pin in any other filesystem.
    pub fn object_at(&self, inode: &bpfvfs_vfs::Inode) -> Option<BpfObject> {
        if inode.sb().fs_type() == "bpf" {
            return pinned_object(inode);
        }
        self.true_pins.of_inode(inode)?.object()
    }

    /// BPF_OBJ_GET_INFO_BY_FD.
    pub fn obj_get_info(&self, h: &Handle) -> ObjInfo {
        info_of(&h.obj)
    }

    /// BPF_*_GET_NEXT_ID (privileged).
    pub fn get_next_id(&self, cred: &Cred, kind: ObjKind, start: u32) -> Result<u32> {
        if !cred.is_privileged() {
            return Err(Errno::EPERM);
        }
        self.registry.next_id(kind, start)
    }

    /// BPF_*_GET_FD_BY_ID (privileged).
    pub fn get_by_id(
        &self,
        cred: &Cred,
        kind: ObjKind,
        id: u32,
        file_flags: u32,
    ) -> Result<Handle> {
        if !cred.is_privileged() {
            return Err(Errno::EPERM);
        }
        if file_flags & !(BPF_F_RDONLY | BPF_F_WRONLY) != 0 {
            return Err(Errno::EINVAL);
        }
        let access = Access::from_file_flags(file_flags)?;
        let obj = self.registry.by_id(kind, id)?;
        Ok(Handle {
            obj,
            access: if kind == ObjKind::Map {
                access
            } else {
                Access::RDWR
            },
        })
    }

    /// Paths of bpffs pins of `id` under /sys/fs/bpf (bpftool's "pinned" lines).
    pub fn pinned_paths(&self, kind: ObjKind, id: u32) -> Vec<String> {
        let mut out = Vec::new();
        let root = Cred::root();
        if let Ok(at) = self.vfs.resolve(&root, None, b"/sys/fs/bpf", LOOKUP_FOLLOW) {
            self.walk_pins(&at, b"/sys/fs/bpf".to_vec(), kind, id, &mut out, 0);
        }
        out.extend(self.true_pinned_paths(kind, id));
        out
    }

    /// Paths of true pins of `id` outside bpffs (their creation names, following renames).
    pub fn true_pinned_paths(&self, kind: ObjKind, id: u32) -> Vec<String> {
        self.true_pins
            .all()
            .into_iter()
            .filter(|p| p.object().is_some_and(|o| o.kind() == kind && o.id() == id))
            .filter_map(|p| p.path(&self.vfs))
            .collect()
    }

    fn walk_pins(
        &self,
        dir: &PathRef,
        prefix: Vec<u8>,
        kind: ObjKind,
        id: u32,
        out: &mut Vec<String>,
        depth: u32,
    ) {
        if depth > 32 {
            return;
        }
        let root = Cred::root();
        let mut off = 0;
        while let Ok(ents) = self.vfs.readdir(dir, off, 256) {
            if ents.is_empty() {
                break;
            }
            for e in &ents {
                off = e.offset;
                if e.name == b"." || e.name == b".." {
                    continue;
                }
                let Ok(child) = self.vfs.lookup_at(&root, dir, &e.name) else {
                    continue;
                };
                let mut p = prefix.clone();
                p.push(b'/');
                p.extend_from_slice(&e.name);
                if child.inode().is_dir() {
                    self.walk_pins(&child, p, kind, id, out, depth + 1);
                } else if let Some(o) = pinned_object(child.inode()) {
                    if o.kind() == kind && o.id() == id {
                        out.push(String::from_utf8_lossy(&p).into_owned());
                    }
                }
            }
        }
    }

    /// Open flags check helper for callers that pass raw open flags.
    pub fn access_from_oflags(flags: i32) -> Access {
        match flags & oflags::O_ACCMODE {
            oflags::O_RDONLY => Access::RDONLY,
            oflags::O_WRONLY => Access::WRONLY,
            _ => Access::RDWR,
        }
    }
}

pub fn info_of(obj: &BpfObject) -> ObjInfo {
    match obj {
        BpfObject::Map(m) => {
            let d = m.def();
            ObjInfo::Map {
                id: m.id(),
                map_type: d.map_type,
                key_size: d.key_size,
                value_size: d.value_size,
                max_entries: d.max_entries,
                map_flags: d.map_flags,
                name: d.name.clone(),
                memlock: m.mem_usage(),
                frozen: m.is_frozen(),
            }
        }
        BpfObject::Prog(p) => ObjInfo::Prog {
            id: p.id(),
            info: p.info().clone(),
        },
        BpfObject::Link(l) => {
            use crate::prog::LinkDetails as D;
            let (mut map_id, mut cgroup_id, mut order, mut inherit) = (None, None, None, None);
            match l.details() {
                Some(D::IterMap { map_id: m }) => map_id = Some(m),
                Some(D::IterCgroup {
                    cgroup_id: c,
                    order: o,
                }) => {
                    cgroup_id = Some(c);
                    order = Some(o);
                }
                Some(D::View {
                    cgroup_id: c,
                    inherit: i,
                }) => {
                    cgroup_id = Some(c);
                    inherit = Some(i);
                }
                None => {}
            }
            ObjInfo::Link {
                id: l.id(),
                prog_id: l.prog().id(),
                attach_type: l.attach_type.clone(),
                target: l.target.clone(),
                attached: l.is_attached(),
                map_id,
                cgroup_id,
                order,
                inherit,
            }
        }
    }
}
