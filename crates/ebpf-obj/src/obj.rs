//! The ELF loader: sections, symbols, maps, relocations, sub-program linking.

use std::collections::HashMap;

use object::elf::{self, FileHeader64, SectionHeader64};
use object::read::elf::{FileHeader, Rel, SectionHeader, Sym};
use object::LittleEndian as LE;

use crate::btf::{Btf, BtfExt, BtfKind, TypeId};
use crate::error::ObjError;
use crate::insn::{self, Insn, INSN_SIZE};
use crate::maps::{
    self, internal_map_name, map_flags, map_type, DataSection, MapSlot, MapSource, MapSpec,
    SlotTarget,
};
use crate::section::{parse_section, ProgramKind};

/// Largest global-data section: the kernel's KMALLOC_MAX_SIZE (4 MiB on x86-64), the
/// largest array-map value it accepts.
const MAX_DATA_SECTION: u32 = 4 << 20;

const R_BPF_NONE: u32 = 0;
const R_BPF_64_64: u32 = 1;
const R_BPF_64_ABS64: u32 = 2;
const R_BPF_64_32: u32 = 10;

/// How an `lddw` refers to a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapRelocKind {
    /// The map itself (`&my_map`): patch to `BPF_PSEUDO_MAP_FD` + handle.
    Map,
    /// An address inside the map's value (global data): patch to
    /// `BPF_PSEUDO_MAP_VALUE` + handle, offset in the second slot's imm.
    Value {
        /// Byte offset inside the value.
        offset: u32,
    },
}

/// An `lddw` that must be patched with a map handle before loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MapReloc {
    /// Index of the `lddw` (first slot) in [`ProgramSpec::insns`].
    pub insn_index: usize,
    /// Index into [`LoadedObject::maps`].
    pub map_index: usize,
    /// Map or map-value reference.
    pub kind: MapRelocKind,
}

/// A `bpf_func_info` record in program coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuncInfo {
    /// Instruction index of the function's first instruction.
    pub insn_index: u32,
    /// BTF `FUNC` type id.
    pub type_id: TypeId,
}

/// A `bpf_line_info` record in program coordinates, with its strings resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineInfo {
    /// First instruction this line applies to (until the next record).
    pub insn_index: u32,
    /// `.BTF` string offset of the file name (what the kernel wants).
    pub file_name_off: u32,
    /// `.BTF` string offset of the source text.
    pub line_off: u32,
    /// 1-based line number.
    pub line: u32,
    /// 1-based column (0 when unknown).
    pub column: u32,
    /// Source file name.
    pub file_name: String,
    /// Source line text, as clang recorded it.
    pub source: String,
}

/// A CO-RE relocation in program coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreRelo {
    /// Instruction to patch.
    pub insn_index: u32,
    /// Local root type id (in the object's BTF).
    pub type_id: TypeId,
    /// `.BTF` string offset of the access string.
    pub access_str_off: u32,
    /// The access string itself ("0:1:2").
    pub access: String,
    /// `enum bpf_core_relo_kind` (see [`crate::core::CoreReloKind`]).
    pub kind: u32,
}

/// Where each function ended up in a linked program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpan {
    /// Symbol name.
    pub name: String,
    /// ELF section it came from.
    pub section: String,
    /// First instruction in [`ProgramSpec::insns`].
    pub start: usize,
    /// Number of instruction slots.
    pub len: usize,
}

/// One loadable program: its entry function with every sub-program it calls
/// appended, bpf-to-bpf call offsets fixed, and everything the kernel's
/// `BPF_PROG_LOAD` takes besides map handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramSpec {
    /// Entry function symbol name.
    pub name: String,
    /// Full ELF section name (`"lsm/file_open"`).
    pub section: String,
    /// Kind parsed from the section name.
    pub kind: ProgramKind,
    /// Attach target parsed from the section name (`"file_open"`).
    pub attach_target: Option<String>,
    /// Section head had a `.s` suffix.
    pub sleepable: bool,
    /// Instruction slots (linked).
    pub insns: Vec<Insn>,
    /// `lddw` instructions to patch with map handles.
    pub map_relocs: Vec<MapReloc>,
    /// The entry function and each appended sub-program, in order.
    pub functions: Vec<FunctionSpan>,
    /// func_info (empty without `.BTF.ext`).
    pub func_info: Vec<FuncInfo>,
    /// line_info (empty without `.BTF.ext`), sorted by instruction.
    pub line_info: Vec<LineInfo>,
    /// CO-RE relocations still to apply (see [`crate::core::apply_core_relocations`]).
    pub core_relos: Vec<CoreRelo>,
    /// The object's license string.
    pub license: String,
    /// The object's `version` section (0 when absent).
    pub kernel_version: u32,
}

impl ProgramSpec {
    /// Instructions as one byte buffer.
    pub fn insn_bytes(&self) -> Vec<u8> {
        insn::insns_to_bytes(&self.insns)
    }

    /// The source line for an instruction: the last line_info record at or
    /// before it.
    pub fn line_info_for(&self, insn_index: usize) -> Option<&LineInfo> {
        let idx = u32::try_from(insn_index).ok()?;
        let pos = self.line_info.partition_point(|l| l.insn_index <= idx);
        pos.checked_sub(1).and_then(|p| self.line_info.get(p))
    }

    /// The function containing an instruction.
    pub fn function_at(&self, insn_index: usize) -> Option<&FunctionSpan> {
        self.functions
            .iter()
            .find(|f| insn_index >= f.start && insn_index < f.start + f.len)
    }

