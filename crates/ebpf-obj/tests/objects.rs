//! Parse real clang-built objects and check programs, maps, relocations and
//! line info against the sources and `llvm-objdump`.

mod common;

use bpfvfs_ebpf_obj::insn::{
    BPF_PSEUDO_CALL, BPF_PSEUDO_FUNC, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE,
};
use bpfvfs_ebpf_obj::maps::{map_flags, map_type};
use bpfvfs_ebpf_obj::{
    BtfKind, DataSection, LoadedObject, MapRelocKind, MapSource, Pinning, ProgramKind, ProgramSpec,
    SlotTarget,
};

fn load(name: &str) -> Option<LoadedObject> {
    let bytes = common::object(name)?;
    Some(LoadedObject::parse(&bytes, name).unwrap_or_else(|e| panic!("{name}: {e}")))
}

/// Map names referenced by a program's relocations, in instruction order.
fn reloc_names(obj: &LoadedObject, p: &ProgramSpec) -> Vec<(String, MapRelocKind)> {
    p.map_relocs
        .iter()
        .map(|r| (obj.maps[r.map_index].name.clone(), r.kind))
        .collect()
}

#[test]
fn btf_maps() {
    let Some(obj) = load("maps") else { return };
    assert_eq!(obj.license, "GPL");
    let names: Vec<_> = obj.maps.iter().map(|m| m.name.as_str()).collect();
    for n in [
        "counts",
        "plain_array",
        "pinned_lru",
        "percpu",
        "events",
        "inner_a",
        "inner_b",
        "outer",
        "jumps",
    ] {
        assert!(names.contains(&n), "missing map {n} in {names:?}");
    }
    let btf = obj.btf.as_ref().unwrap();

    let counts = obj.map("counts").unwrap();
    assert_eq!(counts.source, MapSource::Btf);
    assert_eq!(
        (
            counts.map_type,
            counts.key_size,
            counts.value_size,
            counts.max_entries
        ),
        (map_type::HASH, 4, 32, 1024)
    );
    assert_eq!(btf.type_to_string(counts.key_type_id.unwrap()), "__u32");
    assert_eq!(
        btf.type_to_string(counts.value_type_id.unwrap()),
        "struct value"
    );

    let a = obj.map("plain_array").unwrap();
    assert_eq!(
        (a.map_type, a.key_size, a.value_size, a.max_entries),
        (map_type::ARRAY, 4, 8, 16)
    );
    assert_eq!((a.key_type_id, a.value_type_id), (None, None));

    let lru = obj.map("pinned_lru").unwrap();
    assert_eq!(
        (lru.map_type, lru.key_size, lru.value_size, lru.max_entries),
        (map_type::LRU_HASH, 8, 8, 128)
    );
    assert_eq!(lru.map_flags, map_flags::NO_COMMON_LRU);
    assert_eq!(lru.pinning, Pinning::ByName);
    assert_eq!(counts.pinning, Pinning::None);

    let pc = obj.map("percpu").unwrap();
    assert_eq!(
        (pc.map_type, pc.key_size, pc.value_size, pc.max_entries),
        (map_type::PERCPU_ARRAY, 4, 8, 1)
    );

    let rb = obj.map("events").unwrap();
    assert_eq!(
        (rb.map_type, rb.key_size, rb.value_size, rb.max_entries),
        (map_type::RINGBUF, 0, 0, 4096)
    );

    let outer = obj.map("outer").unwrap();
    assert_eq!(
        (
            outer.map_type,
            outer.key_size,
            outer.value_size,
            outer.max_entries
        ),
        (map_type::ARRAY_OF_MAPS, 4, 4, 3)
    );
    let inner = outer.inner_map.as_ref().unwrap();
    assert_eq!(
        (
            inner.map_type,
            inner.key_size,
            inner.value_size,
            inner.max_entries
        ),
        (map_type::ARRAY, 4, 4, 4)
    );
    assert_eq!(inner.name, "outer.inner");
    let slots: Vec<_> = outer
        .initial_slots
        .iter()
        .map(|s| (s.index, s.target.clone()))
        .collect();
    assert_eq!(
        slots,
        vec![
            (0, SlotTarget::Map(obj.map_index("inner_a").unwrap())),
            (2, SlotTarget::Map(obj.map_index("inner_b").unwrap()))
        ]
    );

    let jumps = obj.map("jumps").unwrap();
    assert_eq!(
        (jumps.map_type, jumps.value_size, jumps.max_entries),
        (map_type::PROG_ARRAY, 4, 2)
    );
    assert_eq!(jumps.initial_slots.len(), 1);
    assert_eq!(jumps.initial_slots[0].index, 1);
    assert_eq!(
        jumps.initial_slots[0].target,
        SlotTarget::Program("tail".into())
    );

    // Two programs in one section.
    let progs: Vec<_> = obj
        .programs
        .iter()
        .map(|p| (p.name.as_str(), p.section.as_str(), p.kind))
        .collect();
    assert_eq!(
        progs,
        vec![
            ("tail", "xdp", ProgramKind::Xdp),
            ("use_maps", "xdp", ProgramKind::Xdp)
        ]
    );

    let p = obj.program("use_maps").unwrap();
    let refs: Vec<_> = reloc_names(&obj, p).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        refs,
        vec![
            "counts",
            "plain_array",
            "pinned_lru",
            "percpu",
            "events",
            "outer",
            "jumps"
        ]
    );
    assert!(p.map_relocs.iter().all(|r| r.kind == MapRelocKind::Map));
    for r in &p.map_relocs {
        assert!(p.insns[r.insn_index].is_ld_imm64());
    }
}

