//! Map definitions: BTF-defined (`.maps`), legacy (`maps`, `struct bpf_map_def`)
//! and the array maps libbpf makes from global data sections.

use crate::btf::{Btf, BtfKind, TypeId};
use crate::error::ObjError;

/// `enum bpf_map_type` values (kernel `include/uapi/linux/bpf.h`).
#[allow(missing_docs)]
pub mod map_type {
    pub const UNSPEC: u32 = 0;
    pub const HASH: u32 = 1;
    pub const ARRAY: u32 = 2;
    pub const PROG_ARRAY: u32 = 3;
    pub const PERF_EVENT_ARRAY: u32 = 4;
    pub const PERCPU_HASH: u32 = 5;
    pub const PERCPU_ARRAY: u32 = 6;
    pub const STACK_TRACE: u32 = 7;
    pub const CGROUP_ARRAY: u32 = 8;
    pub const LRU_HASH: u32 = 9;
    pub const LRU_PERCPU_HASH: u32 = 10;
    pub const LPM_TRIE: u32 = 11;
    pub const ARRAY_OF_MAPS: u32 = 12;
    pub const HASH_OF_MAPS: u32 = 13;
    pub const DEVMAP: u32 = 14;
    pub const SOCKMAP: u32 = 15;
    pub const CPUMAP: u32 = 16;
    pub const XSKMAP: u32 = 17;
    pub const SOCKHASH: u32 = 18;
    pub const CGROUP_STORAGE: u32 = 19;
    pub const REUSEPORT_SOCKARRAY: u32 = 20;
    pub const PERCPU_CGROUP_STORAGE: u32 = 21;
    pub const QUEUE: u32 = 22;
    pub const STACK: u32 = 23;
    pub const SK_STORAGE: u32 = 24;
    pub const DEVMAP_HASH: u32 = 25;
    pub const STRUCT_OPS: u32 = 26;
    pub const RINGBUF: u32 = 27;
    pub const INODE_STORAGE: u32 = 28;
    pub const TASK_STORAGE: u32 = 29;
    pub const BLOOM_FILTER: u32 = 30;
    pub const USER_RINGBUF: u32 = 31;
    pub const CGRP_STORAGE: u32 = 32;
    pub const ARENA: u32 = 33;
}

/// Map creation flags used by this crate (kernel `BPF_F_*`).
#[allow(missing_docs)]
pub mod map_flags {
    pub const NO_PREALLOC: u32 = 1 << 0;
    pub const NO_COMMON_LRU: u32 = 1 << 1;
    pub const RDONLY_PROG: u32 = 1 << 7;
    pub const MMAPABLE: u32 = 1 << 10;
}

/// Where a map definition came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapSource {
    /// A variable in the `.maps` section, described by BTF.
    Btf,
    /// A `struct bpf_map_def` in the legacy `maps` section.
    Legacy,
    /// A global data section turned into a single-entry array.
    Data(DataSection),
}

/// Which kind of global data section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataSection {
    /// `.data`, `.data.*`
    Data,
    /// `.rodata`, `.rodata.*` (created with `BPF_F_RDONLY_PROG`; a loader should
    /// freeze the map after writing the initial value).
    Rodata,
    /// `.bss`, `.bss.*` (zero-filled initial value).
    Bss,
}

/// `pinning` attribute of a BTF map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Pinning {
    /// `LIBBPF_PIN_NONE`.
    #[default]
    None,
    /// `LIBBPF_PIN_BY_NAME`: pin at `<pin root>/<map name>`.
    ByName,
}

/// What an initial slot of a map-in-map or program array refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SlotTarget {
    /// Index into [`crate::LoadedObject::maps`].
    Map(usize),
    /// Name of a program in [`crate::LoadedObject::programs`].
    Program(String),
}

/// An initial element of an `ARRAY_OF_MAPS`/`HASH_OF_MAPS`/`PROG_ARRAY` map
/// (`.values = { [1] = &inner }`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MapSlot {
    /// Key (array index).
    pub index: u32,
    /// What to store there.
    pub target: SlotTarget,
}