    /// Patch every map reference with the handle the caller created for it:
    /// `handle(map_index)` returns the handle (the kernel's "map fd"; here any
    /// id the executing side understands). `Map` references become
    /// `src_reg = BPF_PSEUDO_MAP_FD, imm = handle`; `Value` references
    /// `src_reg = BPF_PSEUDO_MAP_VALUE, imm = handle`, second slot `imm = offset`.
    /// Fails (leaving earlier patches applied) when `handle` returns `None` or an
    /// instruction is not an `lddw`.
    pub fn patch_map_references(
        &mut self,
        mut handle: impl FnMut(usize) -> Option<u32>,
    ) -> Result<(), ObjError> {
        for r in &self.map_relocs {
            let err = |reason: String| ObjError::Program {
                program: self.name.clone(),
                insn: r.insn_index,
                reason,
            };
            let h = handle(r.map_index)
                .ok_or_else(|| err(format!("no handle for map #{}", r.map_index)))?;
            let first = self
                .insns
                .get(r.insn_index)
                .copied()
                .ok_or_else(|| err("index out of range".into()))?;
            if !first.is_ld_imm64() || r.insn_index + 1 >= self.insns.len() {
                return Err(err("map reference is not an lddw".into()));
            }
            let (src, hi) = match r.kind {
                MapRelocKind::Map => (insn::BPF_PSEUDO_MAP_FD, 0),
                MapRelocKind::Value { offset } => (insn::BPF_PSEUDO_MAP_VALUE, offset as i32),
            };
            let (a, b) = self.insns.split_at_mut(r.insn_index + 1);
            if let (Some(i0), Some(i1)) = (a.last_mut(), b.first_mut()) {
                i0.set_src(src);
                i0.set_imm(h as i32);
                i1.set_imm(hi);
            }
        }
        Ok(())
    }
}

/// Everything parsed out of one BPF ELF object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedObject {
    /// Object name (used for global data map names).
    pub name: String,
    /// Loadable programs, in section then symbol order.
    pub programs: Vec<ProgramSpec>,
    /// Maps: legacy, then BTF-defined, then global data (libbpf's order).
    pub maps: Vec<MapSpec>,
    /// `license` section contents (empty when absent).
    pub license: String,
    /// `version` section (0 when absent).
    pub kernel_version: u32,
    /// `.BTF`, with DATASEC sizes and offsets filled in.
    pub btf: Option<Btf>,
    /// `.BTF.ext`.
    pub btf_ext: Option<BtfExt>,
}

/// libbpf's default object name for a path: the file name up to its first `.`
/// (`"dir/foo.bpf.o"` → `"foo"`).
pub fn object_name_from_path(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.split('.').next().unwrap_or(base).to_owned()
}

struct Section<'a> {
    name: String,
    sh_type: u32,
    flags: u64,
    data: &'a [u8],
    size: u64,
}

impl Section<'_> {
    fn is_code(&self) -> bool {
        self.sh_type == elf::SHT_PROGBITS.0 && self.flags & elf::SHF_EXECINSTR.0 != 0
    }
}

#[derive(Clone)]
struct Symbol {
    name: String,
    section: Option<usize>,
    value: u64,
    size: u64,
    st_type: u8,
    bind: u8,
    undefined: bool,
}

struct Func {
    name: String,
    sec: usize,
    start: usize,
    len: usize,
    is_program: bool,
}

#[derive(Clone, Copy)]
enum Reloc {
    Call { sec: usize, insn: usize },
    FuncAddr { sec: usize, insn: usize },
    Map { map: usize },
    MapValue { map: usize, offset: u32 },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DataKind {
    Data,
    Rodata,
    Bss,
}

fn data_kind(s: &Section<'_>) -> Option<DataKind> {
    let n = s.name.as_str();
    let is = |base: &str| n == base || n.strip_prefix(base).is_some_and(|r| r.starts_with('.'));
    if s.sh_type == elf::SHT_PROGBITS.0 && s.flags & elf::SHF_EXECINSTR.0 == 0 && s.size > 0 {
        if is(".data") {
            return Some(DataKind::Data);
        }
        if is(".rodata") {
            return Some(DataKind::Rodata);
        }
    }
    if s.sh_type == elf::SHT_NOBITS.0 && s.size > 0 && is(".bss") {
        return Some(DataKind::Bss);
    }
    None
}

fn sec_err(section: &str, reason: impl Into<String>) -> ObjError {
    ObjError::Section {
        section: section.to_owned(),
        reason: reason.into(),
    }
}

struct Loader<'a> {
    obj_name: String,
    sections: Vec<Section<'a>>,
    symbols: Vec<Option<Symbol>>,
    rels: Vec<(usize, usize, &'a [elf::Rel64<LE>])>, // (rel section idx, target idx, entries)
    code: HashMap<usize, Vec<Insn>>,
    funcs: Vec<Func>,
    maps: Vec<MapSpec>,
    /// Per map: (section index, offset, size of the definition, offset of `values`).
    map_locs: Vec<(usize, u64, u64, Option<u32>)>,
    data_maps: HashMap<usize, usize>,
    relocs: HashMap<(usize, usize), Reloc>,
    btf: Option<Btf>,
    btf_ext: Option<BtfExt>,
    license: String,
    kernel_version: u32,
}

impl LoadedObject {
    /// Parse an object file. `obj_name` is used for global data map names (see
    /// [`object_name_from_path`]).
    pub fn parse(data: &[u8], obj_name: &str) -> Result<LoadedObject, ObjError> {
        let mut l = Loader::read_elf(data, obj_name)?;
        l.read_special_sections()?;
        l.collect_functions()?;
        l.collect_legacy_maps()?;
        l.collect_btf_maps()?;
        l.collect_data_maps()?;
        l.collect_map_slots()?;
        l.collect_code_relocs()?;
        let programs = l.link_programs()?;
        Ok(LoadedObject {
            name: l.obj_name,
            programs,
            maps: l.maps,
            license: l.license,
            kernel_version: l.kernel_version,
            btf: l.btf,
            btf_ext: l.btf_ext,
        })
    }

