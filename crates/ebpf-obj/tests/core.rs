//! CO-RE relocations: against a made-up target BTF (always) and against the
//! host kernel's BTF (when /sys/kernel/btf/vmlinux exists), checked with bpftool.

mod common;

use bpfvfs_ebpf_obj::insn::{BPF_ALU64, CALL, POISON_HELPER};
use bpfvfs_ebpf_obj::{
    apply_core_relocations, Btf, BtfKind, CoreReloKind, CoreReloResult, LoadedObject,
};

fn core_obj() -> Option<LoadedObject> {
    let bytes = common::object("core")?;
    Some(LoadedObject::parse(&bytes, "core").unwrap())
}

fn target_btf() -> Option<Btf> {
    let bytes = common::object("core_target")?;
    let t = LoadedObject::parse(&bytes, "core_target").unwrap();
    t.btf
}

fn find<'a>(res: &'a [CoreReloResult], kind: CoreReloKind, access: &str) -> &'a CoreReloResult {
    res.iter()
        .find(|r| r.kind == kind && r.access == access)
        .unwrap_or_else(|| panic!("no {kind:?} {access} in {res:#?}"))
}

#[test]
fn relocations_are_collected() {
    let Some(obj) = core_obj() else { return };
    let p = obj.program("read_task").unwrap();
    let kinds: Vec<_> = p
        .core_relos
        .iter()
        .map(|c| (c.access.as_str(), c.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("0:0", 0),
            ("0:2", 0),
            ("0:1", 0),
            ("0:3", 2),
            ("0:1", 1),
            ("0", 8),
            ("0", 9),
            ("1", 11)
        ]
    );
    let btf = obj.btf.as_ref().unwrap();
    assert_eq!(
        btf.name_of(p.core_relos[0].type_id).unwrap(),
        "task_struct___local"
    );
}

#[test]
fn against_synthetic_target() {
    let (Some(mut obj), Some(target)) = (core_obj(), target_btf()) else {
        return;
    };
    let local = obj.btf.clone().unwrap();
    let before = obj.program("read_task").unwrap().insns.clone();
    let p = obj.program_mut("read_task").unwrap();
    let res = apply_core_relocations(p, &local, &target).unwrap();
    assert!(p.core_relos.is_empty());

    let tts = target
        .find_by_name_kind("task_struct", BtfKind::Struct)
        .unwrap();
    let pid = find(&res, CoreReloKind::FieldByteOffset, "0:0");
    assert_eq!(
        (pid.local_value, pid.target_value, pid.target_type_id),
        (0, 104, Some(tts))
    );
    assert_eq!(p.insns[pid.insn_index].imm(), 104);
    let rp = find(&res, CoreReloKind::FieldByteOffset, "0:2");
    assert_eq!((rp.local_value, rp.target_value), (8, 112));
    let tgid = find(&res, CoreReloKind::FieldByteOffset, "0:1");
    assert_eq!((tgid.local_value, tgid.target_value), (4, 100));
    assert_eq!(find(&res, CoreReloKind::FieldExists, "0:3").target_value, 0);
    assert_eq!(
        find(&res, CoreReloKind::FieldByteSize, "0:1").target_value,
        4
    );
    assert_eq!(find(&res, CoreReloKind::TypeExists, "0").target_value, 0);
    assert_eq!(find(&res, CoreReloKind::TypeSize, "0").target_value, 16);
    let ev = find(&res, CoreReloKind::EnumvalValue, "1");
    assert_eq!((ev.local_value, ev.target_value), (1, 7));
    assert!(res.iter().all(|r| !r.poisoned));
    // Only relocated instructions changed, and only their immediates.
    for (i, (a, b)) in before.iter().zip(&p.insns).enumerate() {
        if a != b {
            let r = res
                .iter()
                .find(|r| r.insn_index == i)
                .expect("unrelocated insn changed");
            assert_eq!(b.imm() as u64, r.target_value);
            assert_eq!(
                (a.code(), a.dst(), a.src(), a.off()),
                (b.code(), b.dst(), b.src(), b.off())
            );
        }
    }

    // Bitfields: flag is 3 bits at bit 65, sflag 5 signed bits at bit 68 of a
    // struct whose first member is a long.
    let p = obj.program_mut("read_bits").unwrap();
    let res = apply_core_relocations(p, &local, &target).unwrap();
    let off = find(&res, CoreReloKind::FieldByteOffset, "0:1").target_value;
    let sz = find(&res, CoreReloKind::FieldByteSize, "0:1").target_value;
    let l = find(&res, CoreReloKind::FieldLShiftU64, "0:1").target_value;
    assert_eq!((off, sz), (8, 4));
    assert_eq!(l, 64 - (65 + 3 - 64));
    assert!(res.iter().any(|r| r.kind == CoreReloKind::FieldRShiftU64
        && r.access == "0:1"
        && r.target_value == 61));
    assert_eq!(find(&res, CoreReloKind::FieldSigned, "0:1").target_value, 0);
    assert_eq!(find(&res, CoreReloKind::FieldSigned, "0:2").target_value, 1);
    assert!(res.iter().any(|r| r.kind == CoreReloKind::FieldRShiftU64
        && r.access == "0:2"
        && r.target_value == 59));
    // Emulate the generated extraction on a target object to check the shifts.
    let mut mem = [0u8; 16];
    let raw: u32 = (5 << 1) | ((-3i32 as u32 & 0x1f) << 4); // flag = 5, sflag = -3
    mem[8..12].copy_from_slice(&raw.to_le_bytes());
    let word = u64::from(u32::from_le_bytes(
        mem[off as usize..off as usize + 4].try_into().unwrap(),
    ));
    assert_eq!((word << l) >> 61, 5);
    let ls = find(&res, CoreReloKind::FieldLShiftU64, "0:2").target_value;
    assert_eq!(((word << ls) as i64) >> 59, -3);
}

