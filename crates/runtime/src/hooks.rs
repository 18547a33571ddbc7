//! The attach points: LSM hooks and traceable VFS functions, with their argument lists in
//! the kernel's order (Linux 6.1's signatures, so that a program written for that kernel's
//! hook reads its arguments where it expects them). One table; the program-type rows of
//! [`crate::progtypes`] build each program's context description from it.

use crate::kobj;
use bpfvfs_ebpf::verifier::ProgTypeSpec;

/// What one argument of a hook is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgType {
    Inode,
    Dentry,
    File,
    Path,
    Iattr,
    /// A number (mode, mask, flags, size).
    Scalar,
    /// A pointer the model does not describe (a user buffer, `loff_t *`, a user namespace):
    /// the program sees its value as a number.
    Opaque,
}

impl ArgType {
    fn struct_name(self) -> Option<&'static str> {
        match self {
            ArgType::Inode => Some("inode"),
            ArgType::Dentry => Some("dentry"),
            ArgType::File => Some("file"),
            ArgType::Path => Some("path"),
            ArgType::Iattr => Some("iattr"),
            ArgType::Scalar | ArgType::Opaque => None,
        }
    }
}

/// LSM hook or traced function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    /// `lsm/NAME`: returns 0 or a negative errno that denies the operation.
    Lsm,
    /// `fentry/NAME` / `fexit/NAME` (fexit gets the return value after the arguments).
    Func,
}

/// One attach point.
#[derive(Debug)]
pub struct HookDef {
    pub name: &'static str,
    pub kind: HookKind,
    pub args: &'static [ArgType],
}

use ArgType::*;

pub static HOOKS: &[HookDef] = &[
    // LSM hooks (security_* in the VFS operations).
    HookDef {
        name: "inode_create",
        kind: HookKind::Lsm,
        args: &[Inode, Dentry, Scalar],
    },
    HookDef {
        name: "inode_mkdir",
        kind: HookKind::Lsm,
        args: &[Inode, Dentry, Scalar],
    },
    HookDef {
        name: "inode_rmdir",
        kind: HookKind::Lsm,
        args: &[Inode, Dentry],
    },
    HookDef {
        name: "inode_unlink",
        kind: HookKind::Lsm,
        args: &[Inode, Dentry],
    },
    HookDef {
        name: "inode_link",
        kind: HookKind::Lsm,
        args: &[Dentry, Inode, Dentry],
    },
    HookDef {
        name: "inode_symlink",
        kind: HookKind::Lsm,
        args: &[Inode, Dentry, Opaque],
    },
    HookDef {
        name: "inode_rename",
        kind: HookKind::Lsm,
        args: &[Inode, Dentry, Inode, Dentry],
    },
    HookDef {
        name: "inode_setattr",
        kind: HookKind::Lsm,
        args: &[Dentry, Iattr],
    },
    HookDef {
        name: "inode_getattr",
        kind: HookKind::Lsm,
        args: &[Path],
    },
    HookDef {
        name: "inode_permission",
        kind: HookKind::Lsm,
        args: &[Inode, Scalar],
    },
    HookDef {
        name: "file_open",
        kind: HookKind::Lsm,
        args: &[File],
    },
    HookDef {
        name: "file_permission",
        kind: HookKind::Lsm,
        args: &[File, Scalar],
    },
    HookDef {
        name: "file_truncate",
        kind: HookKind::Lsm,
        args: &[File],
    },
    HookDef {
        name: "inode_free_security",
        kind: HookKind::Lsm,
        args: &[Inode],
    },
    // Traceable functions (fentry/fexit).
    HookDef {
        name: "vfs_open",
        kind: HookKind::Func,
        args: &[Path, File],
    },
    HookDef {
        name: "vfs_read",
        kind: HookKind::Func,
        args: &[File, Opaque, Scalar, Opaque],
    },
    HookDef {
        name: "vfs_write",
        kind: HookKind::Func,
        args: &[File, Opaque, Scalar, Opaque],
    },
    HookDef {
        name: "vfs_unlink",
        kind: HookKind::Func,
        args: &[Opaque, Inode, Dentry, Opaque],
    },
    HookDef {
        name: "vfs_mkdir",
        kind: HookKind::Func,
        args: &[Opaque, Inode, Dentry, Scalar],
    },
    HookDef {
        name: "vfs_rmdir",
        kind: HookKind::Func,
        args: &[Opaque, Inode, Dentry],
    },
    HookDef {
        name: "vfs_rename",
        kind: HookKind::Func,
        args: &[Opaque],
    },
    HookDef {
        name: "evict",
        kind: HookKind::Func,
        args: &[Inode],
    },
];