#[test]
fn legacy_maps() {
    let Some(obj) = load("legacy") else { return };
    assert_eq!(obj.license, "Dual BSD/GPL");
    assert_eq!(obj.kernel_version, 0x050a00);
    assert_eq!(obj.maps.len(), 2);
    let h = obj.map("legacy_hash").unwrap();
    assert_eq!(h.source, MapSource::Legacy);
    assert_eq!(
        (
            h.map_type,
            h.key_size,
            h.value_size,
            h.max_entries,
            h.map_flags
        ),
        (map_type::HASH, 4, 8, 64, 0)
    );
    let a = obj.map("legacy_array").unwrap();
    assert_eq!(
        (a.map_type, a.key_size, a.value_size, a.max_entries),
        (map_type::ARRAY, 4, 16, 8)
    );
    let p = obj.program("sock_prog").unwrap();
    assert_eq!(
        (p.kind, p.attach_target.as_deref()),
        (ProgramKind::SocketFilter, None)
    );
    assert_eq!(p.license, "Dual BSD/GPL");
    assert_eq!(p.kernel_version, 0x050a00);
    let refs: Vec<_> = reloc_names(&obj, p).into_iter().map(|(n, _)| n).collect();
    assert_eq!(refs, vec!["legacy_hash", "legacy_array"]);
}

