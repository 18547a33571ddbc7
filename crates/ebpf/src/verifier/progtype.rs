//! Program types as data: context layout (field table or caller buffer), the kernel structs
//! reachable from the context, the helpers a type may call and the range its return value must
//! lie in. Other crates build their own [`ProgTypeSpec`]s (or adjust these) and hand them to
//! the verifier; nothing here is looked up by `match` on a type name.

use std::collections::BTreeSet;

/// What a context (or struct) field yields when loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// A number.
    Scalar,
    /// A pointer to the struct named `target` in [`ProgTypeSpec::structs`].
    Ptr { target: String, nullable: bool },
    /// A field this verifier cannot model (packet pointers): any access is rejected with the
    /// reason.
    Unsupported(&'static str),
}

/// One field of a context or struct layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtxField {
    pub name: String,
    pub off: u32,
    pub size: u32,
    pub read: bool,
    pub write: bool,
    /// Loads narrower than `size` (at naturally aligned offsets inside the field) are allowed.
    pub narrow: bool,
    pub kind: FieldKind,
}

impl CtxField {
    pub fn scalar(name: &str, off: u32, size: u32) -> CtxField {
        CtxField {
            name: name.into(),
            off,
            size,
            read: true,
            write: false,
            narrow: true,
            kind: FieldKind::Scalar,
        }
    }

    pub fn writable(mut self) -> CtxField {
        self.write = true;
        self
    }

    pub fn ptr(name: &str, off: u32, target: &str, nullable: bool) -> CtxField {
        CtxField {
            name: name.into(),
            off,
            size: 8,
            read: true,
            write: false,
            narrow: false,
            kind: FieldKind::Ptr {
                target: target.into(),
                nullable,
            },
        }
    }

    pub fn unsupported(name: &str, off: u32, size: u32, why: &'static str) -> CtxField {
        CtxField {
            name: name.into(),
            off,
            size,
            read: true,
            write: false,
            narrow: false,
            kind: FieldKind::Unsupported(why),
        }
    }
}

/// A modelled kernel struct (the target of `PTR_TO_BTF_ID`-like pointers): read-only fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StructSpec {
    pub name: String,
    pub size: u32,
    pub fields: Vec<CtxField>,
}

/// The context's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CtxLayout {
    /// A caller-supplied buffer (syscall programs): any naturally aligned access below
    /// `max_size`, read and write; the verifier reports the highest byte used.
    Buffer { max_size: u32 },
    /// A fixed layout of `size` bytes; only the listed fields are accessible.
    Fields { size: u32, fields: Vec<CtxField> },
}

/// Which helpers a program type may call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HelperSet {
    All,
    Only(BTreeSet<u32>),
}

impl HelperSet {
    pub fn only(ids: &[u32]) -> HelperSet {
        HelperSet::Only(ids.iter().copied().collect())
    }

    pub fn contains(&self, id: u32) -> bool {
        match self {
            HelperSet::All => true,
            HelperSet::Only(s) => s.contains(&id),
        }
    }

    pub fn add(&mut self, ids: &[u32]) {
        if let HelperSet::Only(s) = self {
            s.extend(ids.iter().copied());
        }
    }
}

/// What a context access yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtxAccess {
    pub kind: FieldKind,
}

/// Custom context-access check, replacing the table lookup.
pub type CtxAccessFn =
    fn(&ProgTypeSpec, off: i64, size: u32, write: bool) -> Result<CtxAccess, String>;

/// A program type.
#[derive(Clone, Debug)]
pub struct ProgTypeSpec {
    pub name: String,
    /// Linux's `enum bpf_prog_type` value, when the type exists there.
    pub kernel_type: Option<u32>,
    pub ctx: CtxLayout,
    pub structs: Vec<StructSpec>,
    pub helpers: HelperSet,
    /// Allowed range of `r0` at exit of the main program; `None`: any scalar.
    pub ret_range: Option<(i64, i64)>,
    /// Optional replacement of the table-driven context check.
    pub ctx_access_fn: Option<CtxAccessFn>,
}

/// Helpers every type gets (`bpf_base_func_proto` for a privileged loader).
pub const BASE_HELPERS: &[u32] = &[
    1, 2, 3, 5, 6, 7, 8, 93, 94, 113, 125, 130, 131, 132, 133, 165, 181,
];
/// Helpers about the current task (tracing-like types).
pub const TASK_HELPERS: &[u32] = &[14, 15, 16, 80, 112];

