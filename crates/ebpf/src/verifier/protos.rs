//! Helper prototypes: return type and argument kinds per helper number (Linux's numbering),
//! as the verifier checks them. [`HelperProtos::standard`] has the helpers this engine knows;
//! other crates [`HelperProtos::register`] theirs (inode storage and the like).

use super::MapType;
use std::collections::BTreeMap;

/// How the verifier checks one helper argument (`enum bpf_arg_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// Not an argument: not checked.
    DontCare,
    /// Any initialized scalar (`ARG_ANYTHING`; pointers would leak).
    Anything,
    /// `ARG_CONST_MAP_PTR`: a map from `lddw rX, map[...]`.
    ConstMapPtr,
    /// `ARG_PTR_TO_MAP_KEY`: pointer to `key_size` initialized bytes.
    MapKey,
    /// `ARG_PTR_TO_MAP_VALUE`: pointer to `value_size` initialized bytes.
    MapValue,
    /// `ARG_PTR_TO_MAP_VALUE_OR_NULL`.
    MapValueOrNull,
    /// `ARG_PTR_TO_MEM`: memory whose size is the next argument. `read`: the helper reads it
    /// (it must be initialized); `write`: the helper writes it (it must be writable; with
    /// `!read`, it need not be initialized and is initialized afterwards).
    Mem {
        read: bool,
        write: bool,
        nullable: bool,
    },
    /// `ARG_CONST_SIZE`: size of the previous memory argument, bounded, not zero.
    ConstSize,
    /// `ARG_CONST_SIZE_OR_ZERO`.
    ConstSizeOrZero,
    /// `ARG_CONST_ALLOC_SIZE_OR_ZERO`: a known constant, the size of the returned memory.
    ConstAllocSize,
    /// `ARG_PTR_TO_CTX`.
    Ctx,
    /// `ARG_PTR_TO_FUNC`: a callback subprogram (`lddw rX, subprog`).
    Func,
    /// `ARG_PTR_TO_STACK_OR_NULL`: callback context.
    StackOrNull,
    /// `ARG_PTR_TO_ALLOC_MEM | OBJ_RELEASE`: a record from `ringbuf_reserve`, released.
    ReleaseAllocMem,
    /// `ARG_PTR_TO_SPIN_LOCK`.
    SpinLock,
    /// `ARG_PTR_TO_BTF_ID(_OR_NULL)`: pointer to the modelled struct `name`.
    BtfId { name: &'static str, nullable: bool },
    /// `ARG_PTR_TO_CONST_STR`: a read-only map value at a constant offset.
    ConstStr,
}

/// What a helper returns in `r0` (`enum bpf_return_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetKind {
    /// A number, optionally known to lie in `[lo, hi]` (unsigned).
    Integer(Option<(u64, u64)>),
    /// Nothing: `r0` is not readable after the call.
    Void,
    /// `RET_PTR_TO_MAP_VALUE_OR_NULL` (value of the map argument).
    MapValueOrNull,
    /// `RET_PTR_TO_BTF_ID` (trusted, never NULL): a pointer to the modelled struct `name`
    /// (`bpf_get_current_task_btf`).
    BtfId(&'static str),
    /// `RET_PTR_TO_RINGBUF_MEM_OR_NULL`: an acquired reference of `ConstAllocSize` bytes.
    AllocMemOrNull,
}

/// Which spin-lock operation a helper is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockOp {
    None,
    Lock,
    Unlock,
}

/// A helper's prototype.
#[derive(Clone, Debug)]
pub struct HelperProto {
    pub name: &'static str,
    pub ret: RetKind,
    pub args: [ArgKind; 5],
    /// If set, the map argument must be of one of these types.
    pub map_types: Option<&'static [MapType]>,
    pub lock: LockOp,
    /// Memory arguments may point into the packet (Linux's `pkt_access`).
    pub pkt_access: bool,
    /// The helper may move or resize the packet: packet pointers are invalid after the call
    /// (Linux's `bpf_helper_changes_pkt_data`).
    pub changes_pkt_data: bool,
}