#[test]
fn global_data() {
    let Some(obj) = load("globals") else { return };
    let names: Vec<_> = obj.maps.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "globals.data",
            "globals.rodata",
            ".data.custom",
            "globals.bss",
            ".rodata.str1.1"
        ]
    );

    let data = obj.map("globals.data").unwrap();
    assert_eq!(data.source, MapSource::Data(DataSection::Data));
    assert_eq!(
        (
            data.map_type,
            data.key_size,
            data.value_size,
            data.max_entries
        ),
        (map_type::ARRAY, 4, 8, 1)
    );
    assert_eq!(data.map_flags, map_flags::MMAPABLE);
    // counter = 5, static_counter = 3
    assert_eq!(
        data.initial_data.as_deref(),
        Some(&[5, 0, 0, 0, 3, 0, 0, 0][..])
    );

    let ro = obj.map("globals.rodata").unwrap();
    assert_eq!(ro.source, MapSource::Data(DataSection::Rodata));
    assert!(ro.is_read_only_data());
    assert_eq!(ro.map_flags, map_flags::MMAPABLE | map_flags::RDONLY_PROG);
    let init = ro.initial_data.as_ref().unwrap();
    assert_eq!(init.len(), 12);
    assert_eq!(&init[0..4], &42i32.to_le_bytes());
    assert_eq!(&init[4..12], b"bpfvfs\0\0");

    let bss = obj.map("globals.bss").unwrap();
    assert_eq!(bss.source, MapSource::Data(DataSection::Bss));
    assert_eq!(bss.initial_data.as_deref(), Some(&[0u8; 8][..]));

    let s = obj.map(".rodata.str1.1").unwrap();
    assert_eq!(s.initial_data.as_deref(), Some(&b"openat %d\n\0"[..]));

    let custom = obj.map(".data.custom").unwrap();
    assert_eq!(
        custom.initial_data.as_deref(),
        Some(&0x1234i32.to_le_bytes()[..])
    );

    // The value types are the DATASECs, with sizes and offsets fixed up from ELF.
    let btf = obj.btf.as_ref().unwrap();
    let ds = btf.type_by_id(ro.value_type_id.unwrap()).unwrap();
    assert_eq!(ds.kind, BtfKind::DataSec);
    assert_eq!(ds.size_or_type, 12);
    let offs: Vec<_> = ds
        .datasec_vars()
        .iter()
        .map(|v| (btf.name_of(v.type_id).unwrap().to_owned(), v.offset))
        .collect();
    assert_eq!(offs, vec![("threshold".into(), 0), ("banner".into(), 4)]);
    // ... and the raw bytes say the same.
    let reparsed = bpfvfs_ebpf_obj::Btf::parse(btf.raw_bytes()).unwrap();
    assert_eq!(reparsed.type_by_id(ro.value_type_id.unwrap()).unwrap(), ds);

    let p = obj.program("tp_openat").unwrap();
    assert_eq!(
        (p.kind, p.attach_target.as_deref()),
        (ProgramKind::Tracepoint, Some("syscalls/sys_enter_openat"))
    );
    let refs = reloc_names(&obj, p);
    let value = |n: &str, offset| (n.to_owned(), MapRelocKind::Value { offset });
    for want in [
        value("globals.data", 0),   // counter
        value("globals.data", 4),   // static_counter (section symbol + addend)
        value("globals.rodata", 0), // threshold
        value("globals.rodata", 4), // banner
        value("globals.bss", 0),    // hits
        value(".data.custom", 0),   // custom_val
        value(".rodata.str1.1", 0), // the format string
    ] {
        assert!(refs.contains(&want), "{want:?} not in {refs:?}");
    }
    assert_eq!(refs.len(), 7);
}