pub const MAX_ERRNO: i64 = 4095;

impl ProgTypeSpec {
    fn with(
        name: &str,
        kernel_type: Option<u32>,
        ctx: CtxLayout,
        extra: &[u32],
        ret_range: Option<(i64, i64)>,
    ) -> Self {
        let mut helpers = HelperSet::only(BASE_HELPERS);
        helpers.add(extra);
        ProgTypeSpec {
            name: name.into(),
            kernel_type,
            ctx,
            structs: Vec::new(),
            helpers,
            ret_range,
            ctx_access_fn: None,
        }
    }

    /// `BPF_PROG_TYPE_SYSCALL`: the context is the caller's buffer (up to 64 KiB, as
    /// `BPF_PROG_TEST_RUN` allows), read and write.
    pub fn syscall() -> Self {
        Self::with(
            "syscall",
            Some(31),
            CtxLayout::Buffer {
                max_size: u16::MAX as u32,
            },
            TASK_HELPERS,
            None,
        )
    }

    /// `BPF_PROG_TYPE_SOCKET_FILTER` with a minimal `struct __sk_buff`.
    pub fn socket_filter() -> Self {
        let mut f = vec![
            CtxField::scalar("len", 0, 4),
            CtxField::scalar("pkt_type", 4, 4),
            CtxField::scalar("mark", 8, 4),
            CtxField::scalar("queue_mapping", 12, 4),
            CtxField::scalar("protocol", 16, 4),
            CtxField::scalar("vlan_present", 20, 4),
            CtxField::scalar("vlan_tci", 24, 4),
            CtxField::scalar("vlan_proto", 28, 4),
            CtxField::scalar("priority", 32, 4),
            CtxField::scalar("ingress_ifindex", 36, 4),
            CtxField::scalar("ifindex", 40, 4),
            CtxField::scalar("tc_index", 44, 4),
        ];
        for i in 0..5 {
            f.push(CtxField::scalar(&format!("cb[{i}]"), 48 + 4 * i, 4).writable());
        }
        f.push(CtxField::scalar("hash", 68, 4));
        f.push(CtxField::unsupported(
            "data",
            76,
            4,
            "packet pointers are not supported",
        ));
        f.push(CtxField::unsupported(
            "data_end",
            80,
            4,
            "packet pointers are not supported",
        ));
        Self::with(
            "socket_filter",
            Some(1),
            CtxLayout::Fields {
                size: 192,
                fields: f,
            },
            &[],
            None,
        )
    }

    /// `BPF_PROG_TYPE_XDP` with `struct xdp_md` (packet pointers not modelled).
    pub fn xdp() -> Self {
        let f = vec![
            CtxField::unsupported("data", 0, 4, "packet pointers are not supported"),
            CtxField::unsupported("data_end", 4, 4, "packet pointers are not supported"),
            CtxField::unsupported("data_meta", 8, 4, "packet pointers are not supported"),
            CtxField::scalar("ingress_ifindex", 12, 4),
            CtxField::scalar("rx_queue_index", 16, 4),
            CtxField::scalar("egress_ifindex", 20, 4),
        ];
        Self::with(
            "xdp",
            Some(6),
            CtxLayout::Fields {
                size: 24,
                fields: f,
            },
            &[],
            None,
        )
    }

    /// `BPF_PROG_TYPE_LSM` placeholder: the context is an array of `nargs` u64 arguments,
    /// each a scalar or a pointer to a modelled struct; return value in `[-MAX_ERRNO, 0]`.
    /// The hooks' argument tables are filled in by the crate that attaches LSM programs.
    pub fn lsm(args: &[Option<&str>], structs: Vec<StructSpec>) -> Self {
        let mut s = Self::with(
            "lsm",
            Some(29),
            Self::arg_ctx(args),
            &[14, 15, 16, 80, 112, 145, 146, 210, 211],
            Some((-MAX_ERRNO, 0)),
        );
        s.structs = structs;
        s
    }

