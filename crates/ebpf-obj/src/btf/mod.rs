//! BTF: the BPF Type Format (`.BTF` section of an object, or `/sys/kernel/btf/vmlinux`).
//!
//! Layout (kernel `include/uapi/linux/btf.h`): a 24-byte header (`magic 0xeb9f`,
//! `version 1`, `flags`, `hdr_len`, then `type_off/type_len/str_off/str_len`, all
//! relative to the end of the header), a type section of variable-length records
//! and a string section of NUL-terminated strings. Type ids start at 1 in record
//! order; id 0 is `void`.
//!
//! Every record is `name_off:u32, info:u32, size_or_type:u32` where `info` packs
//! `vlen` (bits 0..16), `kind` (bits 24..29) and `kind_flag` (bit 31), followed by
//! kind-specific data (an `INT` encoding word, an `ARRAY` triple, `vlen` members,
//! enumerators, parameters or `DATASEC` entries, a `VAR` linkage word, a
//! `DECL_TAG` component index).
//!
//! [`Btf::parse`] checks every structural invariant up front: sizes, every type id
//! reference is in range, every name offset is inside the string section. Lookups
//! afterwards still return `Result`/`Option` rather than panic, and every walk
//! through typedef/modifier chains is depth-limited, so malformed (cyclic) input
//! yields an error.

mod ext;

pub use ext::{BtfExt, CoreReloRecord, ExtSection, FuncInfoRecord, LineInfoRecord};

use crate::error::BtfError;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

/// A BTF type id. 0 is `void`.
pub type TypeId = u32;

/// Magic number at the start of `.BTF` and `.BTF.ext`.
pub const BTF_MAGIC: u16 = 0xeb9f;

/// How deep typedef/modifier/array chains are followed before giving up
/// (libbpf's `MAX_RESOLVE_DEPTH`).
pub const MAX_RESOLVE_DEPTH: usize = 32;

/// `INT` encoding bit: signed.
pub const BTF_INT_SIGNED: u8 = 1 << 0;
/// `INT` encoding bit: char.
pub const BTF_INT_CHAR: u8 = 1 << 1;
/// `INT` encoding bit: bool.
pub const BTF_INT_BOOL: u8 = 1 << 2;

/// `FUNC` linkage: static.
pub const BTF_FUNC_STATIC: u32 = 0;
/// `FUNC` linkage: global.
pub const BTF_FUNC_GLOBAL: u32 = 1;
/// `FUNC` linkage: extern.
pub const BTF_FUNC_EXTERN: u32 = 2;
/// `VAR` linkage: static.
pub const BTF_VAR_STATIC: u32 = 0;
/// `VAR` linkage: global, allocated in this object.
pub const BTF_VAR_GLOBAL_ALLOCATED: u32 = 1;
/// `VAR` linkage: extern.
pub const BTF_VAR_GLOBAL_EXTERN: u32 = 2;

/// The kind of a BTF type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BtfKind {
    /// `void` (only type id 0).
    Void = 0,
    /// Integer.
    Int = 1,
    /// Pointer.
    Ptr = 2,
    /// Array.
    Array = 3,
    /// Struct.
    Struct = 4,
    /// Union.
    Union = 5,
    /// Enumeration with 32-bit values.
    Enum = 6,
    /// Forward declaration of a struct or union.
    Fwd = 7,
    /// Typedef.
    Typedef = 8,
    /// `volatile` modifier.
    Volatile = 9,
    /// `const` modifier.
    Const = 10,
    /// `restrict` modifier.
    Restrict = 11,
    /// Function (name + linkage, refers to a prototype).
    Func = 12,
    /// Function prototype.
    FuncProto = 13,
    /// Variable.
    Var = 14,
    /// Data section (list of variables).
    DataSec = 15,
    /// Floating point.
    Float = 16,
    /// Declaration tag (`__attribute__((btf_decl_tag(...)))`).
    DeclTag = 17,
    /// Type tag (`__attribute__((btf_type_tag(...)))`).
    TypeTag = 18,
    /// Enumeration with 64-bit values.
    Enum64 = 19,
}

impl BtfKind {
    /// From the kind number in `info`.
    pub fn from_u32(k: u32) -> Option<BtfKind> {
        use BtfKind::*;
        Some(match k {
            0 => Void,
            1 => Int,
            2 => Ptr,
            3 => Array,
            4 => Struct,
            5 => Union,
            6 => Enum,
            7 => Fwd,
            8 => Typedef,
            9 => Volatile,
            10 => Const,
            11 => Restrict,
            12 => Func,
            13 => FuncProto,
            14 => Var,
            15 => DataSec,
            16 => Float,
            17 => DeclTag,
            18 => TypeTag,
            19 => Enum64,
            _ => return None,
        })
    }

    /// The kernel's name for this kind ("INT", "STRUCT", ...), as `bpftool btf dump` prints it.
    pub fn name(self) -> &'static str {
        use BtfKind::*;
        match self {
            Void => "UNKN",
            Int => "INT",
            Ptr => "PTR",
            Array => "ARRAY",
            Struct => "STRUCT",
            Union => "UNION",
            Enum => "ENUM",
            Fwd => "FWD",
            Typedef => "TYPEDEF",
            Volatile => "VOLATILE",
            Const => "CONST",
            Restrict => "RESTRICT",
            Func => "FUNC",
            FuncProto => "FUNC_PROTO",
            Var => "VAR",
            DataSec => "DATASEC",
            Float => "FLOAT",
            DeclTag => "DECL_TAG",
            TypeTag => "TYPE_TAG",
            Enum64 => "ENUM64",
        }
    }
}