#[test]
fn multiple_programs_kinds_and_subprograms() {
    let Some(obj) = load("multi") else { return };
    let progs: Vec<_> = obj
        .programs
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.section.as_str(),
                p.kind,
                p.attach_target.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        progs,
        vec![
            (
                "check_open",
                "lsm/file_open",
                ProgramKind::Lsm,
                Some("file_open")
            ),
            (
                "on_read",
                "fentry/vfs_read",
                ProgramKind::Fentry,
                Some("vfs_read")
            ),
            (
                "after_read",
                "fexit/vfs_read",
                ProgramKind::Fexit,
                Some("vfs_read")
            ),
            (
                "on_switch",
                "tp_btf/sched_switch",
                ProgramKind::TpBtf,
                Some("sched_switch")
            ),
            ("dump_task", "iter/task", ProgramKind::Iter, Some("task")),
            (
                "probe_a",
                "kprobe/do_unlinkat",
                ProgramKind::Kprobe,
                Some("do_unlinkat")
            ),
            (
                "probe_b",
                "kprobe/do_unlinkat",
                ProgramKind::Kprobe,
                Some("do_unlinkat")
            ),
            ("sys_prog", "syscall", ProgramKind::Syscall, None),
            ("sock", "socket", ProgramKind::SocketFilter, None),
            (
                "view_cgroup",
                "view/cgroup",
                ProgramKind::View,
                Some("cgroup")
            ),
        ]
    );
    // No .text function is a program.
    assert!(obj.program("add_twice").is_none() && obj.program("global_helper").is_none());

    // check_open calls add_twice twice: appended once, both calls land on it.
    let p = obj.program("check_open").unwrap();
    let fnames: Vec<_> = p.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(fnames, vec!["check_open", "add_twice"]);
    let sub = &p.functions[1];
    let calls = pseudo_call_targets(p);
    assert_eq!(calls.len(), 2);
    assert!(
        calls.iter().all(|&t| t == sub.start),
        "{calls:?} vs {}",
        sub.start
    );
    assert_eq!(
        p.insns.len(),
        p.functions.iter().map(|f| f.len).sum::<usize>()
    );

    // A global (non-static) sub-program with a bounded loop.
    let p = obj.program("on_read").unwrap();
    let g = p
        .functions
        .iter()
        .find(|f| f.name == "global_helper")
        .unwrap();
    assert_eq!(pseudo_call_targets(p), vec![g.start]);
    let back_edge = (g.start..g.start + g.len).any(|i| {
        let ins = p.insns[i];
        ins.class() == 0x05 && ins.code() != 0x85 && ins.code() != 0x95 && ins.off() < 0
    });
    assert!(back_edge, "bounded loop lost its back edge");

    // bpf_loop callback: lddw with BPF_PSEUDO_FUNC pointing at the appended loop_cb.
    let p = obj.program("after_read").unwrap();
    let cb = p.functions.iter().find(|f| f.name == "loop_cb").unwrap();
    let (pos, ins) = p
        .insns
        .iter()
        .enumerate()
        .find(|(_, i)| i.is_ld_imm64() && i.src() == BPF_PSEUDO_FUNC)
        .unwrap();
    assert_eq!((pos as i64 + ins.imm() as i64 + 1) as usize, cb.start);
    assert_eq!(p.insns[pos + 1].imm(), 0);
    let add = p.functions.iter().find(|f| f.name == "add_twice").unwrap();
    assert_eq!(pseudo_call_targets(p), vec![add.start]);

    // The same sub-program appears in several programs, each with its own copy.
    assert!(obj
        .program("probe_b")
        .unwrap()
        .functions
        .iter()
        .any(|f| f.name == "add_twice"));
    assert!(obj
        .program("probe_a")
        .unwrap()
        .functions
        .iter()
        .any(|f| f.name == "global_helper"));

    // func_info: one record per function, pointing at each function's start.
    for p in &obj.programs {
        let starts: Vec<_> = p.functions.iter().map(|f| f.start as u32).collect();
        let fi: Vec<_> = p.func_info.iter().map(|f| f.insn_index).collect();
        assert_eq!(fi, starts, "func_info of {}", p.name);
        let btf = obj.btf.as_ref().unwrap();
        for (f, span) in p.func_info.iter().zip(&p.functions) {
            assert_eq!(btf.name_of(f.type_id).unwrap(), span.name);
            assert_eq!(btf.type_by_id(f.type_id).unwrap().kind, BtfKind::Func);
        }
    }
}

fn pseudo_call_targets(p: &ProgramSpec) -> Vec<usize> {
    p.insns
        .iter()
        .enumerate()
        .filter(|(_, i)| i.is_call() && i.src() == BPF_PSEUDO_CALL)
        .map(|(pos, i)| (pos as i64 + i.imm() as i64 + 1) as usize)
        .collect()
}

#[test]
fn instruction_counts_match_llvm_objdump() {
    for name in common::PROGS {
        let Some(path) = common::object_path(name) else {
            return;
        };
        let obj = LoadedObject::parse(&std::fs::read(&path).unwrap(), name).unwrap();
        let mut fnames: Vec<&str> = vec![];
        for p in &obj.programs {
            for f in &p.functions {
                fnames.push(&f.name);
            }
        }
        let Some(counts) = common::objdump_slots(&path, &fnames) else {
            return;
        };
        for p in &obj.programs {
            for f in &p.functions {
                assert_eq!(
                    counts.get(&f.name).copied(),
                    Some(f.len),
                    "{name}: function {} of {}",
                    f.name,
                    p.name
                );
            }
            assert_eq!(
                p.insns.len(),
                p.functions.iter().map(|f| f.len).sum::<usize>()
            );
        }
    }
}

