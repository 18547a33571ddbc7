//! CO-RE ("compile once, run everywhere") relocations: re-targeting field
//! offsets, sizes, existence checks, type ids/sizes and enum values from the
//! object's own BTF to a target BTF (the kernel's, or bpfvfs's own).
//!
//! The algorithm follows libbpf's `relo_core.c`:
//!
//! 1. The *local spec* is parsed from the relocation's root type and access
//!    string (`"0:1:2"`: index into the root pointer, then member/array indices),
//!    recording the named fields and array indices and the bit offset.
//! 2. *Candidates* are target types of the same kind whose name, with any
//!    `___flavor` suffix dropped, equals the local name with its suffix dropped
//!    (`task_struct___local` matches `task_struct`).
//! 3. Each candidate is *matched*: named fields are looked up by name (through
//!    anonymous struct/union members), array indices bounds-checked, field types
//!    checked for compatibility. Every matching candidate must give the same
//!    result, else the relocation is ambiguous.
//! 4. The instruction is *patched*: ALU immediates, LDX/ST/STX offsets (and
//!    memory size, when a pointer or unsigned integer changed width) or `lddw`
//!    immediates. The instruction must hold the locally computed value first
//!    (except for bitfields and target type ids). When nothing matched and the
//!    relocation kind needs a target, the instruction is *poisoned* like libbpf
//!    does (a call to helper `0xbad2310`), so only reaching it fails verification.

use std::collections::HashMap;

use crate::btf::{
    essential_name, essential_name_len, Btf, BtfKind, BtfType, TypeId, BTF_INT_SIGNED,
    MAX_RESOLVE_DEPTH,
};
use crate::error::ObjError;
use crate::insn::{self, Insn};
use crate::obj::{CoreRelo, ProgramSpec};

/// Maximum length of an access string (libbpf's `BPF_CORE_SPEC_MAX_LEN`).
const SPEC_MAX_LEN: usize = 64;

/// `enum bpf_core_relo_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum CoreReloKind {
    /// Field byte offset (`bpf_core_field_offset`, `BPF_CORE_READ`).
    FieldByteOffset = 0,
    /// Field size in bytes.
    FieldByteSize = 1,
    /// Field exists in target.
    FieldExists = 2,
    /// Field is signed.
    FieldSigned = 3,
    /// Bitfield extraction: left shift.
    FieldLShiftU64 = 4,
    /// Bitfield extraction: right shift.
    FieldRShiftU64 = 5,
    /// Type id in the local BTF.
    TypeIdLocal = 6,
    /// Type id in the target BTF.
    TypeIdTarget = 7,
    /// Type exists in target.
    TypeExists = 8,
    /// Type size in target.
    TypeSize = 9,
    /// Enumerator exists in target.
    EnumvalExists = 10,
    /// Enumerator value in target.
    EnumvalValue = 11,
    /// Type matches (stricter than exists).
    TypeMatches = 12,
}

impl CoreReloKind {
    /// From the number in `.BTF.ext`.
    pub fn from_u32(k: u32) -> Option<CoreReloKind> {
        use CoreReloKind::*;
        Some(match k {
            0 => FieldByteOffset,
            1 => FieldByteSize,
            2 => FieldExists,
            3 => FieldSigned,
            4 => FieldLShiftU64,
            5 => FieldRShiftU64,
            6 => TypeIdLocal,
            7 => TypeIdTarget,
            8 => TypeExists,
            9 => TypeSize,
            10 => EnumvalExists,
            11 => EnumvalValue,
            12 => TypeMatches,
            _ => return None,
        })
    }

    /// libbpf's name for the kind.
    pub fn name(self) -> &'static str {
        use CoreReloKind::*;
        match self {
            FieldByteOffset => "byte_off",
            FieldByteSize => "byte_sz",
            FieldExists => "field_exists",
            FieldSigned => "signed",
            FieldLShiftU64 => "lshift_u64",
            FieldRShiftU64 => "rshift_u64",
            TypeIdLocal => "local_type_id",
            TypeIdTarget => "target_type_id",
            TypeExists => "type_exists",
            TypeSize => "type_size",
            EnumvalExists => "enumval_exists",
            EnumvalValue => "enumval_value",
            TypeMatches => "type_matches",
        }
    }

    fn is_field(self) -> bool {
        (self as u32) <= 5
    }

    fn is_type(self) -> bool {
        matches!(
            self,
            Self::TypeIdLocal
                | Self::TypeIdTarget
                | Self::TypeExists
                | Self::TypeSize
                | Self::TypeMatches
        )
    }

    fn is_enumval(self) -> bool {
        matches!(self, Self::EnumvalExists | Self::EnumvalValue)
    }
}

