//! Exposing objects in the cgroup tree (issue 9 item 3; Hao Luo's "exposing to kernfs").
//!
//! A kernfs-like tree cannot hold an object reference in its nodes (kernfs has no callback
//! when a node is freed), so a file there only *shows* an object that something else keeps
//! alive. Two ways to make one:
//!
//! - **obj_pin** at `/sys/fs/cgroup/GROUP/NAME` of an object already pinned in bpffs: the
//!   file holds no reference (its show function keeps a `Weak`); a destruction watch on
//!   every bpffs pin inode the object has at that moment removes the file when the last of
//!   them dies. An object with no bpffs pin is refused with EPERM
//!   ([`PinError::NoBpffsPin`]).
//! - **A view link** (the reviewers' alternative, `link_create` with the group's directory
//!   as target): the link holds the program; the file is named after the program; detaching
//!   or freeing the link (last handle or pin) removes the file. With `inherit`, the file
//!   appears in every existing and future descendant group.
//!
//! In both cases rmdir of the group removes the file (the tree does that); our record of it
//! is dropped from the tree's `on_remove` callback, which also cancels the watches. The
//! three removals (bpffs pin dies, group goes, link goes) may race in any order: each ends
//! in [`Rec::finish`], whose first caller wins (a swap), and `Exposure::remove` and
//! `DestroyWatch::cancel` are idempotent.
//!
//! ## Who holds what
//! - `Exposures::recs` holds each record (`Arc<Rec>`); the record holds the tree's
//!   `Exposure` handle and its destruction watches. Watch callbacks and link detach
//!   callbacks hold `Weak`s of the record and of the table, never the object.
//! - The exposed file's show function ([`ObjShow`]) holds a `Weak` of the object: reading a
//!   file whose object died fails with ENOENT, though it never outlives the last bpffs pin
//!   or the link anyway.
//!
//! ## What reading shows
//! The view factory `Runtime::new` installs ([`crate::Bpf::set_view_factory`]) turns a view
//! program into a [`SeqShow`] that runs it once for the file's group; an iterator link shows
//! its iterator's output; anything else fails with EIO and a log line saying why.

