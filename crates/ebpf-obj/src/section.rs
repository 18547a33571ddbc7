//! Program section names (`SEC("...")`) → program kind and attach target.
//!
//! The section string is split at its first `/`: the head names the kind (as in
//! libbpf's `section_defs` table), the rest is the attach target
//! (`"lsm/file_open"` → [`ProgramKind::Lsm`], `"file_open"`). A `.s` suffix on the
//! head (`lsm.s`, `fentry.s`, `iter.s`, `uprobe.s`, ...) marks a sleepable
//! program. `cgroup/<hook>` picks the kind from the hook (`cgroup/connect4` is
//! [`ProgramKind::CgroupSockAddr`]). Unknown heads give [`ProgramKind::Unknown`]
//! with the full string still available, so a caller can accept its own kinds.

/// What kind of program a section declares (roughly `enum bpf_prog_type`, with
/// the tracing flavours that share a program type kept apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProgramKind {
    /// `socket`
    SocketFilter,
    /// `kprobe/<func>`
    Kprobe,
    /// `kretprobe/<func>`
    Kretprobe,
    /// `kprobe.multi/<pattern>`
    KprobeMulti,
    /// `kretprobe.multi/<pattern>`
    KretprobeMulti,
    /// `ksyscall/<name>`
    Ksyscall,
    /// `kretsyscall/<name>`
    Kretsyscall,
    /// `uprobe/<binary>:<func>`
    Uprobe,
    /// `uretprobe/...`
    Uretprobe,
    /// `uprobe.multi/...`
    UprobeMulti,
    /// `uretprobe.multi/...`
    UretprobeMulti,
    /// `usdt/...`
    Usdt,
    /// `tracepoint/<category>/<name>` or `tp/...`
    Tracepoint,
    /// `raw_tracepoint/<name>` or `raw_tp/...`
    RawTracepoint,
    /// `raw_tracepoint.w/<name>` or `raw_tp.w/...`
    RawTracepointWritable,
    /// `tp_btf/<name>`
    TpBtf,
    /// `fentry/<func>`
    Fentry,
    /// `fexit/<func>`
    Fexit,
    /// `fmod_ret/<func>`
    FmodRet,
    /// `freplace/<func>`
    Extension,
    /// `lsm/<hook>`
    Lsm,
    /// `lsm_cgroup/<hook>`
    LsmCgroup,
    /// `iter/<target>`
    Iter,
    /// `syscall`
    Syscall,
    /// `xdp`, `xdp.frags`, `xdp/devmap`, `xdp/cpumap`
    Xdp,
    /// `perf_event`
    PerfEvent,
    /// `tc`, `tc/ingress`, `tcx/egress`, `netkit/...`, `classifier`
    SchedCls,
    /// `action`
    SchedAct,
    /// `cgroup_skb/ingress|egress`, `cgroup/skb`
    CgroupSkb,
    /// `cgroup/sock_create|sock_release|post_bind4|post_bind6|sock`
    CgroupSock,
    /// `cgroup/bind4|connect4|sendmsg4|recvmsg4|getpeername4|getsockname4` (and 6/unix)
    CgroupSockAddr,
    /// `cgroup/getsockopt|setsockopt`
    CgroupSockopt,
    /// `cgroup/sysctl`
    CgroupSysctl,
    /// `cgroup/dev`
    CgroupDevice,
    /// `sockops`
    SockOps,
    /// `sk_skb`, `sk_skb/stream_parser|stream_verdict`
    SkSkb,
    /// `sk_msg`
    SkMsg,
    /// `sk_lookup`
    SkLookup,
    /// `sk_reuseport`, `sk_reuseport/migrate`
    SkReuseport,
    /// `flow_dissector`
    FlowDissector,
    /// `lwt_in`
    LwtIn,
    /// `lwt_out`
    LwtOut,
    /// `lwt_xmit`
    LwtXmit,
    /// `lwt_seg6local`
    LwtSeg6local,
    /// `lirc_mode2`
    LircMode2,
    /// `struct_ops/<member>`
    StructOps,
    /// `netfilter`
    Netfilter,
    /// bpfvfs view programs: `view/<hook>` (e.g. `view/cgroup`).
    View,
    /// A section head this parser does not know; see [`SectionSpec::section`].
    Unknown,
}

/// A parsed program section name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionSpec {
    /// The full section string, exactly as in the ELF file.
    pub section: String,
    /// Kind derived from the head.
    pub kind: ProgramKind,
    /// Everything after the first `/` (None when absent or empty).
    pub attach_target: Option<String>,
    /// The head carried a `.s` (sleepable) suffix.
    pub sleepable: bool,
}

