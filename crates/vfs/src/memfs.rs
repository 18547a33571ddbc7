//! memfs: the in-memory filesystem, tmpfs-like, and bpfvfs's embedded default.
//!
//! Directories live in the dcache (the libfs model). Regular files keep their data in 4 KiB
//! pages held in a sparse map, so holes cost nothing and read back as zeros. Symlink targets
//! are stored by the VFS in the inode itself (inline when short). Space (`size=`) and inode
//! (`nr_inodes=`) limits are enforced with ENOSPC, as tmpfs does.

use crate::errno::{Errno, Result};
use crate::file::File;
use crate::inode::{Inode, NewInode};
use crate::sb::{
    generic_setattr, simple_link, simple_rename, simple_unlink, FileSystem, SuperBlock,
};
use crate::types::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub const TMPFS_MAGIC: u64 = 0x0102_1994;
const PAGE: usize = 4096;
/// tmpfs keeps symlink targets shorter than this in a kmalloc'd buffer that costs no
/// blocks; longer ones take a page (mm/shmem.c SHORT_SYMLINK_LEN). This is about space
/// accounting only: how the VFS stores the body (inline up to 60 bytes) is separate.
const SHORT_SYMLINK_LEN: usize = 128;

fn symlink_takes_page(len: usize) -> bool {
    len >= SHORT_SYMLINK_LEN
}

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
    /// `nr_inodes` slots held by this inode's extra hard links (see `MemFs::link`). Counted
    /// here rather than derived from nlink so that concurrent unlinks of two names (in two
    /// directories, under no common lock) cannot both give one back.
    link_slots: AtomicU64,
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

    /// shmem_reserve_inode: take one of the `nr_inodes` slots (ENOSPC when none is left).
    /// Every inode takes one, and so does every extra hard link (tmpfs charges links because
    /// each pins a dentry that cannot be reclaimed).
    fn reserve_inode(&self) -> Result<()> {
        let max = if self.opts.max_inodes == 0 {
            u64::MAX
        } else {
            self.opts.max_inodes
        };
        self.inodes_used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < max).then_some(u + 1)
            })
            .map(|_| ())
            .map_err(|_| Errno::ENOSPC)
    }

    fn release_inode(&self) {
        self.inodes_used.fetch_sub(1, Ordering::AcqRel);
    }

    /// A name of `inode` went away: give back one extra-link slot if it holds any (the
    /// inode's own slot goes at eviction).
    fn release_link_slot(&self, inode: &Inode) {
        if let Some(m) = inode.private::<MemInode>() {
            if m.link_slots
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
            {
                self.release_inode();
            }
        }
    }

    fn new_inode(
        &self,
        sb: &Arc<SuperBlock>,
        attrs: &NewInode,
        link: Option<&[u8]>,
    ) -> Result<Arc<Inode>> {
        self.reserve_inode()?;
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
                link_slots: AtomicU64::new(0),
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
        // generic_write_check_limits: nothing at or past the largest file size (EFBIG); a
        // write running past it is cut short.
        let max = i64::MAX as u64;
        if offset >= max && !buf.is_empty() {
            return Err(Errno::EFBIG);
        }
        let buf = &buf[..buf.len().min((max - offset.min(max)) as usize)];
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let idx = pos / PAGE as u64;
            let in_page = (pos % PAGE as u64) as usize;
            let n = (PAGE - in_page).min(buf.len() - done);
            if let std::collections::btree_map::Entry::Vacant(e) = data.pages.entry(idx) {
                if let Err(e) = self.charge_pages(1) {
                    if done == 0 {
                        return Err(e);
                    }
                    break; // a short write, as the kernel returns when space runs out mid-way
                }
                e.insert(Box::new([0u8; PAGE]));
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
        let page = symlink_takes_page(target.len());
        if page {
            self.charge_pages(1)?;
        }
        match self.new_inode(sb, attrs, Some(target)) {
            Ok(i) => {
                dir.touch_modified();
                Ok(i)
            }
            Err(e) => {
                if page {
                    self.uncharge_pages(1);
                }
                Err(e)
            }
        }
    }

    // Hard links hold an inode slot each, as in tmpfs (shmem_link / shmem_unlink): each one
    // pins a dentry. Every name removed gives one back while extra ones are held; the
    // inode's own slot goes at eviction.
    fn link(&self, old: &Inode, dir: &Inode, name: &[u8]) -> Result<()> {
        if old.nlink() >= LINK_MAX {
            return Err(Errno::EMLINK);
        }
        self.reserve_inode()?;
        if let Err(e) = simple_link(old, dir, name) {
            self.release_inode();
            return Err(e);
        }
        if let Some(m) = old.private::<MemInode>() {
            m.link_slots.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }
    fn unlink(&self, dir: &Inode, name: &[u8], victim: &Inode) -> Result<()> {
        self.release_link_slot(victim);
        simple_unlink(dir, name, victim)
    }
    fn rename(
        &self,
        old_dir: &Inode,
        old_name: &[u8],
        victim: &Inode,
        new_dir: &Inode,
        new_name: &[u8],
        target: Option<&Inode>,
        flags: u32,
    ) -> Result<()> {
        // A replaced target loses a name as by unlink (shmem_rename2 calls shmem_unlink).
        if let Some(t) = target {
            if flags & rename_flags::RENAME_EXCHANGE == 0 && !t.is_dir() {
                self.release_link_slot(t);
            }
        }
        simple_rename(old_dir, old_name, victim, new_dir, new_name, target, flags)
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
            _ if inode.is_symlink()
                && inode
                    .link_body()
                    .is_some_and(|b| symlink_takes_page(b.as_bytes().len())) =>
            {
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
        if name.starts_with(b"user.") && !(inode.is_dir() || inode.file_type() == FileType::Regular)
        {
            // xattr_permission: user.* attributes only on regular files and directories.
            return Err(Errno::EPERM);
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
        if inode.is_symlink()
            && inode
                .link_body()
                .is_some_and(|b| symlink_takes_page(b.as_bytes().len()))
        {
            self.uncharge_pages(1);
        }
        // Its own slot, and any extra-link slot still held (none when every name was removed
        // through unlink/rename; kept for filesystem teardown at unmount).
        let extra = inode
            .private::<MemInode>()
            .map_or(0, |m| m.link_slots.swap(0, Ordering::AcqRel));
        self.inodes_used.fetch_sub(1 + extra, Ordering::AcqRel);
    }
}
