//! # Packet contexts for test runs
//!
//! Owned contexts for running XDP programs and socket filters on a packet the caller supplies,
//! built the way Linux's `BPF_PROG_TEST_RUN` builds them (`net/bpf/test_run.c`), with the
//! kernel's input rules and errnos. Written from the kernel's documented behaviour and from
//! differential runs against it (`tests/kernel_test_run.rs`); no kernel code.
//!
//! ## API
//!
//! ```text
//! // after verification, rewrite the program's context accesses for the run-time context:
//! let insns = verifier::convert_ctx_accesses(&insns, &spec, &verified)?;   // XDP: required
//! let prog = Program::load(&insns, opts)?;
//!
//! let mut run = XdpRun::new(data_in, ctx)?;      // or SkbRun::new(data_in, ctx)?
//! let args = run.args();                         // r1 = the run-time context
//! let regions = run.regions();                   // context + packet, for this run only
//! let r0 = interp.run(args, &regions, &mut env)?; // or run_unchecked / Jit::run...
//! drop(regions);
//! let retval = r0 as u32;                        // test.retval is 32 bits
//! run.data_out();                                // what data_out receives (full size)
//! run.ctx_out();                                 // what ctx_out receives, if a ctx exists
//! ```
//!
//! `ctx` is the kernel's context buffer: `Some(ctx_in)` when user space passed `ctx_in`,
//! `Some(&[])` when it passed only `ctx_out` (the kernel then starts from a zeroed struct),
//! `None` when it passed neither (then there is no `ctx_out`). Shorter buffers are
//! zero-extended; longer ones must be zero past the struct (else `E2BIG`). Flags, `repeat`,
//! `cpu`, `batch_size` and the truncation of the outputs to `data_size_out`/`ctx_size_out`
//! (`ENOSPC`) are the caller's: this module only builds and reads back the contexts.
//!
//! ## XDP ([`XdpRun`])
//!
//! The packet lives in a zeroed page-sized frame, as in the kernel's test run: 256 bytes of
//! headroom ([`XDP_PACKET_HEADROOM`]), the packet, and a tail ending [`SKB_SHARED_INFO_SIZE`]
//! bytes before the page's end (the limit of `bpf_xdp_adjust_tail`). With a context,
//! `xdp_md.data` is the length of metadata at the start of `data_in` (a multiple of 4, at most
//! 32) and `data_end` the length of metadata and packet in the frame: at most `data_in`'s
//! length, and when shorter Linux (6.18) puts the rest in fragments — multi-buffer XDP, which
//! is not modelled (`EOPNOTSUPP`; so is a `ctx_out` without `ctx_in`, whose zeroed context
//! says `data_end` 0). The packet after the metadata must hold an Ethernet header. The
//! program's `struct xdp_md` does not
//! exist at run time: `r1` points at a hidden 48-byte `xdp_buff` holding real 64-bit
//! pointers (`data`, `data_end`, `data_meta`), the receive queue and the frame's bounds, and
//! [`xdp_convert_ctx`] (through [`crate::verifier::convert_ctx_accesses`]) turns each 4-byte
//! load of an `xdp_md` field into the load of its `xdp_buff` field. The output is the bytes
//! from `data_meta` to `data_end` after the run; `ctx_out` carries the new metadata length
//! and end. Only the loopback device (ifindex 1, one receive queue) exists here; packets
//! longer than a frame holds would be multi-buffer too.
//!
//! ## Socket filters ([`SkbRun`])
//!
//! The visible context is the 192-byte `struct __sk_buff` filled as the kernel's skb for a
//! socket filter: the Ethernet header already pulled (`len` = packet length − 14), `protocol`
//! the EtherType as the kernel stores it (network byte order in the low 16 bits, or the
//! 802.3/802.2 values for length fields; an IPv4 or IPv6 frame must hold the IP header, else
//! `EINVAL`), `pkt_type` from the destination MAC as the loopback
//! device sees it, `ifindex` 1, and `mark`, `priority`, `ingress_ifindex`, `cb[]`,
//! `tstamp`, `gso_segs`, `gso_size`, `hwtstamp`, `wire_len` from `ctx_in` (the only fields
//! user space may set; every other byte must be zero). A hidden 24-byte trailer after the
//! struct holds the packet's MAC header, network header and end: `bpf_skb_load_bytes` and
//! `bpf_skb_load_bytes_relative` find the packet through it. The output packet has the
//! Ethernet header zeroed, as the kernel returns it for programs that run past layer 2.
//!
//! ## Memory
//!
//! [`XdpRun::regions`] and [`SkbRun::regions`] lend the run-time context (writable: in
//! checked runs of unverified programs the packet helpers re-check every pointer they read
//! from it) and the packet frame (writable for XDP, read-only for socket filters) to one run.
//! Verified programs reach nothing else; the helpers check everything against the regions in
//! checked runs.

