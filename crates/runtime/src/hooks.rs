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

/// The attach point `name` of `kind`.
pub fn find(kind: HookKind, name: &str) -> Option<&'static HookDef> {
    HOOKS.iter().find(|h| h.kind == kind && h.name == name)
}

fn arg_names(args: &[ArgType]) -> Vec<Option<&'static str>> {
    args.iter().map(|a| a.struct_name()).collect()
}

/// The verifier's description of an `lsm/NAME` program.
pub fn lsm_spec(attach: Option<&str>) -> Result<ProgTypeSpec, String> {
    let name = attach.ok_or("an lsm program needs a hook name (SEC(\"lsm/inode_unlink\"))")?;
    let h = find(HookKind::Lsm, name).ok_or_else(|| format!("unknown LSM hook {name:?}"))?;
    Ok(ProgTypeSpec::lsm(&arg_names(h.args), kobj::struct_specs()))
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
    spec.helpers.add(&[145, 146]);
    Ok(spec)
}