impl std::fmt::Display for BtfKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A struct/union member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BtfMember {
    /// Name (string offset; 0 for anonymous members).
    pub name_off: u32,
    /// Member type.
    pub type_id: TypeId,
    /// Offset from the start of the struct, in bits.
    pub bit_offset: u32,
    /// Bitfield width in bits (0 when not a bitfield).
    pub bitfield_size: u8,
}

/// An enumerator of an `ENUM` or `ENUM64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BtfEnumValue {
    /// Name (string offset).
    pub name_off: u32,
    /// Value. 32-bit values of a signed enum are sign-extended, of an unsigned
    /// enum zero-extended; read it `as i64` for signed enums.
    pub value: u64,
}

/// A function prototype parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BtfParam {
    /// Name (string offset; 0 when unnamed).
    pub name_off: u32,
    /// Parameter type (0 for the trailing `...` of a variadic prototype).
    pub type_id: TypeId,
}

/// A `DATASEC` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BtfVarSecInfo {
    /// The `VAR` (or `FUNC` for externs) type.
    pub type_id: TypeId,
    /// Byte offset in the section.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// `ARRAY` data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BtfArray {
    /// Element type.
    pub elem_type: TypeId,
    /// Index type.
    pub index_type: TypeId,
    /// Number of elements.
    pub nelems: u32,
}

/// `INT` data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BtfInt {
    /// `BTF_INT_SIGNED | BTF_INT_CHAR | BTF_INT_BOOL` bits.
    pub encoding: u8,
    /// Bit offset (deprecated bitfield-style integers; normally 0).
    pub offset: u8,
    /// Width in bits.
    pub bits: u8,
}

/// Kind-specific data following the common 12-byte record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BtfDetail {
    /// Nothing follows (PTR, FWD, TYPEDEF, modifiers, FUNC, FLOAT, TYPE_TAG, void).
    None,
    /// INT encoding.
    Int(BtfInt),
    /// ARRAY triple.
    Array(BtfArray),
    /// STRUCT / UNION members.
    Members(Vec<BtfMember>),
    /// ENUM / ENUM64 enumerators.
    Enum(Vec<BtfEnumValue>),
    /// FUNC_PROTO parameters.
    Params(Vec<BtfParam>),
    /// VAR linkage.
    Var {
        /// `BTF_VAR_*` linkage.
        linkage: u32,
    },
    /// DATASEC entries.
    DataSec(Vec<BtfVarSecInfo>),
    /// DECL_TAG component index (-1 for the declaration itself).
    DeclTag {
        /// Member/parameter index, or -1.
        component_idx: i32,
    },
}

/// One BTF type record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtfType {
    /// Name (string offset; 0 = anonymous).
    pub name_off: u32,
    /// Kind.
    pub kind: BtfKind,
    /// The `kind_flag` bit (bitfield encoding for STRUCT/UNION, union-ness for
    /// FWD, signedness for ENUM/ENUM64).
    pub kind_flag: bool,
    /// `vlen` (for FUNC: the linkage).
    pub vlen: u16,
    /// Size in bytes (INT, ENUM, ENUM64, STRUCT, UNION, DATASEC, FLOAT) or the
    /// referenced type (PTR, TYPEDEF, modifiers, FUNC, FUNC_PROTO return type,
    /// VAR, DECL_TAG, TYPE_TAG).
    pub size_or_type: u32,
    /// Kind-specific data.
    pub detail: BtfDetail,
}

const VOID: BtfType = BtfType {
    name_off: 0,
    kind: BtfKind::Void,
    kind_flag: false,
    vlen: 0,
    size_or_type: 0,
    detail: BtfDetail::None,
};

impl BtfType {
    /// Does `size_or_type` hold a size for this kind?
    pub fn has_size(&self) -> bool {
        matches!(
            self.kind,
            BtfKind::Int
                | BtfKind::Enum
                | BtfKind::Enum64
                | BtfKind::Struct
                | BtfKind::Union
                | BtfKind::DataSec
                | BtfKind::Float
        )
    }

    /// The referenced type for kinds that refer to one.
    pub fn ref_type(&self) -> Option<TypeId> {
        match self.kind {
            BtfKind::Ptr
            | BtfKind::Typedef
            | BtfKind::Volatile
            | BtfKind::Const
            | BtfKind::Restrict
            | BtfKind::Func
            | BtfKind::FuncProto
            | BtfKind::Var
            | BtfKind::DeclTag
            | BtfKind::TypeTag => Some(self.size_or_type),
            _ => None,
        }
    }

    /// Is this a const/volatile/restrict/type-tag modifier?
    pub fn is_modifier(&self) -> bool {
        matches!(
            self.kind,
            BtfKind::Volatile | BtfKind::Const | BtfKind::Restrict | BtfKind::TypeTag
        )
    }

    /// STRUCT or UNION?
    pub fn is_composite(&self) -> bool {
        matches!(self.kind, BtfKind::Struct | BtfKind::Union)
    }

    /// ENUM or ENUM64?
    pub fn is_any_enum(&self) -> bool {
        matches!(self.kind, BtfKind::Enum | BtfKind::Enum64)
    }

    /// Members of a STRUCT/UNION (empty for other kinds).
    pub fn members(&self) -> &[BtfMember] {
        match &self.detail {
            BtfDetail::Members(m) => m,
            _ => &[],
        }
    }

    /// Enumerators of an ENUM/ENUM64 (empty for other kinds).
    pub fn enum_values(&self) -> &[BtfEnumValue] {
        match &self.detail {
            BtfDetail::Enum(v) => v,
            _ => &[],
        }
    }

    /// Parameters of a FUNC_PROTO (empty for other kinds).
    pub fn params(&self) -> &[BtfParam] {
        match &self.detail {
            BtfDetail::Params(p) => p,
            _ => &[],
        }
    }

    /// Entries of a DATASEC (empty for other kinds).
    pub fn datasec_vars(&self) -> &[BtfVarSecInfo] {
        match &self.detail {
            BtfDetail::DataSec(v) => v,
            _ => &[],
        }
    }

