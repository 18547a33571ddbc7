//! Kernel differential for `BPF_PROG_TEST_RUN`: the clang-built programs of
//! `tests/pkt_common/packet.bpf.c` (XDP, socket filters, a syscall program) run through the
//! host kernel (raw bpf(2): BPF_MAP_CREATE, BPF_PROG_LOAD, BPF_PROG_TEST_RUN) and through
//! this engine with the contexts of `pktctx` (interpreter and JIT, checked and unchecked),
//! on the same inputs in the same order. Asserted per case: the same errno or the same
//! retval, data_out (bytes and size) and ctx_out, and the same map contents afterwards. The
//! unsafe programs of `bad.bpf.c` are rejected by both verifiers for the same reason.
//! Skipped, with the reason printed, when clang is missing, when not root, or when the kernel
//! refuses.

mod pkt_common;

use bpfvfs_ebpf_obj::LoadedObject;
use pkt_common::kernel::{self, Fd};
use pkt_common::*;

/// Loads program `name` into the kernel with fresh maps.
fn load_kernel(obj: &LoadedObject, name: &str) -> Result<(Kind, Fd, Vec<Fd>), String> {
    let mut fds = Vec::new();
    for m in &obj.maps {
        fds.push(kernel::map_create(m)?);
    }
    let (kind, insns) = program_insns(obj, name, |i| fds.get(i).map(|f| f.0 as u32));
    let (ty, flags) = kind.kernel();
    let fd = kernel::prog_load(ty, &insns, flags)
        .map_err(|(e, log)| format!("{name}: {}\n{log}", kernel::errno_name(e)))?;
    Ok((kind, fd, fds))
}

fn kernel_outcome(fd: &Fd, kind: Kind, input: &Input) -> Outcome {
    let data_out = kind != Kind::Syscall || input.data.is_some();
    match kernel::test_run(
        fd,
        input.data.as_deref(),
        input.ctx.as_deref(),
        input.ctx_out,
        data_out,
    ) {
        Err(e) => Outcome::Err(e),
        Ok((retval, dout, cout, cin)) => Outcome::Ok {
            retval,
            data_out: if kind == Kind::Syscall { None } else { dout },
            ctx_out: if kind == Kind::Syscall { cin } else { cout },
        },
    }
}

fn le32(v: u32) -> [u8; 4] {
    v.to_ne_bytes()
}

fn input(label: &str, data: Option<Vec<u8>>, ctx: Option<Vec<u8>>, ctx_out: bool) -> Input {
    Input {
        label: label.into(),
        data,
        ctx,
        ctx_out,
        known_difference: None,
    }
}

/// A case where this engine knowingly differs (see `Input::known_difference`).
fn differs(mut i: Input, why: &'static str) -> Input {
    i.known_difference = Some(why);
    i
}

const MULTI_BUFFER: &str =
    "Linux 6.18 puts data_in past ctx.data_end in fragments (multi-buffer XDP): not modelled";

fn xdp_md(data: u32, data_end: u32, meta: u32, ifindex: u32, rxq: u32, egress: u32) -> Vec<u8> {
    [data, data_end, meta, ifindex, rxq, egress]
        .iter()
        .flat_map(|v| le32(*v))
        .collect()
}

