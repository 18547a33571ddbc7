//! `.BTF.ext`: per-section func_info, line_info and CO-RE relocation records.
//!
//! Layout (libbpf `libbpf_internal.h`, `struct btf_ext_header`): `magic 0xeb9f`,
//! `version 1`, `flags`, `hdr_len`, then `func_info_off/len`, `line_info_off/len`
//! and, when `hdr_len >= 32`, `core_relo_off/len`, all relative to the end of
//! the header. Each info block starts with a `u32` record size followed by
//! sections `{ sec_name_off: u32, num_info: u32, records[num_info] }`; section
//! names are offsets into the `.BTF` string table. In the ELF file, every
//! record's `insn_off` is a *byte* offset from the start of its ELF section.

use super::{rd_u32, str_at, Btf, TypeId};
use crate::error::BtfError;

/// A `bpf_func_info` record (as in the ELF file: `insn_off` in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuncInfoRecord {
    /// Byte offset of the function's first instruction in its section.
    pub insn_off: u32,
    /// BTF `FUNC` type id.
    pub type_id: TypeId,
}

/// A `bpf_line_info` record (as in the ELF file: `insn_off` in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineInfoRecord {
    /// Byte offset of the first instruction this line applies to.
    pub insn_off: u32,
    /// `.BTF` string offset of the source file name.
    pub file_name_off: u32,
    /// `.BTF` string offset of the source line text.
    pub line_off: u32,
    /// Line number (`line_col >> 10`).
    pub line: u32,
    /// Column (`line_col & 0x3ff`).
    pub column: u32,
}

/// A `bpf_core_relo` record (as in the ELF file: `insn_off` in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreReloRecord {
    /// Byte offset of the instruction to patch.
    pub insn_off: u32,
    /// Local (object BTF) root type id.
    pub type_id: TypeId,
    /// `.BTF` string offset of the access string ("0:1:2").
    pub access_str_off: u32,
    /// `enum bpf_core_relo_kind`.
    pub kind: u32,
}

/// Records of one ELF section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtSection<T> {
    /// ELF section name (resolved from the `.BTF` string table).
    pub section: String,
    /// Records, in file order.
    pub records: Vec<T>,
}

/// A parsed `.BTF.ext` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BtfExt {
    /// Size of one func_info record in the file (8 today).
    pub func_info_rec_size: u32,
    /// Size of one line_info record in the file (16 today).
    pub line_info_rec_size: u32,
    /// Size of one CO-RE relocation record in the file (16 today; 0 if absent).
    pub core_relo_rec_size: u32,
    /// func_info per section.
    pub func_info: Vec<ExtSection<FuncInfoRecord>>,
    /// line_info per section.
    pub line_info: Vec<ExtSection<LineInfoRecord>>,
    /// CO-RE relocations per section.
    pub core_relos: Vec<ExtSection<CoreReloRecord>>,
}

