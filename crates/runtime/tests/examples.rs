//! The C programs in examples/ — maps, global data, subprograms, loops, ring buffer,
//! bpf_printk — compiled by clang, loaded (maps created, verified, prepared), and run through
//! BPF_PROG_TEST_RUN on every engine configuration (interpreter and JIT, unchecked and
//! checked), with their effects on maps checked from user space.

mod common;

use bpfvfs_bpf::maps::ringbuf::RingBuf;
use bpfvfs_bpf::{Handle, MapType};
use bpfvfs_runtime::{LoadedObj, Runtime, TestRunInput};
use std::time::Duration;

use common::load;

fn prog<'a>(o: &'a LoadedObj, name: &str) -> &'a Handle {
    &o.progs.iter().find(|(n, _)| n == name).expect(name).1
}

fn map<'a>(o: &'a LoadedObj, name: &str) -> &'a Handle {
    &o.maps.iter().find(|(n, _)| n == name).expect(name).1
}

fn run(rt: &Runtime, h: &Handle, ctx: &[u8]) -> (u32, Vec<u8>) {
    let out = rt
        .test_run(
            h.obj.as_prog().unwrap(),
            &TestRunInput {
                ctx_in: Some(ctx.to_vec()),
                ..Default::default()
            },
        )
        .unwrap();
    (out.retval, out.ctx_out.unwrap_or_default())
}

fn u32s(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().unwrap())
}

#[test]
fn maps_example() {
    let Some(obj) = common::example("maps") else {
        return;
    };
    for cfg in common::configs() {
        let (_vfs, bpf, rt) = common::instance(cfg);
        let o = load(&rt, "maps", &obj);
        assert_eq!(o.maps.len(), 2, "{cfg:?}");
        let count = prog(&o, "count");
        // The lookup in the array `last` is compiled inline by the JIT's unchecked code (the
        // hash `counters` is always a call); every configuration gives the same results.
        let lp = count
            .obj
            .as_prog()
            .unwrap()
            .exec::<bpfvfs_runtime::LoadedProg>()
            .unwrap()
            .inlined_lookups();
        let inline = cfg!(target_arch = "x86_64") && cfg.engine == bpfvfs_runtime::EngineKind::Jit;
        assert_eq!(lp, inline as usize, "{cfg:?}");
        let mut ctx = u32s(&[7, 5]);
        ctx.extend([0u8; 8]);
        let (r, out) = run(&rt, count, &ctx);
        assert_eq!((r, u64_at(&out, 8)), (0, 5), "{cfg:?}");
        let mut ctx2 = u32s(&[7, 10]);
        ctx2.extend([0u8; 8]);
        let (_, out) = run(&rt, count, &ctx2);
        assert_eq!(u64_at(&out, 8), 15, "{cfg:?}");
        // User space sees what the program wrote.
        let counters = map(&o, "counters");
        let v = bpf.map_lookup_elem(counters, &7u32.to_ne_bytes()).unwrap();
        assert_eq!(u64::from_ne_bytes(v.try_into().unwrap()), 15);
        let last = bpf
            .map_lookup_elem(map(&o, "last"), &0u32.to_ne_bytes())
            .unwrap();
        assert_eq!(u64::from_ne_bytes(last.try_into().unwrap()), 7);
        // And the program sees what user space wrote.
        bpf.map_update_elem(counters, &9u32.to_ne_bytes(), &100u64.to_ne_bytes(), 0)
            .unwrap();
        let mut ctx3 = u32s(&[9, 1]);
        ctx3.extend([0u8; 8]);
        assert_eq!(u64_at(&run(&rt, count, &ctx3).1, 8), 101);
        // delete from the program: 0, then -ENOENT.
        let forget = prog(&o, "forget");
        assert_eq!(run(&rt, forget, &ctx3).0, 0);
        assert_eq!(run(&rt, forget, &ctx3).0 as i32, -2);
        assert!(bpf.map_lookup_elem(counters, &9u32.to_ne_bytes()).is_err());
    }
}