#[test]
fn line_info_for_a_known_line() {
    let Some(obj) = load("multi") else { return };
    let p = obj.program("on_read").unwrap();
    assert!(!p.line_info.is_empty());
    // The call to global_helper is on a known source line.
    let call = p
        .insns
        .iter()
        .position(|i| i.is_call() && i.src() == BPF_PSEUDO_CALL)
        .unwrap();
    let li = p.line_info_for(call).unwrap();
    let want = common::source_line_of("multi", "return global_helper((int)count);");
    assert_eq!(li.line, want);
    assert!(li.column > 0);
    assert!(li.file_name.ends_with("multi.bpf.c"), "{}", li.file_name);
    assert!(
        li.source.contains("global_helper((int)count)"),
        "{:?}",
        li.source
    );
    // Line info of the appended sub-program is re-based into the program.
    let g = p
        .functions
        .iter()
        .find(|f| f.name == "global_helper")
        .unwrap();
    let loop_line = common::source_line_of("multi", "s += bpf_get_prandom_u32() & x;");
    assert!(p.line_info.iter().any(|l| l.line == loop_line
        && (l.insn_index as usize) >= g.start
        && (l.insn_index as usize) < g.start + g.len));
    // Strings line up with the BTF offsets the kernel would get.
    let btf = obj.btf.as_ref().unwrap();
    for l in &p.line_info {
        assert_eq!(btf.string_at(l.file_name_off).unwrap(), l.file_name);
        assert_eq!(btf.string_at(l.line_off).unwrap(), l.source);
    }
    assert!(p
        .line_info
        .windows(2)
        .all(|w| w[0].insn_index <= w[1].insn_index));
}

#[test]
fn patch_map_references() {
    let Some(mut obj) = load("globals") else {
        return;
    };
    let handles: Vec<u32> = (0..obj.maps.len() as u32).map(|i| 1000 + i).collect();
    let p = obj.program_mut("tp_openat").unwrap();
    let relocs = p.map_relocs.clone();
    p.patch_map_references(|i| handles.get(i).copied()).unwrap();
    for r in relocs {
        let (i0, i1) = (p.insns[r.insn_index], p.insns[r.insn_index + 1]);
        assert_eq!(i0.imm() as u32, 1000 + r.map_index as u32);
        match r.kind {
            MapRelocKind::Map => assert_eq!((i0.src(), i1.imm()), (BPF_PSEUDO_MAP_FD, 0)),
            MapRelocKind::Value { offset } => {
                assert_eq!((i0.src(), i1.imm() as u32), (BPF_PSEUDO_MAP_VALUE, offset))
            }
        }
    }
    let Some(mut obj) = load("maps") else { return };
    let p = obj.program_mut("use_maps").unwrap();
    p.patch_map_references(|i| Some(i as u32 + 7)).unwrap();
    assert!(p
        .map_relocs
        .iter()
        .all(|r| p.insns[r.insn_index].src() == BPF_PSEUDO_MAP_FD));
    // A missing handle is an error naming the program and instruction.
    let e = p.patch_map_references(|_| None).unwrap_err().to_string();
    assert!(e.contains("use_maps") && e.contains("no handle"), "{e}");
}

#[test]
fn btf_types_of_object() {
    let Some(obj) = load("maps") else { return };
    let btf = obj.btf.as_ref().unwrap();
    let v = btf.find_by_name_kind("value", BtfKind::Struct).unwrap();
    assert_eq!(btf.resolve_size(v).unwrap(), 32);
    let t = btf.type_by_id(v).unwrap();
    let members: Vec<_> = t
        .members()
        .iter()
        .map(|m| {
            (
                btf.string_at(m.name_off).unwrap(),
                m.bit_offset,
                btf.type_to_string(m.type_id),
            )
        })
        .collect();
    assert_eq!(
        members,
        vec![
            ("count", 0, "__u64".to_string()),
            ("flags", 64, "__u32".to_string()),
            ("name", 96, "char[20]".to_string())
        ]
    );
    let f = btf.find_by_name_kind("use_maps", BtfKind::Func).unwrap();
    assert_eq!(btf.type_to_string(f), "int use_maps(struct xdp_md *)");
}