impl BtfExt {
    /// Parse `.BTF.ext`; `btf` is the object's `.BTF` (for section names).
    pub fn parse(data: &[u8], btf: &Btf) -> Result<BtfExt, BtfError> {
        let len = data.len();
        let trunc = |what, offset, need| BtfError::Truncated {
            what,
            offset,
            need,
            len,
        };
        let magic = super::rd_u16(data, 0).ok_or(trunc("header", 0, 32))?;
        if magic != super::BTF_MAGIC {
            return Err(BtfError::BadMagic(magic));
        }
        let version = *data.get(2).ok_or(trunc("header", 0, 32))?;
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
        let body = &data[hdr_len..];
        let word = |o: usize| rd_u32(data, o).ok_or(trunc("header", 0, hdr_len));
        let mut ext = BtfExt::default();

        let (fi_off, fi_len) = (word(8)?, word(12)?);
        let (li_off, li_len) = (word(16)?, word(20)?);
        let fi = parse_block(
            body,
            hdr_len,
            fi_off,
            fi_len,
            8,
            "func_info",
            btf,
            |b, o| {
                Some(FuncInfoRecord {
                    insn_off: rd_u32(b, o)?,
                    type_id: rd_u32(b, o + 4)?,
                })
            },
        )?;
        ext.func_info_rec_size = fi.0;
        ext.func_info = fi.1;
        let li = parse_block(
            body,
            hdr_len,
            li_off,
            li_len,
            16,
            "line_info",
            btf,
            |b, o| {
                let line_col = rd_u32(b, o + 12)?;
                Some(LineInfoRecord {
                    insn_off: rd_u32(b, o)?,
                    file_name_off: rd_u32(b, o + 4)?,
                    line_off: rd_u32(b, o + 8)?,
                    line: line_col >> 10,
                    column: line_col & 0x3ff,
                })
            },
        )?;
        ext.line_info_rec_size = li.0;
        ext.line_info = li.1;
        if hdr_len >= 32 {
            let (cr_off, cr_len) = (word(24)?, word(28)?);
            let cr = parse_block(
                body,
                hdr_len,
                cr_off,
                cr_len,
                16,
                "core_relo",
                btf,
                |b, o| {
                    Some(CoreReloRecord {
                        insn_off: rd_u32(b, o)?,
                        type_id: rd_u32(b, o + 4)?,
                        access_str_off: rd_u32(b, o + 8)?,
                        kind: rd_u32(b, o + 12)?,
                    })
                },
            )?;
            ext.core_relo_rec_size = cr.0;
            ext.core_relos = cr.1;
        }

        // Cross-check against the BTF: type ids and string offsets must exist.
        let max = btf.len() as u32 - 1;
        let strlen = btf.strings().len();
        let bad_str = |what: &str, sec: &str, off: u32| BtfError::BadString {
            context: format!("{what} record in section '{sec}'"),
            offset: off,
            len: strlen,
        };
        for s in &ext.func_info {
            for r in &s.records {
                if r.type_id > max || r.type_id == 0 {
                    return Err(BtfError::TypeIdOutOfRange {
                        id: 0,
                        target: r.type_id,
                        max,
                    });
                }
            }
        }
        for s in &ext.line_info {
            for r in &s.records {
                if str_at(btf.strings(), r.file_name_off).is_none() {
                    return Err(bad_str("line_info file name", &s.section, r.file_name_off));
                }
                if str_at(btf.strings(), r.line_off).is_none() {
                    return Err(bad_str("line_info line", &s.section, r.line_off));
                }
            }
        }
        for s in &ext.core_relos {
            for r in &s.records {
                if r.type_id > max {
                    return Err(BtfError::TypeIdOutOfRange {
                        id: 0,
                        target: r.type_id,
                        max,
                    });
                }
                if str_at(btf.strings(), r.access_str_off).is_none() {
                    return Err(bad_str(
                        "core_relo access string",
                        &s.section,
                        r.access_str_off,
                    ));
                }
            }
        }
        Ok(ext)
    }
}

type Block<T> = (u32, Vec<ExtSection<T>>);

#[allow(clippy::too_many_arguments)]
fn parse_block<T>(
    body: &[u8],
    hdr_len: usize,
    off: u32,
    len: u32,
    min_rec: u32,
    what: &'static str,
    btf: &Btf,
    rec: impl Fn(&[u8], usize) -> Option<T>,
) -> Result<Block<T>, BtfError> {
    if len == 0 {
        return Ok((min_rec, vec![]));
    }
    let err = |m: String| BtfError::Ext(format!("{what}: {m}"));
    if off % 4 != 0 {
        return Err(err(format!("offset {off} not 4-byte aligned")));
    }
    let start = off as usize;
    let end = start
        .checked_add(len as usize)
        .ok_or_else(|| err("length overflows".into()))?;
    let blk = body.get(start..end).ok_or(BtfError::Truncated {
        what,
        offset: hdr_len + start,
        need: len as usize,
        len: hdr_len + body.len(),
    })?;
    let rec_size = rd_u32(blk, 0).ok_or_else(|| err("missing record size".into()))?;
    if rec_size < min_rec || rec_size % 4 != 0 {
        return Err(err(format!(
            "record size {rec_size} invalid (minimum {min_rec}, multiple of 4)"
        )));
    }
    let mut p = 4usize;
    let mut secs = vec![];
    while p < blk.len() {
        let name_off =
            rd_u32(blk, p).ok_or_else(|| err(format!("truncated section header at byte {p}")))?;
        let num = rd_u32(blk, p + 4)
            .ok_or_else(|| err(format!("truncated section header at byte {p}")))?;
        p += 8;
        let section = str_at(btf.strings(), name_off)
            .ok_or_else(|| err(format!("section name offset {name_off} invalid")))?
            .to_owned();
        if num == 0 {
            return Err(err(format!("section '{section}' has no records")));
        }
        let bytes = (num as usize)
            .checked_mul(rec_size as usize)
            .ok_or_else(|| err(format!("section '{section}': record count {num} overflows")))?;
        let recs = blk
            .get(p..p.checked_add(bytes).ok_or_else(|| err("overflow".into()))?)
            .ok_or_else(|| {
                err(format!(
                    "section '{section}': {num} records of {rec_size} bytes exceed the block"
                ))
            })?;
        let mut records = Vec::with_capacity(num as usize);
        for i in 0..num as usize {
            records
                .push(rec(recs, i * rec_size as usize).ok_or_else(|| err("short record".into()))?);
        }
        p += bytes;
        secs.push(ExtSection { section, records });
    }
    Ok((rec_size, secs))
}
