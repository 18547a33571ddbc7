//! bpffs: the BPF filesystem (kernel/bpf/inode.c) as a [`FileSystem`].
//!
//! Small because the VFS does the work: this file decides which operations bpffs allows
//! (mkdir, symlink, link, rename, unlink, rmdir; no regular files, no device nodes, no new
//! dotted names), and holds one object reference per pinned inode, whatever its hard links.
//! The reference is dropped when the inode is evicted (`evict_inode`, immediately, in the
//! evicting thread); the inode's memory and symlink body go later, after the grace period —
//! the split the kernel settled on in 2026.

use crate::map::Map;
use crate::object::{BpfObject, Registry};
use crate::prog::Link;
use bpfvfs_vfs::{
    Cred, Errno, File, FileSystem, Inode, NewInode, PathRef, Result, StatFs, SuperBlock, Vfs,
    S_IFDIR, S_IFMT, S_IFREG, S_ISVTX,
};
use std::any::Any;
use std::sync::{Arc, Mutex};

pub const BPF_FS_MAGIC: u64 = 0xcafe_4a11;

/// What a bpffs inode carries.
pub(crate) enum BpfNode {
    /// A pinned object; `None` once evicted.
    Obj(Mutex<Option<BpfObject>>),
    /// maps.debug / progs.debug: an iterator link pinned by the kernel at mount.
    Debug(DebugKind, Mutex<Option<Arc<Link>>>),
    /// Directories and symlinks.
    Plain,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DebugKind {
    Maps,
    Progs,
}

/// Mount options: mode=, uid=, gid= (unknown options are ignored, as the kernel does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BpfFsOptions {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Default for BpfFsOptions {
    fn default() -> Self {
        BpfFsOptions {
            mode: 0o777,
            uid: 0,
            gid: 0,
        }
    }
}

impl BpfFsOptions {
    pub fn parse(options: &str) -> Result<BpfFsOptions> {
        let mut o = BpfFsOptions::default();
        for opt in options.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
            match k {
                "mode" => o.mode = parse_u32(v, 8)? & 0o7777,
                "uid" => o.uid = parse_u32(v, 10)?,
                "gid" => o.gid = parse_u32(v, 10)?,
                _ => {}
            }
        }
        Ok(o)
    }
}

fn parse_u32(v: &str, radix: u32) -> Result<u32> {
    let v = v.trim();
    let parsed = if radix == 10 {
        v.parse::<u32>().ok()
    } else {
        u32::from_str_radix(v.trim_start_matches("0o"), radix).ok()
    };
    match parsed {
        Some(u) if u != u32::MAX => Ok(u),
        _ => Err(Errno::EINVAL),
    }
}

pub struct BpfFs {
    opts: BpfFsOptions,
    /// The preloaded iterator programs' links source (for maps.debug / progs.debug).
    preload: Arc<crate::sys::Preload>,
    registry: Arc<Registry>,
}

impl BpfFs {
    pub(crate) fn new(
        opts: BpfFsOptions,
        registry: Arc<Registry>,
        preload: Arc<crate::sys::Preload>,
    ) -> BpfFs {
        BpfFs {
            opts,
            preload,
            registry,
        }
    }

    /// bpf_lookup's rule: names with a dot are reserved, unless the directory's permission
    /// bits are all zero (how the kernel creates maps.debug itself).
    fn check_dot(dir: &Inode, name: &[u8]) -> Result<()> {
        if dir.mode() & 0o7777 != 0 && name.contains(&b'.') {
            return Err(Errno::EPERM);
        }
        Ok(())
    }

    fn node(
        sb: &Arc<SuperBlock>,
        attrs: &NewInode,
        link: Option<&[u8]>,
        node: BpfNode,
    ) -> Arc<Inode> {
        sb.alloc_inode(attrs, link, Box::new(node))
    }
}

/// The object pinned at `inode`, if it is a bpffs object inode (bpf_inode_type).
pub fn pinned_object(inode: &Inode) -> Option<BpfObject> {
    match inode.private::<BpfNode>()? {
        BpfNode::Obj(o) => o.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        BpfNode::Debug(_, l) => l
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .map(BpfObject::Link),
        BpfNode::Plain => None,
    }
}