    /// ARRAY data.
    pub fn array(&self) -> Option<BtfArray> {
        match self.detail {
            BtfDetail::Array(a) => Some(a),
            _ => None,
        }
    }

    /// INT data.
    pub fn int(&self) -> Option<BtfInt> {
        match self.detail {
            BtfDetail::Int(i) => Some(i),
            _ => None,
        }
    }

    /// VAR linkage, or FUNC linkage (stored in `vlen`).
    pub fn linkage(&self) -> Option<u32> {
        match (&self.detail, self.kind) {
            (BtfDetail::Var { linkage }, _) => Some(*linkage),
            (_, BtfKind::Func) => Some(u32::from(self.vlen)),
            _ => None,
        }
    }

    /// Is this an ENUM/ENUM64 with signed values, or a signed INT?
    pub fn is_signed(&self) -> bool {
        match self.kind {
            BtfKind::Enum | BtfKind::Enum64 => self.kind_flag,
            BtfKind::Int => self.int().is_some_and(|i| i.encoding & BTF_INT_SIGNED != 0),
            _ => false,
        }
    }
}

/// A parsed BTF blob: types indexed by id plus the string section.
#[derive(Clone)]
pub struct Btf {
    types: Vec<BtfType>,
    /// Byte offset of each type record in `raw` (index = type id; 0 for void).
    type_offsets: Vec<usize>,
    strings: Vec<u8>,
    raw: Vec<u8>,
    /// Essential name (without `___flavor`) → type ids, built on first use by CO-RE.
    by_name: OnceLock<HashMap<String, Vec<TypeId>>>,
}

impl std::fmt::Debug for Btf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Btf")
            .field("types", &self.types.len().saturating_sub(1))
            .field("strings_len", &self.strings.len())
            .finish()
    }
}

impl PartialEq for Btf {
    fn eq(&self, other: &Btf) -> bool {
        self.raw == other.raw
    }
}

impl Eq for Btf {}