fn xdp_inputs() -> Vec<Input> {
    let f = |dst, port| udp_frame(dst, 4000, port, b"payload!");
    let mut meta = 0xfeed_beef_u32.to_ne_bytes().to_vec();
    meta.extend_from_slice(&f(HOST_MAC, 7));
    let ml = meta.len() as u32;
    let adjust = |p: [u8; 3], len: usize| {
        let mut d = udp_frame(HOST_MAC, 1, 2, &vec![7; len]);
        d[..3].copy_from_slice(&p);
        d
    };
    let mut big_ctx = xdp_md(4, ml, 0, 0, 0, 0);
    big_ctx.extend_from_slice(&[0; 8]);
    let mut bad_tail = big_ctx.clone();
    bad_tail[30] = 1;
    vec![
        input("udp echo", Some(f(OTHER_MAC, 7)), None, false),
        input("udp discard", Some(f(HOST_MAC, 9)), None, false),
        input("udp other port", Some(f(BCAST_MAC, 53)), None, false),
        input(
            "udp ihl 6",
            Some({
                let mut d = f(HOST_MAC, 7);
                d[14] = 0x46;
                d
            }),
            None,
            false,
        ),
        input(
            "tcp",
            Some(eth(OTHER_MAC, SRC_MAC, 0x0800, &ipv4(6, &[0; 20]))),
            None,
            false,
        ),
        input(
            "arp",
            Some(eth(BCAST_MAC, SRC_MAC, 0x0806, &[1; 28])),
            None,
            false,
        ),
        input(
            "eth only (14 bytes)",
            Some(eth(HOST_MAC, SRC_MAC, 0x0800, &[])),
            None,
            false,
        ),
        input(
            "ip truncated",
            Some(f(HOST_MAC, 7)[..30].to_vec()),
            None,
            false,
        ),
        input("13 bytes", Some(vec![0; 13]), None, false),
        input(
            "metadata",
            Some(meta.clone()),
            Some(xdp_md(4, ml, 0, 1, 0, 0)),
            true,
        ),
        input(
            "metadata, ctx_in only",
            Some(meta.clone()),
            Some(xdp_md(4, ml, 0, 0, 0, 0)),
            false,
        ),
        input(
            "ctx longer, zero tail",
            Some(meta.clone()),
            Some(big_ctx),
            true,
        ),
        input(
            "ctx longer, non-zero tail",
            Some(meta.clone()),
            Some(bad_tail),
            true,
        ),
        input(
            "data_meta set",
            Some(meta.clone()),
            Some(xdp_md(4, ml, 4, 0, 0, 0)),
            true,
        ),
        input(
            "metadata not a multiple of 4",
            Some(meta.clone()),
            Some(xdp_md(2, ml, 0, 0, 0, 0)),
            true,
        ),
        input(
            "data_end past data_in",
            Some(meta.clone()),
            Some(xdp_md(4, ml + 1, 0, 0, 0, 0)),
            true,
        ),
        input(
            "metadata and a 12-byte packet",
            Some(meta[..16].to_vec()),
            Some(xdp_md(4, 16, 0, 0, 0, 0)),
            true,
        ),
        input(
            "egress_ifindex set",
            Some(meta.clone()),
            Some(xdp_md(4, ml, 0, 0, 0, 1)),
            true,
        ),
        input(
            "rx queue without device",
            Some(meta.clone()),
            Some(xdp_md(4, ml, 0, 0, 1, 0)),
            true,
        ),
        input(
            "rx queue 1 of lo",
            Some(meta.clone()),
            Some(xdp_md(4, ml, 0, 1, 1, 0)),
            true,
        ),
        input(
            "adjust: all fine",
            Some(adjust([20, 132, 8], 30)),
            None,
            false,
        ),
        input(
            "adjust: head too far, meta misaligned",
            Some(adjust([250, 0, 6], 30)),
            None,
            false,
        ),
        input(
            "adjust: head to the frame, tail below eth, meta too long",
            Some(adjust([216, 100, 36], 30)),
            None,
            false,
        ),
        input(
            "adjust: head past the frame",
            Some(adjust([217, 128, 32], 30)),
            None,
            false,
        ),
        input(
            "adjust: tail to the end of the frame",
            Some(adjust([0, 255, 0], 3520 - 42 - 127)),
            None,
            false,
        ),
        input(
            "adjust: tail past the end of the frame",
            Some(adjust([0, 255, 0], 3520 - 42 - 126)),
            None,
            false,
        ),
        input(
            "full frame",
            Some({
                let mut d = f(HOST_MAC, 7);
                d.resize(3520, 0x5a);
                d
            }),
            None,
            false,
        ),
        // Last: they change the kernel's maps in ways ours cannot follow.
        differs(
            input("ctx_out without ctx_in", Some(f(HOST_MAC, 7)), None, true),
            MULTI_BUFFER,
        ),
        differs(
            input(
                "data_end short of data_in",
                Some(meta.clone()),
                Some(xdp_md(4, ml - 1, 0, 0, 0, 0)),
                true,
            ),
            MULTI_BUFFER,
        ),
        differs(
            input(
                "one byte more than a frame",
                Some({
                    let mut d = f(HOST_MAC, 7);
                    d.resize(3521, 0x5a);
                    d
                }),
                None,
                false,
            ),
            MULTI_BUFFER,
        ),
    ]
}

