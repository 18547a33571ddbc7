//! Kernel differential for the examples: the same clang-built object, loaded by libbpf into
//! the host kernel and by bpfvfs, driven by the same script of BPF_PROG_TEST_RUN calls, map
//! dumps and ring-buffer reads; the printed results must be identical line for line (return
//! values, contexts after the run, map contents, ring records). The kernel side is a small C
//! harness (tests/kernel/kernel_run.c, built with gcc against libbpf). Skipped with the reason
//! when not root, when gcc/libbpf are missing, or when the kernel refuses the object.

mod common;

use bpfvfs_bpf::maps::ringbuf::RingBuf;
use bpfvfs_runtime::{LoadOpts, LoadedObj, Runtime, TestRunInput};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn build_harness(dir: &Path) -> Result<PathBuf, String> {
    common::build_libbpf_harness("kernel_run", dir)
}

fn kernel_side(harness: &Path, obj: &Path, script: &str) -> Result<String, String> {
    let mut child = Command::new(harness)
        .arg(obj)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    match out.status.code() {
        Some(0) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Some(2) => Err(format!(
            "the kernel refused the object: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        _ => panic!(
            "kernel harness failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn find_map<'a>(o: &'a LoadedObj, name: &str) -> &'a bpfvfs_bpf::Handle {
    &o.maps
        .iter()
        .find(|(n, _)| n == name || (name.starts_with('.') && n.ends_with(name)))
        .unwrap_or_else(|| panic!("no map {name}"))
        .1
}

fn our_side(rt: &Runtime, o: &LoadedObj, script: &str) -> String {
    let mut out = String::new();
    for line in script.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["run", prog, ctx] => {
                let p = &o.progs.iter().find(|(n, _)| n == prog).unwrap().1;
                let input = TestRunInput {
                    ctx_in: Some(unhex(ctx)),
                    ..Default::default()
                };
                match rt.test_run(p.obj.as_prog().unwrap(), &input) {
                    Ok(r) => out.push_str(&format!(
                        "run {prog} retval {} ctx {}\n",
                        r.retval as i32,
                        hex(&r.ctx_out.unwrap_or_default())
                    )),
                    Err(e) => out.push_str(&format!("run {prog} error -{}\n", e.errno().0)),
                }
            }
            ["pkt", prog, data, repeat] => {
                let p = &o.progs.iter().find(|(n, _)| n == prog).unwrap().1;
                let input = TestRunInput {
                    data_in: Some(unhex(data)),
                    data_size_out: Some(8192),
                    repeat: repeat.parse().unwrap(),
                    ..Default::default()
                };
                match rt.test_run(p.obj.as_prog().unwrap(), &input) {
                    Ok(r) => out.push_str(&format!(
                        "pkt {prog} retval {} data {}\n",
                        r.retval as i32,
                        hex(&r.data_out.unwrap_or_default())
                    )),
                    Err(e) => out.push_str(&format!("pkt {prog} error -{}\n", e.errno().0)),
                }
            }
            ["dump", map] => {
                let m = find_map(o, map).map().unwrap();
                let mut lines: Vec<String> = m
                    .entries()
                    .unwrap()
                    .into_iter()
                    .map(|(k, v)| format!("{} {}", hex(&k), hex(&v)))
                    .collect();
                lines.sort();
                for l in lines {
                    out.push_str(&format!("dump {map} {l}\n"));
                }
            }
            ["ring", map] => {
                let m = find_map(o, map).map().unwrap().clone();
                let rb = m.ops().as_any().downcast_ref::<RingBuf>().unwrap();
                rb.consume(|rec| out.push_str(&format!("ring {map} {}\n", hex(rec))));
            }
            _ => panic!("bad script line {line:?}"),
        }
    }
    out
}

/// (example, script) pairs. Contexts are hex, native-endian as the structs in the C files.
const CASES: &[(&str, &str)] = &[
    (
        "maps",
        "run count 07000000050000000000000000000000\n\
         run count 070000000a0000000000000000000000\n\
         run count 09000000010000000000000000000000\n\
         run count 0900000001000000\n\
         run count 090000000100000000000000000000\n\
         dump counters\n\
         dump last\n\
         run forget 07000000050000000000000000000000\n\
         run forget 07000000050000000000000000000000\n\
         dump counters\n",
    ),
    (
        "globals",
        "run accumulate 0400000000000000000000000000000000000000000000000000000000000000\n\
         run accumulate ffffffff00000000000000000000000000000000000000000000000000000000\n\
         dump .data\n\
         dump .bss\n\
         dump .rodata\n",
    ),
    (
        "subprog",
        "run math 54000000240000000000000000000000000000000000000000000000000000\n\
         run math 5400000024000000000000000000000000000000000000000000000000000000\n\
         run math 1100000005000000000000000000000000000000000000000000000000000000\n\
         run math 00000000000000000000000000000000000000000000000000000000000000ff\n\
         run math ffffffff63000000000000000000000000000000000000000000000000000000\n",
    ),
    (
        "loops",
        "run sum 0a000000000000000000000000000000000000000000000000000000000000000100000002000000030000000400000005000000060000000700000008000000090000000a0000000b0000000c0000000d0000000e0000000f00000010000000\n\
         run sum 64000000000000000000000000000000000000000000000000000000000000000100000002000000030000000400000005000000060000000700000008000000090000000a0000000b0000000c0000000d0000000e0000000f00000010000000\n\
         run sum 00000000000000000000000000000000000000000000000000000000000000000100000002000000030000000400000005000000060000000700000008000000090000000a0000000b0000000c0000000d0000000e0000000f00000010000000\n",
    ),
    (
        "ringbuf",
        "run produce 0600000003000000\n\
         ring events\n\
         run produce 2000000000000000\n\
         ring events\n\
         run produce 0300000001000000\n\
         ring events\n",
    ),
];

/// Ethernet + IPv4 (+ 8 bytes of L4) test packets.
fn packet(dst_mac: [u8; 6], ethertype: u16, proto: u8, l4: [u8; 8], pad: usize) -> String {
    let mut p = Vec::new();
    p.extend(dst_mac);
    p.extend([0x02, 0, 0, 0, 0, 0x01]);
    p.extend(ethertype.to_be_bytes());
    let ip = [
        0x45,
        0,
        0,
        28 + pad as u8,
        0,
        1,
        0,
        0,
        64,
        proto,
        0,
        0,
        10,
        0,
        0,
        1,
        10,
        0,
        0,
        2,
    ];
    p.extend(ip);
    p.extend(l4);
    p.extend(std::iter::repeat_n(0xabu8, pad));
    hex(&p)
}

fn packet_script(prog: &str, extra: &str) -> String {
    let host = [0u8; 6];
    let bcast = [0xff; 6];
    let other = [0x02, 0, 0, 0, 0, 0x09];
    let udp9 = [0x30, 0x39, 0, 9, 0, 8, 0, 0];
    let udp53 = [0x30, 0x39, 0, 53, 0, 8, 0, 0];
    let icmp = [8, 0, 0, 0, 0, 1, 0, 1];
    let tcp = [0x30, 0x39, 0, 80, 0, 0, 0, 0];
    let mut s = String::new();
    for (mac, et, proto, l4, pad, rep) in [
        (host, 0x0800, 17, udp9, 0, 1),
        (host, 0x0800, 17, udp53, 20, 1),
        (bcast, 0x0800, 1, icmp, 64, 1),
        (other, 0x0800, 6, tcp, 3, 5),
        (host, 0x86dd, 17, udp53, 0, 1),
        (host, 0x0806, 0, [0; 8], 0, 1),
        (other, 0x0800, 47, [0; 8], 100, 2),
    ] {
        s.push_str(&format!(
            "pkt {prog} {} {rep}\n",
            packet(mac, et, proto, l4, pad)
        ));
    }
    // Too short for an Ethernet header; an Ethernet header only; truncated IPv4.
    s.push_str(&format!("pkt {prog} 0000000000000000 1\n"));
    s.push_str(&format!("pkt {prog} 00000000000002000000000108 1\n"));
    s.push_str(&format!("pkt {prog} 0000000000000200000000010800 1\n"));
    s.push_str(&format!("pkt {prog} 00000000000002000000000108004500 1\n"));
    s.push_str(extra);
    s
}

#[test]
fn packet_examples_match_the_kernel() {
    let dir = std::env::temp_dir().join(format!("bpfvfs-kernel-pkt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let harness = match build_harness(&dir) {
        Ok(h) => h,
        Err(why) => {
            println!("SKIPPED: kernel differential: {why}");
            return;
        }
    };
    for (name, prog, map) in [
        ("xdp_filter", "xdp_filter", "proto_count"),
        ("socket_filter", "sock_filter", "bytes"),
    ] {
        let src = common::examples_dir().join(format!("{name}.bpf.c"));
        let Some(bytes) = common::compile(&src) else {
            return;
        };
        let obj_path = dir.join(format!("{name}.bpf.o"));
        std::fs::write(&obj_path, &bytes).unwrap();
        let script = packet_script(prog, &format!("dump {map}\n"));
        let kernel = match kernel_side(&harness, &obj_path, &script) {
            Ok(k) => k,
            Err(why) => {
                println!("SKIPPED: {name}: {why}");
                continue;
            }
        };
        for cfg in common::configs() {
            let (_vfs, _bpf, rt) = common::instance(cfg);
            let o = rt
                .load_object(&bytes, &LoadOpts::new(&format!("{name}.bpf")))
                .unwrap_or_else(|e| panic!("{name}: {e}\n{}", e.verifier_log().unwrap_or("")));
            let ours = our_side(&rt, &o, &script);
            assert_eq!(
                ours, kernel,
                "{name} on {cfg:?}:\nours:\n{ours}\nkernel:\n{kernel}"
            );
        }
        println!(
            "{name}: {} lines identical to the kernel's",
            kernel.lines().count()
        );
    }
}

#[test]
fn examples_match_the_kernel() {
    let dir = std::env::temp_dir().join(format!("bpfvfs-kernel-examples-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let harness = match build_harness(&dir) {
        Ok(h) => h,
        Err(why) => {
            println!("SKIPPED: kernel differential: {why}");
            return;
        }
    };
    let mut compared = 0;
    for (name, script) in CASES {
        let src = common::examples_dir().join(format!("{name}.bpf.c"));
        let Some(bytes) = common::compile(&src) else {
            return;
        };
        let obj_path = dir.join(format!("{name}.bpf.o"));
        std::fs::write(&obj_path, &bytes).unwrap();
        let kernel = match kernel_side(&harness, &obj_path, script) {
            Ok(k) => k,
            Err(why) => {
                println!("SKIPPED: {name}: {why}");
                continue;
            }
        };
        for cfg in common::configs() {
            let (_vfs, _bpf, rt) = common::instance(cfg);
            let o = rt
                .load_object(&bytes, &LoadOpts::new(&format!("{name}.bpf")))
                .unwrap_or_else(|e| panic!("{name}: {e}\n{}", e.verifier_log().unwrap_or("")));
            let ours = our_side(&rt, &o, script);
            assert_eq!(
                ours, kernel,
                "{name} on {cfg:?}:\nours:\n{ours}\nkernel:\n{kernel}"
            );
        }
        println!(
            "{name}: {} lines identical to the kernel's",
            kernel.lines().count()
        );
        compared += 1;
    }
    println!(
        "{compared}/{} examples compared with the kernel",
        CASES.len()
    );
}
