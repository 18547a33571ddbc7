//! Clang-built XDP and socket-filter programs (tests/pkt_common/*.bpf.c): the safe ones are
//! accepted and give the same results on the interpreter and the JIT, checked and unchecked
//! (return value, output packet, context, maps); the unsafe ones are rejected with the
//! kernel's reason. Skipped, with the reason printed, when clang is not installed.

mod pkt_common;

use pkt_common::*;

fn packets() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("udp echo", udp_frame(OTHER_MAC, 4000, 7, b"ping")),
        ("udp discard", udp_frame(HOST_MAC, 4000, 9, b"")),
        ("udp dns", udp_frame(BCAST_MAC, 5353, 53, &[0xab; 40])),
        ("tcp", eth(OTHER_MAC, SRC_MAC, 0x0800, &ipv4(6, &[0; 20]))),
        ("arp", eth(BCAST_MAC, SRC_MAC, 0x0806, &[1; 28])),
        ("eth only", eth(HOST_MAC, SRC_MAC, 0x0800, &[])),
        (
            "ip truncated",
            eth(HOST_MAC, SRC_MAC, 0x0800, &ipv4(17, &[])[..12]),
        ),
        (
            "udp truncated",
            udp_frame(HOST_MAC, 1, 7, b"")[..14 + 20 + 5].to_vec(),
        ),
        ("802.3 length", eth(OTHER_MAC, SRC_MAC, 46, &[0xff; 46])),
        ("short", vec![0u8; 10]),
    ]
}

fn inputs_for(kind: Kind) -> Vec<Input> {
    let mut v: Vec<Input> = packets()
        .into_iter()
        .map(|(l, p)| Input {
            label: l.into(),
            data: Some(p),
            ctx: None,
            // XDP: a ctx_out without ctx_in is EINVAL (tested in kernel_test_run.rs).
            ctx_out: kind == Kind::Skb,
            ..Default::default()
        })
        .collect();
    match kind {
        Kind::Xdp => {
            // 8 bytes of metadata in front of a UDP frame.
            let mut data = 0xcafe_f00d_u32.to_ne_bytes().to_vec();
            data.extend_from_slice(&[9, 9, 9, 9]);
            data.extend_from_slice(&udp_frame(HOST_MAC, 1, 7, b"meta"));
            let mut ctx = vec![0u8; 24];
            ctx[0..4].copy_from_slice(&8u32.to_ne_bytes());
            ctx[4..8].copy_from_slice(&(data.len() as u32).to_ne_bytes());
            ctx[12..16].copy_from_slice(&1u32.to_ne_bytes());
            v.push(Input {
                label: "with metadata".into(),
                data: Some(data),
                ctx: Some(ctx),
                ctx_out: true,
                ..Default::default()
            });
            // The adjust program's parameters: grow the head by 20, the tail by 4, 8 bytes
            // of metadata; then impossible ones.
            for (l, p) in [
                ("adjust ok", [20u8, 132, 8]),
                ("adjust too far", [250, 0, 6]),
                ("adjust shrink", [0, 100, 36]),
            ] {
                let mut f = udp_frame(HOST_MAC, 1, 2, &[7; 30]);
                f[..3].copy_from_slice(&p);
                v.push(Input {
                    label: l.into(),
                    data: Some(f),
                    ctx: None,
                    ctx_out: false,
                    ..Default::default()
                });
            }
        }
        Kind::Skb => {
            let mut ctx = vec![0u8; 192];
            ctx[8..12].copy_from_slice(&0x55u32.to_ne_bytes()); // mark
            ctx[32..36].copy_from_slice(&3u32.to_ne_bytes()); // priority
            ctx[36..40].copy_from_slice(&7u32.to_ne_bytes()); // ingress_ifindex
            ctx[64..68].copy_from_slice(&0x100u32.to_ne_bytes()); // cb[4]
            ctx[164..168].copy_from_slice(&2u32.to_ne_bytes()); // gso_segs
            ctx[176..180].copy_from_slice(&1400u32.to_ne_bytes()); // gso_size
            v.push(Input {
                label: "with ctx".into(),
                data: Some(udp_frame(HOST_MAC, 1, 53, b"q")),
                ctx: Some(ctx),
                ctx_out: true,
                ..Default::default()
            });
        }
        Kind::Syscall => {
            let mut c = 6u32.to_ne_bytes().to_vec();
            c.extend_from_slice(&7u32.to_ne_bytes());
            c.extend_from_slice(&[0; 8]);
            v = vec![Input {
                label: "6*7".into(),
                data: None,
                ctx: Some(c),
                ctx_out: false,
                ..Default::default()
            }];
        }
    }
    v
}

