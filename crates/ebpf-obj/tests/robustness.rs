//! Malformed input gives precise errors and never panics: targeted corruptions
//! of real objects, then truncations, bit flips and random bytes.

mod common;

use bpfvfs_ebpf_obj::{apply_core_relocations, Btf, BtfError, LoadedObject, ObjError};
use object::read::elf::{FileHeader, SectionHeader};

/// Small deterministic PRNG (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// File offset and size of a section, found with the `object` crate.
fn section_range(data: &[u8], name: &str) -> (usize, usize) {
    let hdr = object::elf::FileHeader64::<object::LittleEndian>::parse(data).unwrap();
    let e = object::LittleEndian;
    let secs = hdr.sections(e, data).unwrap();
    let (_, sh) = secs
        .section_by_name(e, name.as_bytes())
        .unwrap_or_else(|| panic!("no section {name}"));
    (sh.sh_offset(e) as usize, sh.sh_size(e) as usize)
}

fn has_section(data: &[u8], name: &str) -> bool {
    let hdr = object::elf::FileHeader64::<object::LittleEndian>::parse(data).unwrap();
    let e = object::LittleEndian;
    hdr.sections(e, data)
        .unwrap()
        .section_by_name(e, name.as_bytes())
        .is_some()
}

fn exercise(bytes: &[u8], target: Option<&Btf>) {
    if let Ok(mut obj) = LoadedObject::parse(bytes, "fuzz") {
        let local = obj.btf.clone();
        for p in &mut obj.programs {
            let _ = p.line_info_for(3);
            let _ = p.patch_map_references(|i| Some(i as u32));
            if let (Some(l), Some(t)) = (&local, target) {
                let _ = apply_core_relocations(p, l, t);
            }
        }
        if let Some(b) = &obj.btf {
            for (id, _) in b.types() {
                let _ = b.resolve_size(id);
                let _ = b.type_to_string(id);
            }
        }
    }
}

#[test]
fn random_bytes_and_tiny_inputs() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for len in [0usize, 1, 4, 15, 16, 63, 64, 65, 200, 4096] {
        for _ in 0..20 {
            let v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let e = LoadedObject::parse(&v, "x").unwrap_err();
            assert!(
                matches!(e, ObjError::Elf(_) | ObjError::UnsupportedElf(_)),
                "{e}"
            );
            let _ = Btf::parse(&v);
        }
    }
    // An ELF magic followed by garbage.
    let mut v = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    v.extend((0..300).map(|_| rng.next() as u8));
    assert!(LoadedObject::parse(&v, "x").is_err());
}