/// What happened to one relocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreReloResult {
    /// Patched instruction.
    pub insn_index: usize,
    /// Relocation kind.
    pub kind: CoreReloKind,
    /// Access string.
    pub access: String,
    /// Value computed from the local BTF (what the compiler emitted).
    pub local_value: u64,
    /// Value written for the target.
    pub target_value: u64,
    /// The target type the relocation resolved to (None when nothing matched).
    pub target_type_id: Option<TypeId>,
    /// The instruction was poisoned because no target matched.
    pub poisoned: bool,
}

#[derive(Debug, Clone)]
struct Accessor {
    type_id: TypeId,
    idx: u32,
    name: Option<String>,
}

#[derive(Debug, Clone)]
struct Spec {
    root_type_id: TypeId,
    raw: Vec<u32>,
    acc: Vec<Accessor>,
    bit_offset: u64,
}

type R<T> = Result<T, String>;

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

fn is_flex_arr(btf: &Btf, prev: Option<&Accessor>, nelems: u32) -> bool {
    let Some(prev) = prev else { return false };
    if prev.name.is_none() || nelems > 0 {
        return false;
    }
    btf.type_by_id(prev.type_id)
        .is_ok_and(|t| (prev.idx as usize) + 1 == t.members().len())
}

fn mul3(a: u64, b: u64, c: u64) -> R<u64> {
    a.checked_mul(b)
        .and_then(|x| x.checked_mul(c))
        .ok_or_else(|| "bit offset overflows".to_string())
}

fn parse_spec(btf: &Btf, type_id: TypeId, access: &str, kind: CoreReloKind) -> R<Spec> {
    if access.is_empty() || access.starts_with(':') {
        return Err(format!("invalid access string '{access}'"));
    }
    let mut spec = Spec {
        root_type_id: type_id,
        raw: vec![],
        acc: vec![],
        bit_offset: 0,
    };
    if kind.is_type() {
        if access != "0" {
            return Err(format!(
                "type-based relocation with access string '{access}' (expected \"0\")"
            ));
        }
        return Ok(spec);
    }
    for part in access.split(':') {
        let v: u32 = part
            .parse()
            .map_err(|_| format!("invalid access string '{access}'"))?;
        if spec.raw.len() == SPEC_MAX_LEN {
            return Err("access string too long".into());
        }
        spec.raw.push(v);
    }
    let (mut id, t) = btf.skip_mods_and_typedefs(type_id).map_err(e)?;
    let first = spec.raw.first().copied().ok_or("empty access string")?;
    spec.acc.push(Accessor {
        type_id: id,
        idx: first,
        name: None,
    });
    if kind.is_enumval() {
        let v = t.enum_values().get(first as usize);
        let (true, 1, Some(v)) = (t.is_any_enum(), spec.raw.len(), v) else {
            return Err(format!(
                "enumerator relocation '{access}' on {} [{type_id}]",
                t.kind
            ));
        };
        let name = btf.string_at(v.name_off).map_err(e)?.to_owned();
        if let Some(a) = spec.acc.first_mut() {
            a.name = Some(name);
        }
        return Ok(spec);
    }
    let sz = btf.resolve_size(id).map_err(e)?;
    spec.bit_offset = mul3(u64::from(first), u64::from(sz), 8)?;
    for i in 1..spec.raw.len() {
        let (tid, t) = btf.skip_mods_and_typedefs(id).map_err(e)?;
        id = tid;
        let idx = spec.raw[i];
        if t.is_composite() {
            let m = t
                .members()
                .get(idx as usize)
                .ok_or_else(|| format!("member index {idx} out of range in [{id}]"))?;
            spec.bit_offset = spec
                .bit_offset
                .checked_add(u64::from(m.bit_offset))
                .ok_or("bit offset overflows")?;
            if m.name_off != 0 {
                let name = btf.string_at(m.name_off).map_err(e)?;
                if name.is_empty() {
                    return Err(format!("member {idx} of [{id}] has an empty name"));
                }
                spec.acc.push(Accessor {
                    type_id: id,
                    idx,
                    name: Some(name.to_owned()),
                });
            }
            id = m.type_id;
        } else if t.kind == BtfKind::Array {
            let a = t.array().ok_or("array without data")?;
            let (eid, _) = btf.skip_mods_and_typedefs(a.elem_type).map_err(e)?;
            let flex = is_flex_arr(btf, spec.acc.last(), a.nelems);
            if !flex && idx >= a.nelems {
                return Err(format!(
                    "array index {idx} out of bounds ({} elements)",
                    a.nelems
                ));
            }
            spec.acc.push(Accessor {
                type_id: eid,
                idx,
                name: None,
            });
            let esz = btf.resolve_size(eid).map_err(e)?;
            spec.bit_offset = spec
                .bit_offset
                .checked_add(mul3(u64::from(idx), u64::from(esz), 8)?)
                .ok_or("bit offset overflows")?;
            id = eid;
        } else {
            return Err(format!(
                "access '{access}' (at index {i}) goes through [{id}] of kind {}",
                t.kind
            ));
        }
    }
    Ok(spec)
}