fn skb_inputs() -> Vec<Input> {
    let f = |dst, port| udp_frame(dst, 4000, port, b"query");
    let ctx = |fill: &dyn Fn(&mut Vec<u8>)| {
        let mut c = vec![0u8; 192];
        fill(&mut c);
        c
    };
    let set = |c: &mut Vec<u8>, off: usize, v: u32| c[off..off + 4].copy_from_slice(&le32(v));
    vec![
        input("dns to host", Some(f(HOST_MAC, 53)), None, true),
        input("dns broadcast", Some(f(BCAST_MAC, 53)), None, true),
        input(
            "multicast",
            Some(f([0x01, 0x00, 0x5e, 0, 0, 1], 53)),
            None,
            true,
        ),
        input("other host", Some(f(OTHER_MAC, 7)), None, false),
        input(
            "tcp",
            Some(eth(HOST_MAC, SRC_MAC, 0x0800, &ipv4(6, &[0; 20]))),
            None,
            true,
        ),
        input(
            "arp",
            Some(eth(BCAST_MAC, SRC_MAC, 0x0806, &[1; 28])),
            None,
            true,
        ),
        input(
            "802.3 raw",
            Some(eth(OTHER_MAC, SRC_MAC, 46, &[0xff; 46])),
            None,
            true,
        ),
        input(
            "802.2 llc",
            Some(eth(OTHER_MAC, SRC_MAC, 46, &[0x42; 46])),
            None,
            true,
        ),
        input(
            "ipv6 without a header",
            Some(eth(HOST_MAC, SRC_MAC, 0x86dd, &[0x60; 39])),
            None,
            true,
        ),
        input(
            "ipv6 header",
            Some(eth(HOST_MAC, SRC_MAC, 0x86dd, &[0x60; 40])),
            None,
            true,
        ),
        input(
            "ipv4 without a header",
            Some(eth(HOST_MAC, SRC_MAC, 0x0800, &[0x45; 19])),
            None,
            true,
        ),
        input(
            "eth only, other type",
            Some(eth(HOST_MAC, SRC_MAC, 0x88b5, &[])),
            None,
            true,
        ),
        input(
            "ctx data_end = length",
            Some(f(HOST_MAC, 53)),
            Some(ctx(&|c| set(c, 80, 47))),
            true,
        ),
        input("13 bytes", Some(vec![0; 13]), None, true),
        input(
            "ctx fields",
            Some(f(HOST_MAC, 53)),
            Some(ctx(&|c| {
                set(c, 8, 0x55);
                set(c, 32, 3);
                set(c, 36, 7);
                set(c, 48, 0xaaaa);
                set(c, 64, 0x100);
                c[152..160].copy_from_slice(&123456789u64.to_ne_bytes());
                set(c, 160, 100);
                set(c, 164, 2);
                set(c, 176, 1400);
                c[184..192].copy_from_slice(&987654321u64.to_ne_bytes());
            })),
            true,
        ),
        input(
            "ctx short (mark only)",
            Some(f(HOST_MAC, 53)),
            Some(ctx(&|c| set(c, 8, 9))[..12].to_vec()),
            true,
        ),
        input(
            "ctx ifindex 1",
            Some(f(HOST_MAC, 53)),
            Some(ctx(&|c| set(c, 40, 1))),
            true,
        ),
        input(
            "ctx len set",
            Some(f(HOST_MAC, 53)),
            Some(ctx(&|c| set(c, 0, 5))),
            true,
        ),
        input(
            "ctx hash set",
            Some(f(HOST_MAC, 53)),
            Some(ctx(&|c| set(c, 68, 5))),
            true,
        ),
        input(
            "ctx wire_len too small",
            Some(f(HOST_MAC, 53)),
            Some(ctx(&|c| set(c, 160, 3))),
            true,
        ),
        input(
            "ctx gso_segs too large",
            Some(f(HOST_MAC, 53)),
            Some(ctx(&|c| set(c, 164, 70000))),
            true,
        ),
        input(
            "ctx longer, non-zero tail",
            Some(f(HOST_MAC, 53)),
            Some({
                let mut c = vec![0u8; 200];
                c[199] = 1;
                c
            }),
            true,
        ),
        input("ctx_out only", Some(f(HOST_MAC, 53)), None, true),
        input(
            "largest",
            Some({
                let mut d = f(HOST_MAC, 53);
                d.resize(3712, 1);
                d
            }),
            None,
            true,
        ),
        input(
            "too large",
            Some({
                let mut d = f(HOST_MAC, 53);
                d.resize(3713, 1);
                d
            }),
            None,
            true,
        ),
    ]
}

fn syscall_inputs() -> Vec<Input> {
    let args = |a: u32, b: u32| {
        let mut c = le32(a).to_vec();
        c.extend_from_slice(&le32(b));
        c.extend_from_slice(&[0xee; 8]);
        c
    };
    vec![
        input("6, 7", None, Some(args(6, 7)), false),
        input("big", None, Some(args(0xffff_fff0, 0x20)), false),
        input(
            "ctx too short",
            None,
            Some(args(1, 2)[..12].to_vec()),
            false,
        ),
        input(
            "ctx longer",
            None,
            Some({
                let mut c = args(3, 4);
                c.extend_from_slice(&[1, 2, 3]);
                c
            }),
            false,
        ),
        input("with data_in", Some(vec![0; 20]), Some(args(1, 1)), false),
        input("with ctx_out", None, Some(args(1, 1)), true),
    ]
}