use crate::map::Map;
use crate::object::{BpfObject, ObjKind};
use crate::pin_outside::{state_name, HeldWatch};
use crate::prog::{Link, Prog};
use crate::sys::{Bpf, Handle};
use bpfvfs_cgroup::{tree_of, Cgroup, CgroupTree, Exposure, ExposureMeta, SeqShow};
use bpfvfs_vfs::{
    may, watch_destruction, Cred, DestroyWatch, Errno, Inode, PathRef, LOOKUP_DIRECTORY,
    LOOKUP_FOLLOW,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes what reading an exposed file of `obj` shows (a view program's runner), or None
/// when the object has no view. Installed by the runtime, which knows how to run programs.
pub type ViewFactory = Arc<dyn Fn(&BpfObject) -> Option<Arc<dyn SeqShow>> + Send + Sync>;

/// Why a pin or a view link in the cgroup tree was refused.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("object has no bpffs pin; pin it in /sys/fs/bpf first or attach a view link")]
    NoBpffsPin,
    #[error("no cgroup tree is mounted in this instance")]
    NoCgroupTree,
    #[error("not a cgroup directory")]
    NotAGroup,
    #[error("{}", .0.message())]
    Errno(#[from] Errno),
}

impl PinError {
    /// The errno bpf(2) would return.
    pub fn errno(&self) -> Errno {
        match self {
            PinError::NoBpffsPin | PinError::NoCgroupTree => Errno::EPERM,
            PinError::NotAGroup => Errno::ENOTDIR,
            PinError::Errno(e) => *e,
        }
    }
}

/// An object by `Weak` reference: what an exposed file may keep.
enum WeakObj {
    Map(Weak<Map>),
    Prog(Weak<Prog>),
    Link(Weak<Link>),
}

impl WeakObj {
    fn of(o: &BpfObject) -> WeakObj {
        match o {
            BpfObject::Map(m) => WeakObj::Map(Arc::downgrade(m)),
            BpfObject::Prog(p) => WeakObj::Prog(Arc::downgrade(p)),
            BpfObject::Link(l) => WeakObj::Link(Arc::downgrade(l)),
        }
    }
    fn upgrade(&self) -> Option<BpfObject> {
        Some(match self {
            WeakObj::Map(m) => BpfObject::Map(m.upgrade()?),
            WeakObj::Prog(p) => BpfObject::Prog(p.upgrade()?),
            WeakObj::Link(l) => BpfObject::Link(l.upgrade()?),
        })
    }
}

/// The installed view factory (set once the runtime exists; replaceable for tests).
#[derive(Default)]
pub(crate) struct Views(RwLock<Option<ViewFactory>>);

impl Views {
    pub(crate) fn set(&self, f: ViewFactory) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(f);
    }
    fn get(&self) -> Option<ViewFactory> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The show function of an exposed file: holds the object weakly, asks the view factory
/// at each open.
struct ObjShow {
    obj: WeakObj,
    views: Arc<Views>,
}

impl SeqShow for ObjShow {
    fn show(&self, group: &Arc<Cgroup>) -> Result<Vec<u8>, Errno> {
        let obj = self.obj.upgrade().ok_or(Errno::ENOENT)?;
        if let Some(s) = self.views.get().and_then(|f| f(&obj)) {
            drop(obj); // the view keeps what it needs for this one run
            return s.show(group);
        }
        if let BpfObject::Link(l) = &obj {
            if let Some(seq) = l.seq() {
                return seq.read_all();
            }
        }
        tracing::warn!(
            "read of exposed {:?} {} in cgroup {}: EIO, the object has no view (only view programs and iterator links are readable)",
            obj.kind(),
            obj.id(),
            group.path()
        );
        Err(Errno::EIO)
    }
}

/// One exposed file, as [`Exposures::list`] reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExposedInfo {
    /// "/sys/fs/cgroup/GROUP/NAME" (where it was exposed; inherited copies not listed).
    pub path: String,
    /// "pin" (obj_pin of a bpffs-pinned object) or "view-link".
    pub via: String,
    pub kind: ObjKind,
    pub id: u32,
    /// The file and its inherited copies still in the tree.
    pub copies: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum How {
    /// obj_pin of an object pinned in bpffs; lives as long as those pins.
    Pin,
    /// A view link; lives as long as the link is attached.
    ViewLink,
}

/// One exposed file (with its inherited copies).
struct Rec {
    how: How,
    kind: ObjKind,
    id: u32,
    group_id: u64,
    exposed_at: String,
    exposure: Exposure,
    /// bpffs pins still alive among those watched (`How::Pin`).
    pins_left: AtomicUsize,
    pin_paths: Vec<String>,
    watches: Mutex<Vec<DestroyWatch>>,
    /// A view link the instance itself keeps (`cgroup attach`: the attachment outlives the
    /// process that made it, as BPF_PROG_ATTACH's does), dropped by `finish`.
    held_link: Mutex<Option<Handle>>,
    done: AtomicBool,
}

impl Rec {
    /// Remove the file and forget the record (first caller wins; the others return).
    fn finish(self: &Arc<Self>, table: &Exposures) {
        if self.done.swap(true, Ordering::AcqRel) {
            return;
        }
        self.exposure.remove();
        let ws = std::mem::take(&mut *lock(&self.watches));
        for w in &ws {
            // A watch that is firing now (the pin died) just returns false.
            w.cancel();
        }
        lock(&table.recs).retain(|r| !Arc::ptr_eq(r, self));
        // Last: its detach comes back here and returns at the `done` check.
        let link = lock(&self.held_link).take();
        drop(link);
    }

    fn pin_gone(self: &Arc<Self>, table: &Exposures) {
        if self.pins_left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish(table);
        }
    }
}

/// The instance's exposed files.
#[derive(Default)]
pub struct Exposures {
    pub(crate) views: Arc<Views>,
    recs: Mutex<Vec<Arc<Rec>>>,
    /// Set once our `on_remove` callback is registered with the tree.
    hooked: OnceLock<()>,
}

impl Exposures {
    /// Register (once) the callback that drops the records of a removed group.
    fn hook(self: &Arc<Self>, tree: &CgroupTree) {
        let mut first = false;
        self.hooked.get_or_init(|| first = true);
        if !first {
            return;
        }
        let me = Arc::downgrade(self);
        tree.on_remove(Arc::new(move |g: &Arc<Cgroup>| {
            let Some(t) = me.upgrade() else { return };
            let gone: Vec<Arc<Rec>> = lock(&t.recs)
                .iter()
                .filter(|r| r.group_id == g.id())
                .cloned()
                .collect();
            for r in gone {
                r.finish(&t);
            }
        }));
    }

    /// How many exposed files this instance made are still there (records alive).
    pub fn count(&self) -> usize {
        lock(&self.recs).len()
    }

    /// The exposed files this instance made that are still there.
    pub fn list(&self) -> Vec<ExposedInfo> {
        lock(&self.recs)
            .iter()
            .map(|r| ExposedInfo {
                path: r.exposed_at.clone(),
                via: match r.how {
                    How::Pin => "pin",
                    How::ViewLink => "view-link",
                }
                .into(),
                kind: r.kind,
                id: r.id,
                copies: r.exposure.copies(),
            })
            .collect()
    }

    pub(crate) fn held_watches(&self) -> Vec<HeldWatch> {
        let recs: Vec<Arc<Rec>> = lock(&self.recs).clone();
        let mut out = Vec::new();
        for r in recs {
            let ws = lock(&r.watches);
            for (i, w) in ws.iter().enumerate() {
                out.push(HeldWatch {
                    purpose: "exposure".into(),
                    ino: w.ino(),
                    kind: r.kind,
                    id: r.id,
                    path: r.pin_paths.get(i).cloned(),
                    exposed_at: Some(r.exposed_at.clone()),
                    state: state_name(w.state()).into(),
                });
            }
        }
        out
    }

    /// The group whose directory is `dir`, with its tree.
    fn group_at(bpf: &Bpf, dir: &PathRef) -> Result<(Arc<CgroupTree>, Arc<Cgroup>), PinError> {
        let tree = tree_of(bpf.vfs()).ok_or(PinError::NoCgroupTree)?;
        if dir.inode().sb().fs_type() != "cgroup2" {
            return Err(PinError::NotAGroup);
        }
        let g = tree
            .of_inode(dir.inode().ino())
            .ok_or(PinError::NotAGroup)?;
        Ok((tree, g))
    }

    /// obj_pin in the cgroup tree: expose `obj` as `name` in the group at `parent`.
    pub(crate) fn expose_pinned(
        self: &Arc<Self>,
        bpf: &Bpf,
        cred: &Cred,
        parent: &PathRef,
        name: &[u8],
        obj: &BpfObject,
    ) -> Result<(), PinError> {
        let (tree, group) = Self::group_at(bpf, parent)?;
        bpf.vfs().access_at(cred, parent, may::WRITE | may::EXEC)?;
        let pins = bpffs_pins(bpf, obj);
        if pins.is_empty() {
            tracing::warn!(
                "obj_pin of {:?} {} in cgroup {}: refused, the object has no bpffs pin (pin it in /sys/fs/bpf first or attach a view link)",
                obj.kind(),
                obj.id(),
                group.path()
            );
            return Err(PinError::NoBpffsPin);
        }
        let show = Arc::new(ObjShow {
            obj: WeakObj::of(obj),
            views: self.views.clone(),
        });
        let exposure = tree.expose(&group, name, show, false)?;
        if let BpfObject::Prog(p) = obj {
            // For `cgroup tree`: a program exposed by pinning.
            exposure.set_meta(ExposureMeta {
                id: p.id(),
                attach_type: "pinned".into(),
                name: p.info().name.clone(),
            });
        }
        let rec = Arc::new(Rec {
            how: How::Pin,
            kind: obj.kind(),
            id: obj.id(),
            group_id: group.id(),
            exposed_at: exposed_path(&tree, &group, name),
            exposure,
            pins_left: AtomicUsize::new(pins.len()),
            pin_paths: pins.iter().map(|(p, _)| p.clone()).collect(),
            watches: Mutex::new(Vec::new()),
            held_link: Mutex::new(None),
            done: AtomicBool::new(false),
        });
        self.adopt(&tree, &group, &rec);
        for (_, inode) in &pins {
            let (r, t) = (Arc::downgrade(&rec), Arc::downgrade(self));
            let w = watch_destruction(inode, move |_| {
                if let (Some(r), Some(t)) = (r.upgrade(), t.upgrade()) {
                    r.pin_gone(&t);
                }
            });
            match w {
                Ok(w) => {
                    // finish() sets `done` before it takes the list under this lock, so
                    // either it sees this watch or we see `done` here.
                    let mut ws = lock(&rec.watches);
                    if rec.done.load(Ordering::Acquire) {
                        drop(ws);
                        w.cancel();
                    } else {
                        ws.push(w);
                    }
                }
                // That pin is being evicted right now: it counts as gone.
                Err(_) => rec.pin_gone(self),
            }
        }
        Ok(())
    }

    /// Put a new record in the table; drop it at once if its group went meanwhile (the
    /// tree's removal may have run before our callback could see the record).
    fn adopt(self: &Arc<Self>, tree: &CgroupTree, group: &Arc<Cgroup>, rec: &Arc<Rec>) {
        self.hook(tree);
        lock(&self.recs).push(rec.clone());
        if group.is_removed() {
            rec.finish(self);
        }
    }

    /// The reviewers' alternative: a view link from `prog` to the group directory at
    /// `group_dir` exposing a file named after the program (in every descendant too with
    /// `inherit`). Detaching or freeing the link removes it. With `keep`, the instance
    /// holds the link too, until [`Exposures::view_detach`] or the group's removal.
    pub(crate) fn view_link_create(
        self: &Arc<Self>,
        bpf: &Bpf,
        cred: &Cred,
        prog: &Handle,
        group_dir: &[u8],
        inherit: bool,
        keep: bool,
    ) -> Result<Handle, PinError> {
        let p = prog.obj.as_prog()?.clone();
        let at = bpf
            .vfs()
            .resolve(cred, None, group_dir, LOOKUP_FOLLOW | LOOKUP_DIRECTORY)?;
        let (tree, group) = Self::group_at(bpf, &at)?;
        bpf.vfs().access_at(cred, &at, may::WRITE | may::EXEC)?;
        let name = p.info().name.clone();
        let show = Arc::new(ObjShow {
            obj: WeakObj::Prog(Arc::downgrade(&p)),
            views: self.views.clone(),
        });
        let exposure = tree.expose(&group, name.as_bytes(), show, inherit)?;
        exposure.set_meta(ExposureMeta {
            id: p.id(),
            attach_type: "view".into(),
            name: name.clone(),
        });
        let rec = Arc::new(Rec {
            how: How::ViewLink,
            kind: ObjKind::Prog,
            id: p.id(),
            group_id: group.id(),
            exposed_at: exposed_path(&tree, &group, name.as_bytes()),
            exposure,
            pins_left: AtomicUsize::new(0),
            pin_paths: Vec::new(),
            watches: Mutex::new(Vec::new()),
            held_link: Mutex::new(None),
            done: AtomicBool::new(false),
        });
        self.adopt(&tree, &group, &rec);
        let (r, t) = (Arc::downgrade(&rec), Arc::downgrade(self));
        let detach: crate::prog::Detach = Box::new(move || {
            if let (Some(r), Some(t)) = (r.upgrade(), t.upgrade()) {
                r.finish(&t);
            }
        });
        let target = format!("{}{}", tree.mount_path(), group.path());
        let target = target.trim_end_matches('/');
        match bpf.link_create(prog, "view", target, Some(detach)) {
            Ok(h) => {
                if let Ok(l) = h.obj.as_link() {
                    l.set_details(crate::prog::LinkDetails::View {
                        cgroup_id: group.id(),
                        inherit,
                    });
                }
                if keep {
                    let mut held = lock(&rec.held_link);
                    if !rec.done.load(Ordering::Acquire) {
                        *held = Some(h.clone());
                    }
                }
                Ok(h)
            }
            Err(e) => {
                // The detach callback was dropped uncalled with the failed link.
                rec.finish(self);
                Err(e.into())
            }
        }
    }
}

impl Exposures {
    /// `cgroup detach GROUP view PROG`: drop the view link the instance keeps for program
    /// `prog_id` at the group directory `group_dir` (its file goes). ENOENT if none.
    pub(crate) fn view_detach(
        self: &Arc<Self>,
        bpf: &Bpf,
        cred: &Cred,
        group_dir: &[u8],
        prog_id: u32,
    ) -> Result<(), PinError> {
        let at = bpf
            .vfs()
            .resolve(cred, None, group_dir, LOOKUP_FOLLOW | LOOKUP_DIRECTORY)?;
        let (_, group) = Self::group_at(bpf, &at)?;
        bpf.vfs().access_at(cred, &at, may::WRITE | may::EXEC)?;
        let found: Option<Arc<Rec>> = lock(&self.recs)
            .iter()
            .find(|r| {
                r.how == How::ViewLink
                    && r.group_id == group.id()
                    && r.id == prog_id
                    && lock(&r.held_link).is_some()
            })
            .cloned();
        let r = found.ok_or(Errno::ENOENT)?;
        r.finish(self);
        Ok(())
    }
}

/// "/sys/fs/cgroup/a/b/NAME".
fn exposed_path(tree: &CgroupTree, g: &Cgroup, name: &[u8]) -> String {
    let mut s = tree.mount_path().to_string();
    let gp = g.path();
    if gp != "/" {
        s.push_str(&gp);
    }
    s.push('/');
    s.push_str(&String::from_utf8_lossy(name));
    s
}

/// Every bpffs pin of `obj` (any bpf mount), as (path, inode). Symlinks are not followed.
fn bpffs_pins(bpf: &Bpf, obj: &BpfObject) -> Vec<(String, Arc<Inode>)> {
    let vfs = bpf.vfs();
    let root = Cred::root();
    let mut out = Vec::new();
    for (path, fs_type, _) in vfs.mounts() {
        if fs_type != "bpf" {
            continue;
        }
        if let Ok(at) = vfs.resolve(&root, None, path.as_bytes(), LOOKUP_FOLLOW) {
            let prefix = if path == "/" { String::new() } else { path };
            walk(bpf, &at, prefix, obj, &mut out, 0);
        }
    }
    out
}

fn walk(
    bpf: &Bpf,
    dir: &PathRef,
    prefix: String,
    obj: &BpfObject,
    out: &mut Vec<(String, Arc<Inode>)>,
    depth: u32,
) {
    if depth > 64 {
        return;
    }
    let vfs = bpf.vfs();
    let root = Cred::root();
    let mut off = 0;
    while let Ok(ents) = vfs.readdir(dir, off, 256) {
        if ents.is_empty() {
            break;
        }
        for e in &ents {
            off = e.offset;
            if e.name == b"." || e.name == b".." {
                continue;
            }
            let Ok(child) = vfs.lookup_at(&root, dir, &e.name) else {
                continue;
            };
            let p = format!("{prefix}/{}", String::from_utf8_lossy(&e.name));
            let inode = child.inode();
            if inode.is_dir() {
                walk(bpf, &child, p, obj, out, depth + 1);
            } else if inode.is_symlink() {
                continue;
            } else if let Some(o) = crate::bpffs::pinned_object(inode) {
                if o.kind() == obj.kind() && o.id() == obj.id() {
                    // One watch per inode, whatever its hard links.
                    if !out.iter().any(|(_, i)| Arc::ptr_eq(i, inode)) {
                        out.push((p, inode.clone()));
                    }
                }
            }
        }
    }
}