fn kinds_compat(a: &BtfType, b: &BtfType) -> bool {
    a.kind == b.kind || (a.is_any_enum() && b.is_any_enum())
}

fn names_compat(lb: &Btf, l: &BtfType, tb: &Btf, t: &BtfType) -> R<bool> {
    let ln = lb.string_at(l.name_off).map_err(e)?;
    let tn = tb.string_at(t.name_off).map_err(e)?;
    let (ll, tl) = (essential_name_len(ln), essential_name_len(tn));
    Ok(ll == 0 || tl == 0 || ln.get(..ll) == tn.get(..tl))
}

/// libbpf's `bpf_core_fields_are_compat`.
fn fields_compat(lb: &Btf, lid: TypeId, tb: &Btf, tid: TypeId) -> R<bool> {
    let (mut lid, mut tid) = (lid, tid);
    for _ in 0..MAX_RESOLVE_DEPTH {
        let (_, l) = lb.skip_mods_and_typedefs(lid).map_err(e)?;
        let (_, t) = tb.skip_mods_and_typedefs(tid).map_err(e)?;
        if l.is_composite() && t.is_composite() {
            return Ok(true);
        }
        if !kinds_compat(l, t) {
            return Ok(false);
        }
        return match l.kind {
            BtfKind::Ptr | BtfKind::Float => Ok(true),
            BtfKind::Fwd | BtfKind::Enum | BtfKind::Enum64 => names_compat(lb, l, tb, t),
            BtfKind::Int => Ok(
                l.int().is_some_and(|i| i.offset == 0) && t.int().is_some_and(|i| i.offset == 0)
            ),
            BtfKind::Array => {
                lid = l.array().map(|a| a.elem_type).unwrap_or(0);
                tid = t.array().map(|a| a.elem_type).unwrap_or(0);
                continue;
            }
            _ => Ok(false),
        };
    }
    Err("type nesting too deep".into())
}

/// libbpf's `bpf_core_types_are_compat`.
fn types_compat(lb: &Btf, lid: TypeId, tb: &Btf, tid: TypeId, depth: usize) -> R<bool> {
    if depth == 0 {
        return Err("type nesting too deep".into());
    }
    let (l0, t0) = (
        lb.type_by_id(lid).map_err(e)?,
        tb.type_by_id(tid).map_err(e)?,
    );
    if !kinds_compat(l0, t0) {
        return Ok(false);
    }
    let (mut lid, mut tid) = (lid, tid);
    for _ in 0..depth {
        let (_, l) = lb.skip_mods_and_typedefs(lid).map_err(e)?;
        let (_, t) = tb.skip_mods_and_typedefs(tid).map_err(e)?;
        if !kinds_compat(l, t) {
            return Ok(false);
        }
        match l.kind {
            BtfKind::Void
            | BtfKind::Struct
            | BtfKind::Union
            | BtfKind::Enum
            | BtfKind::Enum64
            | BtfKind::Fwd => return Ok(true),
            BtfKind::Int => {
                return Ok(l.int().is_some_and(|i| i.offset == 0)
                    && t.int().is_some_and(|i| i.offset == 0))
            }
            BtfKind::Ptr => {
                lid = l.size_or_type;
                tid = t.size_or_type;
            }
            BtfKind::Array => {
                lid = l.array().map(|a| a.elem_type).unwrap_or(0);
                tid = t.array().map(|a| a.elem_type).unwrap_or(0);
            }
            BtfKind::FuncProto => {
                if l.params().len() != t.params().len() {
                    return Ok(false);
                }
                for (lp, tp) in l.params().iter().zip(t.params()) {
                    let (lp, _) = lb.skip_mods_and_typedefs(lp.type_id).map_err(e)?;
                    let (tp, _) = tb.skip_mods_and_typedefs(tp.type_id).map_err(e)?;
                    if !types_compat(lb, lp, tb, tp, depth - 1)? {
                        return Ok(false);
                    }
                }
                lid = l.size_or_type;
                tid = t.size_or_type;
            }
            _ => return Ok(false),
        }
    }
    Err("type nesting too deep".into())
}