#[test]
fn globals_example() {
    let Some(obj) = common::example("globals") else {
        return;
    };
    for cfg in common::configs() {
        let (_vfs, bpf, rt) = common::instance(cfg);
        let o = load(&rt, "globals", &obj);
        let names: Vec<&str> = o.maps.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"globals.rodata"), "{names:?}");
        assert!(names.contains(&"globals.data"), "{names:?}");
        assert!(names.contains(&"globals.bss"), "{names:?}");
        let rodata = map(&o, "globals.rodata");
        let m = rodata.map().unwrap();
        assert!(m.is_frozen(), "rodata is frozen after load");
        assert_eq!(m.def().map_type, MapType::Array.as_u32());
        // Frozen: user space can no longer write it.
        let v = bpf.map_lookup_elem(rodata, &0u32.to_ne_bytes()).unwrap();
        assert_eq!(
            bpf.map_update_elem(rodata, &0u32.to_ne_bytes(), &v, 0)
                .unwrap_err(),
            bpfvfs_vfs::Errno::EPERM
        );
        let p = prog(&o, "accumulate");
        let mut ctx = vec![0u8; 32];
        ctx[..4].copy_from_slice(&4u32.to_ne_bytes());
        let (r, out) = run(&rt, p, &ctx);
        assert_eq!(r, 3, "{cfg:?}");
        assert_eq!(u64_at(&out, 8), 101);
        assert_eq!(u64_at(&out, 16), 12);
        assert_eq!(&out[24..27], b"hi\0");
        let (_, out) = run(&rt, p, &ctx);
        assert_eq!((u64_at(&out, 8), u64_at(&out, 16)), (102, 24));
        // .data as user space sees it: the counter the program bumped.
        let data = bpf
            .map_lookup_elem(map(&o, "globals.data"), &0u32.to_ne_bytes())
            .unwrap();
        assert_eq!(u64_at(&data, 0), 102);
    }
}

#[test]
fn subprog_example() {
    let Some(obj) = common::example("subprog") else {
        return;
    };
    for cfg in common::configs() {
        let (_vfs, _bpf, rt) = common::instance(cfg);
        let o = load(&rt, "subprog", &obj);
        let p = prog(&o, "math");
        let mut ctx = u32s(&[84, 36]);
        ctx.extend([0u8; 16]);
        let (r, out) = run(&rt, p, &ctx);
        assert_eq!(r, 0);
        assert_eq!(u64_at(&out, 8), 12, "gcd {cfg:?}");
        assert_eq!(u64_at(&out, 16), 2_432_902_008_176_640_000, "20! {cfg:?}");
        let mut ctx = u32s(&[17, 5]);
        ctx.extend([0u8; 16]);
        let (_, out) = run(&rt, p, &ctx);
        assert_eq!((u64_at(&out, 8), u64_at(&out, 16)), (1, 120));
    }
}

#[test]
fn loops_example() {
    let Some(obj) = common::example("loops") else {
        return;
    };
    for cfg in common::configs() {
        let (_vfs, _bpf, rt) = common::instance(cfg);
        let o = load(&rt, "loops", &obj);
        let p = prog(&o, "sum");
        let data: Vec<u32> = (1..=16).collect();
        let mut ctx = u32s(&[10, 0]);
        ctx.extend([0u8; 16]);
        ctx.extend(u32s(&data));
        let (r, out) = run(&rt, p, &ctx);
        assert_eq!(r, 10, "bpf_loop iterations {cfg:?}");
        assert_eq!(u64_at(&out, 8), 55);
        assert_eq!(u64_at(&out, 16), 55);
    }
}