    /// `BPF_PROG_TYPE_TRACING` (fentry/fexit) placeholder: u64 argument array, return 0.
    pub fn tracing(args: &[Option<&str>], structs: Vec<StructSpec>) -> Self {
        let mut s = Self::with(
            "tracing",
            Some(26),
            Self::arg_ctx(args),
            &[14, 15, 16, 80, 112, 210, 211],
            Some((0, 0)),
        );
        s.structs = structs;
        s
    }

    /// The `view` program type placeholder (seq-file style output): the context holds a
    /// `seq_file` pointer; `seq_printf`/`seq_write` allowed; returns 0 or 1.
    pub fn view() -> Self {
        let f = vec![CtxField::ptr("seq", 0, "seq_file", false)];
        let mut s = Self::with(
            "view",
            None,
            CtxLayout::Fields { size: 8, fields: f },
            &[14, 15, 16, 80, 126, 127],
            Some((0, 1)),
        );
        s.structs = vec![StructSpec {
            name: "seq_file".into(),
            size: 0,
            fields: vec![],
        }];
        s
    }

    fn arg_ctx(args: &[Option<&str>]) -> CtxLayout {
        let fields = args
            .iter()
            .enumerate()
            .map(|(i, a)| match a {
                None => CtxField::scalar(&format!("arg{i}"), 8 * i as u32, 8),
                Some(t) => CtxField::ptr(&format!("arg{i}"), 8 * i as u32, t, false),
            })
            .collect();
        CtxLayout::Fields {
            size: 8 * args.len() as u32,
            fields,
        }
    }

    /// The built-in types by name (`syscall`, `socket_filter`/`socket`, `xdp`, `lsm`,
    /// `tracing`, `view`).
    pub fn by_name(name: &str) -> Option<Self> {
        Some(match name {
            "syscall" => Self::syscall(),
            "socket_filter" | "socket" => Self::socket_filter(),
            "xdp" => Self::xdp(),
            "lsm" => Self::lsm(&[Some("inode"), None], vec![inode_struct()]),
            "tracing" => Self::tracing(&[None, None], vec![]),
            "view" => Self::view(),
            _ => return None,
        })
    }

    pub fn helper_allowed(&self, id: u32) -> bool {
        self.helpers.contains(id)
    }

    pub fn find_struct(&self, name: &str) -> Option<usize> {
        self.structs.iter().position(|s| s.name == name)
    }

    /// Checks a context access at a fixed offset.
    pub fn ctx_access(&self, off: i64, size: u32, write: bool) -> Result<CtxAccess, String> {
        if let Some(f) = self.ctx_access_fn {
            return f(self, off, size, write);
        }
        match &self.ctx {
            CtxLayout::Buffer { max_size } => {
                if off < 0 || off + size as i64 > *max_size as i64 || off % size as i64 != 0 {
                    return Err(String::new());
                }
                Ok(CtxAccess {
                    kind: FieldKind::Scalar,
                })
            }
            CtxLayout::Fields { fields, .. } => field_access(fields, off, size, write),
        }
    }
}

/// Looks an access up in a field table.
pub fn field_access(
    fields: &[CtxField],
    off: i64,
    size: u32,
    write: bool,
) -> Result<CtxAccess, String> {
    let f = fields
        .iter()
        .find(|f| off >= f.off as i64 && off < (f.off + f.size) as i64)
        .ok_or_else(String::new)?;
    if let FieldKind::Unsupported(why) = f.kind {
        return Err(format!(" ({}: {why})", f.name));
    }
    let rel = (off - f.off as i64) as u32;
    if rel + size > f.size || off % size as i64 != 0 {
        return Err(String::new());
    }
    if write {
        if !f.write || size != f.size {
            return Err(String::new());
        }
    } else if !f.read || (size != f.size && (!f.narrow || !matches!(f.kind, FieldKind::Scalar))) {
        return Err(String::new());
    }
    Ok(CtxAccess {
        kind: f.kind.clone(),
    })
}

/// A minimal `struct inode` for LSM placeholders.
pub fn inode_struct() -> StructSpec {
    StructSpec {
        name: "inode".into(),
        size: 64,
        fields: vec![
            CtxField::scalar("i_mode", 0, 2),
            CtxField::scalar("i_uid", 4, 4),
            CtxField::scalar("i_gid", 8, 4),
            CtxField::scalar("i_flags", 12, 4),
            CtxField::scalar("i_ino", 64 - 24, 8),
            CtxField::scalar("i_size", 64 - 16, 8),
        ],
    }
}