/// An approximation of libbpf's `bpf_core_types_match` (for `TYPE_MATCHES`):
/// same kinds and (flavor-less) names, integers of the same size and sign,
/// arrays of the same length, every local member/enumerator/parameter present
/// in the target with a matching type.
fn types_match(lb: &Btf, lid: TypeId, tb: &Btf, tid: TypeId, depth: usize) -> R<bool> {
    if depth == 0 {
        return Err("type nesting too deep".into());
    }
    let (_, l) = lb.skip_mods_and_typedefs(lid).map_err(e)?;
    let (_, t) = tb.skip_mods_and_typedefs(tid).map_err(e)?;
    if !kinds_compat(l, t) {
        return Ok(false);
    }
    Ok(match l.kind {
        BtfKind::Void => true,
        BtfKind::Int | BtfKind::Float => {
            l.size_or_type == t.size_or_type && l.is_signed() == t.is_signed()
        }
        BtfKind::Ptr => types_match(lb, l.size_or_type, tb, t.size_or_type, depth - 1)?,
        BtfKind::Array => {
            let (la, ta) = (l.array(), t.array());
            match (la, ta) {
                (Some(la), Some(ta)) => {
                    la.nelems == ta.nelems
                        && types_match(lb, la.elem_type, tb, ta.elem_type, depth - 1)?
                }
                _ => false,
            }
        }
        BtfKind::Fwd => names_compat(lb, l, tb, t)? && l.kind_flag == t.kind_flag,
        BtfKind::Enum | BtfKind::Enum64 => {
            if !names_compat(lb, l, tb, t)? || l.size_or_type != t.size_or_type {
                return Ok(false);
            }
            for v in l.enum_values() {
                let n = essential_name(lb.string_at(v.name_off).map_err(e)?);
                let mut found = false;
                for tv in t.enum_values() {
                    if essential_name(tb.string_at(tv.name_off).map_err(e)?) == n {
                        found = true;
                        break;
                    }
                }
                if !found {
                    return Ok(false);
                }
            }
            true
        }
        BtfKind::Struct | BtfKind::Union => {
            if !names_compat(lb, l, tb, t)? {
                return Ok(false);
            }
            for m in l.members() {
                let n = lb.string_at(m.name_off).map_err(e)?;
                let mut found = false;
                for tm in t.members() {
                    if tb.string_at(tm.name_off).map_err(e)? == n {
                        found = types_match(lb, m.type_id, tb, tm.type_id, depth - 1)?;
                        break;
                    }
                }
                if !found {
                    return Ok(false);
                }
            }
            true
        }
        BtfKind::FuncProto => {
            if l.params().len() != t.params().len() {
                return Ok(false);
            }
            for (lp, tp) in l.params().iter().zip(t.params()) {
                if !types_match(lb, lp.type_id, tb, tp.type_id, depth - 1)? {
                    return Ok(false);
                }
            }
            types_match(lb, l.size_or_type, tb, t.size_or_type, depth - 1)?
        }
        _ => false,
    })
}

/// Find the target member matching a named local accessor (libbpf's
/// `bpf_core_match_member`). Returns the member's type id when found.
fn match_member(
    lb: &Btf,
    lacc: &Accessor,
    tb: &Btf,
    tid: TypeId,
    spec: &mut Spec,
) -> R<Option<TypeId>> {
    let (tid, t) = tb.skip_mods_and_typedefs(tid).map_err(e)?;
    if !t.is_composite() {
        return Ok(None);
    }
    let lt = lb.type_by_id(lacc.type_id).map_err(e)?;
    let lm = lt
        .members()
        .get(lacc.idx as usize)
        .ok_or("local member index out of range")?;
    let lname = lacc.name.as_deref().unwrap_or("");
    for (i, m) in t.members().iter().enumerate() {
        if spec.raw.len() == SPEC_MAX_LEN {
            return Err("struct/union nesting too deep".into());
        }
        spec.bit_offset = spec.bit_offset.wrapping_add(u64::from(m.bit_offset));
        spec.raw.push(i as u32);
        let tname = tb.string_at(m.name_off).map_err(e)?;
        if tname.is_empty() {
            if let Some(found) = match_member(lb, lacc, tb, m.type_id, spec)? {
                return Ok(Some(found));
            }
        } else if tname == lname {
            if fields_compat(lb, lm.type_id, tb, m.type_id)? {
                spec.acc.push(Accessor {
                    type_id: tid,
                    idx: i as u32,
                    name: Some(tname.to_owned()),
                });
                return Ok(Some(m.type_id));
            }
            return Ok(None);
        }
        spec.bit_offset = spec.bit_offset.wrapping_sub(u64::from(m.bit_offset));
        spec.raw.pop();
    }
    Ok(None)
}