use crate::insn::MemSize;
use crate::memory::{Region, RegionKind};

/// `ETH_HLEN`.
pub const ETH_HLEN: usize = 14;
/// The frame size of the kernel's XDP test run (`PAGE_SIZE`).
pub const PAGE_SIZE: usize = 4096;
/// `XDP_PACKET_HEADROOM`.
pub const XDP_PACKET_HEADROOM: usize = 256;
/// `SKB_DATA_ALIGN(sizeof(struct skb_shared_info))` on x86-64: the tail of a frame the
/// packet may not grow into.
pub const SKB_SHARED_INFO_SIZE: usize = 320;
/// `sizeof(struct xdp_frame)`: the start of a frame `bpf_xdp_adjust_head`/`_meta` may not
/// move into.
pub const XDP_FRAME_SIZE: usize = 40;
/// Largest XDP metadata (`xdp_metalen_invalid`), in bytes.
pub const XDP_METADATA_MAX: usize = 32;
/// `NET_SKB_PAD + NET_IP_ALIGN` on x86-64: the skb test run's headroom.
pub const SKB_HEADROOM: usize = 64;
/// Longest `data_in` of an skb test run.
pub const SKB_MAX_DATA: usize = PAGE_SIZE - SKB_HEADROOM - SKB_SHARED_INFO_SIZE;
/// Longest `data_in` of an XDP test run without metadata (a frame's worth).
pub const XDP_MAX_DATA: usize = PAGE_SIZE - XDP_PACKET_HEADROOM - SKB_SHARED_INFO_SIZE;
/// `sizeof(struct xdp_md)`.
pub const XDP_MD_SIZE: usize = 24;
/// `sizeof(struct __sk_buff)`.
pub const SK_BUFF_SIZE: usize = 192;
/// The loopback device's ifindex: the device test runs use.
pub const LOOPBACK_IFINDEX: u32 = 1;
/// `GSO_MAX_SEGS`.
pub const GSO_MAX_SEGS: u32 = 65535;
/// `GSO_LEGACY_MAX_SIZE`: the largest `wire_len`.
pub const GSO_LEGACY_MAX_SIZE: u32 = 65536;

/// `skb->pkt_type` values.
pub const PACKET_HOST: u32 = 0;
pub const PACKET_BROADCAST: u32 = 1;
pub const PACKET_MULTICAST: u32 = 2;
pub const PACKET_OTHERHOST: u32 = 3;

/// `skb->protocol` for frames whose type field is a length: `htons(ETH_P_802_3)` when the
/// payload starts with 0xffff (raw 802.3, Novell), `htons(ETH_P_802_2)` otherwise.
pub const PROTO_802_3: u32 = 0x0100;
pub const PROTO_802_2: u32 = 0x0400;

const EINVAL: i32 = 22;
const E2BIG: i32 = 7;
const ENODEV: i32 = 19;
const EOPNOTSUPP: i32 = 95;

/// Why a context cannot be built, with the errno `BPF_PROG_TEST_RUN` returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PktError {
    /// `EINVAL`.
    #[error("data_in is {len} bytes; at least {min} (the Ethernet header, and the IP header it announces) are needed")]
    DataTooShort { len: usize, min: usize },
    /// `EINVAL`.
    #[error("data_in is {len} bytes; at most {max} fit the test buffer")]
    DataTooLong { len: usize, max: usize },
    /// `E2BIG`: non-zero bytes past the end of the struct (or a buffer beyond a page).
    #[error("ctx_in is {len} bytes and has non-zero bytes past the {size}-byte {name}")]
    CtxTooBig {
        len: usize,
        size: usize,
        name: &'static str,
    },
    /// `EINVAL`: a field user space may not set, or an inconsistent one.
    #[error("ctx_in: {0}")]
    InvalidCtx(String),
    /// `EINVAL`: a packet the kernel does not take (an IP frame too short for its header).
    #[error("data_in: {0}")]
    InvalidData(String),
    /// `ENODEV`.
    #[error(
        "no network device with ifindex {0} (only the loopback device, ifindex 1, is modelled)"
    )]
    NoDevice(u32),
    /// `EOPNOTSUPP`: something Linux does that this model does not.
    #[error("{0} is not supported")]
    Unsupported(String),
}

