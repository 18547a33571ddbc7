//! Print what the parser sees in a BPF object: `cargo run --example dump -- file.bpf.o`.
use bpfvfs_ebpf_obj::{object_name_from_path, LoadedObject};

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: dump FILE.bpf.o");
        std::process::exit(2);
    };
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(1);
    });
    let obj = match LoadedObject::parse(&bytes, &object_name_from_path(&path)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "object {} license {:?} version {:#x}",
        obj.name, obj.license, obj.kernel_version
    );
    for (i, m) in obj.maps.iter().enumerate() {
        println!(
            "map #{i} {} {:?} type {} key {} value {} max {} flags {:#x} pin {:?} slots {:?} inner {:?}",
            m.name,
            m.source,
            m.map_type,
            m.key_size,
            m.value_size,
            m.max_entries,
            m.map_flags,
            m.pinning,
            m.initial_slots,
            m.inner_map.as_ref().map(|i| (i.map_type, i.key_size, i.value_size, i.max_entries))
        );
    }
    for p in &obj.programs {
        println!(
            "prog {} section {:?} kind {:?} target {:?}: {} insns, functions {:?}",
            p.name,
            p.section,
            p.kind,
            p.attach_target,
            p.insns.len(),
            p.functions
                .iter()
                .map(|f| (&f.name, f.start, f.len))
                .collect::<Vec<_>>()
        );
        for r in &p.map_relocs {
            println!(
                "  map reloc insn {} -> map #{} {:?}",
                r.insn_index, r.map_index, r.kind
            );
        }
        for c in &p.core_relos {
            println!(
                "  core relo insn {} type {} access {} kind {}",
                c.insn_index, c.type_id, c.access, c.kind
            );
        }
        for l in &p.line_info {
            println!(
                "  line insn {} {}:{}:{} {}",
                l.insn_index,
                l.file_name,
                l.line,
                l.column,
                l.source.trim()
            );
        }
    }
}
