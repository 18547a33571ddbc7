//! memfs: the in-memory filesystem, tmpfs-like, and bpfvfs's embedded default.
//!
//! Directories live in the dcache (the libfs model). Regular files keep their data in 4 KiB
//! pages held in a sparse map, so holes cost nothing and read back as zeros. Symlink targets
//! are stored by the VFS in the inode itself (inline when short). Space (`size=`) and inode
//! (`nr_inodes=`) limits are enforced with ENOSPC, as tmpfs does.

use crate::errno::{Errno, Result};
use crate::file::File;
use crate::inode::{Inode, NewInode};
use crate::sb::{generic_setattr, FileSystem, SuperBlock};
use crate::types::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub const TMPFS_MAGIC: u64 = 0x0102_1994;
const PAGE: usize = 4096;

#[derive(Clone, Debug)]
pub struct MemFsOptions {
    /// Bytes of file data allowed (0 = unlimited).
    pub max_bytes: u64,
    /// Inodes allowed (0 = unlimited).
    pub max_inodes: u64,
    /// Root directory mode, owner, group.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Default for MemFsOptions {
    fn default() -> Self {
        MemFsOptions {
            max_bytes: 0,
            max_inodes: 0,
            mode: 0o1777,
            uid: 0,
            gid: 0,
        }
    }
}

/// Parse a size like tmpfs does: plain bytes or with k/m/g suffix.
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&s[..s.len() - 1], 1 << 20),
        Some('g' | 'G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or(Errno::EINVAL)
}

/// The data of one regular file.
#[derive(Default)]
struct FileData {
    pages: BTreeMap<u64, Box<[u8; PAGE]>>,
}

enum Node {
    File(RwLock<FileData>),
    Other,
}

struct MemInode {
    node: Node,
    xattrs: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
}

pub struct MemFs {
    opts: MemFsOptions,
    pages_used: AtomicU64,
    inodes_used: AtomicU64,
}

impl MemFs {
    pub fn new(opts: MemFsOptions) -> MemFs {
        MemFs {
            opts,
            pages_used: AtomicU64::new(0),
            inodes_used: AtomicU64::new(0),
        }
    }

