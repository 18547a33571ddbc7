//! The `loader` target: an ELF object (input starting with `\x7fELF`) through
//! `LoadedObject::parse` and everything a caller does with the result; any other input
//! through `Btf::parse` and the BTF accessors. The oracle is that nothing panics: malformed
//! input must come back as an `ObjError`/`BtfError`.

use bpfvfs_ebpf::interp::{LoadOptions, PseudoLoad};
use bpfvfs_ebpf::Program;
use bpfvfs_ebpf_obj::btf::essential_name;
use bpfvfs_ebpf_obj::{apply_core_relocations, Btf, LoadedObject};

/// Types walked per BTF: the accessors are linear per type, and inputs with thousands of
/// (tiny) types would otherwise spend their time re-walking the same shapes.
const MAX_TYPES_WALKED: usize = 512;

pub fn run(data: &[u8]) {
    if data.starts_with(b"\x7fELF") {
        object(data);
    } else if let Ok(btf) = Btf::parse(data) {
        walk_btf(&btf);
    }
}

fn walk_btf(btf: &Btf) {
    let _ = (
        btf.len(),
        btf.is_empty(),
        btf.raw_bytes().len(),
        btf.strings().len(),
    );
    for (id, t) in btf.types().take(MAX_TYPES_WALKED) {
        let _ = btf.type_to_string(id);
        let _ = btf.resolve_size(id);
        let _ = btf.skip_mods_and_typedefs(id);
        let _ = (
            t.has_size(),
            t.ref_type(),
            t.is_composite(),
            t.is_any_enum(),
        );
        let _ = (t.members(), t.enum_values(), t.params(), t.datasec_vars());
        let _ = (t.array(), t.int(), t.linkage(), t.is_signed());
        if let Ok(name) = btf.name_of(id) {
            let _ = btf.ids_by_essential_name(essential_name(name));
        }
    }
    let _ = btf.type_by_id(u32::MAX);
    let _ = btf.string_at(u32::MAX);
}

fn object(data: &[u8]) {
    let Ok(mut obj) = LoadedObject::parse(data, "fuzz") else {
        return;
    };
    let _ = format!("{obj:?}");
    for m in &obj.maps {
        let _ = (m.is_read_only_data(), m.is_map_in_map());
    }
    if let Some(btf) = obj.btf.clone() {
        walk_btf(&btf);
        // CO-RE against the object's own BTF: every local type has a candidate, so the
        // matching code goes deep instead of stopping at "no candidate".
        for p in &obj.programs {
            let _ = apply_core_relocations(&mut p.clone(), &btf, &btf);
        }
        let _ = obj.apply_core_relocations(&btf);
    }
    let n_maps = obj.maps.len();
    for p in &mut obj.programs {
        for i in 0..p.insns.len() + 1 {
            let _ = (p.line_info_for(i), p.function_at(i));
        }
        let _ = p.patch_map_references(|i| (i < n_maps).then_some(i as u32 + 1));
        // The linked instructions as the engine sees them: decode and lower.
        let Ok(slots) = bpfvfs_ebpf::Insn::slots_from_bytes(&p.insn_bytes()) else {
            continue;
        };
        let _ = bpfvfs_ebpf::disassemble(&slots);
        let resolve = |l: &PseudoLoad| Ok(l.imm as u64);
        let _ = Program::load(
            &slots,
            LoadOptions {
                resolve: Some(&resolve),
            },
        );
    }
}