impl FileSystem for BpfFs {
    fn fs_type(&self) -> &'static str {
        "bpf"
    }
    fn magic(&self) -> u64 {
        BPF_FS_MAGIC
    }
    fn fill_super(&self, sb: &Arc<SuperBlock>) -> Result<Arc<Inode>> {
        // The sticky bit is always added (bpf_fill_super).
        let attrs = NewInode {
            mode: S_IFDIR | S_ISVTX | self.opts.mode,
            uid: self.opts.uid,
            gid: self.opts.gid,
            rdev: 0,
        };
        let root = Self::node(sb, &attrs, None, BpfNode::Plain);
        root.set_nlink(2);
        Ok(root)
    }
    fn populate(&self, vfs: &Vfs, root: &PathRef) -> Result<()> {
        // populate_bpffs: two iterator links pinned root-owned, mode 0400, created while the
        // root's permission bits are zero so the dot rule does not apply.
        let saved = root.inode().mode();
        root.inode().set_mode(saved & !0o7777);
        let result = (|| {
            for (name, kind) in [
                (&b"maps.debug"[..], DebugKind::Maps),
                (&b"progs.debug"[..], DebugKind::Progs),
            ] {
                let link = self.preload.link(kind, &self.registry)?;
                vfs.mkobj_at(
                    &Cred::root(),
                    root,
                    name,
                    0o400,
                    Box::new(BpfNode::Debug(kind, Mutex::new(Some(link)))),
                )?;
            }
            Ok(())
        })();
        root.inode().set_mode(saved);
        result
    }
    fn statfs(&self, _sb: &SuperBlock) -> Result<StatFs> {
        Ok(StatFs {
            fs_type: BPF_FS_MAGIC,
            bsize: 4096,
            frsize: 4096,
            namelen: 255,
            ..Default::default()
        })
    }
    fn show_options(&self) -> String {
        let mut o = Vec::new();
        if self.opts.uid != 0 {
            o.push(format!("uid={}", self.opts.uid));
        }
        if self.opts.gid != 0 {
            o.push(format!("gid={}", self.opts.gid));
        }
        if self.opts.mode & !S_ISVTX & 0o7777 != 0o777 {
            o.push(format!("mode={:o}", self.opts.mode & 0o7777));
        }
        o.join(",")
    }

    fn lookup(
        &self,
        _sb: &Arc<SuperBlock>,
        dir: &Inode,
        name: &[u8],
    ) -> Result<Option<Arc<Inode>>> {
        Self::check_dot(dir, name)?;
        Ok(None)
    }
    fn create(
        &self,
        _sb: &Arc<SuperBlock>,
        dir: &Inode,
        name: &[u8],
        _attrs: &NewInode,
    ) -> Result<Arc<Inode>> {
        Self::check_dot(dir, name)?;
        // No .create: the VFS's lookup_open answers EACCES.
        Err(Errno::EACCES)
    }
    fn mknod(
        &self,
        _sb: &Arc<SuperBlock>,
        dir: &Inode,
        name: &[u8],
        _attrs: &NewInode,
    ) -> Result<Arc<Inode>> {
        Self::check_dot(dir, name)?;
        Err(Errno::EPERM)
    }
    fn mkdir(
        &self,
        sb: &Arc<SuperBlock>,
        dir: &Inode,
        name: &[u8],
        attrs: &NewInode,
    ) -> Result<Arc<Inode>> {
        Self::check_dot(dir, name)?;
        let i = Self::node(sb, attrs, None, BpfNode::Plain);
        i.set_nlink(2);
        dir.inc_nlink();
        dir.touch_modified();
        Ok(i)
    }
    fn symlink(
        &self,
        sb: &Arc<SuperBlock>,
        dir: &Inode,
        name: &[u8],
        target: &[u8],
        attrs: &NewInode,
    ) -> Result<Arc<Inode>> {
        Self::check_dot(dir, name)?;
        let i = Self::node(sb, attrs, Some(target), BpfNode::Plain);
        dir.touch_modified();
        Ok(i)
    }
    fn mkobj(
        &self,
        sb: &Arc<SuperBlock>,
        dir: &Inode,
        name: &[u8],
        attrs: &NewInode,
        payload: Box<dyn Any + Send + Sync>,
    ) -> Result<Arc<Inode>> {
        Self::check_dot(dir, name)?;
        let node = match payload.downcast::<BpfObject>() {
            Ok(obj) => BpfNode::Obj(Mutex::new(Some(*obj))),
            Err(other) => match other.downcast::<BpfNode>() {
                Ok(n) => *n,
                Err(_) => return Err(Errno::EINVAL),
            },
        };
        let i = Self::node(sb, attrs, None, node);
        dir.touch_modified();
        Ok(i)
    }
    fn setattr(&self, inode: &Inode, attr: &bpfvfs_vfs::SetAttr) -> Result<()> {
        if attr.size.is_some_and(|s| s != 0) {
            return Err(Errno::EPERM);
        }
        bpfvfs_vfs::generic_setattr(inode, attr);
        Ok(())
    }

    fn open(&self, inode: &Inode, _flags: i32) -> Result<Box<dyn Any + Send + Sync>> {
        match inode.private::<BpfNode>() {
            Some(BpfNode::Debug(kind, _)) => {
                Ok(Box::new(debug_text(*kind, &self.registry).into_bytes()))
            }
            // An iterator link's pin is readable: each open runs the iterator once
            // (bpf_iter_link's bpffs file operations); the text is served at offsets.
            Some(BpfNode::Obj(o)) => {
                let seq = match &*o.lock().unwrap_or_else(|e| e.into_inner()) {
                    Some(BpfObject::Link(l)) => l.seq(),
                    _ => None,
                };
                match seq {
                    // Run outside the node's lock: the iterator may look at bpffs itself.
                    Some(seq) => Ok(Box::new(seq.read_all()?)),
                    // Program, link and map pins without BTF: EIO (bpffs_obj_open).
                    None => Err(Errno::EIO),
                }
            }
            _ if inode.mode() & S_IFMT == S_IFREG => Err(Errno::EIO),
            _ => Ok(Box::new(())),
        }
    }
    /// The debug (iterator) files are generated at open and report size 0, like the
    /// kernel's seq_file: they must be read without size-based caching.
    fn direct_io(&self, inode: &Inode) -> bool {
        match inode.private::<BpfNode>() {
            Some(BpfNode::Debug(..)) => true,
            Some(BpfNode::Obj(o)) => matches!(
                &*o.lock().unwrap_or_else(|e| e.into_inner()),
                Some(BpfObject::Link(l)) if l.seq().is_some()
            ),
            _ => false,
        }
    }
    fn read(&self, file: &File, buf: &mut [u8], offset: u64) -> Result<usize> {
        let text = file.private::<Vec<u8>>().ok_or(Errno::EINVAL)?;
        let off = offset.min(text.len() as u64) as usize;
        let n = buf.len().min(text.len() - off);
        buf[..n].copy_from_slice(&text[off..off + n]);
        Ok(n)
    }

    fn evict_inode(&self, inode: &Inode) {
        // Drop the pin's reference now; the inode's memory waits for the grace period.
        let released = match inode.private::<BpfNode>() {
            Some(BpfNode::Obj(o)) => o.lock().unwrap_or_else(|e| e.into_inner()).take(),
            Some(BpfNode::Debug(_, l)) => l
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .map(BpfObject::Link),
            _ => None,
        };
        drop(released);
    }
}

/// The text the kernel's preloaded iterators print (kernel/bpf/preload/iterators).
pub(crate) fn debug_text(kind: DebugKind, registry: &Registry) -> String {
    let mut s = String::new();
    match kind {
        DebugKind::Maps => {
            s.push_str("  id name             max_entries  cur_entries\n");
            for m in registry.maps() {
                s.push_str(&map_debug_line(&m));
            }
        }
        DebugKind::Progs => {
            s.push_str("  id name             attached\n");
            for p in registry.progs() {
                let i = p.info();
                s.push_str(&format!(
                    "{:4} {:<16} {} {}\n",
                    p.id(),
                    i.name,
                    i.attach_to,
                    ""
                ));
            }
        }
    }
    s
}

fn map_debug_line(m: &Map) -> String {
    format!(
        "{:4} {:<16}  {:10}   {:10}\n",
        m.id(),
        m.name(),
        m.def().max_entries as i32,
        m.ops().elem_count() as i64
    )
}
