//! The `fuser::Filesystem` implementation: each request becomes a VFS call with the caller's
//! credentials, and each VFS errno goes back to the kernel unchanged.

use crate::cred;
use crate::nodes::{FileTable, NodeTable};
use bpfvfs_vfs::{
    self as vfs, may, oflags, Cred, DirEntry, Errno, File, NewKind, PathRef, SetAttr, Stat,
    TimeSet, Timespec, Vfs,
};
use fuser::{
    AccessFlags, CopyFileRangeFlags, FileAttr, FileHandle, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, PollEvents, PollFlags,
    PollNotifier, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyPoll, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type R<T> = Result<T, Errno>;

/// Entries fetched from the VFS per readdir round (the reply buffer usually fills first).
const READDIR_BATCH: usize = 256;
/// Largest read we serve in one request (the kernel asks for at most max_pages pages).
const MAX_READ: u32 = 16 << 20;
/// Largest chunk one copy_file_range request copies (callers loop on short copies).
const MAX_COPY: u64 = 4 << 20;

/// Counters of the FUSE edge, for `bpfvfs stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FuseStats {
    /// Node ids the kernel holds (root excluded).
    pub nodes: u64,
    /// Open file and directory handles.
    pub handles: u64,
    /// Cache invalidations sent to the kernel for changes made outside this mount.
    pub inval: crate::inval::InvalStats,
}

/// State shared by the session's worker threads and the mount handle.
pub(crate) struct Shared {
    pub(crate) vfs: Arc<Vfs>,
    pub(crate) nodes: Arc<NodeTable>,
    pub(crate) files: FileTable,
    /// The tag this mount's worker threads carry (`bpfvfs_vfs::changes`).
    pub(crate) origin: vfs::Origin,
    /// The invalidation path, once the session is up.
    pub(crate) inval: std::sync::OnceLock<Arc<crate::inval::Inval>>,
}

impl Shared {
    pub(crate) fn new(vfs: Arc<Vfs>) -> Shared {
        let root = vfs.root();
        Shared {
            vfs,
            nodes: Arc::new(NodeTable::new(root)),
            files: FileTable::default(),
            origin: vfs::Origin::new(),
            inval: std::sync::OnceLock::new(),
        }
    }
    pub(crate) fn stats(&self) -> FuseStats {
        FuseStats {
            nodes: self.nodes.len() as u64,
            handles: self.files.len() as u64,
            inval: self.inval.get().map(|i| i.stats()).unwrap_or_default(),
        }
    }
}

pub(crate) struct FuseFs {
    pub(crate) shared: Arc<Shared>,
    pub(crate) attr_ttl: Duration,
    pub(crate) entry_ttl: Duration,
}

/// Reply to an operation with no result but success or an errno.
fn reply_empty(r: R<()>, reply: ReplyEmpty) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(to_fuser(e)),
    }
}

fn to_fuser(e: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e.0)
}

/// Names from the kernel are single components; reject anything else before it reaches a
/// path-taking VFS call.
fn check_name(name: &[u8]) -> R<()> {
    if name.is_empty() {
        return Err(Errno::ENOENT);
    }
    if name.len() > vfs::NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

fn kind_of(ft: vfs::FileType) -> fuser::FileType {
    match ft {
        vfs::FileType::Regular => fuser::FileType::RegularFile,
        vfs::FileType::Directory => fuser::FileType::Directory,
        vfs::FileType::Symlink => fuser::FileType::Symlink,
        vfs::FileType::Fifo => fuser::FileType::NamedPipe,
        vfs::FileType::Socket => fuser::FileType::Socket,
        vfs::FileType::CharDevice => fuser::FileType::CharDevice,
        vfs::FileType::BlockDevice => fuser::FileType::BlockDevice,
    }
}

/// Timespec -> SystemTime, saturating instead of panicking on extreme values.
fn system_time(t: Timespec) -> SystemTime {
    let nsec = t.nsec.min(999_999_999);
    if t.sec >= 0 {
        UNIX_EPOCH
            .checked_add(Duration::new(t.sec as u64, nsec))
            .unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::new(t.sec.unsigned_abs(), 0))
            .and_then(|s| s.checked_add(Duration::new(0, nsec)))
            .unwrap_or(UNIX_EPOCH)
    }
}