/// Match a local spec against one candidate (libbpf's `bpf_core_spec_match`).
fn spec_match(
    local: &Spec,
    lb: &Btf,
    kind: CoreReloKind,
    tb: &Btf,
    cand: TypeId,
) -> R<Option<Spec>> {
    let mut ts = Spec {
        root_type_id: cand,
        raw: vec![],
        acc: vec![],
        bit_offset: 0,
    };
    if kind.is_type() {
        let ok = if kind == CoreReloKind::TypeMatches {
            types_match(lb, local.root_type_id, tb, cand, MAX_RESOLVE_DEPTH)?
        } else {
            types_compat(lb, local.root_type_id, tb, cand, MAX_RESOLVE_DEPTH)?
        };
        return Ok(ok.then_some(ts));
    }
    let lacc0 = local.acc.first().ok_or("empty local spec")?;
    if kind.is_enumval() {
        let (tid, t) = tb.skip_mods_and_typedefs(cand).map_err(e)?;
        if !t.is_any_enum() {
            return Ok(None);
        }
        let lname = essential_name(lacc0.name.as_deref().unwrap_or(""));
        for (i, v) in t.enum_values().iter().enumerate() {
            let tname = tb.string_at(v.name_off).map_err(e)?;
            if essential_name(tname) == lname {
                ts.acc.push(Accessor {
                    type_id: tid,
                    idx: i as u32,
                    name: Some(tname.to_owned()),
                });
                ts.raw.push(i as u32);
                return Ok(Some(ts));
            }
        }
        return Ok(None);
    }
    let mut tid = cand;
    for (i, lacc) in local.acc.iter().enumerate() {
        let (sid, t) = tb.skip_mods_and_typedefs(tid).map_err(e)?;
        tid = sid;
        if lacc.name.is_some() {
            match match_member(lb, lacc, tb, tid, &mut ts)? {
                Some(next) => tid = next,
                None => return Ok(None),
            }
        } else {
            if i > 0 {
                let Some(a) = t.array().filter(|_| t.kind == BtfKind::Array) else {
                    return Ok(None);
                };
                let flex = is_flex_arr(tb, ts.acc.last(), a.nelems);
                if !flex && lacc.idx >= a.nelems {
                    return Ok(None);
                }
                tid = tb.skip_mods_and_typedefs(a.elem_type).map_err(e)?.0;
            }
            if ts.raw.len() == SPEC_MAX_LEN {
                return Err("access too deep".into());
            }
            ts.acc.push(Accessor {
                type_id: tid,
                idx: lacc.idx,
                name: None,
            });
            ts.raw.push(lacc.idx);
            let sz = tb.resolve_size(tid).map_err(e)?;
            ts.bit_offset = ts
                .bit_offset
                .checked_add(mul3(u64::from(lacc.idx), u64::from(sz), 8)?)
                .ok_or("bit offset overflows")?;
        }
    }
    Ok(Some(ts))
}

/// Relocation value computed from one spec.
#[derive(Default, Clone, Copy)]
struct Val {
    val: u64,
    field_sz: u32,
    type_id: TypeId,
    validate: bool,
}

enum Calc {
    Poison,
    Val(Val),
}

