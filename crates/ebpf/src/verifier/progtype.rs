//! Program types as data: context layout (field table or caller buffer), the kernel structs
//! reachable from the context, the helpers a type may call and the range its return value must
//! lie in. Other crates build their own [`ProgTypeSpec`]s (or adjust these) and hand them to
//! the verifier; nothing here is looked up by `match` on a type name.

use crate::insn::MemSize;
use std::collections::BTreeSet;

/// What a context (or struct) field yields when loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// A number.
    Scalar,
    /// A pointer to the struct named `target` in [`ProgTypeSpec::structs`].
    Ptr { target: String, nullable: bool },
    /// A packet pointer (`PTR_TO_PACKET`, `PTR_TO_PACKET_META`, `PTR_TO_PACKET_END`): the
    /// loaded register points into (or at the end of) the packet, with no proven range yet.
    Packet(PacketPtr),
    /// A field this verifier cannot model: any access is rejected with the reason.
    Unsupported(&'static str),
    /// A nullable pointer to a buffer whose size is only known when the program is attached
    /// (`PTR_TO_BUF | PTR_MAYBE_NULL`, e.g. the key and value of a `bpf_map_elem` iterator):
    /// any constant-bounded access below [`BUF_MAX_SIZE`] is accepted and the highest byte
    /// reached per `slot` (0 or 1) is reported in `VerifiedInfo::max_buf_access`, for the
    /// attach-time check against the real size.
    Buf { slot: u8, rdonly: bool },
}

/// Largest buffer a [`FieldKind::Buf`] pointer is assumed to reach at load time.
pub const BUF_MAX_SIZE: u32 = 1 << 16;
/// `Reg::aux` of a `Mem` register that is a [`FieldKind::Buf`] pointer (`| slot`).
pub const BUF_AUX_TAG: u32 = 0x4255_4600;

/// Which packet pointer a context field yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketPtr {
    /// Start of the packet data (`xdp_md->data`).
    Data,
    /// Start of the metadata in front of the data (`xdp_md->data_meta`).
    Meta,
    /// One past the last byte (`xdp_md->data_end`).
    End,
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

    /// A 4-byte field holding a packet pointer (loads of it must be exactly 4 bytes and not
    /// sign-extending; the run-time context holds the real pointer, see
    /// [`ProgTypeSpec::ctx_convert`]).
    pub fn packet(name: &str, off: u32, which: PacketPtr) -> CtxField {
        CtxField {
            name: name.into(),
            off,
            size: 4,
            read: true,
            write: false,
            narrow: false,
            kind: FieldKind::Packet(which),
        }
    }

    /// An 8-byte nullable pointer to an attach-time-sized buffer ([`FieldKind::Buf`]).
    pub fn buf(name: &str, off: u32, slot: u8, rdonly: bool) -> CtxField {
        CtxField {
            name: name.into(),
            off,
            size: 8,
            read: true,
            write: false,
            narrow: false,
            kind: FieldKind::Buf { slot, rdonly },
        }
    }

    /// A field whose loads must use its full size.
    pub fn exact(mut self) -> CtxField {
        self.narrow = false;
        self
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

/// Maps a context access the verifier accepted (offset and size in the program's view of the
/// context) to the access of the run-time context that replaces it: Linux's
/// `convert_ctx_access`, restricted to one-instruction rewrites (same instruction, new offset
/// and size). `None`: the access cannot be converted (a bug in the type's tables).
pub type CtxConvertFn = fn(off: i16, size: MemSize, write: bool) -> Option<(i16, MemSize)>;

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
    /// The range applies to the low 32 bits read as a signed int (hooks returning `int`,
    /// as Linux checks LSM programs): `w0 = -1` is -1, not 4294967295.
    pub ret_32bit: bool,
    /// Pointers may be passed where a helper takes any value (Linux's `allow_ptr_leaks` for a
    /// CAP_PERFMON loader, which LSM and tracing programs always have): what
    /// `BPF_CORE_READ` does, handing a kernel-struct pointer to `bpf_probe_read_kernel`.
    pub ptr_leaks: bool,
    /// Optional replacement of the table-driven context check.
    pub ctx_access_fn: Option<CtxAccessFn>,
    /// How context accesses are rewritten for the run-time context after verification
    /// ([`super::convert_ctx_accesses`]); `None`: the program's view is the run-time layout.
    pub ctx_convert: Option<CtxConvertFn>,
    /// Packet pointers may be written through (Linux's `may_access_direct_pkt_data` for a
    /// store); types without packet pointers never get to ask.
    pub packet_write: bool,
}