#[test]
fn wrong_machine_type_and_class() {
    let Some(bytes) = common::object("multi") else {
        return;
    };
    let mut b = bytes.clone();
    b[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    assert_eq!(
        LoadedObject::parse(&b, "x").unwrap_err(),
        ObjError::WrongMachine(62)
    );
    let mut b = bytes.clone();
    b[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    assert_eq!(
        LoadedObject::parse(&b, "x").unwrap_err(),
        ObjError::NotRelocatable(2)
    );
    let mut b = bytes.clone();
    b[4] = 1; // ELFCLASS32
    assert!(matches!(
        LoadedObject::parse(&b, "x").unwrap_err(),
        ObjError::UnsupportedElf(_)
    ));
    let mut b = bytes.clone();
    b[5] = 2; // big endian
    assert!(matches!(
        LoadedObject::parse(&b, "x").unwrap_err(),
        ObjError::UnsupportedElf(_)
    ));
    // Old LLVM wrote EM_NONE: accepted.
    let mut b = bytes;
    b[18..20].copy_from_slice(&0u16.to_le_bytes());
    assert!(LoadedObject::parse(&b, "x").is_ok());
}

#[test]
fn truncated_elf() {
    let Some(bytes) = common::object("globals") else {
        return;
    };
    for cut in [10, 64, 100, bytes.len() / 2, bytes.len() - 1] {
        let e = LoadedObject::parse(&bytes[..cut], "x").unwrap_err();
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn bad_relocation_is_reported_precisely() {
    let Some(bytes) = common::object("multi") else {
        return;
    };
    let (off, _) = section_range(&bytes, ".rellsm/file_open");
    // First entry: r_offset 0x10 -> 0x11 (not instruction aligned).
    let mut b = bytes.clone();
    b[off] += 1;
    match LoadedObject::parse(&b, "x").unwrap_err() {
        ObjError::Relocation {
            section,
            index,
            offset,
            reason,
        } => {
            assert_eq!(
                (section.as_str(), index, offset),
                ("lsm/file_open", 0, 0x11)
            );
            assert!(reason.contains("aligned"), "{reason}");
        }
        e => panic!("unexpected {e}"),
    }
    // Point it at a non-call instruction (insn 0: r1 = 1).
    let mut b = bytes.clone();
    b[off] = 0;
    let e = LoadedObject::parse(&b, "x").unwrap_err().to_string();
    assert!(
        e.contains("lsm/file_open") && e.contains("not a call"),
        "{e}"
    );
    // Symbol index out of range.
    let mut b = bytes.clone();
    b[off + 12..off + 16].copy_from_slice(&0xffffu32.to_le_bytes());
    let e = LoadedObject::parse(&b, "x").unwrap_err().to_string();
    assert!(e.contains("symbol #65535 not found"), "{e}");
    // Unknown relocation type.
    let mut b = bytes;
    b[off + 8] = 77;
    let e = LoadedObject::parse(&b, "x").unwrap_err().to_string();
    assert!(e.contains("unsupported relocation type 77"), "{e}");
}

#[test]
fn extern_symbols_are_rejected() {
    let Some(bytes) = common::object("multi") else {
        return;
    };
    // Make the relocation of fentry/vfs_read's call point at symbol 0... no:
    // point it at an undefined symbol by clearing global_helper's st_shndx.
    let hdr = object::elf::FileHeader64::<object::LittleEndian>::parse(&bytes[..]).unwrap();
    let e = object::LittleEndian;
    let secs = hdr.sections(e, &bytes[..]).unwrap();
    let (rel_off, _) = section_range(&bytes, ".relfentry/vfs_read");
    let (_, rel_sh) = secs.section_by_name(e, b".relfentry/vfs_read").unwrap();
    let rels: &[object::elf::Rel64<object::LittleEndian>] =
        rel_sh.data_as_array(e, &bytes[..]).unwrap();
    let sym_idx = rels[0].r_sym(e) as usize;
    let (_, symtab) = secs.section_by_name(e, b".symtab").unwrap();
    let sym_off = symtab.sh_offset(e) as usize + sym_idx * 24;
    let mut b = bytes.clone();
    b[sym_off + 6..sym_off + 8].copy_from_slice(&0u16.to_le_bytes()); // SHN_UNDEF
    let _ = rel_off;
    let err = LoadedObject::parse(&b, "x").unwrap_err().to_string();
    assert!(err.contains("extern symbol 'global_helper'"), "{err}");
}

#[test]
fn btf_with_out_of_range_type_id() {
    let Some(bytes) = common::object("maps") else {
        return;
    };
    let (off, size) = section_range(&bytes, ".BTF");
    let btf = Btf::parse(&bytes[off..off + size]).unwrap();
    // Find a PTR type and make it point past the last id.
    let (id, _) = btf
        .types()
        .find(|(_, t)| t.kind == bpfvfs_ebpf_obj::BtfKind::Ptr)
        .unwrap();
    let hdr_len = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap()) as usize;
    let type_off = u32::from_le_bytes(bytes[off + 8..off + 12].try_into().unwrap()) as usize;
    // Walk to the record: re-parse sizes by scanning ids in order.
    let mut pos = off + hdr_len + type_off;
    for (tid, t) in btf.types() {
        if tid == id {
            break;
        }
        pos += record_size(t);
    }
    let mut b = bytes.clone();
    b[pos + 8..pos + 12].copy_from_slice(&100_000u32.to_le_bytes());
    match LoadedObject::parse(&b, "x").unwrap_err() {
        ObjError::Btf(BtfError::TypeIdOutOfRange {
            id: got,
            target,
            max,
        }) => {
            assert_eq!((got, target, max), (id, 100_000, btf.len() as u32 - 1));
        }
        e => panic!("unexpected {e}"),
    }
    // Bad magic and truncation of the .BTF section itself.
    let mut b = bytes.clone();
    b[off] = 0;
    assert!(matches!(
        LoadedObject::parse(&b, "x").unwrap_err(),
        ObjError::Btf(BtfError::BadMagic(_))
    ));
    let raw = &bytes[off..off + size];
    assert!(matches!(
        Btf::parse(&raw[..20]),
        Err(BtfError::Truncated { .. })
    ));
    assert!(matches!(
        Btf::parse(&raw[..raw.len() - 1]),
        Err(BtfError::Truncated { .. })
    ));
}

fn record_size(t: &bpfvfs_ebpf_obj::BtfType) -> usize {
    use bpfvfs_ebpf_obj::BtfKind::*;
    12 + match t.kind {
        Int | Var | DeclTag => 4,
        Array => 12,
        Struct | Union | DataSec | Enum64 => 12 * t.vlen as usize,
        Enum | FuncProto => 8 * t.vlen as usize,
        _ => 0,
    }
}

#[test]
fn fuzz_truncations_and_bit_flips() {
    let Some(target) =
        common::object("core_target").map(|b| LoadedObject::parse(&b, "t").unwrap().btf.unwrap())
    else {
        return;
    };
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut parsed_ok = 0usize;
    let mut total = 0usize;
    for name in common::PROGS {
        let Some(bytes) = common::object(name) else {
            return;
        };
        // Every truncation point in the header region, then strided ones.
        let mut cuts: Vec<usize> = (0..bytes.len().min(256)).collect();
        cuts.extend((256..bytes.len()).step_by(13));
        for cut in cuts {
            exercise(&bytes[..cut], Some(&target));
            total += 1;
        }
        // Single and multiple bit flips, anywhere.
        for round in 0..1500 {
            let mut b = bytes.clone();
            let flips = 1 + round % 4;
            for _ in 0..flips {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            if LoadedObject::parse(&b, "fuzz").is_ok() {
                parsed_ok += 1;
            }
            exercise(&b, Some(&target));
            total += 1;
        }
        // Byte overwrites inside the interesting sections.
        for sec in [".BTF", ".BTF.ext", ".maps", ".relxdp", ".rel.maps"] {
            if !has_section(&bytes, sec) {
                continue;
            }
            let (off, size) = section_range(&bytes, sec);
            for _ in 0..600 {
                let mut b = bytes.clone();
                let i = off + rng.below(size.max(1));
                b[i] = rng.next() as u8;
                exercise(&b, Some(&target));
                total += 1;
            }
        }
    }
    eprintln!("fuzz: {total} inputs, {parsed_ok} bit-flipped objects still parsed");
}

#[test]
fn fuzz_btf_blobs() {
    let Some(bytes) = common::object("core") else {
        return;
    };
    let (off, size) = section_range(&bytes, ".BTF");
    let raw = &bytes[off..off + size];
    let mut rng = Rng(42);
    for cut in 0..raw.len() {
        let _ = Btf::parse(&raw[..cut]);
    }
    for _ in 0..5000 {
        let mut b = raw.to_vec();
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(b.len());
            b[i] = rng.next() as u8;
        }
        if let Ok(btf) = Btf::parse(&b) {
            for (id, _) in btf.types() {
                let _ = btf.resolve_size(id);
                let _ = btf.skip_mods_and_typedefs(id);
                let _ = btf.type_to_string(id);
            }
            let _ = btf.ids_by_essential_name("task_struct");
        }
    }
}

/// A fuzz finding: 12 KB of file whose `.bss` header claims hundreds of megabytes. It used to
/// parse into a zero-filled global-data map of that size (and exhaust memory when printed);
/// sections over the kernel's largest map value are refused, naming the section.
#[test]
fn oversized_global_data_section_is_refused() {
    let bytes = include_bytes!("data/fuzz_huge_bss.bin");
    let err = LoadedObject::parse(bytes, "fuzz").unwrap_err().to_string();
    assert!(err.contains("global data of"), "{err}");
    assert!(err.contains("largest map value"), "{err}");
}