/// A map to create before loading the object's programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapSpec {
    /// Map name: the variable name for BTF and legacy maps; for global data, the
    /// libbpf-style internal name (`<obj prefix>.data`, `.rodata.str1.1`).
    pub name: String,
    /// Origin of the definition.
    pub source: MapSource,
    /// ELF section the definition (or data) lives in.
    pub section: String,
    /// Byte offset of the definition in that section.
    pub section_offset: u64,
    /// `enum bpf_map_type` (see [`map_type`]).
    pub map_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Maximum number of entries.
    pub max_entries: u32,
    /// `BPF_F_*` creation flags.
    pub map_flags: u32,
    /// NUMA node (0 when unspecified).
    pub numa_node: u32,
    /// `map_extra` (bloom filter hash count, arena address, ...).
    pub map_extra: u64,
    /// Pinning.
    pub pinning: Pinning,
    /// BTF type of the key, when declared with `__type(key, ...)`.
    pub key_type_id: Option<TypeId>,
    /// BTF type of the value (`__type(value, ...)`, or the DATASEC of a global
    /// data section).
    pub value_type_id: Option<TypeId>,
    /// Initial contents of entry 0 for global data maps (zeros for `.bss`).
    pub initial_data: Option<Vec<u8>>,
    /// Template of the inner map for map-in-map types (`__array(values, struct inner)`).
    pub inner_map: Option<Box<MapSpec>>,
    /// Initial elements of map-in-map and program-array maps.
    pub initial_slots: Vec<MapSlot>,
}

impl MapSpec {
    pub(crate) fn empty(name: &str, source: MapSource, section: &str, offset: u64) -> MapSpec {
        MapSpec {
            name: name.to_owned(),
            source,
            section: section.to_owned(),
            section_offset: offset,
            map_type: map_type::UNSPEC,
            key_size: 0,
            value_size: 0,
            max_entries: 0,
            map_flags: 0,
            numa_node: 0,
            map_extra: 0,
            pinning: Pinning::None,
            key_type_id: None,
            value_type_id: None,
            initial_data: None,
            inner_map: None,
            initial_slots: vec![],
        }
    }

    /// Is this a `.rodata` map (to be frozen after initialisation)?
    pub fn is_read_only_data(&self) -> bool {
        self.source == MapSource::Data(DataSection::Rodata)
    }

    /// Is this a map-in-map type?
    pub fn is_map_in_map(&self) -> bool {
        matches!(
            self.map_type,
            map_type::ARRAY_OF_MAPS | map_type::HASH_OF_MAPS
        )
    }
}