pub(crate) fn rd_u16(d: &[u8], off: usize) -> Option<u16> {
    let b = d.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

pub(crate) fn rd_u32(d: &[u8], off: usize) -> Option<u32> {
    let b = d.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// NUL-terminated string at `off` in `strings`, as UTF-8.
pub(crate) fn str_at(strings: &[u8], off: u32) -> Option<&str> {
    let start = usize::try_from(off).ok()?;
    let rest = strings.get(start..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    std::str::from_utf8(rest.get(..end)?).ok()
}

/// Length of the "essential" part of a name: everything before the last
/// `___flavor` suffix (libbpf's `bpf_core_essential_name_len`). A suffix starts
/// at `___` preceded by a non-underscore and followed by a non-underscore.
pub fn essential_name_len(name: &str) -> usize {
    let b = name.as_bytes();
    let n = b.len();
    if n < 5 {
        return n;
    }
    let mut i = n - 5;
    loop {
        if b[i] != b'_'
            && b[i + 1] == b'_'
            && b[i + 2] == b'_'
            && b[i + 3] == b'_'
            && b[i + 4] != b'_'
        {
            return i + 1;
        }
        if i == 0 {
            return n;
        }
        i -= 1;
    }
}

/// `name` without its `___flavor` suffix.
pub fn essential_name(name: &str) -> &str {
    name.get(..essential_name_len(name)).unwrap_or(name)
}

impl Btf {
    /// Parse a raw BTF blob (the `.BTF` section, or `/sys/kernel/btf/vmlinux`).
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        let len = data.len();
        let trunc = |what, offset, need| BtfError::Truncated {
            what,
            offset,
            need,
            len,
        };
        let magic = rd_u16(data, 0).ok_or(trunc("header", 0, 24))?;
        if magic != BTF_MAGIC {
            return Err(BtfError::BadMagic(magic));
        }
        if len < 24 {
            return Err(trunc("header", 0, 24));
        }
        let version = data[2];
        if version != 1 {
            return Err(BtfError::BadVersion(version));
        }
        let hdr_len = rd_u32(data, 4).ok_or(trunc("header", 0, 24))? as usize;
        if hdr_len < 24 {
            return Err(BtfError::BadHeader(format!("hdr_len {hdr_len} < 24")));
        }
        if hdr_len > len {
            return Err(trunc("header", 0, hdr_len));
        }
        // A longer header must have only zeros in the part we do not know.
        if data[24..hdr_len].iter().any(|&b| b != 0) {
            return Err(BtfError::BadHeader(format!(
                "hdr_len {hdr_len} has unknown non-zero fields"
            )));
        }
        let field = |o| rd_u32(data, o).ok_or(trunc("header", 0, 24));
        let (type_off, type_len, str_off, str_len) =
            (field(8)?, field(12)?, field(16)?, field(20)?);
        let body = &data[hdr_len..];
        let range = |off: u32, l: u32, what: &'static str| -> Result<&[u8], BtfError> {
            let s = off as usize;
            let e = s
                .checked_add(l as usize)
                .ok_or(BtfError::BadHeader(format!("{what} overflows")))?;
            body.get(s..e).ok_or(BtfError::Truncated {
                what,
                offset: hdr_len + s,
                need: l as usize,
                len,
            })
        };
        if type_off % 4 != 0 {
            return Err(BtfError::BadHeader(format!(
                "type_off {type_off} not 4-byte aligned"
            )));
        }
        let tsec = range(type_off, type_len, "type section")?;
        let ssec = range(str_off, str_len, "string section")?;
        // Sections must not overlap.
        let (ts, te) = (type_off as u64, type_off as u64 + type_len as u64);
        let (ss, se) = (str_off as u64, str_off as u64 + str_len as u64);
        if ts < se && ss < te {
            return Err(BtfError::BadHeader(
                "type and string sections overlap".into(),
            ));
        }
        if str_len == 0 || ssec.first() != Some(&0) || ssec.last() != Some(&0) {
            return Err(BtfError::BadHeader(
                "string section must start and end with a NUL byte".into(),
            ));
        }

        let mut types = vec![VOID];
        let mut type_offsets = vec![0];
        let base = hdr_len + type_off as usize;
        let mut off = 0usize;
        while off < tsec.len() {
            let id = u32::try_from(types.len())
                .map_err(|_| BtfError::BadHeader("too many types".into()))?;
            let (t, next) = parse_type(tsec, off, id, base, len)?;
            types.push(t);
            type_offsets.push(base + off);
            off = next;
        }

        let btf = Btf {
            types,
            type_offsets,
            strings: ssec.to_vec(),
            raw: data.to_vec(),
            by_name: OnceLock::new(),
        };
        btf.validate()?;
        Ok(btf)
    }

    /// Check id references and name offsets of every type.
    fn validate(&self) -> Result<(), BtfError> {
        let max = self.types.len() as u32 - 1;
        let slen = self.strings.len();
        for (id, t) in self.types.iter().enumerate().skip(1) {
            let id = id as u32;
            let chk_id = |target: u32| {
                if target > max {
                    Err(BtfError::TypeIdOutOfRange { id, target, max })
                } else {
                    Ok(())
                }
            };
            let chk_str = |off: u32, what: &str| {
                if (off as usize) < slen {
                    Ok(())
                } else {
                    Err(BtfError::BadString {
                        context: format!("type [{id}] {what}"),
                        offset: off,
                        len: slen,
                    })
                }
            };
            chk_str(t.name_off, "name")?;
            if let Some(r) = t.ref_type() {
                chk_id(r)?;
            }
            match &t.detail {
                BtfDetail::Array(a) => {
                    chk_id(a.elem_type)?;
                    chk_id(a.index_type)?;
                }
                BtfDetail::Members(ms) => {
                    for m in ms {
                        chk_id(m.type_id)?;
                        chk_str(m.name_off, "member name")?;
                    }
                }
                BtfDetail::Enum(vs) => {
                    for v in vs {
                        chk_str(v.name_off, "enumerator name")?;
                    }
                }
                BtfDetail::Params(ps) => {
                    for p in ps {
                        chk_id(p.type_id)?;
                        chk_str(p.name_off, "parameter name")?;
                    }
                }
                BtfDetail::DataSec(vs) => {
                    for v in vs {
                        chk_id(v.type_id)?;
                    }
                }
                _ => {}
            }
            // Kinds whose reference may not be void.
            if matches!(t.kind, BtfKind::Func | BtfKind::Var | BtfKind::DeclTag)
                && t.size_or_type == 0
            {
                return Err(BtfError::InvalidType {
                    id,
                    reason: format!("{} refers to void", t.kind),
                });
            }
        }
        Ok(())
    }

    /// Fill in what clang leaves for the linker in object-file BTF (libbpf's
    /// `btf_fixup_datasec`): a `DATASEC` with size 0 gets the size of the ELF
    /// section of that name, and each non-static variable in it the offset of its
    /// ELF symbol; entries are then sorted by offset. Both the parsed types and
    /// [`Btf::raw_bytes`] are updated. DATASECs without an ELF section (e.g.
    /// `.ksyms`) are left alone.
    pub(crate) fn fixup_datasecs(
        &mut self,
        section_size: impl Fn(&str) -> Option<u32>,
        symbol_offset: impl Fn(&str) -> Option<u32>,
    ) -> Result<(), BtfError> {
        for id in 1..self.types.len() {
            let t = &self.types[id];
            if t.kind != BtfKind::DataSec || t.size_or_type != 0 {
                continue;
            }
            let sec_name = self.string_at(t.name_off)?.to_owned();
            let Some(size) = section_size(&sec_name) else {
                continue;
            };
            let mut vars = t.datasec_vars().to_vec();
            for v in vars.iter_mut() {
                let var = self.type_by_id(v.type_id)?;
                if var.kind != BtfKind::Var {
                    return Err(BtfError::InvalidType {
                        id: id as u32,
                        reason: format!(
                            "DATASEC '{sec_name}' holds a {} (type [{}]), expected VAR",
                            var.kind, v.type_id
                        ),
                    });
                }
                if var.linkage() == Some(BTF_VAR_STATIC) {
                    continue;
                }
                let vname = self.string_at(var.name_off)?;
                v.offset = symbol_offset(vname).ok_or_else(|| BtfError::InvalidType {
                    id: id as u32,
                    reason: format!("variable '{vname}' of DATASEC '{sec_name}' has no ELF symbol"),
                })?;
            }
            vars.sort_by_key(|v| v.offset);
            let rec = self
                .type_offsets
                .get(id)
                .copied()
                .ok_or(BtfError::NotFound(id as u32))?;
            let mut patch = |off: usize, val: u32| -> Result<(), BtfError> {
                let dst = self
                    .raw
                    .get_mut(off..off + 4)
                    .ok_or(BtfError::NotFound(id as u32))?;
                dst.copy_from_slice(&val.to_le_bytes());
                Ok(())
            };
            patch(rec + 8, size)?;
            for (i, v) in vars.iter().enumerate() {
                let o = rec + 12 + i * 12;
                patch(o, v.type_id)?;
                patch(o + 4, v.offset)?;
                patch(o + 8, v.size)?;
            }
            let t = &mut self.types[id];
            t.size_or_type = size;
            t.detail = BtfDetail::DataSec(vars);
        }
        Ok(())
    }

    /// The raw bytes this was parsed from (what a loader hands to the kernel).
    pub fn raw_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The string section.
    pub fn strings(&self) -> &[u8] {
        &self.strings
    }

    /// Number of type ids including `void` (valid ids are `0..len()`).
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// True when the blob has no types besides `void`.
    pub fn is_empty(&self) -> bool {
        self.types.len() <= 1
    }

    /// All types, `(id, type)`, starting at id 1.
    pub fn types(&self) -> impl Iterator<Item = (TypeId, &BtfType)> {
        self.types
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, t)| (i as TypeId, t))
    }

    /// The type with the given id (id 0 is `void`).
    pub fn type_by_id(&self, id: TypeId) -> Result<&BtfType, BtfError> {
        self.types.get(id as usize).ok_or(BtfError::NotFound(id))
    }

    /// The string at `off` in the string section.
    pub fn string_at(&self, off: u32) -> Result<&str, BtfError> {
        str_at(&self.strings, off).ok_or_else(|| BtfError::BadString {
            context: "lookup".into(),
            offset: off,
            len: self.strings.len(),
        })
    }

    /// Name of a type ("" for anonymous types).
    pub fn name_of(&self, id: TypeId) -> Result<&str, BtfError> {
        self.string_at(self.type_by_id(id)?.name_off)
    }

    /// First type with this exact name and kind.
    pub fn find_by_name_kind(&self, name: &str, kind: BtfKind) -> Option<TypeId> {
        self.types()
            .find(|(_, t)| t.kind == kind && self.string_at(t.name_off).ok() == Some(name))
            .map(|(id, _)| id)
    }

    /// First type with this exact name, any kind.
    pub fn find_by_name(&self, name: &str) -> Option<TypeId> {
        self.types()
            .find(|(_, t)| self.string_at(t.name_off).ok() == Some(name))
            .map(|(id, _)| id)
    }

    /// Types whose essential name (without `___flavor`) equals `essential`.
    pub fn ids_by_essential_name(&self, essential: &str) -> &[TypeId] {
        let map = self.by_name.get_or_init(|| {
            let mut m: HashMap<String, Vec<TypeId>> = HashMap::new();
            for (id, t) in self.types() {
                if t.name_off == 0 {
                    continue;
                }
                if let Ok(n) = self.string_at(t.name_off) {
                    m.entry(essential_name(n).to_owned()).or_default().push(id);
                }
            }
            m
        });
        map.get(essential).map(|v| v.as_slice()).unwrap_or(&[])
    }

    /// Follow typedefs and const/volatile/restrict/type-tag modifiers to the
    /// underlying type. Returns its id and record.
    pub fn skip_mods_and_typedefs(&self, id: TypeId) -> Result<(TypeId, &BtfType), BtfError> {
        let mut id = id;
        for _ in 0..=MAX_RESOLVE_DEPTH {
            let t = self.type_by_id(id)?;
            if t.is_modifier() || t.kind == BtfKind::Typedef {
                id = t.size_or_type;
            } else {
                return Ok((id, t));
            }
        }
        Err(BtfError::InvalidType {
            id,
            reason: "typedef/modifier chain too deep (cycle?)".into(),
        })
    }

    /// Size in bytes of a type, through typedefs, modifiers, VARs and arrays
    /// (libbpf's `btf__resolve_size`). Pointers are 8 bytes (BPF target).
    pub fn resolve_size(&self, id: TypeId) -> Result<u32, BtfError> {
        let mut id = id;
        let mut mult: u64 = 1;
        for _ in 0..=MAX_RESOLVE_DEPTH {
            let t = self.type_by_id(id)?;
            let base: u64 = match t.kind {
                BtfKind::Int
                | BtfKind::Enum
                | BtfKind::Enum64
                | BtfKind::Struct
                | BtfKind::Union
                | BtfKind::DataSec
                | BtfKind::Float => u64::from(t.size_or_type),
                BtfKind::Ptr => 8,
                BtfKind::Typedef
                | BtfKind::Volatile
                | BtfKind::Const
                | BtfKind::Restrict
                | BtfKind::TypeTag
                | BtfKind::Var
                | BtfKind::DeclTag => {
                    id = t.size_or_type;
                    continue;
                }
                BtfKind::Array => {
                    let a = t.array().ok_or(BtfError::InvalidType {
                        id,
                        reason: "array without data".into(),
                    })?;
                    mult = mult.saturating_mul(u64::from(a.nelems));
                    id = a.elem_type;
                    continue;
                }
                k => {
                    return Err(BtfError::InvalidType {
                        id,
                        reason: format!("{k} has no size"),
                    });
                }
            };
            let total = base.saturating_mul(mult);
            return u32::try_from(total).map_err(|_| BtfError::InvalidType {
                id,
                reason: format!("size {total} overflows u32"),
            });
        }
        Err(BtfError::InvalidType {
            id,
            reason: "type chain too deep (cycle?)".into(),
        })
    }

    /// A C-like spelling of a type, for messages: `struct task_struct *`,
    /// `const char[16]`, `u32`, `int (*)(void *)`.
    pub fn type_to_string(&self, id: TypeId) -> String {
        let mut out = String::new();
        self.write_type(id, &mut out, 0);
        out
    }

    fn write_type(&self, id: TypeId, out: &mut String, depth: usize) {
        if depth > MAX_RESOLVE_DEPTH {
            out.push_str("...");
            return;
        }
        let Ok(t) = self.type_by_id(id) else {
            let _ = write!(out, "<bad type {id}>");
            return;
        };
        let name = self.string_at(t.name_off).unwrap_or("?");
        let named = |out: &mut String, kw: &str| {
            if name.is_empty() {
                let _ = write!(out, "{kw} <anon>");
            } else {
                let _ = write!(out, "{kw} {name}");
            }
        };
        match t.kind {
            BtfKind::Void => out.push_str("void"),
            BtfKind::Int | BtfKind::Float | BtfKind::Typedef => out.push_str(name),
            BtfKind::Struct => named(out, "struct"),
            BtfKind::Union => named(out, "union"),
            BtfKind::Enum | BtfKind::Enum64 => named(out, "enum"),
            BtfKind::Fwd => named(out, if t.kind_flag { "union" } else { "struct" }),
            BtfKind::Ptr => {
                let is_fn = self
                    .skip_mods_and_typedefs(t.size_or_type)
                    .is_ok_and(|(_, p)| p.kind == BtfKind::FuncProto);
                if is_fn {
                    self.write_fn_proto(t.size_or_type, "(*)", out, depth + 1);
                } else {
                    self.write_type(t.size_or_type, out, depth + 1);
                    out.push_str(" *");
                }
            }
            BtfKind::Const | BtfKind::Volatile | BtfKind::Restrict => {
                out.push_str(match t.kind {
                    BtfKind::Const => "const ",
                    BtfKind::Volatile => "volatile ",
                    _ => "restrict ",
                });
                self.write_type(t.size_or_type, out, depth + 1);
            }
            BtfKind::TypeTag => {
                self.write_type(t.size_or_type, out, depth + 1);
                let _ = write!(out, " __tag({name})");
            }
            BtfKind::Array => {
                if let Some(a) = t.array() {
                    self.write_type(a.elem_type, out, depth + 1);
                    let _ = write!(out, "[{}]", a.nelems);
                }
            }
            BtfKind::FuncProto => self.write_fn_proto(id, "", out, depth + 1),
            BtfKind::Func => {
                self.write_fn_proto(t.size_or_type, name, out, depth + 1);
            }
            BtfKind::Var => {
                self.write_type(t.size_or_type, out, depth + 1);
                let _ = write!(out, " {name}");
            }
            BtfKind::DataSec => {
                let _ = write!(out, "datasec {name}");
            }
            BtfKind::DeclTag => {
                let _ = write!(out, "decl_tag {name}");
            }
        }
    }

    fn write_fn_proto(&self, proto: TypeId, middle: &str, out: &mut String, depth: usize) {
        let Ok((_, p)) = self.skip_mods_and_typedefs(proto) else {
            out.push_str("<bad proto>");
            return;
        };
        self.write_type(p.size_or_type, out, depth + 1);
        let _ = write!(out, " {middle}(");
        if p.params().is_empty() {
            out.push_str("void");
        }
        for (i, prm) in p.params().iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            if prm.type_id == 0 {
                out.push_str("...");
            } else {
                self.write_type(prm.type_id, out, depth + 1);
            }
        }
        out.push(')');
    }
}