fn short(o: &Outcome) -> String {
    match o {
        Outcome::Err(e) => format!("errno {e}"),
        Outcome::Ok {
            retval,
            data_out,
            ctx_out,
        } => format!(
            "retval {retval}, data_out {} bytes, ctx_out {}",
            data_out.as_ref().map_or(0, |d| d.len()),
            ctx_out
                .as_ref()
                .map_or("none".to_string(), |c| format!("{} bytes", c.len()))
        ),
    }
}

#[test]
fn test_run_matches_kernel() {
    let data = match compile(PACKET_C, "packet-kernel") {
        Ok(d) => d,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    if let Err(why) = kernel::available() {
        println!("SKIPPED: kernel test run: {why}");
        return;
    }
    let obj = object(&data, "packet");
    let mut cases = 0;
    let mut failures = Vec::new();
    let mut documented = Vec::new();
    for p in &obj.programs {
        let name = p.name.as_str();
        let (kind, fd, map_fds) = match load_kernel(&obj, name) {
            Ok(k) => k,
            Err(e) => panic!("the kernel rejects {e}"),
        };
        let prepared = prepare(&obj, name);
        let ours: Vec<TestMaps> = ENGINES.iter().map(|_| TestMaps::new(&obj.maps)).collect();
        let inputs = match kind {
            Kind::Xdp => xdp_inputs(),
            Kind::Skb => skb_inputs(),
            Kind::Syscall => syscall_inputs(),
        };
        for inp in &inputs {
            cases += 1;
            let k = kernel_outcome(&fd, kind, inp);
            println!("{name:<12} {:<56} {}", inp.label, short(&k));
            if let Some(why) = inp.known_difference {
                documented.push(format!(
                    "{name}, {}: kernel {}; here EOPNOTSUPP ({why})",
                    inp.label,
                    short(&k)
                ));
                for (e, maps) in ENGINES.iter().zip(&ours) {
                    let o = run_engine(&prepared, *e, maps, inp);
                    if o != Outcome::Err(95) {
                        failures.push(format!(
                            "{name}, {} on {e:?}: expected EOPNOTSUPP, got {o:?}",
                            inp.label
                        ));
                    }
                }
                continue;
            }
            for (e, maps) in ENGINES.iter().zip(&ours) {
                let o = run_engine(&prepared, *e, maps, inp);
                if o != k {
                    failures.push(format!(
                        "{name}, {} on {e:?}:\n  kernel: {k:?}\n  ours:   {o:?}",
                        inp.label
                    ));
                }
                for (i, m) in obj.maps.iter().enumerate() {
                    let km = kernel::map_dump(&map_fds[i], m);
                    if km != maps.dump(i) {
                        failures.push(format!(
                            "{name}, {} on {e:?}: map {} differs:\n  kernel: {km:?}\n  ours:   {:?}",
                            inp.label,
                            m.name,
                            maps.dump(i)
                        ));
                    }
                }
            }
        }
    }
    println!(
        "kernel test-run differential: {cases} (program, input) cases, {} engines each, {} mismatches, {} documented differences:",
        ENGINES.len(),
        failures.len(),
        documented.len()
    );
    for d in &documented {
        println!("  {d}");
    }
    assert!(cases >= 20);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `id=N` numbers differ between verifiers (ours and the kernel's count ids differently).
fn without_ids(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("id=") {
        out.push_str(&rest[..i + 3]);
        rest = rest[i + 3..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('N');
    }
    out.push_str(rest);
    out
}

#[test]
fn unsafe_programs_rejected_like_the_kernel() {
    let data = match compile(BAD_C, "bad-kernel") {
        Ok(d) => d,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    if let Err(why) = kernel::available() {
        println!("SKIPPED: kernel test run: {why}");
        return;
    }
    let obj = object(&data, "bad");
    let mut failures = Vec::new();
    for p in &obj.programs {
        let name = p.name.as_str();
        let ours = verify_program(&obj, name).err().map(|e| e.message);
        let theirs = load_kernel(&obj, name).err();
        let (Some(ours), Some(log)) = (&ours, &theirs) else {
            failures.push(format!(
                "{name}: ours {ours:?}, kernel {}",
                if theirs.is_some() {
                    "rejects"
                } else {
                    "accepts"
                }
            ));
            continue;
        };
        // Each line of our message is a line of the kernel's log (ids aside).
        let klog = without_ids(log);
        for line in ours.lines() {
            let found = klog
                .lines()
                .any(|l| l.trim_end().ends_with(&without_ids(line)));
            println!(
                "{name:<24} {line:<70} {}",
                if found {
                    "= kernel"
                } else {
                    "NOT in the kernel's log"
                }
            );
            if !found {
                failures.push(format!("{name}: `{line}` not in the kernel's log:\n{log}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