    /// From mount options: size=, nr_inodes=, mode=, uid=, gid=.
    pub fn from_options(options: &str) -> Result<MemFs> {
        let mut o = MemFsOptions::default();
        for opt in options.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
            match k {
                "size" => o.max_bytes = parse_size(v)?,
                "nr_inodes" => o.max_inodes = parse_size(v)?,
                "mode" => o.mode = u32::from_str_radix(v, 8).map_err(|_| Errno::EINVAL)? & 0o7777,
                "uid" => o.uid = v.parse().map_err(|_| Errno::EINVAL)?,
                "gid" => o.gid = v.parse().map_err(|_| Errno::EINVAL)?,
                _ => return Err(Errno::EINVAL),
            }
        }
        Ok(MemFs::new(o))
    }

    fn max_pages(&self) -> u64 {
        if self.opts.max_bytes == 0 {
            u64::MAX
        } else {
            self.opts.max_bytes.div_ceil(PAGE as u64)
        }
    }

    fn charge_pages(&self, n: u64) -> Result<()> {
        let max = self.max_pages();
        self.pages_used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= max)
            })
            .map(|_| ())
            .map_err(|_| Errno::ENOSPC)
    }

    fn uncharge_pages(&self, n: u64) {
        self.pages_used.fetch_sub(n, Ordering::AcqRel);
    }

    fn new_inode(
        &self,
        sb: &Arc<SuperBlock>,
        attrs: &NewInode,
        link: Option<&[u8]>,
    ) -> Result<Arc<Inode>> {
        let max = if self.opts.max_inodes == 0 {
            u64::MAX
        } else {
            self.opts.max_inodes
        };
        self.inodes_used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < max).then_some(u + 1)
            })
            .map_err(|_| Errno::ENOSPC)?;
        let node = if attrs.mode & S_IFMT == S_IFREG {
            Node::File(RwLock::new(FileData::default()))
        } else {
            Node::Other
        };
        Ok(sb.alloc_inode(
            attrs,
            link,
            Box::new(MemInode {
                node,
                xattrs: Mutex::new(HashMap::new()),
            }),
        ))
    }

    fn data(inode: &Inode) -> Result<&RwLock<FileData>> {
        match inode.private::<MemInode>() {
            Some(MemInode {
                node: Node::File(d),
                ..
            }) => Ok(d),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Drop pages wholly beyond `size` and zero the tail of the last partial page.
    fn truncate_data(&self, data: &mut FileData, size: u64) {
        let first_gone = size.div_ceil(PAGE as u64);
        let gone: Vec<u64> = data.pages.range(first_gone..).map(|(&k, _)| k).collect();
        for k in &gone {
            data.pages.remove(k);
        }
        self.uncharge_pages(gone.len() as u64);
        let tail = (size % PAGE as u64) as usize;
        if tail != 0 {
            if let Some(p) = data.pages.get_mut(&(size / PAGE as u64)) {
                p[tail..].fill(0);
            }
        }
    }

    fn write_at(
        &self,
        inode: &Inode,
        data: &mut FileData,
        buf: &[u8],
        offset: u64,
    ) -> Result<usize> {
        let end = offset.checked_add(buf.len() as u64).ok_or(Errno::EFBIG)?;
        if end > i64::MAX as u64 {
            return Err(Errno::EFBIG);
        }
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let idx = pos / PAGE as u64;
            let in_page = (pos % PAGE as u64) as usize;
            let n = (PAGE - in_page).min(buf.len() - done);
            if !data.pages.contains_key(&idx) {
                if let Err(e) = self.charge_pages(1) {
                    if done == 0 {
                        return Err(e);
                    }
                    break; // a short write, as the kernel returns when space runs out mid-way
                }
                data.pages.insert(idx, Box::new([0u8; PAGE]));
            }
            let page = data.pages.get_mut(&idx).expect("page just ensured");
            page[in_page..in_page + n].copy_from_slice(&buf[done..done + n]);
            done += n;
        }
        let new_end = offset + done as u64;
        if new_end > inode.size() {
            inode.set_size(new_end);
        }
        if done > 0 {
            inode.touch_modified();
        }
        Ok(done)
    }

    pub fn pages_used(&self) -> u64 {
        self.pages_used.load(Ordering::Acquire)
    }
}