impl PktError {
    /// The errno `BPF_PROG_TEST_RUN` fails with (positive).
    pub fn errno(&self) -> i32 {
        match self {
            PktError::DataTooShort { .. }
            | PktError::DataTooLong { .. }
            | PktError::InvalidCtx(_)
            | PktError::InvalidData(_) => EINVAL,
            PktError::CtxTooBig { .. } => E2BIG,
            PktError::NoDevice(_) => ENODEV,
            PktError::Unsupported(_) => EOPNOTSUPP,
        }
    }
}

/// A zeroed, 8-byte-aligned buffer (the kernel's buffers are kmalloc'ed, so aligned loads of
/// aligned offsets stay aligned here too).
struct Buf(Box<[u64]>);

impl Buf {
    fn new(len: usize) -> Buf {
        Buf(vec![0u64; len.div_ceil(8)].into_boxed_slice())
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: u64 has no padding and every byte is initialized; u8 needs no alignment.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), self.0.len() * 8) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `bytes`, and any byte pattern is a valid u64.
        unsafe {
            std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), self.0.len() * 8)
        }
    }

    fn addr(&self) -> u64 {
        self.0.as_ptr().addr() as u64
    }

    fn set32(&mut self, off: usize, v: u32) {
        self.bytes_mut()[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }

    fn get64(&self, off: usize) -> u64 {
        u64::from_ne_bytes(self.bytes()[off..off + 8].try_into().expect("8 bytes"))
    }

    fn set64(&mut self, off: usize, v: u64) {
        self.bytes_mut()[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    }
}

fn get32(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn get64(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// The kernel's copy of `ctx_in` (`bpf_ctx_init`): zero-extended to the struct, refused if
/// bytes past the struct are not zero.
fn ctx_init<const N: usize>(ctx_in: &[u8], name: &'static str) -> Result<[u8; N], PktError> {
    let too_big = PktError::CtxTooBig {
        len: ctx_in.len(),
        size: N,
        name,
    };
    if ctx_in.len() > PAGE_SIZE {
        return Err(too_big);
    }
    if ctx_in.len() > N && ctx_in[N..].iter().any(|&b| b != 0) {
        return Err(too_big);
    }
    let mut c = [0u8; N];
    let n = ctx_in.len().min(N);
    c[..n].copy_from_slice(&ctx_in[..n]);
    Ok(c)
}

// ---------------------------------------------------------------------------------------------
// XDP
// ---------------------------------------------------------------------------------------------

/// Layout of the run-time `xdp_buff` `r1` points at (all native-endian).
pub(crate) mod xdp_buff {
    /// `u64`: first byte of the packet data.
    pub const DATA: u64 = 0;
    /// `u64`: one past the last byte.
    pub const DATA_END: u64 = 8;
    /// `u64`: first byte of the metadata (== `DATA` when there is none).
    pub const DATA_META: u64 = 16;
    /// `u32`.
    pub const INGRESS_IFINDEX: u64 = 24;
    /// `u32`.
    pub const RX_QUEUE_INDEX: u64 = 28;
    /// `u64`: start of the frame.
    pub const HARD_START: u64 = 32;
    /// `u64`: how far `DATA_END` may grow.
    pub const HARD_END: u64 = 40;
    pub const SIZE: usize = 48;
}

/// The rewrite of an `xdp_md` access (as the verifier accepted it: a 4-byte load) into the
/// access of the run-time `xdp_buff`: the three pointers become 8-byte loads of the real
/// pointers, `ingress_ifindex` and `rx_queue_index` 4-byte loads. Used as
/// [`crate::verifier::ProgTypeSpec::ctx_convert`] of the XDP type.
pub fn xdp_convert_ctx(off: i16, size: MemSize, write: bool) -> Option<(i16, MemSize)> {
    if write || size != MemSize::W {
        return None;
    }
    let (to, sz) = match off {
        0 => (xdp_buff::DATA, MemSize::DW),
        4 => (xdp_buff::DATA_END, MemSize::DW),
        8 => (xdp_buff::DATA_META, MemSize::DW),
        12 => (xdp_buff::INGRESS_IFINDEX, MemSize::W),
        16 => (xdp_buff::RX_QUEUE_INDEX, MemSize::W),
        _ => return None,
    };
    Some((to as i16, sz))
}

/// An XDP test run's context: a frame holding the packet and the run-time `xdp_buff`.
pub struct XdpRun {
    frame: Buf,
    buff: Buf,
    /// The kernel's `struct xdp_md` copy, when a context was given.
    ctx: Option<[u8; XDP_MD_SIZE]>,
}

impl XdpRun {
    /// Builds the context for `data_in` (metadata first when `ctx` says so; see the module
    /// documentation for `ctx`), with `bpf_prog_test_run_xdp`'s checks.
    pub fn new(data_in: &[u8], ctx: Option<&[u8]>) -> Result<XdpRun, PktError> {
        let size = data_in.len();
        let ctx = match ctx {
            Some(c) => Some(ctx_init::<XDP_MD_SIZE>(c, "struct xdp_md")?),
            None => None,
        };
        // What goes in the frame: metadata and packet up to `data_end`; Linux puts the rest
        // of `data_in` in fragments (multi-buffer XDP).
        let (mut metalen, mut linear) = (0usize, size);
        if let Some(c) = &ctx {
            let (data, data_end, data_meta) = (get32(c, 0), get32(c, 4), get32(c, 8));
            if data_meta != 0 {
                return Err(PktError::InvalidCtx("data_meta must be 0".into()));
            }
            if data_end as usize > size {
                return Err(PktError::InvalidCtx(format!(
                    "data_end ({data_end}) is past the end of data_in ({size} bytes)"
                )));
            }
            if data > data_end {
                return Err(PktError::InvalidCtx(format!(
                    "data ({data}) is past data_end ({data_end})"
                )));
            }
            if data % 4 != 0 || data as usize > XDP_METADATA_MAX {
                return Err(PktError::InvalidCtx(format!(
                    "data ({data}) is the metadata length: a multiple of 4, at most {XDP_METADATA_MAX}"
                )));
            }
            metalen = data as usize;
            linear = data_end as usize;
        }
        if size - metalen < ETH_HLEN {
            return Err(PktError::DataTooShort {
                len: size - metalen,
                min: ETH_HLEN,
            });
        }
        let headroom = XDP_PACKET_HEADROOM - metalen;
        let max = PAGE_SIZE - headroom - SKB_SHARED_INFO_SIZE;
        if linear < size || size > max {
            return Err(PktError::Unsupported(format!(
                "XDP multi-buffer (data_in of {size} bytes, {} in the frame; a frame holds {max})",
                linear.min(max)
            )));
        }
        let (mut ifindex, mut rxq) = (LOOPBACK_IFINDEX, 0);
        if let Some(c) = &ctx {
            if get32(c, 20) != 0 {
                return Err(PktError::InvalidCtx("egress_ifindex must be 0".into()));
            }
            let (ing, q) = (get32(c, 12), get32(c, 16));
            if ing == 0 && q != 0 {
                return Err(PktError::InvalidCtx(
                    "rx_queue_index without ingress_ifindex".into(),
                ));
            }
            if ing != 0 {
                if ing != LOOPBACK_IFINDEX {
                    return Err(PktError::NoDevice(ing));
                }
                if q >= 1 {
                    return Err(PktError::InvalidCtx(format!(
                        "rx_queue_index {q}: the loopback device has one receive queue"
                    )));
                }
                (ifindex, rxq) = (ing, q);
            }
        }
        let mut frame = Buf::new(PAGE_SIZE);
        frame.bytes_mut()[headroom..headroom + size].copy_from_slice(data_in);
        let start = frame.addr();
        let mut buff = Buf::new(xdp_buff::SIZE);
        let meta = start + headroom as u64;
        buff.set64(xdp_buff::DATA as usize, meta + metalen as u64);
        buff.set64(xdp_buff::DATA_END as usize, meta + size as u64);
        buff.set64(xdp_buff::DATA_META as usize, meta);
        buff.set32(xdp_buff::INGRESS_IFINDEX as usize, ifindex);
        buff.set32(xdp_buff::RX_QUEUE_INDEX as usize, rxq);
        buff.set64(xdp_buff::HARD_START as usize, start);
        buff.set64(
            xdp_buff::HARD_END as usize,
            start + (PAGE_SIZE - SKB_SHARED_INFO_SIZE) as u64,
        );
        Ok(XdpRun { frame, buff, ctx })
    }

    /// `r1`..`r5` for the run: `r1` = the run-time context.
    pub fn args(&self) -> [u64; 5] {
        [self.buff.addr(), 0, 0, 0, 0]
    }

    /// The memory the program and its helpers may touch, lent to one run: the run-time
    /// context and the whole frame.
    pub fn regions(&mut self) -> [Region<'_>; 2] {
        [
            Region::writable(RegionKind::Context, self.buff.bytes_mut()),
            Region::writable(RegionKind::Packet, self.frame.bytes_mut()),
        ]
    }

    /// `[data_meta, data, data_end)` as offsets into the frame, clamped to it (a checked run
    /// of an unverified program may have scribbled over the context).
    fn offsets(&self) -> (usize, usize, usize) {
        let start = self.frame.addr();
        let off =
            |f: u64| (self.buff.get64(f as usize).wrapping_sub(start) as usize).min(PAGE_SIZE);
        let end = off(xdp_buff::DATA_END);
        let data = off(xdp_buff::DATA).min(end);
        let meta = off(xdp_buff::DATA_META).min(data);
        (meta, data, end)
    }

    /// What `data_out` receives: metadata and packet, from `data_meta` to `data_end` as they
    /// are now (after the run: as the program and its helpers left them).
    pub fn data_out(&self) -> &[u8] {
        let (meta, _, end) = self.offsets();
        &self.frame.bytes()[meta..end]
    }

    /// The packet data alone (`data` to `data_end`).
    pub fn data(&self) -> &[u8] {
        let (_, data, end) = self.offsets();
        &self.frame.bytes()[data..end]
    }

    /// The metadata alone (`data_meta` to `data`).
    pub fn meta(&self) -> &[u8] {
        let (meta, data, _) = self.offsets();
        &self.frame.bytes()[meta..data]
    }

    /// What `ctx_out` receives: the `struct xdp_md` given, with `data` = the metadata length
    /// and `data_end` = metadata + packet length now; `None` without a context.
    pub fn ctx_out(&self) -> Option<[u8; XDP_MD_SIZE]> {
        let mut c = self.ctx?;
        let (meta, data, end) = self.offsets();
        c[0..4].copy_from_slice(&((data - meta) as u32).to_ne_bytes());
        c[4..8].copy_from_slice(&((end - meta) as u32).to_ne_bytes());
        Some(c)
    }
}

// ---------------------------------------------------------------------------------------------
// Socket filters
// ---------------------------------------------------------------------------------------------

/// Layout of the hidden trailer after the visible `struct __sk_buff` (native-endian `u64`
/// addresses).
pub(crate) mod skb_trailer {
    /// Start of the Ethernet (MAC) header.
    pub const MAC: u64 = 192;
    /// Start of the network header: `skb->data` once the Ethernet header is pulled.
    pub const DATA: u64 = 200;
    /// One past the last byte.
    pub const TAIL: u64 = 208;
    pub const END: usize = 216;
}

/// `struct __sk_buff` field offsets used here.
mod skb {
    pub const LEN: usize = 0;
    pub const PKT_TYPE: usize = 4;
    pub const MARK: usize = 8;
    pub const PROTOCOL: usize = 16;
    pub const PRIORITY: usize = 32;
    pub const INGRESS_IFINDEX: usize = 36;
    pub const IFINDEX: usize = 40;
    pub const CB: usize = 48;
    pub const CB_END: usize = 68;
    pub const TSTAMP: usize = 152;
    pub const WIRE_LEN: usize = 160;
    pub const GSO_SEGS: usize = 164;
    pub const GSO_SIZE: usize = 176;
    pub const HWTSTAMP: usize = 184;
    /// Byte ranges of `ctx_in` that must be zero (`convert___skb_to_skb`): everything but
    /// mark, priority, ingress_ifindex, ifindex, cb, tstamp, wire_len, gso_segs, gso_size
    /// and hwtstamp.
    pub const MUST_BE_ZERO: [(usize, usize, &str); 6] = [
        (0, 8, "len, pkt_type"),
        (12, 32, "queue_mapping .. vlan_proto"),
        (44, 48, "tc_index"),
        (68, 152, "hash .. flow_keys"),
        (168, 176, "sk"),
        (180, 184, "tstamp_type"),
    ];
}

/// A socket filter's test-run context: the packet and the `struct __sk_buff` (with its hidden
/// trailer) the program sees.
pub struct SkbRun {
    pkt: Buf,
    rt: Buf,
    /// The kernel's `struct __sk_buff` copy, when a context was given.
    ctx: Option<[u8; SK_BUFF_SIZE]>,
    data_out: Vec<u8>,
}

impl SkbRun {
    /// Builds the context for the Ethernet frame `data_in` (see the module documentation for
    /// `ctx`), with `bpf_prog_test_run_skb`'s checks for a socket filter.
    pub fn new(data_in: &[u8], ctx: Option<&[u8]>) -> Result<SkbRun, PktError> {
        let size = data_in.len();
        if size < ETH_HLEN {
            return Err(PktError::DataTooShort {
                len: size,
                min: ETH_HLEN,
            });
        }
        if size > SKB_MAX_DATA {
            return Err(PktError::DataTooLong {
                len: size,
                max: SKB_MAX_DATA,
            });
        }
        let ctx = match ctx {
            Some(c) => Some(ctx_init::<SK_BUFF_SIZE>(c, "struct __sk_buff")?),
            None => None,
        };
        if let Some(c) = &ctx {
            let ifindex = get32(c, skb::IFINDEX);
            if ifindex > LOOPBACK_IFINDEX {
                return Err(PktError::NoDevice(ifindex));
            }
        }
        let pkt_len = (size - ETH_HLEN) as u32;
        let mut rt = Buf::new(skb_trailer::END);
        // What eth_type_trans decides, for the loopback device (address and broadcast
        // address all zeros).
        let dest = &data_in[..6];
        let pkt_type = if dest.iter().all(|&b| b == 0) {
            PACKET_HOST
        } else if dest[0] & 1 != 0 {
            PACKET_MULTICAST
        } else {
            PACKET_OTHERHOST
        };
        let ethertype = u16::from_be_bytes([data_in[12], data_in[13]]);
        // The kernel's test run reads the addresses of an IPv4 or IPv6 header into the test
        // socket: a frame announcing one must carry at least the fixed header (measured:
        // 19 bytes after an IPv4 EtherType, or 39 after IPv6, is EINVAL).
        let l3_min = match ethertype {
            0x0800 => 20,
            0x86dd => 40,
            _ => 0,
        };
        if size - ETH_HLEN < l3_min {
            return Err(PktError::DataTooShort {
                len: size,
                min: ETH_HLEN + l3_min,
            });
        }
        let protocol = if ethertype >= 0x0600 {
            u16::from_ne_bytes([data_in[12], data_in[13]]) as u32
        } else if data_in.get(14..16) == Some(&[0xff, 0xff]) {
            PROTO_802_3
        } else {
            PROTO_802_2
        };
        // A frame that says IPv4 or IPv6 must hold that header.
        let need = match ethertype {
            0x0800 => 20,
            0x86dd => 40,
            _ => 0,
        };
        if (pkt_len as usize) < need {
            return Err(PktError::InvalidData(format!(
                "EtherType {ethertype:#06x} with {pkt_len} bytes after the Ethernet header (at least {need} needed)"
            )));
        }
        rt.set32(skb::LEN, pkt_len);
        rt.set32(skb::PKT_TYPE, pkt_type);
        rt.set32(skb::PROTOCOL, protocol);
        rt.set32(skb::IFINDEX, LOOPBACK_IFINDEX);
        if let Some(c) = &ctx {
            for (lo, hi, what) in skb::MUST_BE_ZERO {
                if c[lo..hi].iter().any(|&b| b != 0) {
                    return Err(PktError::InvalidCtx(format!(
                        "{what} cannot be set (bytes {lo}..{hi} must be zero)"
                    )));
                }
            }
            let wire_len = get32(c, skb::WIRE_LEN);
            if wire_len != 0 && (wire_len < pkt_len || wire_len > GSO_LEGACY_MAX_SIZE) {
                return Err(PktError::InvalidCtx(format!(
                    "wire_len {wire_len} must be between the packet length after the Ethernet header ({pkt_len}) and {GSO_LEGACY_MAX_SIZE}"
                )));
            }
            let gso_segs = get32(c, skb::GSO_SEGS);
            if gso_segs > GSO_MAX_SEGS {
                return Err(PktError::InvalidCtx(format!(
                    "gso_segs {gso_segs} is more than {GSO_MAX_SEGS}"
                )));
            }
            for f in [
                skb::MARK,
                skb::PRIORITY,
                skb::INGRESS_IFINDEX,
                skb::GSO_SEGS,
                skb::GSO_SIZE,
            ] {
                rt.set32(f, get32(c, f));
            }
            rt.bytes_mut()[skb::CB..skb::CB_END].copy_from_slice(&c[skb::CB..skb::CB_END]);
            rt.set64(skb::TSTAMP, get64(c, skb::TSTAMP));
            rt.set64(skb::HWTSTAMP, get64(c, skb::HWTSTAMP));
            rt.set32(
                skb::WIRE_LEN,
                if wire_len == 0 { pkt_len } else { wire_len },
            );
        }
        let mut pkt = Buf::new(size);
        pkt.bytes_mut()[..size].copy_from_slice(data_in);
        let mac = pkt.addr();
        rt.set64(skb_trailer::MAC as usize, mac);
        rt.set64(skb_trailer::DATA as usize, mac + ETH_HLEN as u64);
        rt.set64(skb_trailer::TAIL as usize, mac + size as u64);
        let mut data_out = data_in.to_vec();
        data_out[..ETH_HLEN].fill(0);
        Ok(SkbRun {
            pkt,
            rt,
            ctx,
            data_out,
        })
    }

    /// `r1`..`r5` for the run: `r1` = the `struct __sk_buff`.
    pub fn args(&self) -> [u64; 5] {
        [self.rt.addr(), 0, 0, 0, 0]
    }

    /// The memory lent to one run: the `__sk_buff` with its trailer, and the packet
    /// (read-only: socket filters only read it, through helpers).
    pub fn regions(&mut self) -> [Region<'_>; 2] {
        let len = self.data_out.len();
        [
            Region::writable(RegionKind::Context, self.rt.bytes_mut()),
            Region::readonly(RegionKind::Packet, &self.pkt.bytes()[..len]),
        ]
    }

    /// The `struct __sk_buff` as the program sees it (after a run: with its `cb[]` writes).
    pub fn sk_buff(&self) -> &[u8] {
        &self.rt.bytes()[..SK_BUFF_SIZE]
    }

    /// What `data_out` receives: the frame with its Ethernet header zeroed.
    pub fn data_out(&self) -> &[u8] {
        &self.data_out
    }

    /// What `ctx_out` receives: the given `struct __sk_buff` with the fields the kernel
    /// writes back (mark, priority, ingress_ifindex, ifindex, tstamp, cb[], wire_len,
    /// gso_segs, hwtstamp); `None` without a context.
    pub fn ctx_out(&self) -> Option<[u8; SK_BUFF_SIZE]> {
        let mut c = self.ctx?;
        let v = self.sk_buff();
        for (f, n) in [
            (skb::MARK, 4),
            (skb::PRIORITY, 4),
            (skb::INGRESS_IFINDEX, 4),
            (skb::IFINDEX, 4),
            (skb::TSTAMP, 8),
            (skb::CB, skb::CB_END - skb::CB),
            (skb::WIRE_LEN, 4),
            (skb::GSO_SEGS, 4),
            (skb::HWTSTAMP, 8),
        ] {
            c[f..f + n].copy_from_slice(&v[f..f + n]);
        }
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_frame(dest: [u8; 6]) -> Vec<u8> {
        let mut f = dest.to_vec();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x00]);
        f.extend_from_slice(&[0x45; 28]);
        f
    }

    #[test]
    fn xdp_layout_and_ctx_rules() {
        let pkt = udp_frame([0; 6]);
        let mut run = XdpRun::new(&pkt, None).unwrap();
        assert_eq!(run.data_out(), &pkt[..]);
        assert_eq!(run.ctx_out(), None);
        let args = run.args();
        let r = run.regions();
        assert_eq!(r[0].addr(), args[0]);
        assert_eq!(r[1].len(), PAGE_SIZE);
        let mut c = [0u8; 24];
        c[0..4].copy_from_slice(&8u32.to_ne_bytes());
        c[4..8].copy_from_slice(&(pkt.len() as u32).to_ne_bytes());
        let run = XdpRun::new(&pkt, Some(&c)).unwrap();
        assert_eq!(run.meta(), &pkt[..8]);
        assert_eq!(run.data(), &pkt[8..]);
        assert_eq!(run.ctx_out().unwrap(), c);
        c[0..4].copy_from_slice(&6u32.to_ne_bytes());
        assert_eq!(
            XdpRun::new(&pkt, Some(&c)).err().map(|e| e.errno()),
            Some(22)
        );
        assert_eq!(
            XdpRun::new(&pkt, Some(&[])).err().map(|e| e.errno()),
            Some(95),
            "ctx_out alone: data_end 0, everything in fragments"
        );
        assert_eq!(
            XdpRun::new(&pkt[..13], None).err().map(|e| e.errno()),
            Some(22)
        );
        let mut big = [0u8; 32];
        big[..24].copy_from_slice(&c);
        big[30] = 1;
        assert_eq!(
            XdpRun::new(&pkt, Some(&big)).err().map(|e| e.errno()),
            Some(7)
        );
    }

    /// Verify, convert and run: a program that swaps the MAC addresses behind a bounds check.
    #[test]
    fn xdp_program_end_to_end() {
        use crate::verifier::{convert_ctx_accesses, verify, HelperProtos, ProgTypeSpec};
        use crate::{Env, Helpers, Interpreter, LoadOptions, Program};
        let src =
            "ldxw %r2, [%r1+0]\n ldxw %r3, [%r1+4]\n mov %r0, 1\n mov %r4, %r2\n add %r4, 12\n\
                   jgt %r4, %r3, out\n ldxw %r5, [%r2+0]\n ldxh %r6, [%r2+4]\n ldxw %r7, [%r2+6]\n\
                   ldxh %r8, [%r2+10]\n stxw [%r2+0], %r7\n stxh [%r2+4], %r8\n stxw [%r2+6], %r5\n\
                   stxh [%r2+10], %r6\n mov %r0, 3\n out:\n exit\n";
        let insns = crate::asm::assemble(src).unwrap();
        let spec = ProgTypeSpec::xdp();
        let protos = HelperProtos::standard();
        let env = crate::verifier::VerifierEnv::new(&spec, &[], &protos);
        let info = verify(&insns, &env, None).unwrap_or_else(|e| panic!("{e}\n{}", e.log));
        assert_eq!(info.ctx_access_insns, vec![0, 1]);
        let conv = convert_ctx_accesses(&insns, &spec, &info).unwrap();
        assert_eq!((conv[1].code, conv[1].off), (0x79, 8));
        let prog = Program::load(&conv, LoadOptions::default()).unwrap();
        let helpers = Helpers::standard();
        let mut interp = Interpreter::new(&prog, &helpers).unwrap();
        let pkt = udp_frame([1, 2, 3, 4, 5, 6]);
        let mut run = XdpRun::new(&pkt, None).unwrap();
        let args = run.args();
        let regions = run.regions();
        // SAFETY: verified and converted for this context.
        let r0 = unsafe { interp.run_unchecked(args, &regions, &mut Env::new()) }.unwrap();
        assert_eq!(r0, 3);
        let out = run.data_out();
        assert_eq!(&out[..6], &pkt[6..12]);
        assert_eq!(&out[6..12], &pkt[..6]);
        assert_eq!(&out[12..], &pkt[12..]);
    }

    #[test]
    fn skb_fields() {
        let pkt = udp_frame([0xff; 6]);
        let mut c = [0u8; SK_BUFF_SIZE];
        c[skb::MARK..skb::MARK + 4].copy_from_slice(&7u32.to_ne_bytes());
        c[skb::CB] = 9;
        let run = SkbRun::new(&pkt, Some(&c)).unwrap();
        let v = run.sk_buff();
        assert_eq!(get32(v, skb::LEN), pkt.len() as u32 - 14);
        assert_eq!(get32(v, skb::PKT_TYPE), PACKET_MULTICAST);
        assert_eq!(get32(v, skb::PROTOCOL), 0x0008);
        assert_eq!(get32(v, skb::MARK), 7);
        assert_eq!(v[skb::CB], 9);
        assert_eq!(&run.data_out()[..14], &[0; 14]);
        let out = run.ctx_out().unwrap();
        assert_eq!(get32(&out, skb::WIRE_LEN), pkt.len() as u32 - 14);
        assert_eq!(get32(&out, skb::IFINDEX), 1);
        c[0] = 1;
        assert_eq!(
            SkbRun::new(&pkt, Some(&c)).err().map(|e| e.errno()),
            Some(22)
        );
        c[0] = 0;
        c[skb::IFINDEX] = 9;
        assert_eq!(
            SkbRun::new(&pkt, Some(&c)).err().map(|e| e.errno()),
            Some(19)
        );
    }
}
