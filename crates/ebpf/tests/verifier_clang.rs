//! Programs compiled by clang (`-target bpf`) through the ELF loader and the verifier, with
//! BTF line info in the log and the error. Skipped when clang is not installed.

use bpfvfs_ebpf::insn::Insn;
use bpfvfs_ebpf::verifier::{verify, HelperProtos, MapInfo, MapType, ProgTypeSpec, VerifierEnv};
use bpfvfs_ebpf_obj::LoadedObject;
use std::process::Command;

const SRC: &str = r#"
struct __sk_buff { unsigned int len; unsigned int pkt_type; unsigned int mark; };
#define BPF_MAP_TYPE_ARRAY 2
#define SEC(n) __attribute__((section(n), used))
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static unsigned long long (*bpf_get_prandom_u32)(void) = (void *)7;
struct { int (*type)[BPF_MAP_TYPE_ARRAY]; int (*key_size)[4]; int (*value_size)[64]; int (*max_entries)[4]; }
    counters SEC(".maps");

SEC("socket") int good(struct __sk_buff *skb)
{
    unsigned int key = 0, i;
    unsigned long long *v = bpf_map_lookup_elem(&counters, &key);
    if (!v)
        return 0;
    for (i = 0; i < 8; i++)
        v[i] += skb->len;
    unsigned int idx = bpf_get_prandom_u32() & 7;
    v[idx] += 1;
    return 0;
}

SEC("socket") int bad(struct __sk_buff *skb)
{
    unsigned int key = 0;
    unsigned long long *v = bpf_map_lookup_elem(&counters, &key);
    if (!v)
        return 0;
    unsigned int idx = skb->len;
    if (idx > 8)
        return 0;
    v[idx] += 1;
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
"#;

fn insns_of(p: &bpfvfs_ebpf_obj::ProgramSpec) -> Vec<Insn> {
    p.insns.iter().map(|i| Insn::from_u64(i.to_u64())).collect()
}

#[test]
fn clang_programs() {
    let dir = std::env::temp_dir().join(format!("bpfvfs-verifier-clang-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = dir.join("p.c");
    let o = dir.join("p.o");
    std::fs::write(&c, SRC).unwrap();
    let out = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-c"])
        .arg(&c)
        .arg("-o")
        .arg(&o)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            println!("SKIPPED: clang not available: {e}");
            return;
        }
    };
    if !out.status.success() {
        println!(
            "SKIPPED: clang failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let data = std::fs::read(&o).unwrap();
    let mut obj = LoadedObject::parse(&data, "p").expect("parse");
    let maps: Vec<MapInfo> = obj
        .maps
        .iter()
        .enumerate()
        .map(|(i, m)| {
            MapInfo::new(
                i as i32,
                MapType(m.map_type),
                m.key_size,
                m.value_size,
                m.max_entries,
            )
        })
        .collect();
    let ty = ProgTypeSpec::socket_filter();
    let protos = HelperProtos::standard();
    let env = VerifierEnv::new(&ty, &maps, &protos);
    for name in ["good", "bad"] {
        let p = obj.program_mut(name).expect("program");
        p.patch_map_references(|i| Some(i as u32)).unwrap();
        let p = obj.program(name).unwrap().clone();
        let insns = insns_of(&p);
        let li = |i: usize| {
            p.line_info_for(i)
                .map(|l| format!("{} @ {}:{}", l.source.trim(), l.file_name, l.line))
        };
        let res = verify(&insns, &env, Some(&li));
        match name {
            "good" => {
                let info = res.unwrap_or_else(|e| panic!("good rejected: {e}\n{}", e.log));
                println!(
                    "good: {} insns processed\n{}",
                    info.processed_insns, info.log
                );
            }
            _ => {
                let e = res.expect_err("bad accepted");
                println!("bad: {e}\n{}", e.log);
                assert!(
                    e.message
                        .contains("invalid access to map value, value_size=64 off=64 size=8"),
                    "{e}"
                );
                let line = e.line.expect("line info");
                assert!(
                    line.contains("v[idx] += 1") && line.contains("p.c:"),
                    "{line}"
                );
                assert!(e.log.contains("; v[idx] += 1;"), "{}", e.log);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