#[test]
fn safe_programs_agree_on_every_engine() {
    let data = match compile(PACKET_C, "packet") {
        Ok(d) => d,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let obj = object(&data, "packet");
    let names: Vec<String> = obj.programs.iter().map(|p| p.name.clone()).collect();
    assert!(names.len() >= 6, "{names:?}");
    let mut cases = 0;
    for name in &names {
        let p = prepare(&obj, name);
        let maps: Vec<TestMaps> = ENGINES.iter().map(|_| TestMaps::new(&obj.maps)).collect();
        for input in inputs_for(p.kind) {
            let outs: Vec<Outcome> = ENGINES
                .iter()
                .zip(&maps)
                .map(|(&e, m)| run_engine(&p, e, m, &input))
                .collect();
            for (e, o) in ENGINES.iter().zip(&outs).skip(1) {
                assert_eq!(o, &outs[0], "{name}, {}: {e:?} differs", input.label);
            }
            for (i, _) in obj.maps.iter().enumerate() {
                for (e, m) in ENGINES.iter().zip(&maps).skip(1) {
                    assert_eq!(
                        m.dump(i),
                        maps[0].dump(i),
                        "{name}, {}: map {i} differs on {e:?}",
                        input.label
                    );
                }
            }
            let summary = match &outs[0] {
                Outcome::Err(e) => format!("errno {e}"),
                Outcome::Ok {
                    retval,
                    data_out,
                    ctx_out,
                } => format!(
                    "retval {retval}, data_out {} bytes{}",
                    data_out.as_ref().map_or(0, |d| d.len()),
                    if ctx_out.is_some() { ", ctx_out" } else { "" }
                ),
            };
            println!("{name:<14} {:<16} {summary}", input.label);
            check_expected(name, &input, &outs[0]);
            cases += 1;
        }
    }
    println!(
        "{cases} (program, input) cases, identical on {} engines",
        ENGINES.len()
    );
}

/// Spot checks of what the programs should do.
fn check_expected(name: &str, input: &Input, out: &Outcome) {
    let data = input.data.clone().unwrap_or_default();
    match (name, input.label.as_str(), out) {
        (
            "xdp_filter",
            "udp echo",
            Outcome::Ok {
                retval, data_out, ..
            },
        ) => {
            assert_eq!(*retval, 3, "XDP_TX");
            let d = data_out.as_ref().unwrap();
            assert_eq!(&d[..6], &data[6..12]);
            assert_eq!(&d[6..12], &data[..6]);
            assert_eq!(&d[26..30], &data[30..34], "addresses swapped");
            assert_eq!(&d[34..36], &data[36..38], "ports swapped");
        }
        ("xdp_filter", "udp discard" | "short" | "ip truncated" | "udp truncated", o) => {
            if input.label == "short" {
                assert_eq!(o, &Outcome::Err(22));
            } else {
                assert!(matches!(o, Outcome::Ok { retval: 1, .. }), "{o:?}");
            }
        }
        ("xdp_filter", "arp" | "tcp" | "udp dns", o) => {
            assert!(matches!(o, Outcome::Ok { retval: 2, data_out: Some(d), .. } if *d == data));
        }
        ("xdp_adjust", "adjust ok", Outcome::Ok { data_out, .. }) => {
            let d = data_out.as_ref().unwrap();
            // 8 bytes of metadata, 20 new bytes (tagged), the frame, 4 zero bytes.
            assert_eq!(d.len(), 8 + 20 + data.len() + 4);
            assert_eq!(&d[..4], &0x12345678u32.to_ne_bytes());
            assert_eq!(&d[8..10], &[0xde, 0xad]);
            assert_eq!(&d[28..28 + data.len()], &data[..]);
            assert_eq!(&d[28 + data.len()..], &[0; 4]);
        }
        (
            "xdp_meta",
            "with metadata",
            Outcome::Ok {
                retval,
                data_out,
                ctx_out,
            },
        ) => {
            assert_eq!(*retval, 3);
            let d = data_out.as_ref().unwrap();
            assert_eq!(&d[8..12], &0xcafe_f00d_u32.to_ne_bytes());
            let c = ctx_out.as_ref().unwrap();
            assert_eq!(&c[0..4], &8u32.to_ne_bytes());
        }
        (
            "sock_udp",
            "udp dns",
            Outcome::Ok {
                retval,
                data_out,
                ctx_out,
            },
        ) => {
            assert_eq!(*retval as usize, data.len() - 14);
            let d = data_out.as_ref().unwrap();
            assert_eq!(&d[..14], &[0; 14], "Ethernet header zeroed");
            assert_eq!(&d[14..], &data[14..]);
            let c = ctx_out.as_ref().unwrap();
            assert_eq!(&c[48..52], &53u32.to_ne_bytes(), "cb[0] = port");
        }
        ("sock_udp", "udp echo", Outcome::Ok { retval, .. }) => assert_eq!(*retval, 0),
        (
            "sys_sum",
            _,
            Outcome::Ok {
                retval, ctx_out, ..
            },
        ) => {
            assert_eq!(*retval, 13);
            assert_eq!(&ctx_out.as_ref().unwrap()[8..16], &42u64.to_ne_bytes());
        }
        _ => {}
    }
}

/// The unsafe programs and the reason each is rejected for (the kernel's wording).
pub const BAD: &[(&str, &str)] = &[
    (
        "bad_no_check",
        "invalid access to packet, off=12 size=1, R1(id=0,off=12,r=0)",
    ),
    (
        "bad_off_by_one",
        "invalid access to packet, off=13 size=1, R1(id=0,off=13,r=13)",
    ),
    (
        "bad_write_past",
        "invalid access to packet, off=14 size=1, R2(id=0,off=14,r=14)",
    ),
    (
        "bad_var_unchecked",
        "invalid access to packet, off=16 size=2, R2(id=",
    ),
    ("bad_stale_after_adjust", "invalid mem access 'scalar'"),
    (
        "bad_sock_direct",
        "invalid bpf_context access off=80 size=4",
    ),
    (
        "bad_meta_unchecked",
        "invalid access to packet, off=0 size=4, R1(id=0,off=0,r=0)",
    ),
];

#[test]
fn unsafe_programs_are_rejected() {
    let data = match compile(BAD_C, "bad") {
        Ok(d) => d,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let obj = object(&data, "bad");
    assert_eq!(obj.programs.len(), BAD.len());
    let mut bad = Vec::new();
    for (name, why) in BAD {
        match verify_program(&obj, name) {
            Ok(_) => panic!("{name} accepted"),
            Err(e) => {
                println!("{name}: {e}\n{}", e.log);
                if !e.message.contains(why) {
                    bad.push(format!("{name}: `{}`", e.message));
                }
                assert!(e.line.is_some(), "{name}: no source line");
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Checked runs of unverified programs: the packet helpers re-check everything they read
/// from a context the program may have scribbled over, or from a fake one it built.
#[test]
fn packet_helpers_in_checked_runs_of_unverified_programs() {
    use bpfvfs_ebpf::asm::assemble;
    use bpfvfs_ebpf::interp::LoadOptions;
    use bpfvfs_ebpf::pktctx::{SkbRun, XdpRun};
    use bpfvfs_ebpf::{Env, Helpers, Interpreter, Program};
    let helpers = Helpers::standard();
    let run_xdp = |src: &str| {
        let prog = Program::load(&assemble(src).unwrap(), LoadOptions::default()).unwrap();
        let mut i = Interpreter::new(&prog, &helpers).unwrap();
        let pkt = udp_frame(HOST_MAC, 1, 2, b"x");
        let mut run = XdpRun::new(&pkt, None).unwrap();
        let args = run.args();
        let regions = run.regions();
        i.run(args, &regions, &mut Env::new())
    };
    let run_skb = |src: &str| {
        let prog = Program::load(&assemble(src).unwrap(), LoadOptions::default()).unwrap();
        let mut i = Interpreter::new(&prog, &helpers).unwrap();
        let pkt = udp_frame(HOST_MAC, 1, 2, b"x");
        let mut run = SkbRun::new(&pkt, None).unwrap();
        let args = run.args();
        let regions = run.regions();
        i.run(args, &regions, &mut Env::new())
    };
    // The data pointer overwritten with a wild address, then the head moved.
    let e = run_xdp("lddw %r2, 0x1000\nstxdw [%r1+0], %r2\nmov %r2, -4\ncall 44\nexit\n");
    assert!(e.is_err(), "{e:?}");
    // Metadata moved to a wild address through a corrupted data_meta.
    let e = run_xdp("lddw %r2, 0x20000\nstxdw [%r1+16], %r2\nlddw %r3, 0x10000\nstxdw [%r1+32], %r3\nmov %r2, -8\ncall 44\nexit\n");
    assert!(e.is_err(), "{e:?}");
    // A fake xdp_buff on the stack, all zeros: refused by the helper, nothing touched.
    let r = run_xdp("mov %r1, %r10\nadd %r1, -48\nstdw [%r1+0], 0\nstdw [%r1+8], 0\nstdw [%r1+16], 0\nstdw [%r1+24], 0\nstdw [%r1+32], 0\nstdw [%r1+40], 0\nmov %r2, -8\ncall 54\nexit\n");
    assert_eq!(r.map(|v| v as i64), Ok(-22));
    // Growing the tail past the frame through a corrupted hard_end.
    let e = run_xdp("lddw %r2, -1\nstxdw [%r1+40], %r2\nmov %r2, 8000\ncall 65\nexit\n");
    assert!(e.is_err(), "{e:?}");
    // bpf_skb_load_bytes with a trailer pointing nowhere, and into a too small buffer.
    let e = run_skb("lddw %r2, 0x1000\nstxdw [%r1+200], %r2\nstxdw [%r1+208], %r2\nadd %r2, 64\nstxdw [%r1+208], %r2\nmov %r2, 0\nmov %r3, %r10\nadd %r3, -8\nmov %r4, 8\ncall 26\nexit\n");
    assert!(e.is_err(), "{e:?}");
    let e = run_skb("mov %r2, 0\nmov %r3, %r10\nadd %r3, -4\nmov %r4, 8\ncall 26\nexit\n");
    assert!(e.is_err(), "{e:?}");
    // And the honest case still works checked.
    let r = run_skb(
        "mov %r2, 9\nmov %r3, %r10\nadd %r3, -8\nmov %r4, 1\ncall 26\nldxb %r0, [%r10-8]\nexit\n",
    );
    assert_eq!(r, Ok(17), "UDP");
}