#[test]
fn missing_target_types_poison_or_zero() {
    let Some(mut obj) = core_obj() else { return };
    // A target BTF with none of the types: use the object's own BTF of another program.
    let Some(target) =
        common::object("maps").map(|b| LoadedObject::parse(&b, "maps").unwrap().btf.unwrap())
    else {
        return;
    };
    let local = obj.btf.clone().unwrap();
    let p = obj.program_mut("read_task").unwrap();
    let res = apply_core_relocations(p, &local, &target).unwrap();
    let pid = find(&res, CoreReloKind::FieldByteOffset, "0:0");
    assert!(pid.poisoned);
    let ins = p.insns[pid.insn_index];
    assert_eq!((ins.code(), ins.imm()), (CALL, POISON_HELPER));
    let ex = find(&res, CoreReloKind::FieldExists, "0:3");
    assert!(!ex.poisoned);
    assert_eq!(ex.target_value, 0);
    assert_eq!(p.insns[ex.insn_index].class(), BPF_ALU64);
    assert!(find(&res, CoreReloKind::EnumvalValue, "1").poisoned);
    assert_eq!(find(&res, CoreReloKind::TypeSize, "0").target_value, 0);
}

#[test]
fn applying_twice_fails_cleanly() {
    let (Some(mut obj), Some(target)) = (core_obj(), target_btf()) else {
        return;
    };
    let local = obj.btf.clone().unwrap();
    let p = obj.program_mut("read_task").unwrap();
    let saved = p.clone();
    apply_core_relocations(p, &local, &target).unwrap();
    // Re-inserting the relocations: the instructions no longer hold the local
    // values, so validation fails and the program is left as it was.
    p.core_relos = saved.core_relos.clone();
    let patched = p.insns.clone();
    let e = apply_core_relocations(p, &local, &target)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("read_task") && e.contains("CO-RE relocation #0"),
        "{e}"
    );
    assert_eq!(p.insns, patched);
}

#[test]
fn against_host_vmlinux() {
    let Ok(raw) = std::fs::read("/sys/kernel/btf/vmlinux") else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED against_host_vmlinux: /sys/kernel/btf/vmlinux not present"
        );
        return;
    };
    let Some(mut obj) = core_obj() else { return };
    let t0 = std::time::Instant::now();
    let vmlinux = Btf::parse(&raw).expect("parse vmlinux BTF");
    eprintln!(
        "parsed vmlinux BTF: {} types in {:?}",
        vmlinux.len(),
        t0.elapsed()
    );
    let ts = vmlinux
        .find_by_name_kind("task_struct", BtfKind::Struct)
        .expect("task_struct in vmlinux");
    let member_bits = |name: &str| {
        let t = vmlinux.type_by_id(ts).unwrap();
        t.members()
            .iter()
            .find(|m| vmlinux.string_at(m.name_off).unwrap() == name)
            .map(|m| m.bit_offset as u64)
    };
    if let Some(size) = common::bpftool_struct_size("task_struct") {
        assert_eq!(vmlinux.resolve_size(ts).unwrap(), size);
    }
    // A kernel BTF has most kinds; all of them parse and print.
    let mut kinds = std::collections::BTreeSet::new();
    for (id, t) in vmlinux.types() {
        kinds.insert(t.kind as u8);
        let _ = vmlinux.type_to_string(id);
    }
    assert!(kinds.len() >= 15, "kinds seen in vmlinux: {kinds:?}");
    assert!(!vmlinux
        .type_to_string(vmlinux.type_by_id(ts).unwrap().members()[0].type_id)
        .is_empty());

    let local = obj.btf.clone().unwrap();
    let p = obj.program_mut("read_task").unwrap();
    let res = apply_core_relocations(p, &local, &vmlinux).unwrap();

    let pid = find(&res, CoreReloKind::FieldByteOffset, "0:0");
    let want_pid = match common::bpftool_member_bits("task_struct", "pid") {
        Some(bits) => {
            eprintln!(
                "bpftool: task_struct->pid bits_offset={bits}; CO-RE gave byte offset {}",
                pid.target_value
            );
            bits
        }
        None => {
            eprintln!("bpftool unavailable: checking against our own parse of vmlinux");
            member_bits("pid").unwrap()
        }
    };
    assert_eq!(pid.target_value * 8, want_pid, "task_struct->pid");
    assert_eq!(p.insns[pid.insn_index].imm() as u64 * 8, want_pid);
    assert_eq!(
        find(&res, CoreReloKind::FieldByteOffset, "0:1").target_value * 8,
        member_bits("tgid").unwrap()
    );
    assert_eq!(
        find(&res, CoreReloKind::FieldByteOffset, "0:2").target_value * 8,
        member_bits("real_parent").unwrap()
    );
    assert_eq!(find(&res, CoreReloKind::FieldExists, "0:3").target_value, 0);
    assert_eq!(
        find(&res, CoreReloKind::FieldByteSize, "0:1").target_value,
        4
    );
    assert_eq!(find(&res, CoreReloKind::TypeExists, "0").target_value, 0);
    assert_eq!(find(&res, CoreReloKind::TypeSize, "0").target_value, 16);
    assert_eq!(find(&res, CoreReloKind::EnumvalValue, "1").target_value, 1); // PIDTYPE_TGID
    assert!(res.iter().all(|r| !r.poisoned));
    // No `bpfvfs_bits` in the kernel: the bitfield reads are poisoned, not errors.
    let p = obj.program_mut("read_bits").unwrap();
    let res = apply_core_relocations(p, &local, &vmlinux).unwrap();
    assert!(res.iter().all(|r| r.poisoned));
}