impl FileSystem for MemFs {
    fn fs_type(&self) -> &'static str {
        "tmpfs"
    }
    fn magic(&self) -> u64 {
        TMPFS_MAGIC
    }
    fn fill_super(&self, sb: &Arc<SuperBlock>) -> Result<Arc<Inode>> {
        let attrs = NewInode {
            mode: S_IFDIR | self.opts.mode,
            uid: self.opts.uid,
            gid: self.opts.gid,
            rdev: 0,
        };
        let root = self.new_inode(sb, &attrs, None)?;
        root.set_nlink(2);
        Ok(root)
    }
    fn statfs(&self, _sb: &SuperBlock) -> Result<StatFs> {
        let total = if self.opts.max_bytes == 0 {
            u64::MAX / PAGE as u64 / 2
        } else {
            self.max_pages()
        };
        let used = self.pages_used();
        let files = if self.opts.max_inodes == 0 {
            u64::MAX / 2
        } else {
            self.opts.max_inodes
        };
        let iused = self.inodes_used.load(Ordering::Acquire);
        Ok(StatFs {
            fs_type: TMPFS_MAGIC,
            bsize: PAGE as u32,
            frsize: PAGE as u32,
            blocks: total,
            bfree: total.saturating_sub(used),
            bavail: total.saturating_sub(used),
            files,
            ffree: files.saturating_sub(iused),
            namelen: NAME_MAX as u32,
        })
    }
    fn show_options(&self) -> String {
        let mut o = vec![format!("mode={:o}", self.opts.mode)];
        if self.opts.max_bytes != 0 {
            o.push(format!("size={}k", self.opts.max_bytes / 1024));
        }
        if self.opts.max_inodes != 0 {
            o.push(format!("nr_inodes={}", self.opts.max_inodes));
        }
        if self.opts.uid != 0 {
            o.push(format!("uid={}", self.opts.uid));
        }
        if self.opts.gid != 0 {
            o.push(format!("gid={}", self.opts.gid));
        }
        o.join(",")
    }

    fn create(
        &self,
        sb: &Arc<SuperBlock>,
        dir: &Inode,
        _name: &[u8],
        attrs: &NewInode,
    ) -> Result<Arc<Inode>> {
        let i = self.new_inode(sb, attrs, None)?;
        dir.touch_modified();
        Ok(i)
    }
    fn mknod(
        &self,
        sb: &Arc<SuperBlock>,
        dir: &Inode,
        name: &[u8],
        attrs: &NewInode,
    ) -> Result<Arc<Inode>> {
        self.create(sb, dir, name, attrs)
    }
    fn mkdir(
        &self,
        sb: &Arc<SuperBlock>,
        dir: &Inode,
        _name: &[u8],
        attrs: &NewInode,
    ) -> Result<Arc<Inode>> {
        if dir.nlink() >= LINK_MAX {
            return Err(Errno::EMLINK);
        }
        let i = self.new_inode(sb, attrs, None)?;
        i.set_nlink(2);
        dir.inc_nlink();
        dir.touch_modified();
        Ok(i)
    }
    fn symlink(
        &self,
        sb: &Arc<SuperBlock>,
        dir: &Inode,
        _name: &[u8],
        target: &[u8],
        attrs: &NewInode,
    ) -> Result<Arc<Inode>> {
        // Long targets take a page of space, as tmpfs puts them in the page cache.
        if target.len() > crate::inode::SymlinkBody::INLINE_MAX {
            self.charge_pages(1)?;
        }
        match self.new_inode(sb, attrs, Some(target)) {
            Ok(i) => {
                dir.touch_modified();
                Ok(i)
            }
            Err(e) => {
                if target.len() > crate::inode::SymlinkBody::INLINE_MAX {
                    self.uncharge_pages(1);
                }
                Err(e)
            }
        }
    }

    fn setattr(&self, inode: &Inode, attr: &SetAttr) -> Result<()> {
        if let Some(size) = attr.size {
            let data = Self::data(inode)?;
            let mut d = data.write().unwrap_or_else(|e| e.into_inner());
            if size < inode.size() {
                self.truncate_data(&mut d, size);
            }
            inode.set_size(size);
        }
        generic_setattr(inode, attr);
        Ok(())
    }

    fn getattr(&self, inode: &Inode) -> Stat {
        let mut st = inode.generic_stat();
        st.blocks = match inode.private::<MemInode>() {
            Some(MemInode {
                node: Node::File(d),
                ..
            }) => {
                d.read().unwrap_or_else(|e| e.into_inner()).pages.len() as u64 * (PAGE as u64 / 512)
            }
            _ if inode.is_symlink() && inode.link_body().is_some_and(|b| !b.is_inline()) => {
                PAGE as u64 / 512
            }
            _ => 0,
        };
        if inode.is_dir() {
            st.size = 4096.max(st.size);
        }
        st
    }

    fn read(&self, file: &File, buf: &mut [u8], offset: u64) -> Result<usize> {
        let inode = file.inode();
        let data = Self::data(inode)?.read().unwrap_or_else(|e| e.into_inner());
        let size = inode.size();
        if offset >= size {
            return Ok(0);
        }
        let n = (size - offset).min(buf.len() as u64) as usize;
        let mut done = 0;
        while done < n {
            let pos = offset + done as u64;
            let idx = pos / PAGE as u64;
            let in_page = (pos % PAGE as u64) as usize;
            let k = (PAGE - in_page).min(n - done);
            match data.pages.get(&idx) {
                Some(p) => buf[done..done + k].copy_from_slice(&p[in_page..in_page + k]),
                None => buf[done..done + k].fill(0),
            }
            done += k;
        }
        Ok(n)
    }

    fn write(&self, file: &File, buf: &[u8], offset: u64) -> Result<usize> {
        let inode = file.inode();
        let mut data = Self::data(inode)?
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let offset = if file.flags() & oflags::O_APPEND != 0 {
            inode.size()
        } else {
            offset
        };
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.write_at(inode, &mut data, buf, offset)?;
        // Writing clears set-user-ID (and group-executable set-group-ID), as file_remove_privs.
        let m = inode.mode();
        if m & S_ISUID != 0 || (m & S_ISGID != 0 && m & 0o010 != 0) {
            inode.set_mode(m & !(S_ISUID | if m & 0o010 != 0 { S_ISGID } else { 0 }));
        }
        Ok(n)
    }

    fn fallocate(&self, inode: &Inode, mode: i32, offset: u64, len: u64) -> Result<()> {
        const KEEP_SIZE: i32 = 1;
        if mode & !KEEP_SIZE != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= i64::MAX as u64)
            .ok_or(Errno::EFBIG)?;
        let mut d = Self::data(inode)?
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let first = offset / PAGE as u64;
        let last = (end - 1) / PAGE as u64;
        let missing: Vec<u64> = (first..=last)
            .filter(|i| !d.pages.contains_key(i))
            .collect();
        self.charge_pages(missing.len() as u64)?;
        for i in missing {
            d.pages.insert(i, Box::new([0u8; PAGE]));
        }
        if mode & KEEP_SIZE == 0 && end > inode.size() {
            inode.set_size(end);
        }
        inode.touch_changed();
        Ok(())
    }

    fn getxattr(&self, inode: &Inode, name: &[u8]) -> Result<Vec<u8>> {
        let m = inode.private::<MemInode>().ok_or(Errno::EOPNOTSUPP)?;
        m.xattrs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .ok_or(Errno::ENODATA)
    }
    fn setxattr(&self, inode: &Inode, name: &[u8], value: &[u8], flags: i32) -> Result<()> {
        const XATTR_CREATE: i32 = 1;
        const XATTR_REPLACE: i32 = 2;
        if !(name.starts_with(b"user.")
            || name.starts_with(b"trusted.")
            || name.starts_with(b"security."))
        {
            return Err(Errno::EOPNOTSUPP);
        }
        if name.len() > 255 {
            return Err(Errno::ERANGE);
        }
        if value.len() > 65536 {
            return Err(Errno::E2BIG);
        }
        let m = inode.private::<MemInode>().ok_or(Errno::EOPNOTSUPP)?;
        let mut x = m.xattrs.lock().unwrap_or_else(|e| e.into_inner());
        let exists = x.contains_key(name);
        if flags & XATTR_CREATE != 0 && exists {
            return Err(Errno::EEXIST);
        }
        if flags & XATTR_REPLACE != 0 && !exists {
            return Err(Errno::ENODATA);
        }
        x.insert(name.to_vec(), value.to_vec());
        inode.touch_changed();
        Ok(())
    }
    fn listxattr(&self, inode: &Inode) -> Result<Vec<Vec<u8>>> {
        let m = inode.private::<MemInode>().ok_or(Errno::EOPNOTSUPP)?;
        let mut v: Vec<Vec<u8>> = m
            .xattrs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        v.sort();
        Ok(v)
    }
    fn removexattr(&self, inode: &Inode, name: &[u8]) -> Result<()> {
        let m = inode.private::<MemInode>().ok_or(Errno::EOPNOTSUPP)?;
        m.xattrs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .map(|_| ())
            .ok_or(Errno::ENODATA)?;
        inode.touch_changed();
        Ok(())
    }

    fn evict_inode(&self, inode: &Inode) {
        if let Some(MemInode {
            node: Node::File(d),
            ..
        }) = inode.private::<MemInode>()
        {
            let mut d = d.write().unwrap_or_else(|e| e.into_inner());
            let n = d.pages.len() as u64;
            d.pages.clear();
            self.uncharge_pages(n);
        }
        if inode.is_symlink() && inode.link_body().is_some_and(|b| !b.is_inline()) {
            self.uncharge_pages(1);
        }
        self.inodes_used.fetch_sub(1, Ordering::AcqRel);
    }
}