/// Parse one type record at `off` of the type section.
fn parse_type(
    tsec: &[u8],
    off: usize,
    id: u32,
    base: usize,
    total: usize,
) -> Result<(BtfType, usize), BtfError> {
    let trunc = |need: usize| BtfError::Truncated {
        what: "type record",
        offset: base + off,
        need,
        len: total,
    };
    let name_off = rd_u32(tsec, off).ok_or(trunc(12))?;
    let info = rd_u32(tsec, off + 4).ok_or(trunc(12))?;
    let size_or_type = rd_u32(tsec, off + 8).ok_or(trunc(12))?;
    let vlen = (info & 0xffff) as u16;
    let kind_num = (info >> 24) & 0x1f;
    let kind_flag = info >> 31 == 1;
    let kind = BtfKind::from_u32(kind_num)
        .filter(|k| *k != BtfKind::Void)
        .ok_or(BtfError::UnknownKind {
            id,
            offset: base + off,
            kind: kind_num,
        })?;
    let mut p = off + 12;
    let n = usize::from(vlen);
    let need = |p: usize, bytes: usize| -> Result<&[u8], BtfError> {
        tsec.get(p..p.checked_add(bytes).ok_or(trunc(bytes))?)
            .ok_or(BtfError::Truncated {
                what: "type data",
                offset: base + p,
                need: bytes,
                len: total,
            })
    };
    let invalid = |reason: String| BtfError::InvalidType { id, reason };
    let u32s = |b: &[u8], i: usize| rd_u32(b, i * 4).unwrap_or(0);
    let detail = match kind {
        BtfKind::Int => {
            let b = need(p, 4)?;
            p += 4;
            let w = u32s(b, 0);
            let int = BtfInt {
                encoding: ((w >> 24) & 0x0f) as u8,
                offset: ((w >> 16) & 0xff) as u8,
                bits: (w & 0xff) as u8,
            };
            if int.bits > 128 || u32::from(int.offset) + u32::from(int.bits) > 128 {
                return Err(invalid(format!(
                    "INT bits {} offset {} out of range",
                    int.bits, int.offset
                )));
            }
            BtfDetail::Int(int)
        }
        BtfKind::Array => {
            let b = need(p, 12)?;
            p += 12;
            BtfDetail::Array(BtfArray {
                elem_type: u32s(b, 0),
                index_type: u32s(b, 1),
                nelems: u32s(b, 2),
            })
        }
        BtfKind::Struct | BtfKind::Union => {
            let b = need(p, n * 12)?;
            p += n * 12;
            let mut ms = Vec::with_capacity(n);
            for i in 0..n {
                let raw = u32s(b, i * 3 + 2);
                let (bit_offset, bitfield_size) = if kind_flag {
                    (raw & 0x00ff_ffff, (raw >> 24) as u8)
                } else {
                    (raw, 0)
                };
                ms.push(BtfMember {
                    name_off: u32s(b, i * 3),
                    type_id: u32s(b, i * 3 + 1),
                    bit_offset,
                    bitfield_size,
                });
            }
            BtfDetail::Members(ms)
        }
        BtfKind::Enum => {
            let b = need(p, n * 8)?;
            p += n * 8;
            let vals = (0..n)
                .map(|i| {
                    let v = u32s(b, i * 2 + 1);
                    let value = if kind_flag {
                        v as i32 as i64 as u64
                    } else {
                        u64::from(v)
                    };
                    BtfEnumValue {
                        name_off: u32s(b, i * 2),
                        value,
                    }
                })
                .collect();
            BtfDetail::Enum(vals)
        }
        BtfKind::Enum64 => {
            let b = need(p, n * 12)?;
            p += n * 12;
            let vals = (0..n)
                .map(|i| BtfEnumValue {
                    name_off: u32s(b, i * 3),
                    value: u64::from(u32s(b, i * 3 + 1)) | (u64::from(u32s(b, i * 3 + 2)) << 32),
                })
                .collect();
            BtfDetail::Enum(vals)
        }
        BtfKind::FuncProto => {
            let b = need(p, n * 8)?;
            p += n * 8;
            BtfDetail::Params(
                (0..n)
                    .map(|i| BtfParam {
                        name_off: u32s(b, i * 2),
                        type_id: u32s(b, i * 2 + 1),
                    })
                    .collect(),
            )
        }
        BtfKind::Var => {
            let b = need(p, 4)?;
            p += 4;
            BtfDetail::Var {
                linkage: u32s(b, 0),
            }
        }
        BtfKind::DataSec => {
            let b = need(p, n * 12)?;
            p += n * 12;
            BtfDetail::DataSec(
                (0..n)
                    .map(|i| BtfVarSecInfo {
                        type_id: u32s(b, i * 3),
                        offset: u32s(b, i * 3 + 1),
                        size: u32s(b, i * 3 + 2),
                    })
                    .collect(),
            )
        }
        BtfKind::DeclTag => {
            let b = need(p, 4)?;
            p += 4;
            BtfDetail::DeclTag {
                component_idx: u32s(b, 0) as i32,
            }
        }
        BtfKind::Ptr
        | BtfKind::Fwd
        | BtfKind::Typedef
        | BtfKind::Volatile
        | BtfKind::Const
        | BtfKind::Restrict
        | BtfKind::Func
        | BtfKind::Float
        | BtfKind::TypeTag
        | BtfKind::Void => BtfDetail::None,
    };
    Ok((
        BtfType {
            name_off,
            kind,
            kind_flag,
            vlen,
            size_or_type,
            detail,
        },
        p,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tiny BTF builder for tests.
    pub(crate) struct Builder {
        pub types: Vec<u8>,
        pub strings: Vec<u8>,
    }

    impl Builder {
        pub fn new() -> Builder {
            Builder {
                types: vec![],
                strings: vec![0],
            }
        }
        pub fn s(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            off
        }
        pub fn raw(&mut self, words: &[u32]) {
            for w in words {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
        }
        pub fn build(&self) -> Vec<u8> {
            let mut out = vec![];
            out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
            out.push(1);
            out.push(0);
            out.extend_from_slice(&24u32.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&(self.types.len() as u32).to_le_bytes());
            out.extend_from_slice(&(self.types.len() as u32).to_le_bytes());
            out.extend_from_slice(&(self.strings.len() as u32).to_le_bytes());
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    pub(crate) fn info(kind: BtfKind, vlen: u32, kflag: bool) -> u32 {
        (kind as u32) << 24 | vlen | if kflag { 1 << 31 } else { 0 }
    }

    #[test]
    fn parse_small() {
        let mut b = Builder::new();
        let int = b.s("int");
        b.raw(&[
            int,
            info(BtfKind::Int, 0, false),
            4,
            (BTF_INT_SIGNED as u32) << 24 | 32,
        ]); // [1] int
        b.raw(&[0, info(BtfKind::Ptr, 0, false), 1]); // [2] int *
        let s = b.s("s");
        let (a, c) = (b.s("a"), b.s("c"));
        b.raw(&[s, info(BtfKind::Struct, 2, false), 16, a, 1, 0, c, 2, 64]); // [3] struct s
        b.raw(&[0, info(BtfKind::Array, 0, false), 0, 3, 1, 4]); // [4] struct s[4]
        let td = b.s("s_t");
        b.raw(&[td, info(BtfKind::Typedef, 0, false), 3]); // [5]
        b.raw(&[0, info(BtfKind::Const, 0, false), 5]); // [6]
        let f = b.s("f___v2");
        b.raw(&[f, info(BtfKind::Struct, 0, false), 0]); // [7]
        let btf = Btf::parse(&b.build()).unwrap();
        assert_eq!(btf.len(), 8);
        assert_eq!(btf.resolve_size(4).unwrap(), 64);
        assert_eq!(btf.resolve_size(6).unwrap(), 16);
        assert_eq!(btf.skip_mods_and_typedefs(6).unwrap().0, 3);
        assert_eq!(btf.type_to_string(2), "int *");
        assert_eq!(btf.type_to_string(4), "struct s[4]");
        assert_eq!(btf.type_to_string(6), "const s_t");
        assert_eq!(btf.find_by_name_kind("s", BtfKind::Struct), Some(3));
        assert_eq!(btf.ids_by_essential_name("f"), &[7]);
        assert_eq!(btf.type_by_id(3).unwrap().members()[1].bit_offset, 64);
    }

    #[test]
    fn out_of_range_and_cycles() {
        let mut b = Builder::new();
        b.raw(&[0, info(BtfKind::Ptr, 0, false), 99]);
        assert!(matches!(
            Btf::parse(&b.build()),
            Err(BtfError::TypeIdOutOfRange {
                id: 1,
                target: 99,
                ..
            })
        ));

        let mut b = Builder::new();
        let n = b.s("a");
        b.raw(&[n, info(BtfKind::Typedef, 0, false), 2]);
        b.raw(&[n, info(BtfKind::Typedef, 0, false), 1]);
        let btf = Btf::parse(&b.build()).unwrap();
        assert!(btf.resolve_size(1).is_err());
        assert!(btf.skip_mods_and_typedefs(1).is_err());
        let _ = btf.type_to_string(1);

        let mut b = Builder::new();
        b.raw(&[1000, info(BtfKind::Ptr, 0, false), 0]);
        assert!(matches!(
            Btf::parse(&b.build()),
            Err(BtfError::BadString { .. })
        ));

        let mut b = Builder::new();
        b.raw(&[0, 25 << 24, 0]);
        assert!(matches!(
            Btf::parse(&b.build()),
            Err(BtfError::UnknownKind { kind: 25, .. })
        ));
    }

    #[test]
    fn every_kind() {
        use BtfKind::*;
        let mut b = Builder::new();
        let n = |b: &mut Builder, s: &str| b.s(s);
        let int = n(&mut b, "int");
        b.raw(&[
            int,
            info(Int, 0, false),
            4,
            (BTF_INT_SIGNED as u32) << 24 | 32,
        ]); // [1]
        let u = n(&mut b, "u");
        let (x, y) = (n(&mut b, "x"), n(&mut b, "y"));
        // [2] union u { int x; int y:3 (kind_flag bitfield encoding) }
        b.raw(&[u, info(Union, 2, true), 4, x, 1, 0, y, 1, 3 << 24]);
        let e = n(&mut b, "e");
        let (a, c) = (n(&mut b, "A"), n(&mut b, "C"));
        b.raw(&[e, info(Enum, 2, true), 4, a, 0, c, (-2i32) as u32]); // [3] signed enum
        let e64 = n(&mut b, "e64");
        b.raw(&[e64, info(Enum64, 1, false), 8, a, 0x89ab_cdef, 0x0123_4567]); // [4]
        let f = n(&mut b, "fwd_s");
        b.raw(&[f, info(Fwd, 0, true), 0]); // [5] union forward
        b.raw(&[0, info(Volatile, 0, false), 1]); // [6]
        b.raw(&[0, info(Restrict, 0, false), 8]); // [7]
        b.raw(&[0, info(Ptr, 0, false), 1]); // [8]
        let p = n(&mut b, "p");
        b.raw(&[0, info(FuncProto, 2, false), 1, p, 8, 0, 0]); // [9] int (int *p, ...)
        let fun = n(&mut b, "fun");
        b.raw(&[fun, info(Func, BTF_FUNC_GLOBAL, false), 9]); // [10]
        let v = n(&mut b, "v");
        b.raw(&[v, info(Var, 0, false), 1, BTF_VAR_GLOBAL_ALLOCATED]); // [11]
        let ds = n(&mut b, ".data");
        b.raw(&[ds, info(DataSec, 1, false), 4, 11, 0, 4]); // [12]
        let fl = n(&mut b, "double");
        b.raw(&[fl, info(Float, 0, false), 8]); // [13]
        let tag = n(&mut b, "tag");
        b.raw(&[tag, info(DeclTag, 0, false), 10, (-1i32) as u32]); // [14]
        let ut = n(&mut b, "user");
        b.raw(&[ut, info(TypeTag, 0, false), 1]); // [15]
        b.raw(&[0, info(Ptr, 0, false), 15]); // [16]
        let btf = Btf::parse(&b.build()).unwrap();
        let kinds: Vec<_> = btf.types().map(|(_, t)| t.kind).collect();
        assert_eq!(
            kinds,
            vec![
                Int, Union, Enum, Enum64, Fwd, Volatile, Restrict, Ptr, FuncProto, Func, Var,
                DataSec, Float, DeclTag, TypeTag, Ptr
            ]
        );
        let un = btf.type_by_id(2).unwrap();
        assert_eq!(
            (un.members()[1].bit_offset, un.members()[1].bitfield_size),
            (0, 3)
        );
        assert_eq!(btf.type_by_id(3).unwrap().enum_values()[1].value as i64, -2);
        assert!(btf.type_by_id(3).unwrap().is_signed());
        assert_eq!(
            btf.type_by_id(4).unwrap().enum_values()[0].value,
            0x0123_4567_89ab_cdef
        );
        assert_eq!(btf.type_to_string(5), "union fwd_s");
        assert_eq!(btf.type_to_string(10), "int fun(int *, ...)");
        assert_eq!(btf.type_to_string(16), "int __tag(user) *");
        assert_eq!(btf.type_by_id(10).unwrap().linkage(), Some(BTF_FUNC_GLOBAL));
        assert_eq!(
            btf.type_by_id(11).unwrap().linkage(),
            Some(BTF_VAR_GLOBAL_ALLOCATED)
        );
        assert_eq!(
            btf.type_by_id(14).unwrap().detail,
            BtfDetail::DeclTag { component_idx: -1 }
        );
        assert_eq!(btf.resolve_size(11).unwrap(), 4);
        assert_eq!(btf.resolve_size(12).unwrap(), 4);
        assert_eq!(btf.resolve_size(13).unwrap(), 8);
        assert_eq!(btf.resolve_size(6).unwrap(), 4);
        assert!(btf.resolve_size(9).is_err());
        assert!(btf.resolve_size(5).is_err());
        // Truncating anywhere inside the type section is an error, never a panic.
        let raw = b.build();
        for cut in 0..raw.len() {
            assert!(Btf::parse(&raw[..cut]).is_err());
        }
    }

    #[test]
    fn essential_names() {
        assert_eq!(essential_name("task_struct___local"), "task_struct");
        assert_eq!(essential_name("task_struct"), "task_struct");
        assert_eq!(essential_name("a___b___c"), "a___b");
        assert_eq!(essential_name("____x"), "____x");
        assert_eq!(essential_name("x___"), "x___");
        assert_eq!(essential_name("ab"), "ab");
    }
}