impl HelperProto {
    pub fn new(name: &'static str, ret: RetKind, args: &[ArgKind]) -> HelperProto {
        let mut a = [ArgKind::DontCare; 5];
        a[..args.len()].copy_from_slice(args);
        HelperProto {
            name,
            ret,
            args: a,
            map_types: None,
            lock: LockOp::None,
            pkt_access: false,
            changes_pkt_data: false,
        }
    }

    /// Memory arguments may point into the packet.
    pub fn pkt_access(mut self) -> HelperProto {
        self.pkt_access = true;
        self
    }

    /// The helper invalidates packet pointers.
    pub fn changes_pkt_data(mut self) -> HelperProto {
        self.changes_pkt_data = true;
        self
    }

    pub fn maps(mut self, types: &'static [MapType]) -> HelperProto {
        self.map_types = Some(types);
        self
    }

    fn lock(mut self, op: LockOp) -> HelperProto {
        self.lock = op;
        self
    }

    /// Number of leading arguments that are checked.
    pub fn nargs(&self) -> usize {
        self.args
            .iter()
            .rposition(|a| *a != ArgKind::DontCare)
            .map_or(0, |i| i + 1)
    }
}

/// Helper number → prototype.
#[derive(Clone, Debug, Default)]
pub struct HelperProtos {
    table: BTreeMap<u32, HelperProto>,
}

const RINGBUF: &[MapType] = &[MapType::RINGBUF];
const INODE_STORAGE: &[MapType] = &[MapType::INODE_STORAGE];
const CGRP_STORAGE: &[MapType] = &[MapType::CGRP_STORAGE];

impl HelperProtos {
    pub fn empty() -> Self {
        Self::default()
    }