#[test]
fn ringbuf_example() {
    let Some(obj) = common::example("ringbuf") else {
        return;
    };
    for cfg in common::configs() {
        let (_vfs, _bpf, rt) = common::instance(cfg);
        let o = load(&rt, "ringbuf", &obj);
        let p = prog(&o, "produce");
        let (r, _) = run(&rt, p, &u32s(&[6, 3]));
        // i = 0 and 3 discarded: 4 submitted + the final output record.
        assert_eq!(r, 5, "{cfg:?}");
        let m = map(&o, "events").map().unwrap().clone();
        let rb = m.ops().as_any().downcast_ref::<RingBuf>().unwrap();
        let mut recs = Vec::new();
        rb.consume(|rec: &[u8]| {
            recs.push((
                u32::from_ne_bytes(rec[0..4].try_into().unwrap()),
                u32::from_ne_bytes(rec[4..8].try_into().unwrap()),
                u64_at(rec, 8),
            ));
        });
        assert_eq!(
            recs,
            vec![(1, 1, 1), (2, 1, 4), (4, 1, 16), (5, 1, 25), (6, 2, 4)],
            "{cfg:?}"
        );
    }
}

#[test]
fn printk_example_reaches_the_trace_pipe() {
    let Some(obj) = common::example("printk") else {
        return;
    };
    // Every engine configuration: `%s` of a string in the program's global data must work in
    // unchecked runs too (the helper finds it through the region table).
    for cfg in common::configs() {
        let (_vfs, _bpf, rt) = common::instance(cfg);
        let o = load(&rt, "printk", &obj);
        let (r, _) = run(&rt, prog(&o, "hello"), &7u32.to_ne_bytes());
        assert_eq!(r, 0);
        let lines = rt.trace().read(10, Duration::from_millis(100));
        assert_eq!(lines.len(), 3, "{cfg:?}: {lines:?}");
        assert!(
            lines[0].ends_with("bpf_trace_printk: hello from bpfvfs: x=7"),
            "{cfg:?}: {}",
            lines[0]
        );
        assert!(
            lines[1].ends_with("bpf_trace_printk: x squared is 49"),
            "{cfg:?}: {}",
            lines[1]
        );
        assert!(
            lines[2].ends_with("bpf_trace_printk: from [bpfvfs] [ab      ]"),
            "{cfg:?}: {}",
            lines[2]
        );
    }
}

fn udp_frame(dport: u16) -> Vec<u8> {
    let mut p = vec![0u8; 12];
    p.extend([0x08, 0x00]);
    p.extend([
        0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    p.extend([0x30, 0x39]);
    p.extend(dport.to_be_bytes());
    p.extend([0, 8, 0, 0]);
    p
}

#[test]
fn xdp_and_socket_filter_examples() {
    let Some(xdp) = common::example("xdp_filter") else {
        return;
    };
    let Some(sock) = common::example("socket_filter") else {
        return;
    };
    for cfg in common::configs() {
        let (_vfs, bpf, rt) = common::instance(cfg);
        let o = load(&rt, "xdp_filter", &xdp);
        let p = prog(&o, "xdp_filter").obj.as_prog().unwrap().clone();
        let run = |frame: Vec<u8>, repeat: u32| {
            rt.test_run(
                &p,
                &TestRunInput {
                    data_in: Some(frame),
                    data_size_out: Some(4096),
                    repeat,
                    ..Default::default()
                },
            )
            .unwrap()
        };
        assert_eq!(run(udp_frame(9), 1).retval, 1, "XDP_DROP {cfg:?}");
        let r = run(udp_frame(53), 100);
        assert_eq!(r.retval, 2, "XDP_PASS");
        assert_eq!(r.data_out.as_deref(), Some(&udp_frame(53)[..]));
        // 1 + 100 UDP packets counted.
        let n = bpf
            .map_lookup_elem(map(&o, "proto_count"), &17u32.to_ne_bytes())
            .unwrap();
        assert_eq!(u64::from_ne_bytes(n.try_into().unwrap()), 101);
        // Too short: EINVAL, as the kernel.
        let e = rt
            .test_run(
                &p,
                &TestRunInput {
                    data_in: Some(vec![0; 10]),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert_eq!(e.errno(), bpfvfs_vfs::Errno::EINVAL);

        let o = load(&rt, "socket_filter", &sock);
        let p = prog(&o, "sock_filter").obj.as_prog().unwrap().clone();
        let r = rt
            .test_run(
                &p,
                &TestRunInput {
                    data_in: Some(udp_frame(53)),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(r.retval, 28, "UDP kept whole (skb->len) {cfg:?}");
    }
}