fn calc_field(kind: CoreReloKind, spec: Option<&Spec>, btf: &Btf) -> R<Calc> {
    if kind == CoreReloKind::FieldExists {
        return Ok(Calc::Val(Val {
            val: u64::from(spec.is_some()),
            validate: true,
            ..Val::default()
        }));
    }
    let Some(spec) = spec else {
        return Ok(Calc::Poison);
    };
    let acc = spec.acc.last().ok_or("empty spec")?;
    if acc.name.is_none() {
        let sz = btf.resolve_size(acc.type_id).map_err(e)?;
        let v = match kind {
            CoreReloKind::FieldByteOffset => Val {
                val: spec.bit_offset / 8,
                field_sz: sz,
                type_id: acc.type_id,
                validate: true,
            },
            CoreReloKind::FieldByteSize => Val {
                val: u64::from(sz),
                validate: true,
                ..Val::default()
            },
            k => {
                return Err(format!(
                    "{} can't be applied to an array element access",
                    k.name()
                ))
            }
        };
        return Ok(Calc::Val(v));
    }
    let t = btf.type_by_id(acc.type_id).map_err(e)?;
    let m = t
        .members()
        .get(acc.idx as usize)
        .ok_or("member index out of range")?;
    let (field_type_id, mt) = btf.skip_mods_and_typedefs(m.type_id).map_err(e)?;
    let bit_off = spec.bit_offset;
    if bit_off > u64::from(u32::MAX) * 8 {
        return Err(format!("field bit offset {bit_off} too large"));
    }
    let mut bit_sz = u64::from(m.bitfield_size);
    let bitfield = bit_sz > 0;
    let (byte_off, byte_sz);
    if bitfield {
        let mut sz = u64::from(mt.size_or_type);
        if !mt.has_size() || sz == 0 {
            return Err(format!("bitfield of {} type", mt.kind));
        }
        let mut off = bit_off / 8 / sz * sz;
        while bit_off + bit_sz - off * 8 > sz * 8 {
            if sz >= 8 {
                return Err("bitfield can't be read with a 64-bit load".into());
            }
            sz *= 2;
            off = bit_off / 8 / sz * sz;
        }
        byte_off = off;
        byte_sz = sz;
    } else {
        byte_sz = u64::from(btf.resolve_size(field_type_id).map_err(e)?);
        byte_off = bit_off / 8;
        bit_sz = byte_sz * 8;
    }
    let mut v = Val {
        validate: !bitfield,
        ..Val::default()
    };
    match kind {
        CoreReloKind::FieldByteOffset => {
            v.val = byte_off;
            if !bitfield {
                v.field_sz = byte_sz as u32;
                v.type_id = field_type_id;
            }
        }
        CoreReloKind::FieldByteSize => v.val = byte_sz,
        CoreReloKind::FieldSigned => {
            v.val = u64::from(
                (mt.is_any_enum() && mt.kind_flag)
                    || mt.int().is_some_and(|i| i.encoding & BTF_INT_SIGNED != 0),
            );
            v.validate = true;
        }
        CoreReloKind::FieldLShiftU64 => {
            v.val = 64u64.wrapping_sub(bit_off + bit_sz - byte_off * 8);
        }
        CoreReloKind::FieldRShiftU64 => {
            v.val = 64u64.wrapping_sub(bit_sz);
            v.validate = true;
        }
        k => return Err(format!("{} is not a field relocation", k.name())),
    }
    Ok(Calc::Val(v))
}

fn calc_type(kind: CoreReloKind, spec: Option<&Spec>, btf: &Btf) -> R<Calc> {
    let Some(spec) = spec else {
        return Ok(Calc::Val(Val {
            val: 0,
            validate: true,
            ..Val::default()
        }));
    };
    let v = match kind {
        CoreReloKind::TypeIdTarget => Val {
            val: u64::from(spec.root_type_id),
            validate: false,
            ..Val::default()
        },
        CoreReloKind::TypeExists | CoreReloKind::TypeMatches => Val {
            val: 1,
            validate: true,
            ..Val::default()
        },
        CoreReloKind::TypeSize => Val {
            val: u64::from(btf.resolve_size(spec.root_type_id).map_err(e)?),
            validate: true,
            ..Val::default()
        },
        k => return Err(format!("{} is not a type relocation", k.name())),
    };
    Ok(Calc::Val(v))
}

fn calc_enumval(kind: CoreReloKind, spec: Option<&Spec>, btf: &Btf) -> R<Calc> {
    match kind {
        CoreReloKind::EnumvalExists => Ok(Calc::Val(Val {
            val: u64::from(spec.is_some()),
            validate: true,
            ..Val::default()
        })),
        CoreReloKind::EnumvalValue => {
            let Some(spec) = spec else {
                return Ok(Calc::Poison);
            };
            let acc = spec.acc.first().ok_or("empty spec")?;
            let t = btf.type_by_id(acc.type_id).map_err(e)?;
            let v = t
                .enum_values()
                .get(acc.idx as usize)
                .ok_or("enumerator index out of range")?;
            Ok(Calc::Val(Val {
                val: v.value,
                validate: true,
                ..Val::default()
            }))
        }
        k => Err(format!("{} is not an enum relocation", k.name())),
    }
}

#[derive(Clone, Copy, Default)]
struct Res {
    orig: u64,
    new: u64,
    poison: bool,
    validate: bool,
    orig_sz: u32,
    new_sz: u32,
    fail_memsz_adjust: bool,
}