    /// The prototypes of the helpers Linux numbers and this engine knows.
    pub fn standard() -> Self {
        use ArgKind::*;
        use RetKind::{AllocMemOrNull, Integer, Void};
        let int = Integer(None);
        let ret_map_value = RetKind::MapValueOrNull;
        let rd = Mem {
            read: true,
            write: false,
            nullable: false,
        };
        let rd_null = Mem {
            read: true,
            write: false,
            nullable: true,
        };
        let wr = Mem {
            read: false,
            write: true,
            nullable: false,
        };
        let wr_null = Mem {
            read: false,
            write: true,
            nullable: true,
        };
        let mut p = Self::empty();
        p.register(
            1,
            HelperProto::new("bpf_map_lookup_elem", ret_map_value, &[ConstMapPtr, MapKey])
                .pkt_access(),
        );
        p.register(
            2,
            HelperProto::new(
                "bpf_map_update_elem",
                int,
                &[ConstMapPtr, MapKey, MapValue, Anything],
            )
            .pkt_access(),
        );
        p.register(
            3,
            HelperProto::new("bpf_map_delete_elem", int, &[ConstMapPtr, MapKey]).pkt_access(),
        );
        // Socket filters read the packet through the context (no direct packet access).
        p.register(
            26,
            HelperProto::new("bpf_skb_load_bytes", int, &[Ctx, Anything, wr, ConstSize]),
        );
        p.register(
            68,
            HelperProto::new(
                "bpf_skb_load_bytes_relative",
                int,
                &[Ctx, Anything, wr, ConstSize, Anything],
            ),
        );
        p.register(
            44,
            HelperProto::new("bpf_xdp_adjust_head", int, &[Ctx, Anything]).changes_pkt_data(),
        );
        p.register(
            54,
            HelperProto::new("bpf_xdp_adjust_meta", int, &[Ctx, Anything]).changes_pkt_data(),
        );
        p.register(
            65,
            HelperProto::new("bpf_xdp_adjust_tail", int, &[Ctx, Anything]).changes_pkt_data(),
        );
        p.register(188, HelperProto::new("bpf_xdp_get_buff_len", int, &[Ctx]));
        p.register(5, HelperProto::new("bpf_ktime_get_ns", int, &[]));
        p.register(
            6,
            HelperProto::new("bpf_trace_printk", int, &[rd, ConstSize]),
        );
        p.register(7, HelperProto::new("bpf_get_prandom_u32", int, &[]));
        p.register(8, HelperProto::new("bpf_get_smp_processor_id", int, &[]));
        p.register(14, HelperProto::new("bpf_get_current_pid_tgid", int, &[]));
        p.register(15, HelperProto::new("bpf_get_current_uid_gid", int, &[]));
        p.register(
            16,
            HelperProto::new("bpf_get_current_comm", int, &[wr, ConstSize]),
        );
        p.register(80, HelperProto::new("bpf_get_current_cgroup_id", int, &[]));
        p.register(
            93,
            HelperProto::new("bpf_spin_lock", Void, &[SpinLock]).lock(LockOp::Lock),
        );
        p.register(
            94,
            HelperProto::new("bpf_spin_unlock", Void, &[SpinLock]).lock(LockOp::Unlock),
        );
        p.register(
            112,
            HelperProto::new("bpf_probe_read_user", int, &[wr, ConstSizeOrZero, Anything]),
        );
        p.register(
            113,
            HelperProto::new(
                "bpf_probe_read_kernel",
                int,
                &[wr, ConstSizeOrZero, Anything],
            ),
        );
        p.register(125, HelperProto::new("bpf_ktime_get_boot_ns", int, &[]));
        let seq = BtfId {
            name: "seq_file",
            nullable: false,
        };
        p.register(
            126,
            HelperProto::new(
                "bpf_seq_printf",
                int,
                &[seq, rd, ConstSize, rd_null, ConstSizeOrZero],
            ),
        );
        p.register(
            127,
            HelperProto::new("bpf_seq_write", int, &[seq, rd, ConstSizeOrZero]),
        );
        // The btf_ptr is read for `ptr_size` bytes (checked to be 16 at run time); its
        // `ptr` is read through the run's memory checks, not verified.
        p.register(
            150,
            HelperProto::new(
                "bpf_seq_printf_btf",
                int,
                &[seq, rd, ConstSizeOrZero, Anything],
            ),
        );
        p.register(
            130,
            HelperProto::new(
                "bpf_ringbuf_output",
                int,
                &[ConstMapPtr, rd, ConstSizeOrZero, Anything],
            )
            .maps(RINGBUF),
        );
        p.register(
            131,
            HelperProto::new(
                "bpf_ringbuf_reserve",
                AllocMemOrNull,
                &[ConstMapPtr, ConstAllocSize, Anything],
            )
            .maps(RINGBUF),
        );
        p.register(
            132,
            HelperProto::new("bpf_ringbuf_submit", Void, &[ReleaseAllocMem, Anything]),
        );
        p.register(
            133,
            HelperProto::new("bpf_ringbuf_discard", Void, &[ReleaseAllocMem, Anything]),
        );
        let inode = BtfId {
            name: "inode",
            nullable: true,
        };
        p.register(
            145,
            HelperProto::new(
                "bpf_inode_storage_get",
                ret_map_value,
                &[ConstMapPtr, inode, MapValueOrNull, Anything],
            )
            .maps(INODE_STORAGE),
        );
        p.register(
            146,
            HelperProto::new("bpf_inode_storage_delete", int, &[ConstMapPtr, inode])
                .maps(INODE_STORAGE),
        );
        p.register(
            165,
            HelperProto::new(
                "bpf_snprintf",
                int,
                &[wr_null, ConstSizeOrZero, ConstStr, rd_null, ConstSizeOrZero],
            ),
        );
        p.register(
            181,
            HelperProto::new("bpf_loop", int, &[Anything, Func, StackOrNull, Anything]),
        );
        let cgrp = BtfId {
            name: "cgroup",
            nullable: true,
        };
        p.register(
            210,
            HelperProto::new(
                "bpf_cgrp_storage_get",
                ret_map_value,
                &[ConstMapPtr, cgrp, MapValueOrNull, Anything],
            )
            .maps(CGRP_STORAGE),
        );
        p.register(
            211,
            HelperProto::new("bpf_cgrp_storage_delete", int, &[ConstMapPtr, cgrp])
                .maps(CGRP_STORAGE),
        );
        p
    }

    /// Registers (or replaces) helper `id`; returns the previous prototype.
    pub fn register(&mut self, id: u32, proto: HelperProto) -> Option<HelperProto> {
        self.table.insert(id, proto)
    }

    pub fn get(&self, id: u32) -> Option<&HelperProto> {
        self.table.get(&id)
    }

    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.table.keys().copied()
    }
}