/// SystemTime -> Timespec, saturating.
fn timespec(t: SystemTime) -> Timespec {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timespec {
            sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nsec: d.subsec_nanos(),
        },
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() == 0 {
                Timespec {
                    sec: -secs,
                    nsec: 0,
                }
            } else {
                Timespec {
                    sec: (-secs).saturating_sub(1),
                    nsec: 1_000_000_000 - d.subsec_nanos(),
                }
            }
        }
    }
}

fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(t) => TimeSet::At(timespec(t)),
    }
}

impl FuseFs {
    /// Record the request's caller as this worker thread's current task, for hooks and the
    /// programs they run, and mark the thread as serving this mount (the changes it asks
    /// for are not echoed back to the kernel as invalidations, see `inval.rs`).
    fn note_caller(&self, req: &Request) {
        vfs::task::set_caller(Some(vfs::task::Caller {
            pid: req.pid(),
            uid: req.uid(),
            gid: req.gid(),
        }));
        self.mark_thread();
    }

    /// Mark the thread as one of this mount's workers (for requests with no caller noted).
    fn mark_thread(&self) {
        vfs::changes::set_origin(Some(self.shared.origin));
    }

    /// The caller's credentials (and the caller noted as the current task).
    fn cred_of(&self, req: &Request) -> Cred {
        self.note_caller(req);
        cred::for_request(req.uid(), req.gid(), req.pid())
    }

    fn attr(&self, st: &Stat) -> FileAttr {
        FileAttr {
            ino: INodeNo(self.shared.nodes.nodeid_of(st.ino)),
            size: st.size,
            blocks: st.blocks,
            atime: system_time(st.atime),
            mtime: system_time(st.mtime),
            ctime: system_time(st.ctime),
            crtime: system_time(st.ctime),
            kind: st
                .file_type()
                .map(kind_of)
                .unwrap_or(fuser::FileType::RegularFile),
            perm: (st.mode & 0o7777) as u16,
            nlink: st.nlink,
            uid: st.uid,
            gid: st.gid,
            rdev: st.rdev,
            blksize: st.blksize,
            flags: 0,
        }
    }

    fn node(&self, ino: INodeNo) -> R<PathRef> {
        self.shared.nodes.get(ino.0)
    }

    fn file(&self, fh: FileHandle) -> R<Arc<File>> {
        self.shared.files.get(fh.0)
    }

    /// Count the lookup, then build the entry attributes (the count must be taken before the
    /// kernel can see the node id, so a racing forget never finds it missing).
    fn entry(&self, at: &PathRef) -> FileAttr {
        let st = self.shared.vfs.getattr(at);
        self.shared.nodes.remember(at);
        self.attr(&st)
    }

    fn reply_entry(&self, r: R<PathRef>, reply: ReplyEntry) {
        match r {
            Ok(at) => {
                let attr = self.entry(&at);
                reply.entry_with_ttls(&self.attr_ttl, &self.entry_ttl, &attr, Generation(0));
            }
            Err(e) => reply.error(to_fuser(e)),
        }
    }

    /// mknod / mkdir / symlink: create `name` in `parent` and reply with its entry.
    fn create_entry(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &[u8],
        kind: NewKind<'_>,
        mode: u32,
        reply: ReplyEntry,
    ) {
        let r = self.node(parent).and_then(|dir| {
            self.shared
                .vfs
                .create_at(&self.cred_of(req), &dir, name, kind, mode)
        });
        self.reply_entry(r, reply)
    }