fn calc(kind: CoreReloKind, local: &Spec, lb: &Btf, targ: Option<&Spec>, tb: &Btf) -> R<Res> {
    let f = |s: Option<&Spec>, b: &Btf| -> R<Calc> {
        if kind.is_field() {
            calc_field(kind, s, b)
        } else if kind.is_type() {
            calc_type(kind, s, b)
        } else {
            calc_enumval(kind, s, b)
        }
    };
    let Calc::Val(o) = f(Some(local), lb)? else {
        return Err("local spec can't be evaluated".into());
    };
    let mut res = Res {
        orig: o.val,
        validate: o.validate,
        orig_sz: o.field_sz,
        ..Res::default()
    };
    match f(targ, tb)? {
        Calc::Poison => res.poison = true,
        Calc::Val(n) => {
            res.new = n.val;
            res.new_sz = n.field_sz;
            if kind.is_field() && res.orig_sz != res.new_sz {
                let ot = lb.type_by_id(o.type_id).map_err(e)?;
                let nt = tb.type_by_id(n.type_id).map_err(e)?;
                let unsigned_int = |t: &BtfType| {
                    t.kind == BtfKind::Int && t.int().is_some_and(|i| i.encoding != BTF_INT_SIGNED)
                };
                let ok = (ot.kind == BtfKind::Ptr && nt.kind == BtfKind::Ptr)
                    || (unsigned_int(ot) && unsigned_int(nt));
                res.fail_memsz_adjust = !ok;
            }
        }
    }
    Ok(res)
}

fn poison(insns: &mut [Insn], idx: usize) {
    let ld = insns.get(idx).is_some_and(Insn::is_ld_imm64);
    let n = if ld { 2 } else { 1 };
    for i in idx..idx + n {
        if let Some(x) = insns.get_mut(i) {
            *x = Insn::new(insn::CALL, 0, 0, 0, insn::POISON_HELPER);
        }
    }
}

fn patch(insns: &mut [Insn], idx: usize, res: &Res) -> R<bool> {
    let ins = *insns.get(idx).ok_or("instruction index out of range")?;
    if res.poison {
        poison(insns, idx);
        return Ok(true);
    }
    match ins.class() {
        insn::BPF_ALU | insn::BPF_ALU64 => {
            if ins.code() & insn::BPF_X != 0 {
                return Err("ALU instruction with a register operand".into());
            }
            if res.validate && u64::from(ins.imm() as u32) != res.orig {
                return Err(format!(
                    "unexpected ALU immediate {} (expected {})",
                    ins.imm(),
                    res.orig
                ));
            }
            let v = u32::try_from(res.new)
                .map_err(|_| format!("value {} doesn't fit an immediate", res.new))?;
            if let Some(x) = insns.get_mut(idx) {
                x.set_imm(v as i32);
            }
        }
        insn::BPF_LDX | insn::BPF_ST | insn::BPF_STX => {
            if res.validate && i64::from(ins.off()) != res.orig as i64 {
                return Err(format!(
                    "unexpected memory offset {} (expected {})",
                    ins.off(),
                    res.orig
                ));
            }
            let off = i16::try_from(res.new)
                .map_err(|_| format!("offset {} too big for an instruction", res.new))?;
            if res.fail_memsz_adjust {
                poison(insns, idx);
                return Ok(true);
            }
            let mut x = ins;
            x.set_off(off);
            if res.new_sz != res.orig_sz {
                let cur = insn::mem_size_bytes(ins.code());
                if cur != Some(res.orig_sz) {
                    return Err(format!(
                        "unexpected memory access size {cur:?} (expected {})",
                        res.orig_sz
                    ));
                }
                let sz = insn::mem_size_code(res.new_sz)
                    .ok_or_else(|| format!("invalid new access size {}", res.new_sz))?;
                x.set_code((ins.code() & 0xe0) | sz | ins.class());
            }
            if let Some(dst) = insns.get_mut(idx) {
                *dst = x;
            }
        }
        insn::BPF_LD => {
            let next = insns.get(idx + 1).copied();
            let ok = ins.is_ld_imm64()
                && ins.src() == 0
                && ins.off() == 0
                && next
                    .is_some_and(|n| n.code() == 0 && n.dst() == 0 && n.src() == 0 && n.off() == 0);
            let Some(next) = next.filter(|_| ok) else {
                return Err("lddw has unexpected form".into());
            };
            let imm = u64::from(ins.imm() as u32) | (u64::from(next.imm() as u32) << 32);
            if res.validate && imm != res.orig {
                return Err(format!(
                    "unexpected lddw value {imm} (expected {})",
                    res.orig
                ));
            }
            if let Some(x) = insns.get_mut(idx) {
                x.set_imm(res.new as u32 as i32);
            }
            if let Some(x) = insns.get_mut(idx + 1) {
                x.set_imm((res.new >> 32) as u32 as i32);
            }
        }
        _ => {
            return Err(format!(
                "can't relocate instruction with opcode {:#04x}",
                ins.code()
            ))
        }
    }
    Ok(false)
}

