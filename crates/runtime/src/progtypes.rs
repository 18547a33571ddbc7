//! The program-type table: for each type this instance can load, the section kinds that
//! select it, the verifier's rules for it (context layout, helpers, return range) and how
//! `BPF_PROG_TEST_RUN` feeds it. Adding a type (the hooks issue adds LSM, tracing and view
//! programs) is one more row, not another `match` somewhere else.

use bpfvfs_bpf::ProgType;
use bpfvfs_ebpf::verifier::ProgTypeSpec;
use bpfvfs_ebpf_obj::ProgramKind;

/// How a test run builds the program's context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestRunKind {
    /// The context is the caller's `ctx_in` buffer (BPF_PROG_TYPE_SYSCALL).
    Syscall,
    /// A `struct __sk_buff` around `data_in` (socket filters).
    Skb,
    /// A `struct xdp_md` around `data_in`.
    Xdp,
    /// The type cannot be test-run (the kernel's ENOTSUPP).
    None,
}

/// One row of the table.
pub struct ProgTypeEntry {
    /// The name bpftool prints (`prog show`) for this type.
    pub name: &'static str,
    pub prog_type: ProgType,
    /// Section kinds (from the ELF section name) that select this type.
    pub kinds: &'static [ProgramKind],
    /// The verifier's description of a program of this type in a section of `kind` attached
    /// to `target` (the part after the `/`); `None` while programs of the type cannot be
    /// loaded yet (`unsupported` says why).
    pub spec: Option<SpecFn>,
    pub test_run: TestRunKind,
    pub unsupported: &'static str,
}

pub type SpecFn = fn(ProgramKind, Option<&str>) -> Result<ProgTypeSpec, String>;

const NOT_MODELLED: &str = "fmod_ret and tp_btf programs are not modelled yet";

pub static PROG_TYPES: &[ProgTypeEntry] = &[
    ProgTypeEntry {
        name: "syscall",
        prog_type: ProgType::Syscall,
        kinds: &[ProgramKind::Syscall],
        spec: Some(|_, _| Ok(ProgTypeSpec::syscall())),
        test_run: TestRunKind::Syscall,
        unsupported: "",
    },
    ProgTypeEntry {
        name: "socket_filter",
        prog_type: ProgType::SocketFilter,
        kinds: &[ProgramKind::SocketFilter],
        spec: Some(|_, _| Ok(ProgTypeSpec::socket_filter())),
        test_run: TestRunKind::Skb,
        unsupported: "",
    },
    ProgTypeEntry {
        name: "xdp",
        prog_type: ProgType::Xdp,
        kinds: &[ProgramKind::Xdp],
        spec: Some(|_, _| Ok(ProgTypeSpec::xdp())),
        test_run: TestRunKind::Xdp,
        unsupported: "",
    },
    ProgTypeEntry {
        name: "lsm",
        prog_type: ProgType::Lsm,
        kinds: &[ProgramKind::Lsm],
        spec: Some(|_, target| crate::hooks::lsm_spec(target)),
        test_run: TestRunKind::None,
        unsupported: "",
    },
    ProgTypeEntry {
        name: "tracing",
        prog_type: ProgType::Tracing,
        kinds: &[ProgramKind::Fentry, ProgramKind::Fexit],
        spec: Some(|kind, target| match kind {
            ProgramKind::Fexit => crate::hooks::fexit_spec(target),
            _ => crate::hooks::fentry_spec(target),
        }),
        test_run: TestRunKind::None,
        unsupported: "",
    },
    ProgTypeEntry {
        name: "tracing",
        prog_type: ProgType::Tracing,
        kinds: &[ProgramKind::Iter],
        spec: Some(|_, target| crate::iter::iter_spec(target)),
        test_run: TestRunKind::None,
        unsupported: "",
    },
    // bpfvfs's view programs: no kernel type; shown as tracing programs (the type their
    // iterator twins have) by `prog show`.
    ProgTypeEntry {
        name: "tracing",
        prog_type: ProgType::Tracing,
        kinds: &[ProgramKind::View],
        spec: Some(|_, target| crate::view::view_spec(target)),
        test_run: TestRunKind::None,
        unsupported: "",
    },
    ProgTypeEntry {
        name: "tracing",
        prog_type: ProgType::Tracing,
        kinds: &[ProgramKind::FmodRet, ProgramKind::TpBtf],
        spec: None,
        test_run: TestRunKind::None,
        unsupported: NOT_MODELLED,
    },
];

/// The row for a section kind.
pub fn for_kind(kind: ProgramKind) -> Option<&'static ProgTypeEntry> {
    PROG_TYPES.iter().find(|e| e.kinds.contains(&kind))
}

/// The row for a kernel program type number.
pub fn for_prog_type(t: u32) -> Option<&'static ProgTypeEntry> {
    PROG_TYPES.iter().find(|e| e.prog_type.as_u32() == t)
}