/// libbpf's kernel-visible name of a global data map: up to 8 characters of the
/// object name followed by the section name (`.data`, `.rodata`, `.bss`) with
/// room for 7 suffix characters, or the section name alone (truncated to 15)
/// for `.data.*`/`.rodata.*`/`.bss.*` sections. Characters other than
/// `[A-Za-z0-9_.]` become `_`.
pub fn internal_map_name(obj_name: &str, section: &str) -> String {
    const OBJ_NAME_LEN: usize = 16;
    let sfx_len = section.len().clamp(7, OBJ_NAME_LEN - 1);
    let custom = section.get(1..).is_some_and(|s| s.contains('.'));
    let pfx_len = if custom {
        0
    } else {
        (OBJ_NAME_LEN - sfx_len - 1).min(obj_name.len())
    };
    let mut name: String = obj_name.bytes().take(pfx_len).map(char::from).collect();
    name.extend(section.bytes().take(sfx_len).map(char::from));
    name.chars()
        .take(OBJ_NAME_LEN - 1)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Parsed BTF map definition plus what the loader needs for `.values` slots.
pub(crate) struct BtfMapDef {
    pub spec: MapSpec,
    /// Byte offset of the `values` member inside the definition struct.
    pub values_offset: Option<u32>,
}

fn map_err(map: &str, reason: impl Into<String>) -> ObjError {
    ObjError::Map {
        map: map.to_owned(),
        reason: reason.into(),
    }
}

/// Integer attribute encoded as `int (*name)[N]` (`__uint`) or, in newer
/// libbpf, as an anonymous single-enumerator enum (`__ulong`).
fn map_field_int(btf: &Btf, map: &str, field: &str, type_id: TypeId) -> Result<u64, ObjError> {
    let (_, t) = btf
        .skip_mods_and_typedefs(type_id)
        .map_err(|e| map_err(map, format!("attr '{field}': {e}")))?;
    match t.kind {
        BtfKind::Ptr => {
            let arr = btf
                .type_by_id(t.size_or_type)
                .map_err(|e| map_err(map, format!("attr '{field}': {e}")))?;
            match arr.array() {
                Some(a) if arr.kind == BtfKind::Array => Ok(u64::from(a.nelems)),
                _ => Err(map_err(
                    map,
                    format!(
                        "attr '{field}': expected pointer to ARRAY, got pointer to {}",
                        arr.kind
                    ),
                )),
            }
        }
        BtfKind::Enum | BtfKind::Enum64 if t.enum_values().len() == 1 => {
            Ok(t.enum_values()[0].value)
        }
        k => Err(map_err(
            map,
            format!("attr '{field}': expected PTR, got {k}"),
        )),
    }
}

fn to_u32(map: &str, field: &str, v: u64) -> Result<u32, ObjError> {
    u32::try_from(v).map_err(|_| {
        map_err(
            map,
            format!("attr '{field}' value {v} does not fit in 32 bits"),
        )
    })
}

/// Parse the struct describing a BTF map (libbpf's `parse_btf_map_def`).
pub(crate) fn parse_btf_map_def(
    btf: &Btf,
    name: &str,
    def_id: TypeId,
    is_inner: bool,
    section: &str,
    offset: u64,
) -> Result<BtfMapDef, ObjError> {
    let (_, def) = btf
        .skip_mods_and_typedefs(def_id)
        .map_err(|e| map_err(name, e.to_string()))?;
    if def.kind != BtfKind::Struct {
        return Err(map_err(
            name,
            format!("definition is {}, expected STRUCT", def.kind),
        ));
    }
    let mut spec = MapSpec::empty(name, MapSource::Btf, section, offset);
    let mut values_offset = None;
    let members = def.members();
    for (i, m) in members.iter().enumerate() {
        let field = btf
            .string_at(m.name_off)
            .map_err(|e| map_err(name, e.to_string()))?;
        let int = |f: &str| map_field_int(btf, name, f, m.type_id);
        match field {
            "type" => spec.map_type = to_u32(name, field, int(field)?)?,
            "max_entries" => spec.max_entries = to_u32(name, field, int(field)?)?,
            "map_flags" => spec.map_flags = to_u32(name, field, int(field)?)?,
            "numa_node" => spec.numa_node = to_u32(name, field, int(field)?)?,
            "map_extra" => spec.map_extra = int(field)?,
            "key_size" | "value_size" => {
                let sz = to_u32(name, field, int(field)?)?;
                let slot = if field == "key_size" {
                    &mut spec.key_size
                } else {
                    &mut spec.value_size
                };
                if *slot != 0 && *slot != sz {
                    return Err(map_err(
                        name,
                        format!("conflicting {field} {} != {sz}", *slot),
                    ));
                }
                *slot = sz;
            }
            "key" | "value" => {
                let t = btf
                    .type_by_id(m.type_id)
                    .map_err(|e| map_err(name, e.to_string()))?;
                if t.kind != BtfKind::Ptr {
                    return Err(map_err(
                        name,
                        format!("{field} spec is {}, expected PTR", t.kind),
                    ));
                }
                let sz = btf
                    .resolve_size(t.size_or_type)
                    .map_err(|e| map_err(name, format!("can't determine {field} size: {e}")))?;
                let (slot, tid) = if field == "key" {
                    (&mut spec.key_size, &mut spec.key_type_id)
                } else {
                    (&mut spec.value_size, &mut spec.value_type_id)
                };
                if *slot != 0 && *slot != sz {
                    return Err(map_err(
                        name,
                        format!("conflicting {field} size {} != {sz}", *slot),
                    ));
                }
                *slot = sz;
                *tid = Some(t.size_or_type);
            }
            "values" => {
                if is_inner {
                    return Err(map_err(name, "multi-level inner maps are not supported"));
                }
                if i + 1 != members.len() {
                    return Err(map_err(name, "'values' member must be last"));
                }
                let is_prog_array = spec.map_type == map_type::PROG_ARRAY;
                if !spec.is_map_in_map() && !is_prog_array {
                    return Err(map_err(name, "'values' is only valid for map-in-map and prog-array maps (declare 'type' first)"));
                }
                if spec.value_size != 0 && spec.value_size != 4 {
                    return Err(map_err(
                        name,
                        format!("conflicting value size {} != 4", spec.value_size),
                    ));
                }
                spec.value_size = 4;
                let arr = btf
                    .type_by_id(m.type_id)
                    .map_err(|e| map_err(name, e.to_string()))?;
                let elem = match arr.array() {
                    Some(a) if arr.kind == BtfKind::Array && a.nelems == 0 => a.elem_type,
                    _ => return Err(map_err(name, "'values' spec is not a zero-sized array")),
                };
                let (_, ptr) = btf
                    .skip_mods_and_typedefs(elem)
                    .map_err(|e| map_err(name, e.to_string()))?;
                if ptr.kind != BtfKind::Ptr {
                    return Err(map_err(
                        name,
                        format!("'values' element is {}, expected PTR", ptr.kind),
                    ));
                }
                let (inner_id, inner) = btf
                    .skip_mods_and_typedefs(ptr.size_or_type)
                    .map_err(|e| map_err(name, e.to_string()))?;
                if is_prog_array {
                    if inner.kind != BtfKind::FuncProto {
                        return Err(map_err(
                            name,
                            format!("prog-array value is {}, expected FUNC_PROTO", inner.kind),
                        ));
                    }
                } else {
                    if inner.kind != BtfKind::Struct {
                        return Err(map_err(
                            name,
                            format!(
                                "map-in-map inner definition is {}, expected STRUCT",
                                inner.kind
                            ),
                        ));
                    }
                    let inner_name = format!("{name}.inner");
                    let inner_def =
                        parse_btf_map_def(btf, &inner_name, inner_id, true, section, offset)?;
                    spec.inner_map = Some(Box::new(inner_def.spec));
                }
                values_offset = Some(m.bit_offset / 8);
            }
            "pinning" => {
                if is_inner {
                    return Err(map_err(name, "inner map definition can't be pinned"));
                }
                spec.pinning = match int(field)? {
                    0 => Pinning::None,
                    1 => Pinning::ByName,
                    v => return Err(map_err(name, format!("invalid pinning value {v}"))),
                };
            }
            other => return Err(map_err(name, format!("unknown field '{other}'"))),
        }
    }
    if spec.map_type == map_type::UNSPEC {
        return Err(map_err(name, "map type isn't specified"));
    }
    Ok(BtfMapDef {
        spec,
        values_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_names() {
        assert_eq!(
            internal_map_name("my_object_name", ".rodata"),
            "my_objec.rodata"
        );
        assert_eq!(internal_map_name("my_object_name", ".bss"), "my_objec.bss");
        assert_eq!(internal_map_name("globals", ".data"), "globals.data");
        assert_eq!(
            internal_map_name("globals", ".rodata.str1.1"),
            ".rodata.str1.1"
        );
        assert_eq!(
            internal_map_name("x", ".rodata.abracadabra"),
            ".rodata.abracad"
        );
        assert_eq!(internal_map_name("a-b", ".data"), "a_b.data");
    }
}