/// Apply every CO-RE relocation of `program` against `target`, with `local`
/// being the object's own BTF. On success the instructions are patched and
/// `program.core_relos` is emptied; on error the program is left unchanged.
/// Returns what each relocation resolved to.
pub fn apply_core_relocations(
    program: &mut ProgramSpec,
    local: &Btf,
    target: &Btf,
) -> Result<Vec<CoreReloResult>, ObjError> {
    let mut insns = program.insns.clone();
    let mut out = Vec::with_capacity(program.core_relos.len());
    let mut cands_cache: HashMap<TypeId, Vec<TypeId>> = HashMap::new();
    for (i, r) in program.core_relos.iter().enumerate() {
        let kind = CoreReloKind::from_u32(r.kind);
        let err = |reason: String| ObjError::CoreRelocation {
            program: program.name.clone(),
            index: i,
            insn: r.insn_index as usize,
            kind: kind.map_or_else(|| format!("kind {}", r.kind), |k| k.name().to_owned()),
            reason,
        };
        let kind = kind.ok_or_else(|| err("unknown relocation kind".into()))?;
        let res = resolve_one(r, kind, local, target, &mut cands_cache).map_err(&err)?;
        let (res, target_type_id) = res;
        let poisoned = patch(&mut insns, r.insn_index as usize, &res).map_err(&err)?;
        out.push(CoreReloResult {
            insn_index: r.insn_index as usize,
            kind,
            access: r.access.clone(),
            local_value: res.orig,
            target_value: res.new,
            target_type_id,
            poisoned,
        });
    }
    program.insns = insns;
    program.core_relos.clear();
    Ok(out)
}

fn resolve_one(
    r: &CoreRelo,
    kind: CoreReloKind,
    local: &Btf,
    target: &Btf,
    cache: &mut HashMap<TypeId, Vec<TypeId>>,
) -> R<(Res, Option<TypeId>)> {
    let lt = local.type_by_id(r.type_id).map_err(e)?;
    let access = local.string_at(r.access_str_off).map_err(e)?;
    let lspec = parse_spec(local, r.type_id, access, kind)?;
    if kind == CoreReloKind::TypeIdLocal {
        let v = u64::from(r.type_id);
        return Ok((
            Res {
                orig: v,
                new: v,
                validate: false,
                ..Res::default()
            },
            Some(r.type_id),
        ));
    }
    let lname = local.string_at(lt.name_off).map_err(e)?;
    if lname.is_empty() {
        return Err("relocations against anonymous types are not supported".into());
    }
    let cands = match cache.get(&r.type_id) {
        Some(c) => c.clone(),
        None => {
            let ess = essential_name(lname);
            let c: Vec<TypeId> = target
                .ids_by_essential_name(ess)
                .iter()
                .copied()
                .filter(|&id| target.type_by_id(id).is_ok_and(|t| kinds_compat(lt, t)))
                .collect();
            cache.insert(r.type_id, c.clone());
            c
        }
    };
    let mut best: Option<(Res, Spec)> = None;
    for cand in cands {
        let Some(cspec) = spec_match(&lspec, local, kind, target, cand)? else {
            continue;
        };
        let res = calc(kind, &lspec, local, Some(&cspec), target)?;
        match &best {
            None => best = Some((res, cspec)),
            Some((b, bs)) => {
                if kind.is_field() && cspec.bit_offset != bs.bit_offset {
                    return Err(format!(
                        "field offset ambiguity: candidates [{}] and [{}] give bit offsets {} and {}",
                        bs.root_type_id, cspec.root_type_id, bs.bit_offset, cspec.bit_offset
                    ));
                }
                if res.poison != b.poison || res.new != b.new {
                    return Err(format!(
                        "relocation decision ambiguity: candidates [{}] and [{}] give {} and {}",
                        bs.root_type_id, cspec.root_type_id, b.new, res.new
                    ));
                }
            }
        }
    }
    match best {
        Some((res, spec)) => Ok((res, Some(spec.root_type_id))),
        None => Ok((calc(kind, &lspec, local, None, target)?, None)),
    }
}