/// Helpers every type gets (`bpf_base_func_proto` for a privileged loader). 80,
/// `bpf_get_current_cgroup_id`, is there since Linux 6.4 (socket filters and XDP programs
/// calling it load on the host kernel).
pub const BASE_HELPERS: &[u32] = &[
    1, 2, 3, 5, 6, 7, 8, 80, 93, 94, 113, 125, 130, 131, 132, 133, 165, 181,
];
/// Helpers a socket filter gets besides the base set: `bpf_skb_load_bytes`,
/// `bpf_skb_load_bytes_relative`.
pub const SOCKET_FILTER_HELPERS: &[u32] = &[26, 68];
/// Helpers an XDP program gets besides the base set: `bpf_xdp_adjust_head`,
/// `bpf_xdp_adjust_meta`, `bpf_xdp_adjust_tail`, `bpf_xdp_get_buff_len`.
pub const XDP_HELPERS: &[u32] = &[44, 54, 65, 188];
/// Size of `struct __sk_buff`.
pub const SK_BUFF_SIZE: u32 = 192;
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
            ret_32bit: false,
            ptr_leaks: false,
            ctx_access_fn: None,
            ctx_convert: None,
            packet_write: false,
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

    /// `BPF_PROG_TYPE_SOCKET_FILTER`: `struct __sk_buff` (192 bytes) with the fields a socket
    /// filter may touch in Linux ([`sk_filter_ctx_access`]): no packet pointers (socket
    /// filters read the packet with `bpf_skb_load_bytes`), `cb[]` read and write, the rest
    /// read-only. Helpers: the base set, `bpf_skb_load_bytes` and
    /// `bpf_skb_load_bytes_relative`. Not modelled (Linux has them): `skb->sk`,
    /// `bpf_get_socket_cookie`, `bpf_get_socket_uid` and `bpf_perf_event_output` — there is
    /// no socket or perf event behind our contexts.
    pub fn socket_filter() -> Self {
        let f = sk_buff_fields();
        let mut s = Self::with(
            "socket_filter",
            Some(1),
            CtxLayout::Fields {
                size: SK_BUFF_SIZE,
                fields: f,
            },
            SOCKET_FILTER_HELPERS,
            None,
        );
        s.ctx_access_fn = Some(sk_filter_ctx_access);
        s
    }

    /// `BPF_PROG_TYPE_XDP` with `struct xdp_md`: `data`, `data_meta` and `data_end` load as
    /// packet pointers (direct packet access, read and write), `ingress_ifindex` and
    /// `rx_queue_index` as numbers; every load is exactly 4 bytes, nothing is writable, and
    /// `egress_ifindex` (devmap programs only) is refused. Verified programs are rewritten
    /// for the run-time `xdp_buff` of [`crate::pktctx`] ([`crate::pktctx::xdp_convert_ctx`]).
    /// Helpers: the base set, `bpf_xdp_adjust_head`, `bpf_xdp_adjust_meta`,
    /// `bpf_xdp_adjust_tail`, `bpf_xdp_get_buff_len`.
    pub fn xdp() -> Self {
        let f = vec![
            CtxField::packet("data", 0, PacketPtr::Data),
            CtxField::packet("data_end", 4, PacketPtr::End),
            CtxField::packet("data_meta", 8, PacketPtr::Meta),
            CtxField::scalar("ingress_ifindex", 12, 4).exact(),
            CtxField::scalar("rx_queue_index", 16, 4).exact(),
        ];
        let mut s = Self::with(
            "xdp",
            Some(6),
            CtxLayout::Fields {
                size: 24,
                fields: f,
            },
            XDP_HELPERS,
            None,
        );
        s.ctx_convert = Some(crate::pktctx::xdp_convert_ctx);
        s.packet_write = true;
        s
    }

    /// `BPF_PROG_TYPE_LSM` placeholder: the context is an array of `nargs` u64 arguments,
    /// each a scalar or a pointer to a modelled struct; return value in `[-MAX_ERRNO, 0]`.
    /// The hooks' argument tables are filled in by the crate that attaches LSM programs.
    pub fn lsm(args: &[Option<&str>], structs: Vec<StructSpec>) -> Self {
        let mut s = Self::with(
            "lsm",
            Some(29),
            Self::arg_ctx(args),
            &[14, 15, 16, 80, 112, 145, 146, 158, 210, 211],
            Some((-MAX_ERRNO, 0)),
        );
        s.structs = structs;
        s.ret_32bit = true;
        s.ptr_leaks = true;
        s
    }

    /// `BPF_PROG_TYPE_TRACING` (fentry/fexit) placeholder: u64 argument array, return 0.
    pub fn tracing(args: &[Option<&str>], structs: Vec<StructSpec>) -> Self {
        let mut s = Self::with(
            "tracing",
            Some(26),
            Self::arg_ctx(args),
            &[14, 15, 16, 80, 112, 158, 210, 211],
            Some((0, 0)),
        );
        s.structs = structs;
        s.ptr_leaks = true;
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

/// The fields of `struct __sk_buff`, by offset (for names in logs and for
/// [`sk_filter_ctx_access`]).
pub fn sk_buff_fields() -> Vec<CtxField> {
    let mut f = Vec::new();
    let names = [
        "len",
        "pkt_type",
        "mark",
        "queue_mapping",
        "protocol",
        "vlan_present",
        "vlan_tci",
        "vlan_proto",
        "priority",
        "ingress_ifindex",
        "ifindex",
        "tc_index",
    ];
    for (i, n) in names.iter().enumerate() {
        f.push(CtxField::scalar(n, 4 * i as u32, 4));
    }
    f.push(CtxField::scalar("cb", 48, 20).writable());
    f.push(CtxField::scalar("hash", 68, 4));
    f.push(CtxField::scalar("napi_id", 84, 4));
    f.push(CtxField::scalar("gso_segs", 164, 4));
    f.push(CtxField::unsupported(
        "sk",
        168,
        8,
        "struct bpf_sock pointers are not modelled",
    ));
    f.push(CtxField::scalar("gso_size", 176, 4));
    f
}

/// Linux's rules for a socket filter's `struct __sk_buff` accesses: `cb[0..4]` any naturally
/// aligned size inside the array, read and write; `len` .. `tc_index`, `hash`, `napi_id`,
/// `gso_segs`, `gso_size` read-only with loads of 1, 2 or 4 bytes; everything else (packet
/// pointers, `tc_classid`, the socket-address fields, `tstamp`, `wire_len`, `hwtstamp`,
/// `tstamp_type`, `flow_keys`, padding) refused. `sk` is a pointer Linux allows but this
/// verifier does not model.
pub fn sk_filter_ctx_access(
    spec: &ProgTypeSpec,
    off: i64,
    size: u32,
    write: bool,
) -> Result<CtxAccess, String> {
    let CtxLayout::Fields {
        size: total,
        fields,
    } = &spec.ctx
    else {
        return Err(String::new());
    };
    if off < 0 || off >= *total as i64 || off % size as i64 != 0 {
        return Err(String::new());
    }
    let f = fields
        .iter()
        .find(|f| off >= f.off as i64 && off < (f.off + f.size) as i64)
        .ok_or_else(String::new)?;
    if let FieldKind::Unsupported(why) = f.kind {
        return Err(format!(" ({}: {why})", f.name));
    }
    if off + size as i64 > (f.off + f.size) as i64 {
        return Err(String::new());
    }
    if f.name == "cb" {
        // Any size, reads and writes.
    } else if write || size > 4 {
        return Err(String::new());
    }
    Ok(CtxAccess {
        kind: FieldKind::Scalar,
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