    /// Program by (entry function) name.
    pub fn program(&self, name: &str) -> Option<&ProgramSpec> {
        self.programs.iter().find(|p| p.name == name)
    }

    /// Mutable program by name.
    pub fn program_mut(&mut self, name: &str) -> Option<&mut ProgramSpec> {
        self.programs.iter_mut().find(|p| p.name == name)
    }

    /// Map by name.
    pub fn map(&self, name: &str) -> Option<&MapSpec> {
        self.maps.iter().find(|m| m.name == name)
    }

    /// Index of a map by name.
    pub fn map_index(&self, name: &str) -> Option<usize> {
        self.maps.iter().position(|m| m.name == name)
    }

    /// Apply CO-RE relocations of every program against `target` (e.g. the
    /// kernel's BTF). Needs the object's own BTF when any program has
    /// relocations.
    pub fn apply_core_relocations(&mut self, target: &Btf) -> Result<(), ObjError> {
        let Some(local) = self.btf.as_ref() else {
            return match self.programs.iter().find(|p| !p.core_relos.is_empty()) {
                Some(p) => Err(ObjError::Program {
                    program: p.name.clone(),
                    insn: 0,
                    reason: "CO-RE relocations without .BTF".into(),
                }),
                None => Ok(()),
            };
        };
        for p in &mut self.programs {
            crate::core::apply_core_relocations(p, local, target)?;
        }
        Ok(())
    }
}

impl<'a> Loader<'a> {
    fn read_elf(data: &'a [u8], obj_name: &str) -> Result<Loader<'a>, ObjError> {
        let ident = data
            .get(..16)
            .ok_or_else(|| ObjError::Elf("file shorter than an ELF identification".into()))?;
        if ident[..4] != [0x7f, b'E', b'L', b'F'] {
            return Err(ObjError::Elf("not an ELF file (bad magic)".into()));
        }
        if ident[4] != elf::ELFCLASS64.0 {
            return Err(ObjError::UnsupportedElf("32-bit ELF"));
        }
        if ident[5] == elf::ELFDATA2MSB.0 {
            return Err(ObjError::UnsupportedElf(
                "big-endian ELF (bpfeb); only little-endian (bpfel) objects are supported",
            ));
        }
        let hdr = FileHeader64::<LE>::parse(data)?;
        let e = LE;
        let e_type = hdr.e_type(e);
        if e_type != elf::ET_REL {
            return Err(ObjError::NotRelocatable(e_type.0));
        }
        let machine = hdr.e_machine(e);
        if machine != elf::EM_BPF && machine != elf::EM_NONE {
            return Err(ObjError::WrongMachine(machine.0));
        }
        let table = hdr.sections(e, data)?;
        let mut sections = Vec::with_capacity(table.len());
        for (_, sh) in table.enumerate() {
            let sh: &SectionHeader64<LE> = sh;
            let raw_name = table.section_name(e, sh)?;
            let name = String::from_utf8(raw_name.to_vec())
                .map_err(|_| ObjError::Elf("section name is not UTF-8".into()))?;
            let sh_type = sh.sh_type(e).0;
            let sec_data = sh
                .data(e, data)
                .map_err(|er| sec_err(&name, er.to_string()))?;
            sections.push(Section {
                name,
                sh_type,
                flags: sh.sh_flags(e).0,
                data: sec_data,
                size: sh.sh_size(e),
            });
        }

        let symtab = table.symbols(e, data, elf::SHT_SYMTAB)?;
        if symtab.is_empty() {
            return Err(ObjError::Elf("no symbol table".into()));
        }
        let mut symbols = Vec::with_capacity(symtab.len());
        for (idx, sym) in symtab.enumerate() {
            if idx.0 == 0 {
                symbols.push(None);
                continue;
            }
            let raw = symtab.symbol_name(e, sym)?;
            let name = String::from_utf8_lossy(raw).into_owned();
            let section = symtab.symbol_section(e, sym, idx)?.map(|s| s.0);
            if let Some(s) = section {
                if s >= sections.len() {
                    return Err(ObjError::Elf(format!(
                        "symbol '{name}' refers to section {s}, out of range"
                    )));
                }
            }
            let shndx = sym.st_shndx(e);
            symbols.push(Some(Symbol {
                name,
                section,
                value: sym.st_value(e),
                size: sym.st_size(e),
                st_type: sym.st_type().0,
                bind: sym.st_bind().0,
                undefined: shndx == elf::SHN_UNDEF,
            }));
        }

        let mut rels = vec![];
        for (idx, sh) in table.enumerate() {
            if let Some((entries, _link)) = sh.rel(e, data).map_err(|er| {
                sec_err(
                    sections.get(idx.0).map(|s| s.name.as_str()).unwrap_or("?"),
                    er.to_string(),
                )
            })? {
                let target = sh.sh_info(e) as usize;
                if target >= sections.len() {
                    return Err(sec_err(
                        sections.get(idx.0).map(|s| s.name.as_str()).unwrap_or("?"),
                        format!("relocations target section {target}, out of range"),
                    ));
                }
                rels.push((idx.0, target, entries));
            } else if sh.sh_type(e) == elf::SHT_RELA {
                let n = sections
                    .get(idx.0)
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                return Err(sec_err(&n, "RELA relocations are not used by BPF objects"));
            }
        }

        Ok(Loader {
            obj_name: obj_name.to_owned(),
            sections,
            symbols,
            rels,
            code: HashMap::new(),
            funcs: vec![],
            maps: vec![],
            map_locs: vec![],
            data_maps: HashMap::new(),
            relocs: HashMap::new(),
            btf: None,
            btf_ext: None,
            license: String::new(),
            kernel_version: 0,
        })
    }

    fn sec_name(&self, idx: usize) -> &str {
        self.sections
            .get(idx)
            .map(|s| s.name.as_str())
            .unwrap_or("?")
    }

    fn section_index(&self, name: &str) -> Option<usize> {
        self.sections.iter().position(|s| s.name == name)
    }

    fn read_special_sections(&mut self) -> Result<(), ObjError> {
        let mut btf_data = None;
        let mut ext_data = None;
        for (i, s) in self.sections.iter().enumerate() {
            match s.name.as_str() {
                "license" => {
                    let end = s.data.iter().position(|&b| b == 0).unwrap_or(s.data.len());
                    self.license = String::from_utf8_lossy(&s.data[..end]).into_owned();
                }
                "version" => {
                    let b: [u8; 4] = s.data.try_into().map_err(|_| {
                        sec_err("version", format!("size {} (expected 4)", s.data.len()))
                    })?;
                    self.kernel_version = u32::from_le_bytes(b);
                }
                ".BTF" => btf_data = Some(s.data),
                ".BTF.ext" => ext_data = Some(s.data),
                ".struct_ops" | ".struct_ops.link" => {
                    return Err(sec_err(&s.name, "struct_ops maps are not supported"));
                }
                _ => {}
            }
            if s.is_code() {
                let insns = insn::insns_from_bytes(s.data).ok_or_else(|| {
                    sec_err(
                        &s.name,
                        format!("size {} is not a multiple of {INSN_SIZE}", s.data.len()),
                    )
                })?;
                self.code.insert(i, insns);
            }
        }
        if let Some(d) = btf_data {
            let mut btf = Btf::parse(d)?;
            let sizes: HashMap<&str, u32> = self
                .sections
                .iter()
                .filter_map(|s| Some((s.name.as_str(), u32::try_from(s.size).ok()?)))
                .collect();
            let syms: HashMap<&str, u32> = self
                .symbols
                .iter()
                .flatten()
                .filter(|s| {
                    s.st_type == elf::STT_OBJECT.0
                        && (s.bind == elf::STB_GLOBAL.0 || s.bind == elf::STB_WEAK.0)
                })
                .filter_map(|s| Some((s.name.as_str(), u32::try_from(s.value).ok()?)))
                .collect();
            btf.fixup_datasecs(|n| sizes.get(n).copied(), |n| syms.get(n).copied())?;
            if let Some(x) = ext_data {
                self.btf_ext = Some(BtfExt::parse(x, &btf).map_err(ObjError::BtfExt)?);
            }
            self.btf = Some(btf);
        }
        Ok(())
    }

    fn collect_functions(&mut self) -> Result<(), ObjError> {
        let mut by_sec: HashMap<usize, Vec<Func>> = HashMap::new();
        for sym in self.symbols.iter().flatten() {
            if sym.st_type != elf::STT_FUNC.0 {
                continue;
            }
            let Some(sec) = sym.section else { continue };
            let Some(insns) = self.code.get(&sec) else {
                continue;
            };
            let sname = self.sec_name(sec);
            if sym.value % INSN_SIZE as u64 != 0 || sym.size % INSN_SIZE as u64 != 0 {
                return Err(sec_err(
                    sname,
                    format!(
                        "function '{}' at {:#x} size {} is not instruction aligned",
                        sym.name, sym.value, sym.size
                    ),
                ));
            }
            let start = (sym.value / INSN_SIZE as u64) as usize;
            let len = (sym.size / INSN_SIZE as u64) as usize;
            if start.checked_add(len).is_none_or(|end| end > insns.len()) {
                return Err(sec_err(
                    sname,
                    format!(
                        "function '{}' extends past the end of the section",
                        sym.name
                    ),
                ));
            }
            by_sec.entry(sec).or_default().push(Func {
                name: sym.name.clone(),
                sec,
                start,
                len,
                is_program: sname != ".text",
            });
        }
        // Sections with code but no function symbols: one function for the whole section.
        for (&sec, insns) in &self.code {
            let name = self.sec_name(sec).to_owned();
            if insns.is_empty() || by_sec.contains_key(&sec) {
                continue;
            }
            let is_program = name != ".text";
            by_sec.entry(sec).or_default().push(Func {
                name,
                sec,
                start: 0,
                len: insns.len(),
                is_program,
            });
        }
        let mut secs: Vec<_> = by_sec.into_iter().collect();
        secs.sort_by_key(|(s, _)| *s);
        for (sec, mut fs) in secs {
            fs.sort_by_key(|f| f.start);
            // Functions of size 0 extend to the next function (or the section end).
            let end = self.code.get(&sec).map_or(0, Vec::len);
            for i in 0..fs.len() {
                let next = fs.get(i + 1).map_or(end, |n| n.start);
                if let Some(f) = fs.get_mut(i) {
                    if f.len == 0 {
                        f.len = next.saturating_sub(f.start);
                    }
                }
            }
            self.funcs.extend(fs);
        }
        Ok(())
    }

    fn collect_legacy_maps(&mut self) -> Result<(), ObjError> {
        let Some(sec) = self.section_index("maps") else {
            return Ok(());
        };
        let s = &self.sections[sec];
        let mut syms: Vec<&Symbol> = self
            .symbols
            .iter()
            .flatten()
            .filter(|y| y.section == Some(sec) && y.st_type != elf::STT_SECTION.0)
            .collect();
        syms.sort_by_key(|y| y.value);
        let size = s.size;
        if size == 0 || syms.is_empty() || size % syms.len() as u64 != 0 {
            return Err(sec_err(
                "maps",
                format!(
                    "unable to determine legacy map definition size ({} bytes, {} symbols)",
                    size,
                    syms.len()
                ),
            ));
        }
        let def_sz = size / syms.len() as u64;
        let mut out = vec![];
        for y in syms {
            let end = y.value.checked_add(def_sz).filter(|&e| e <= size);
            let Some(end) = end else {
                return Err(ObjError::Map {
                    map: y.name.clone(),
                    reason: "definition extends past the 'maps' section".into(),
                });
            };
            let def = if s.data.is_empty() {
                &[][..]
            } else {
                s.data.get(y.value as usize..end as usize).unwrap_or(&[])
            };
            let field = |i: usize| maps_field(def, i);
            if def.len() > 20 && def[20..].iter().any(|&b| b != 0) {
                return Err(ObjError::Map { map: y.name.clone(), reason: "legacy definition has unrecognized, non-zero fields past struct bpf_map_def".into() });
            }
            let mut m = MapSpec::empty(&y.name, MapSource::Legacy, "maps", y.value);
            m.map_type = field(0);
            m.key_size = field(1);
            m.value_size = field(2);
            m.max_entries = field(3);
            m.map_flags = field(4);
            if m.map_type == map_type::UNSPEC {
                return Err(ObjError::Map {
                    map: y.name.clone(),
                    reason: "map type isn't specified".into(),
                });
            }
            out.push((m, (sec, y.value, def_sz, None)));
        }
        for (m, loc) in out {
            self.maps.push(m);
            self.map_locs.push(loc);
        }
        Ok(())
    }

    fn collect_btf_maps(&mut self) -> Result<(), ObjError> {
        let Some(sec) = self.section_index(".maps") else {
            return Ok(());
        };
        let btf = self
            .btf
            .as_ref()
            .ok_or_else(|| sec_err(".maps", "BTF-defined maps need a .BTF section"))?;
        let ds_id = btf
            .find_by_name_kind(".maps", BtfKind::DataSec)
            .ok_or_else(|| sec_err(".maps", "no DATASEC '.maps' in BTF"))?;
        let ds = btf.type_by_id(ds_id)?;
        let size = self.sections[sec].size;
        let mut found = vec![];
        for vi in ds.datasec_vars() {
            let var = btf.type_by_id(vi.type_id)?;
            let name = btf.string_at(var.name_off)?.to_owned();
            if name.is_empty() {
                return Err(sec_err(".maps", "map with empty name"));
            }
            if var.kind != BtfKind::Var {
                return Err(ObjError::Map {
                    map: name,
                    reason: format!("unexpected {} in DATASEC .maps", var.kind),
                });
            }
            if var.linkage() != Some(crate::btf::BTF_VAR_GLOBAL_ALLOCATED) {
                return Err(ObjError::Map {
                    map: name,
                    reason: "unsupported map linkage (static or extern)".into(),
                });
            }
            if u64::from(vi.offset) + u64::from(vi.size) > size {
                return Err(ObjError::Map {
                    map: name,
                    reason: "BTF data is corrupted: definition past the end of .maps".into(),
                });
            }
            let def_size = btf.resolve_size(var.size_or_type).unwrap_or(0);
            if def_size > vi.size {
                return Err(ObjError::Map {
                    map: name,
                    reason: "invalid definition size".into(),
                });
            }
            let def = maps::parse_btf_map_def(
                btf,
                &name,
                var.size_or_type,
                false,
                ".maps",
                u64::from(vi.offset),
            )?;
            found.push((def, u64::from(vi.offset), u64::from(vi.size)));
        }
        for (def, off, sz) in found {
            self.maps.push(def.spec);
            self.map_locs.push((sec, off, sz, def.values_offset));
        }
        Ok(())
    }

    fn collect_data_maps(&mut self) -> Result<(), ObjError> {
        for (i, s) in self.sections.iter().enumerate() {
            let Some(kind) = data_kind(s) else { continue };
            let Ok(size) = u32::try_from(s.size) else {
                continue;
            };
            // A global-data map is one array element of the section's size; the kernel
            // refuses values over KMALLOC_MAX_SIZE (E2BIG), so a larger section (a `.bss`
            // header can claim gigabytes in a few bytes of file) is refused here, before
            // anything is allocated for it. Found by the `loader` fuzz target.
            if size > MAX_DATA_SECTION {
                return Err(ObjError::Section {
                    section: s.name.clone(),
                    reason: format!(
                        "global data of {size} bytes: more than the kernel's largest map value ({MAX_DATA_SECTION} bytes)"
                    ),
                });
            }
            let (source, flags, init) = match kind {
                DataKind::Data => (DataSection::Data, 0, s.data.to_vec()),
                DataKind::Rodata => (DataSection::Rodata, map_flags::RDONLY_PROG, s.data.to_vec()),
                DataKind::Bss => (DataSection::Bss, 0, vec![0; size as usize]),
            };
            let mut m = MapSpec::empty(
                &internal_map_name(&self.obj_name, &s.name),
                MapSource::Data(source),
                &s.name,
                0,
            );
            m.map_type = map_type::ARRAY;
            m.key_size = 4;
            m.value_size = size;
            m.max_entries = 1;
            m.map_flags = flags | map_flags::MMAPABLE;
            m.value_type_id = self
                .btf
                .as_ref()
                .and_then(|b| b.find_by_name_kind(&s.name, BtfKind::DataSec));
            m.initial_data = Some(init);
            self.data_maps.insert(i, self.maps.len());
            self.maps.push(m);
            self.map_locs.push((i, 0, u64::from(size), None));
        }
        Ok(())
    }

    fn map_at(&self, sec: usize, offset: u64) -> Option<usize> {
        self.map_locs
            .iter()
            .position(|&(s, o, _, _)| s == sec && o == offset)
    }

    fn sym_name(&self, sym: &Symbol) -> String {
        if sym.st_type == elf::STT_SECTION.0 && sym.name.is_empty() {
            sym.section
                .map(|s| self.sec_name(s).to_owned())
                .unwrap_or_default()
        } else {
            sym.name.clone()
        }
    }

    /// `.values = { ... }` initialisers of map-in-map and prog-array maps.
    fn collect_map_slots(&mut self) -> Result<(), ObjError> {
        let Some(sec) = self.section_index(".maps") else {
            return Ok(());
        };
        let rels: Vec<_> = self
            .rels
            .iter()
            .filter(|r| r.1 == sec)
            .map(|r| r.2)
            .collect();
        let e = LE;
        for entries in rels {
            for (i, rel) in entries.iter().enumerate() {
                let off = rel.r_offset(e);
                let rerr = |reason: String| ObjError::Relocation {
                    section: ".maps".into(),
                    index: i,
                    offset: off,
                    reason,
                };
                let rtype = rel.r_type(e).0;
                if rtype != R_BPF_64_ABS64 && rtype != R_BPF_64_64 {
                    return Err(rerr(format!("unexpected relocation type {rtype}")));
                }
                let sym = self
                    .symbol(rel.r_sym(e))
                    .ok_or_else(|| rerr(format!("symbol #{} not found", rel.r_sym(e))))?;
                let j = self
                    .map_locs
                    .iter()
                    .position(|&(s, o, sz, _)| {
                        s == sec && o <= off && off.checked_add(8).is_some_and(|end| end <= o + sz)
                    })
                    .ok_or_else(|| rerr("no map definition covers this offset".into()))?;
                let (_, moff, _, values) = self.map_locs[j];
                let values = values.ok_or_else(|| {
                    rerr(format!(
                        "map '{}' has no 'values' member",
                        self.maps[j].name
                    ))
                })?;
                let rel_off = off - moff;
                if rel_off < u64::from(values) || (rel_off - u64::from(values)) % 8 != 0 {
                    return Err(rerr(format!(
                        "offset is not a slot of '{}'.values",
                        self.maps[j].name
                    )));
                }
                let slot = u32::try_from((rel_off - u64::from(values)) / 8)
                    .map_err(|_| rerr("slot out of range".into()))?;
                let m = &self.maps[j];
                if slot >= m.max_entries {
                    return Err(rerr(format!(
                        "initial slot {slot} of '{}' is past max_entries {}",
                        m.name, m.max_entries
                    )));
                }
                let target = if m.is_map_in_map() {
                    if sym.section != Some(sec) {
                        return Err(rerr(format!(
                            "map-in-map '{}' slot refers to '{}', which is not a map",
                            m.name, sym.name
                        )));
                    }
                    let t = self
                        .map_at(sec, sym.value)
                        .ok_or_else(|| rerr(format!("no map named '{}'", sym.name)))?;
                    SlotTarget::Map(t)
                } else if m.map_type == map_type::PROG_ARRAY {
                    let start = sym.value / INSN_SIZE as u64;
                    let f = self
                        .funcs
                        .iter()
                        .find(|f| {
                            Some(f.sec) == sym.section && f.start as u64 == start && f.is_program
                        })
                        .ok_or_else(|| {
                            rerr(format!(
                                "prog-array '{}' slot refers to '{}', which is not a program",
                                m.name, sym.name
                            ))
                        })?;
                    SlotTarget::Program(f.name.clone())
                } else {
                    return Err(rerr(format!(
                        "map '{}' is neither map-in-map nor prog-array",
                        m.name
                    )));
                };
                let slots = &mut self.maps[j].initial_slots;
                slots.retain(|s| s.index != slot);
                slots.push(MapSlot {
                    index: slot,
                    target,
                });
                slots.sort_by_key(|s| s.index);
            }
        }
        Ok(())
    }

    fn symbol(&self, idx: u32) -> Option<&Symbol> {
        self.symbols.get(idx as usize).and_then(Option::as_ref)
    }

    fn collect_code_relocs(&mut self) -> Result<(), ObjError> {
        let e = LE;
        let legacy_maps = self.section_index("maps");
        let btf_maps = self.section_index(".maps");
        let rels: Vec<_> = self
            .rels
            .iter()
            .filter(|r| self.code.contains_key(&r.1))
            .copied()
            .collect();
        for (_, target, entries) in rels {
            let sname = self.sec_name(target).to_owned();
            let Some(insns) = self.code.get(&target) else {
                continue;
            };
            for (i, rel) in entries.iter().enumerate() {
                let off = rel.r_offset(e);
                let rerr = |reason: String| ObjError::Relocation {
                    section: sname.clone(),
                    index: i,
                    offset: off,
                    reason,
                };
                let rtype = rel.r_type(e).0;
                if rtype == R_BPF_NONE {
                    continue;
                }
                if off % INSN_SIZE as u64 != 0 {
                    return Err(rerr("offset is not instruction aligned".into()));
                }
                let idx = usize::try_from(off / INSN_SIZE as u64)
                    .map_err(|_| rerr("offset out of range".into()))?;
                let ins = *insns
                    .get(idx)
                    .ok_or_else(|| rerr("offset past the end of the section".into()))?;
                let sym_idx = rel.r_sym(e);
                let sym = self
                    .symbol(sym_idx)
                    .ok_or_else(|| rerr(format!("symbol #{sym_idx} not found")))?;
                let sym_name = self.sym_name(sym);
                match rtype {
                    R_BPF_64_64 => {
                        if !ins.is_ld_imm64() || idx + 1 >= insns.len() {
                            return Err(rerr(format!("R_BPF_64_64 against '{sym_name}' on instruction {idx} (code {:#04x}), which is not an lddw", ins.code())));
                        }
                    }
                    R_BPF_64_32 => {
                        if !ins.is_call() {
                            return Err(rerr(format!("R_BPF_64_32 against '{sym_name}' on instruction {idx} (code {:#04x}), which is not a call", ins.code())));
                        }
                    }
                    t => {
                        return Err(rerr(format!(
                            "unsupported relocation type {t} in a code section"
                        )))
                    }
                }
                if sym.undefined {
                    return Err(rerr(format!(
                        "extern symbol '{sym_name}' (kfunc, ksym or kconfig) is not supported"
                    )));
                }
                let tsec = sym
                    .section
                    .ok_or_else(|| rerr(format!("symbol '{sym_name}' is in a special section")))?;
                let tname = self.sec_name(tsec).to_owned();
                let reloc = if ins.is_call() {
                    if ins.src() != insn::BPF_PSEUDO_CALL {
                        return Err(rerr(format!("relocation on call of '{sym_name}' that is not a bpf-to-bpf call (src_reg {})", ins.src())));
                    }
                    let tlen = self.code.get(&tsec).map(Vec::len).ok_or_else(|| {
                        rerr(format!(
                            "call of '{sym_name}' in non-code section '{tname}'"
                        ))
                    })?;
                    if sym.value % INSN_SIZE as u64 != 0 {
                        return Err(rerr(format!(
                            "call target '{sym_name}' at {:#x} is not instruction aligned",
                            sym.value
                        )));
                    }
                    let t = (sym.value / INSN_SIZE as u64) as i64 + i64::from(ins.imm()) + 1;
                    let t = usize::try_from(t)
                        .ok()
                        .filter(|&t| t < tlen)
                        .ok_or_else(|| {
                            rerr(format!("call target {t} outside section '{tname}'"))
                        })?;
                    Reloc::Call { sec: tsec, insn: t }
                } else if let Some(tlen) = self.code.get(&tsec).map(Vec::len) {
                    let byte = (sym.value as i64).wrapping_add(i64::from(ins.imm()));
                    if byte % INSN_SIZE as i64 != 0 {
                        return Err(rerr(format!(
                            "subprogram address '{sym_name}'+{} is not instruction aligned",
                            ins.imm()
                        )));
                    }
                    let t = usize::try_from(byte / INSN_SIZE as i64)
                        .ok()
                        .filter(|&t| t < tlen)
                        .ok_or_else(|| {
                            rerr(format!("subprogram address outside section '{tname}'"))
                        })?;
                    Reloc::FuncAddr { sec: tsec, insn: t }
                } else if Some(tsec) == legacy_maps || Some(tsec) == btf_maps {
                    let map = self.map_at(tsec, sym.value).ok_or_else(|| {
                        rerr(format!(
                            "no map at offset {:#x} of '{tname}' (symbol '{sym_name}')",
                            sym.value
                        ))
                    })?;
                    Reloc::Map { map }
                } else if let Some(&map) = self.data_maps.get(&tsec) {
                    let offset = (sym.value as i64).wrapping_add(i64::from(ins.imm()));
                    let size = self.maps.get(map).map_or(0, |m| m.value_size);
                    let offset = u32::try_from(offset)
                        .ok()
                        .filter(|&o| o <= size)
                        .ok_or_else(|| {
                            rerr(format!(
                                "offset {offset} into '{tname}' is outside its {size} bytes"
                            ))
                        })?;
                    Reloc::MapValue { map, offset }
                } else {
                    return Err(rerr(format!("relocation against '{sym_name}' in section '{tname}', which is neither code, a map nor global data")));
                };
                self.relocs.insert((target, idx), reloc);
            }
        }
        Ok(())
    }

    fn func_containing(&self, sec: usize, insn: usize) -> Option<usize> {
        self.funcs
            .iter()
            .position(|f| f.sec == sec && insn >= f.start && insn < f.start + f.len)
    }

    fn link_programs(&self) -> Result<Vec<ProgramSpec>, ObjError> {
        let mut out = vec![];
        for (fi, f) in self.funcs.iter().enumerate() {
            if f.is_program {
                out.push(self.link_one(fi)?);
            }
        }
        Ok(out)
    }

    fn link_one(&self, main: usize) -> Result<ProgramSpec, ObjError> {
        let mf = &self.funcs[main];
        let sec_spec = parse_section(self.sec_name(mf.sec));
        let perr = |insn: usize, reason: String| ObjError::Program {
            program: mf.name.clone(),
            insn,
            reason,
        };
        let mut insns: Vec<Insn> = vec![];
        let mut placed: Vec<(usize, usize)> = vec![]; // (func index, out start)
        let mut map_relocs = vec![];
        let place = |fi: usize,
                     insns: &mut Vec<Insn>,
                     placed: &mut Vec<(usize, usize)>|
         -> Result<usize, ObjError> {
            if let Some(&(_, s)) = placed.iter().find(|(f, _)| *f == fi) {
                return Ok(s);
            }
            let f = &self.funcs[fi];
            let code = self
                .code
                .get(&f.sec)
                .and_then(|c| c.get(f.start..f.start + f.len))
                .ok_or_else(|| perr(0, format!("function '{}' out of range", f.name)))?;
            let start = insns.len();
            insns.extend_from_slice(code);
            placed.push((fi, start));
            Ok(start)
        };
        place(main, &mut insns, &mut placed)?;
        let mut seg = 0;
        while let Some(&(fi, base)) = placed.get(seg) {
            let f = &self.funcs[fi];
            let mut k = 0;
            while k < f.len {
                let pos = base + k;
                let orig = f.start + k;
                let ins = insns[pos];
                let target = match self.relocs.get(&(f.sec, orig)) {
                    Some(Reloc::Call { sec, insn }) | Some(Reloc::FuncAddr { sec, insn }) => {
                        Some((*sec, *insn))
                    }
                    Some(Reloc::Map { map }) => {
                        map_relocs.push(MapReloc {
                            insn_index: pos,
                            map_index: *map,
                            kind: MapRelocKind::Map,
                        });
                        None
                    }
                    Some(Reloc::MapValue { map, offset }) => {
                        map_relocs.push(MapReloc {
                            insn_index: pos,
                            map_index: *map,
                            kind: MapRelocKind::Value { offset: *offset },
                        });
                        None
                    }
                    None if ins.is_pseudo_call() || ins.is_pseudo_func() => {
                        // No relocation: pc-relative within the same section.
                        let t = orig as i64 + i64::from(ins.imm()) + 1;
                        let len = self.code.get(&f.sec).map_or(0, Vec::len);
                        let t = usize::try_from(t)
                            .ok()
                            .filter(|&t| t < len)
                            .ok_or_else(|| {
                                perr(
                                    pos,
                                    format!(
                                        "bpf-to-bpf call target {t} outside section '{}'",
                                        self.sec_name(f.sec)
                                    ),
                                )
                            })?;
                        Some((f.sec, t))
                    }
                    None => None,
                };
                if let Some((tsec, tinsn)) = target {
                    let gi = self.func_containing(tsec, tinsn).ok_or_else(|| {
                        perr(
                            pos,
                            format!(
                                "call target {tinsn} in '{}' is not inside any function",
                                self.sec_name(tsec)
                            ),
                        )
                    })?;
                    let gstart = place(gi, &mut insns, &mut placed)?;
                    let dest = gstart + (tinsn - self.funcs[gi].start);
                    let rel = i64::try_from(dest).unwrap_or(i64::MAX) - pos as i64 - 1;
                    let rel = i32::try_from(rel)
                        .map_err(|_| perr(pos, "call offset overflows".into()))?;
                    let i0 = &mut insns[pos];
                    i0.set_imm(rel);
                    if i0.is_ld_imm64() {
                        i0.set_src(insn::BPF_PSEUDO_FUNC);
                        if let Some(i1) = insns.get_mut(pos + 1) {
                            i1.set_imm(0);
                        }
                    }
                }
                k += if ins.is_ld_imm64() { 2 } else { 1 };
            }
            seg += 1;
        }

        let mut func_info = vec![];
        let mut line_info = vec![];
        let mut core_relos = vec![];
        if let (Some(btf), Some(ext)) = (&self.btf, &self.btf_ext) {
            for &(fi, base) in &placed {
                let f = &self.funcs[fi];
                let sname = self.sec_name(f.sec);
                let map_off = |insn_off: u32, what: &str| -> Result<Option<u32>, ObjError> {
                    if insn_off % INSN_SIZE as u32 != 0 {
                        return Err(ObjError::BtfExt(crate::error::BtfError::Ext(format!("{what} record in section '{sname}' at byte {insn_off} is not instruction aligned"))));
                    }
                    let idx = (insn_off / INSN_SIZE as u32) as usize;
                    if idx < f.start || idx >= f.start + f.len {
                        return Ok(None);
                    }
                    Ok(u32::try_from(base + idx - f.start).ok())
                };
                for s in ext.func_info.iter().filter(|s| s.section == sname) {
                    for r in &s.records {
                        if let Some(i) = map_off(r.insn_off, "func_info")? {
                            func_info.push(FuncInfo {
                                insn_index: i,
                                type_id: r.type_id,
                            });
                        }
                    }
                }
                for s in ext.line_info.iter().filter(|s| s.section == sname) {
                    for r in &s.records {
                        if let Some(i) = map_off(r.insn_off, "line_info")? {
                            line_info.push(LineInfo {
                                insn_index: i,
                                file_name_off: r.file_name_off,
                                line_off: r.line_off,
                                line: r.line,
                                column: r.column,
                                file_name: btf.string_at(r.file_name_off).unwrap_or("").to_owned(),
                                source: btf.string_at(r.line_off).unwrap_or("").to_owned(),
                            });
                        }
                    }
                }
                for s in ext.core_relos.iter().filter(|s| s.section == sname) {
                    for r in &s.records {
                        if let Some(i) = map_off(r.insn_off, "core_relo")? {
                            core_relos.push(CoreRelo {
                                insn_index: i,
                                type_id: r.type_id,
                                access_str_off: r.access_str_off,
                                access: btf.string_at(r.access_str_off).unwrap_or("").to_owned(),
                                kind: r.kind,
                            });
                        }
                    }
                }
            }
        }
        func_info.sort_by_key(|f| f.insn_index);
        line_info.sort_by_key(|l| l.insn_index);
        core_relos.sort_by_key(|c| c.insn_index);
        map_relocs.sort_by_key(|m| m.insn_index);

        let functions = placed
            .iter()
            .map(|&(fi, start)| {
                let f = &self.funcs[fi];
                FunctionSpan {
                    name: f.name.clone(),
                    section: self.sec_name(f.sec).to_owned(),
                    start,
                    len: f.len,
                }
            })
            .collect();
        Ok(ProgramSpec {
            name: mf.name.clone(),
            section: sec_spec.section,
            kind: sec_spec.kind,
            attach_target: sec_spec.attach_target,
            sleepable: sec_spec.sleepable,
            insns,
            map_relocs,
            functions,
            func_info,
            line_info,
            core_relos,
            license: self.license.clone(),
            kernel_version: self.kernel_version,
        })
    }
}

fn maps_field(def: &[u8], i: usize) -> u32 {
    crate::btf::rd_u32(def, i * 4).unwrap_or(0)
}