    fn do_create(
        &self,
        cred: &Cred,
        parent: INodeNo,
        name: &[u8],
        mode: u32,
        flags: i32,
    ) -> R<(PathRef, Arc<File>)> {
        check_name(name)?;
        let dir = self.node(parent)?;
        let vfs = &self.shared.vfs;
        // The kernel sends CREATE when it believes the name is absent; create exclusively so
        // that the entry we reply with is the file we made.
        match vfs.open(
            cred,
            Some(&dir),
            name,
            flags | oflags::O_CREAT | oflags::O_EXCL,
            mode & 0o7777,
        ) {
            Ok(f) => Ok((f.path().clone(), f)),
            // Someone else created it meanwhile: without O_EXCL, open what is there, as
            // open(2) would. A symlink there would have to be followed, which would bind the
            // name to another inode: report EEXIST instead (a lost race, not an open).
            Err(Errno::EEXIST) if flags & oflags::O_EXCL == 0 => {
                let at = vfs.lookup_at(cred, &dir, name)?;
                let inode = at.inode();
                if inode.is_dir() {
                    return Err(Errno::EISDIR);
                }
                if inode.is_symlink() {
                    return Err(Errno::EEXIST);
                }
                let f = vfs.open_at(cred, &at, flags & !(oflags::O_CREAT | oflags::O_EXCL))?;
                Ok((at, f))
            }
            Err(e) => Err(e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn do_setattr(
        &self,
        cred: &Cred,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
    ) -> R<Stat> {
        let file = match fh {
            Some(fh) => self.file(fh).ok(),
            None => None,
        };
        let at = match &file {
            Some(f) => f.path().clone(),
            None => self.node(ino)?,
        };
        let via_open_file = file.as_ref().is_some_and(|f| f.writable());
        let mut attr = SetAttr {
            mode: mode.map(|m| m & 0o7777),
            uid,
            gid,
            size,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
            ctime: ctime.map(timespec),
        };
        let kill = self.suid_kill(cred, &at, &attr, via_open_file);
        if kill.is_some() {
            attr.mode = None;
        }
        let vfs = &self.shared.vfs;
        // With a handle, a size change is a truncation of the open file (file_truncate).
        let mut st = match &file {
            Some(f) => vfs.setattr_file(cred, f, &attr)?,
            None => vfs.setattr(cred, &at, &attr, false)?,
        };
        if let Some(m) = kill {
            let kill_attr = SetAttr {
                mode: Some(m),
                ..Default::default()
            };
            st = vfs.setattr(&Cred::root(), &at, &kill_attr, false)?;
        }
        Ok(st)
    }

    /// Without `default_permissions` and `handle_killpriv`, the kernel clears set-user-ID
    /// and set-group-ID itself when a non-owner writes, truncates or chowns, by sending a
    /// SETATTR of the mode with those bits cleared, in the writer's name. The VFS would
    /// refuse that chmod (EPERM: not the owner). Recognize it: a mode change that only clears
    /// S_ISUID/S_ISGID, asked by a non-owner who may write the file. Returns the mode to
    /// apply with privilege.
    fn suid_kill(
        &self,
        cred: &Cred,
        at: &PathRef,
        attr: &SetAttr,
        via_open_file: bool,
    ) -> Option<u32> {
        let m = attr.mode?;
        let inode = at.inode();
        if cred.is_privileged() || cred.uid == inode.uid() {
            return None;
        }
        let cur = inode.mode() & 0o7777;
        let privs = vfs::S_ISUID | vfs::S_ISGID;
        let only_clears = m != cur && (m & !privs) == (cur & !privs) && (m & !cur) == 0;
        if !only_clears {
            return None;
        }
        if via_open_file || inode.permission(cred, may::WRITE).is_ok() {
            Some(m)
        } else {
            None
        }
    }

    fn readdir_into(&self, dir: &PathRef, offset: u64, reply: &mut ReplyDirectory) -> R<()> {
        let mut offset = offset;
        loop {
            let ents: Vec<DirEntry> = self.shared.vfs.readdir(dir, offset, READDIR_BATCH)?;
            let n = ents.len();
            for e in ents {
                let full = reply.add(
                    INodeNo(self.shared.nodes.nodeid_of(e.ino)),
                    e.offset,
                    kind_of(e.kind),
                    OsStr::from_bytes(&e.name),
                );
                if full {
                    return Ok(());
                }
                offset = e.offset;
            }
            if n < READDIR_BATCH {
                return Ok(());
            }
        }
    }

    /// xattr_permission's inode check (the kernel already applied the namespace rules:
    /// trusted.* needs CAP_SYS_ADMIN, user.* only on files and directories, sticky dirs).
    fn xattr_permission(&self, cred: &Cred, at: &PathRef, name: &[u8], mask: u32) -> R<()> {
        if name.starts_with(b"security.")
            || name.starts_with(b"system.")
            || name.starts_with(b"trusted.")
        {
            return Ok(());
        }
        self.shared.vfs.inode_permission(cred, at.inode(), mask)
    }
}

/// Reply with a size probe, the data, or ERANGE (getxattr/listxattr protocol).
fn reply_xattr(data: &[u8], size: u32, reply: ReplyXattr) {
    let Ok(len) = u32::try_from(data.len()) else {
        return reply.error(fuser::Errno::E2BIG);
    };
    if size == 0 {
        reply.size(len);
    } else if len > size {
        reply.error(fuser::Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS) {
            tracing::info!(?missing, "kernel lacks FUSE_PARALLEL_DIROPS");
        }
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        tracing::debug!(abi = ?config.kernel_abi(), "FUSE session initialized");
        Ok(())
    }

    fn destroy(&mut self) {
        tracing::debug!("FUSE session destroyed");
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = (|| {
            let dir = self.node(parent)?;
            let name = name.as_bytes();
            check_name(name)?;
            self.shared.vfs.lookup_at(&self.cred_of(req), &dir, name)
        })();
        self.reply_entry(r, reply)
    }

    // batch_forget: fuser's default calls this for each node. (fuser 0.18 does not export
    // `ForgetOne`, so the method cannot be overridden outside the crate; the default is what
    // we would write anyway.)
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.shared.nodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        self.note_caller(req);
        let at = match fh.and_then(|fh| self.file(fh).ok()) {
            Some(f) => Ok(f.path().clone()),
            None => self.node(ino),
        };
        match at {
            // A stat: through the VFS's inode_getattr hook.
            Ok(at) => match self.shared.vfs.stat_at(&at) {
                Ok(st) => reply.attr(&self.attr_ttl, &self.attr(&st)),
                Err(e) => reply.error(to_fuser(e)),
            },
            Err(e) => reply.error(to_fuser(e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let cred = self.cred_of(req);
        match self.do_setattr(&cred, ino, mode, uid, gid, size, atime, mtime, ctime, fh) {
            Ok(st) => reply.attr(&self.attr_ttl, &self.attr(&st)),
            Err(e) => reply.error(to_fuser(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self
            .node(ino)
            .and_then(|at| self.shared.vfs.readlink_at(&at))
        {
            Ok(body) => reply.data(&body),
            Err(e) => reply.error(to_fuser(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.create_entry(
            req,
            parent,
            name.as_bytes(),
            NewKind::Node { rdev },
            mode,
            reply,
        )
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        self.create_entry(
            req,
            parent,
            name.as_bytes(),
            NewKind::Dir,
            mode & 0o7777,
            reply,
        )
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.node(parent).and_then(|dir| {
            self.shared
                .vfs
                .unlink_at(&self.cred_of(req), &dir, name.as_bytes())
        });
        reply_empty(r, reply)
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.node(parent).and_then(|dir| {
            self.shared
                .vfs
                .rmdir_at(&self.cred_of(req), &dir, name.as_bytes())
        });
        reply_empty(r, reply)
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.create_entry(
            req,
            parent,
            link_name.as_bytes(),
            NewKind::Symlink(target.as_os_str().as_bytes()),
            0o777,
            reply,
        )
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = (|| {
            let old_dir = self.node(parent)?;
            let new_dir = self.node(newparent)?;
            self.shared.vfs.rename_at(
                &self.cred_of(req),
                &old_dir,
                name.as_bytes(),
                &new_dir,
                newname.as_bytes(),
                flags.bits(),
            )
        })();
        reply_empty(r, reply)
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let r = (|| {
            let old = self.node(ino)?;
            let dir = self.node(newparent)?;
            self.shared
                .vfs
                .link_at(&self.cred_of(req), &old, &dir, newname.as_bytes())
        })();
        self.reply_entry(r, reply)
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let r = (|| {
            let at = self.node(ino)?;
            // The kernel strips O_CREAT, O_EXCL, O_NOCTTY and (without atomic_o_trunc)
            // O_TRUNC, which it sends as a SETATTR with this handle afterwards.
            self.shared.vfs.open_at(&self.cred_of(req), &at, flags.0)
        })();
        match r {
            Ok(f) => {
                // Generated files (size 0, contents made at open) must bypass the page
                // cache, which would otherwise stop at the reported size.
                let flags = if f.direct_io() {
                    FopenFlags::FOPEN_DIRECT_IO
                } else {
                    FopenFlags::empty()
                };
                let fh = self.shared.files.insert(f);
                reply.opened(FileHandle(fh), flags)
            }
            Err(e) => reply.error(to_fuser(e)),
        }
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.note_caller(req);
        let r = (|| {
            let f = self.file(fh)?;
            let mut buf = vec![0u8; size.min(MAX_READ) as usize];
            let n = self.shared.vfs.read(&f, &mut buf, offset)?;
            buf.truncate(n);
            Ok(buf)
        })();
        match r {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(to_fuser(e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.note_caller(req);
        let r = self
            .file(fh)
            .and_then(|f| self.shared.vfs.write(&f, data, offset));
        match r {
            // n <= data.len(), and a request carries at most max_write (< 4 GiB) bytes.
            Ok(n) => reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
            Err(e) => reply.error(to_fuser(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        match self.file(fh) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(to_fuser(e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let f = self.shared.files.remove(fh.0);
        reply.ok();
        // The last reference may evict an unlinked inode; do that after replying.
        drop(f);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(
            self.file(fh)
                .and_then(|f| self.shared.vfs.fsync(&f, datasync)),
            reply,
        )
    }

    fn opendir(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let r = (|| {
            let at = self.node(ino)?;
            let rest = flags.0 & !oflags::O_ACCMODE;
            self.shared.vfs.open_at(
                &self.cred_of(req),
                &at,
                rest | oflags::O_RDONLY | oflags::O_DIRECTORY,
            )
        })();
        match r {
            Ok(f) => {
                let fh = self.shared.files.insert(f);
                reply.opened(FileHandle(fh), FopenFlags::empty())
            }
            Err(e) => reply.error(to_fuser(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let dir = match self.file(fh) {
            Ok(f) => Ok(f.path().clone()),
            Err(_) => self.node(ino),
        };
        match dir.and_then(|d| self.readdir_into(&d, offset, &mut reply)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(to_fuser(e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let f = self.shared.files.remove(fh.0);
        reply.ok();
        drop(f);
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok()
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        match self.node(ino).and_then(|at| self.shared.vfs.statfs(&at)) {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            ),
            Err(e) => reply.error(to_fuser(e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        let r = (|| {
            if position != 0 {
                return Err(Errno::EINVAL);
            }
            let at = self.node(ino)?;
            // Through the VFS, which checks permission and reports IN_ATTRIB.
            self.shared
                .vfs
                .setxattr_at(&self.cred_of(req), &at, name.as_bytes(), value, flags)
        })();
        reply_empty(r, reply)
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let r = (|| {
            let at = self.node(ino)?;
            let name = name.as_bytes();
            self.xattr_permission(&self.cred_of(req), &at, name, may::READ)?;
            let inode = at.inode();
            inode.sb().fs().getxattr(inode, name)
        })();
        match r {
            Ok(v) => reply_xattr(&v, size, reply),
            Err(e) => reply.error(to_fuser(e)),
        }
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let r = (|| {
            let at = self.node(ino)?;
            let inode = at.inode();
            let names = inode.sb().fs().listxattr(inode)?;
            let privileged = self.cred_of(req).is_privileged();
            let mut buf = Vec::new();
            for n in names {
                // Like simple_xattr_list: trusted.* is listed only to CAP_SYS_ADMIN.
                if !privileged && n.starts_with(b"trusted.") {
                    continue;
                }
                buf.extend_from_slice(&n);
                buf.push(0);
            }
            Ok(buf)
        })();
        match r {
            Ok(v) => reply_xattr(&v, size, reply),
            Err(e) => reply.error(to_fuser(e)),
        }
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = (|| {
            let at = self.node(ino)?;
            self.shared
                .vfs
                .removexattr_at(&self.cred_of(req), &at, name.as_bytes())
        })();
        reply_empty(r, reply)
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let r = self.node(ino).and_then(|at| {
            let mask = (mask.bits() & 7) as u32;
            self.shared.vfs.access_at(&self.cred_of(req), &at, mask)
        });
        reply_empty(r, reply)
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let cred = self.cred_of(req);
        match self.do_create(&cred, parent, name.as_bytes(), mode, flags) {
            Ok((at, f)) => {
                let attr = self.entry(&at);
                let fh = self.shared.files.insert(f);
                reply.created(
                    &self.entry_ttl.min(self.attr_ttl),
                    &attr,
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                )
            }
            Err(e) => reply.error(to_fuser(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.mark_thread();
        let r = (|| {
            let f = self.file(fh)?;
            // The VFS checks the file (EBADF, EISDIR, ENODEV) and reports IN_MODIFY.
            self.shared.vfs.fallocate(&f, mode, offset, length)
        })();
        reply_empty(r, reply)
    }

    /// SEEK_DATA / SEEK_HOLE (the kernel handles the other whences itself). The whole
    /// file counts as data, with the hole at EOF, as generic_file_llseek does.
    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let r = (|| {
            let f = self.file(fh)?;
            let size = i64::try_from(f.inode().size()).unwrap_or(i64::MAX);
            match whence {
                libc::SEEK_DATA | libc::SEEK_HOLE if offset < 0 || offset >= size => {
                    Err(Errno::ENXIO)
                }
                libc::SEEK_DATA => Ok(offset),
                libc::SEEK_HOLE => Ok(size),
                libc::SEEK_SET if offset >= 0 => Ok(offset),
                libc::SEEK_END => size
                    .checked_add(offset)
                    .filter(|&o| o >= 0)
                    .ok_or(Errno::EINVAL),
                _ => Err(Errno::EINVAL),
            }
        })();
        match r {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(to_fuser(e)),
        }
    }

    /// A server-side copy (the kernel has checked the ranges and the file modes); at most
    /// MAX_COPY bytes per request, a short copy as copy_file_range(2) allows.
    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        self.mark_thread();
        let r = (|| {
            if flags.bits() != 0 {
                return Err(Errno::EINVAL);
            }
            let fin = self.file(fh_in)?;
            let fout = self.file(fh_out)?;
            let mut buf = vec![0u8; len.min(MAX_COPY) as usize];
            let n = self.shared.vfs.read(&fin, &mut buf, offset_in)?;
            let mut done = 0;
            while done < n {
                let w = self
                    .shared
                    .vfs
                    .write(&fout, &buf[done..n], offset_out + done as u64);
                match w {
                    Ok(0) => break,
                    Ok(w) => done += w,
                    Err(e) if done == 0 => return Err(e),
                    Err(_) => break,
                }
            }
            Ok(done)
        })();
        match r {
            Ok(n) => reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
            Err(e) => reply.error(to_fuser(e)),
        }
    }

    // No ioctls and no poll: ENOSYS makes the kernel stop asking (no_ioctl/no_poll; poll
    // then reports the default mask), without fuser's "not implemented" warning per call.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(fuser::Errno::ENOSYS)
    }

    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: PollNotifier,
        _events: PollEvents,
        _flags: PollFlags,
        reply: ReplyPoll,
    ) {
        reply.error(fuser::Errno::ENOSYS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_conversions_saturate() {
        for t in [
            Timespec { sec: 0, nsec: 0 },
            Timespec {
                sec: 1_700_000_000,
                nsec: 5,
            },
            Timespec {
                sec: -2,
                nsec: 800_000_000,
            },
        ] {
            assert_eq!(timespec(system_time(t)), t);
        }
        // Extremes must not panic.
        let _ = system_time(Timespec {
            sec: i64::MIN,
            nsec: 999_999_999,
        });
        let _ = system_time(Timespec {
            sec: i64::MAX,
            nsec: 999_999_999,
        });
        let _ = timespec(UNIX_EPOCH - Duration::new(u64::MAX / 4, 1));
    }

    #[test]
    fn names() {
        assert_eq!(check_name(b""), Err(Errno::ENOENT));
        assert_eq!(check_name(b"a/b"), Err(Errno::EINVAL));
        assert_eq!(check_name(&[b'x'; 256]), Err(Errno::ENAMETOOLONG));
        assert_eq!(check_name(b"ok"), Ok(()));
    }
}