/// Parse a program section name.
pub fn parse_section(section: &str) -> SectionSpec {
    let (head, tail) = match section.split_once('/') {
        Some((h, t)) => (h, Some(t)),
        None => (section, None),
    };
    let attach_target = tail.filter(|t| !t.is_empty()).map(str::to_owned);
    let (base, sleepable) = match head.strip_suffix(".s") {
        Some(b) => (b, true),
        None => (head, false),
    };
    use ProgramKind::*;
    let kind = match base {
        "socket" => SocketFilter,
        "kprobe" => Kprobe,
        "kretprobe" => Kretprobe,
        "kprobe.multi" => KprobeMulti,
        "kretprobe.multi" => KretprobeMulti,
        "ksyscall" => Ksyscall,
        "kretsyscall" => Kretsyscall,
        "uprobe" => Uprobe,
        "uretprobe" => Uretprobe,
        "uprobe.multi" => UprobeMulti,
        "uretprobe.multi" => UretprobeMulti,
        "usdt" => Usdt,
        "tracepoint" | "tp" => Tracepoint,
        "raw_tracepoint" | "raw_tp" => RawTracepoint,
        "raw_tracepoint.w" | "raw_tp.w" => RawTracepointWritable,
        "tp_btf" => TpBtf,
        "fentry" => Fentry,
        "fexit" => Fexit,
        "fmod_ret" => FmodRet,
        "freplace" => Extension,
        "lsm" => Lsm,
        "lsm_cgroup" => LsmCgroup,
        "iter" => Iter,
        "syscall" => Syscall,
        "xdp" | "xdp.frags" => Xdp,
        "perf_event" => PerfEvent,
        "tc" | "tcx" | "netkit" | "classifier" => SchedCls,
        "action" => SchedAct,
        "cgroup_skb" => CgroupSkb,
        "cgroup" => match tail.unwrap_or("") {
            "skb" => CgroupSkb,
            "sock_create" | "sock_release" | "post_bind4" | "post_bind6" | "sock" => CgroupSock,
            "bind4" | "bind6" | "connect4" | "connect6" | "connect_unix" | "sendmsg4"
            | "sendmsg6" | "sendmsg_unix" | "recvmsg4" | "recvmsg6" | "recvmsg_unix"
            | "getpeername4" | "getpeername6" | "getpeername_unix" | "getsockname4"
            | "getsockname6" | "getsockname_unix" => CgroupSockAddr,
            "getsockopt" | "setsockopt" => CgroupSockopt,
            "sysctl" => CgroupSysctl,
            "dev" => CgroupDevice,
            _ => Unknown,
        },
        "sockops" => SockOps,
        "sk_skb" => SkSkb,
        "sk_msg" => SkMsg,
        "sk_lookup" => SkLookup,
        "sk_reuseport" => SkReuseport,
        "flow_dissector" => FlowDissector,
        "lwt_in" => LwtIn,
        "lwt_out" => LwtOut,
        "lwt_xmit" => LwtXmit,
        "lwt_seg6local" => LwtSeg6local,
        "lirc_mode2" => LircMode2,
        "struct_ops" => StructOps,
        "netfilter" => Netfilter,
        "view" => View,
        _ => Unknown,
    };
    SectionSpec {
        section: section.to_owned(),
        kind,
        attach_target,
        sleepable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections() {
        let s = parse_section("lsm/file_open");
        assert_eq!(
            (s.kind, s.attach_target.as_deref(), s.sleepable),
            (ProgramKind::Lsm, Some("file_open"), false)
        );
        let s = parse_section("lsm.s/bprm_committed_creds");
        assert_eq!((s.kind, s.sleepable), (ProgramKind::Lsm, true));
        let s = parse_section("tracepoint/syscalls/sys_enter_openat");
        assert_eq!(
            (s.kind, s.attach_target.as_deref()),
            (ProgramKind::Tracepoint, Some("syscalls/sys_enter_openat"))
        );
        assert_eq!(parse_section("xdp").kind, ProgramKind::Xdp);
        assert_eq!(parse_section("xdp").attach_target, None);
        assert_eq!(
            parse_section("cgroup/connect4").kind,
            ProgramKind::CgroupSockAddr
        );
        assert_eq!(parse_section("view/cgroup").kind, ProgramKind::View);
        assert_eq!(
            parse_section("view/cgroup").attach_target.as_deref(),
            Some("cgroup")
        );
        assert_eq!(parse_section("fentry.s/vfs_read").kind, ProgramKind::Fentry);
        let s = parse_section("weird/x");
        assert_eq!(
            (s.kind, s.section.as_str()),
            (ProgramKind::Unknown, "weird/x")
        );
        assert_eq!(parse_section("kprobe/").attach_target, None);
    }
}