/// Indexes into [`HOOKS`], for dispatch without a name search (a test checks them).
pub mod id {
    pub const INODE_CREATE: usize = 0;
    pub const INODE_MKDIR: usize = 1;
    pub const INODE_RMDIR: usize = 2;
    pub const INODE_UNLINK: usize = 3;
    pub const INODE_LINK: usize = 4;
    pub const INODE_SYMLINK: usize = 5;
    pub const INODE_RENAME: usize = 6;
    pub const INODE_SETATTR: usize = 7;
    pub const INODE_GETATTR: usize = 8;
    pub const INODE_PERMISSION: usize = 9;
    pub const FILE_OPEN: usize = 10;
    pub const FILE_PERMISSION: usize = 11;
    pub const FILE_TRUNCATE: usize = 12;
    pub const INODE_FREE_SECURITY: usize = 13;
    pub const VFS_OPEN: usize = 14;
    pub const VFS_READ: usize = 15;
    pub const VFS_WRITE: usize = 16;
    pub const VFS_UNLINK: usize = 17;
    pub const VFS_MKDIR: usize = 18;
    pub const VFS_RMDIR: usize = 19;
    pub const VFS_RENAME: usize = 20;
    pub const EVICT: usize = 21;
}

/// The attach point `name` of `kind`.
pub fn find(kind: HookKind, name: &str) -> Option<&'static HookDef> {
    index(kind, name).map(|i| &HOOKS[i])
}

/// The index in [`HOOKS`] of the attach point `name` of `kind`.
pub fn index(kind: HookKind, name: &str) -> Option<usize> {
    HOOKS.iter().position(|h| h.kind == kind && h.name == name)
}

fn arg_names(args: &[ArgType]) -> Vec<Option<&'static str>> {
    args.iter().map(|a| a.struct_name()).collect()
}

/// The verifier's description of an `lsm/NAME` program.
pub fn lsm_spec(attach: Option<&str>) -> Result<ProgTypeSpec, String> {
    let name = attach.ok_or("an lsm program needs a hook name (SEC(\"lsm/inode_unlink\"))")?;
    let h = find(HookKind::Lsm, name).ok_or_else(|| format!("unknown LSM hook {name:?}"))?;
    let mut spec = ProgTypeSpec::lsm(&arg_names(h.args), kobj::struct_specs());
    // bpf_probe_read_kernel_str, for names (tracing helpers Linux gives LSM programs).
    spec.helpers.add(&[115]);
    Ok(spec)
}

/// The verifier's description of an `fentry/NAME` program.
pub fn fentry_spec(attach: Option<&str>) -> Result<ProgTypeSpec, String> {
    func_spec(attach, false)
}

/// The verifier's description of an `fexit/NAME` program (the return value after the
/// arguments).
pub fn fexit_spec(attach: Option<&str>) -> Result<ProgTypeSpec, String> {
    func_spec(attach, true)
}

fn func_spec(attach: Option<&str>, exit: bool) -> Result<ProgTypeSpec, String> {
    let name =
        attach.ok_or("a tracing program needs a function name (SEC(\"fentry/vfs_open\"))")?;
    let h = find(HookKind::Func, name)
        .ok_or_else(|| format!("no traceable function {name:?} (see the hook table)"))?;
    let mut args = arg_names(h.args);
    if exit {
        args.push(None);
    }
    let mut spec = ProgTypeSpec::tracing(&args, kobj::struct_specs());
    // bpfvfs lets tracing programs use inode storage (the Nov 2024 series' proposal).
    spec.helpers.add(&[145, 146, 115]);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_their_rows() {
        let names = [
            (id::INODE_CREATE, "inode_create"),
            (id::INODE_MKDIR, "inode_mkdir"),
            (id::INODE_RMDIR, "inode_rmdir"),
            (id::INODE_UNLINK, "inode_unlink"),
            (id::INODE_LINK, "inode_link"),
            (id::INODE_SYMLINK, "inode_symlink"),
            (id::INODE_RENAME, "inode_rename"),
            (id::INODE_SETATTR, "inode_setattr"),
            (id::INODE_GETATTR, "inode_getattr"),
            (id::INODE_PERMISSION, "inode_permission"),
            (id::FILE_OPEN, "file_open"),
            (id::FILE_PERMISSION, "file_permission"),
            (id::FILE_TRUNCATE, "file_truncate"),
            (id::INODE_FREE_SECURITY, "inode_free_security"),
            (id::VFS_OPEN, "vfs_open"),
            (id::VFS_READ, "vfs_read"),
            (id::VFS_WRITE, "vfs_write"),
            (id::VFS_UNLINK, "vfs_unlink"),
            (id::VFS_MKDIR, "vfs_mkdir"),
            (id::VFS_RMDIR, "vfs_rmdir"),
            (id::VFS_RENAME, "vfs_rename"),
            (id::EVICT, "evict"),
        ];
        assert_eq!(names.len(), HOOKS.len());
        for (i, n) in names {
            assert_eq!(HOOKS[i].name, n);
        }
        // Two slots (entry, exit) per row must fit the dispatch bitmask.
        assert!(HOOKS.len() * 2 <= 64);
    }
}
