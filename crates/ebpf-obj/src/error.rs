//! Error types. Every failure names where it happened (section, relocation,
//! instruction index, type id or byte offset) and why.

use thiserror::Error;

/// Errors from parsing a `.BTF` or `.BTF.ext` blob, or from looking up types in one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BtfError {
    /// The data ended before a structure that had to be there.
    #[error("truncated {what}: need {need} bytes at offset {offset}, only {len} available")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Byte offset (from the start of the blob) where it starts.
        offset: usize,
        /// Bytes needed.
        need: usize,
        /// Bytes available in the blob.
        len: usize,
    },
    /// The magic number is not 0xeb9f.
    #[error("bad magic {0:#06x} (expected 0xeb9f; big-endian BTF is not supported)")]
    BadMagic(u16),
    /// The version byte is not 1.
    #[error("unsupported version {0} (expected 1)")]
    BadVersion(u8),
    /// A header field is inconsistent (lengths, offsets, alignment).
    #[error("invalid header: {0}")]
    BadHeader(String),
    /// A type has a kind number this parser does not know.
    #[error("type [{id}] at byte {offset}: unknown kind {kind}")]
    UnknownKind {
        /// Type id.
        id: u32,
        /// Byte offset of the type record in the type section.
        offset: usize,
        /// The kind number found.
        kind: u32,
    },
    /// A type refers to a type id that does not exist.
    #[error("type [{id}]: refers to type id {target}, out of range (last valid id {max})")]
    TypeIdOutOfRange {
        /// The referring type (0 for references from outside the type table).
        id: u32,
        /// The bad reference.
        target: u32,
        /// The highest valid type id.
        max: u32,
    },
    /// A string offset is outside the string section or not valid UTF-8.
    #[error("{context}: string offset {offset} invalid (string section is {len} bytes)")]
    BadString {
        /// Who referred to the string.
        context: String,
        /// The offset.
        offset: u32,
        /// Size of the string section.
        len: usize,
    },
    /// A type record is structurally wrong for its kind.
    #[error("type [{id}]: {reason}")]
    InvalidType {
        /// Type id.
        id: u32,
        /// Why.
        reason: String,
    },
    /// Lookup of a type id that does not exist.
    #[error("type id {0} not found")]
    NotFound(u32),
    /// A `.BTF.ext` structure is malformed.
    #[error("{0}")]
    Ext(String),
}

/// Errors from parsing an object or applying relocations to one of its programs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ObjError {
    /// The ELF container itself is malformed (reported by the ELF reader).
    #[error("malformed ELF: {0}")]
    Elf(String),
    /// `e_machine` is neither EM_BPF (247) nor EM_NONE (0, old LLVM).
    #[error("ELF machine is {0}, not EM_BPF (247)")]
    WrongMachine(u16),
    /// `e_type` is not ET_REL.
    #[error(
        "ELF type is {0}, not ET_REL (1): only relocatable objects (clang -c) are BPF objects"
    )]
    NotRelocatable(u16),
    /// 32-bit or big-endian ELF.
    #[error("unsupported ELF flavour: {0}")]
    UnsupportedElf(&'static str),
    /// A section is malformed or of an unsupported kind.
    #[error("section '{section}': {reason}")]
    Section {
        /// ELF section name.
        section: String,
        /// Why.
        reason: String,
    },
    /// An ELF relocation cannot be applied.
    #[error("section '{section}', relocation #{index} at offset {offset:#x}: {reason}")]
    Relocation {
        /// Name of the section the relocation applies to.
        section: String,
        /// Index of the entry in the relocation section.
        index: usize,
        /// `r_offset`.
        offset: u64,
        /// Why.
        reason: String,
    },
    /// A map definition is malformed.
    #[error("map '{map}': {reason}")]
    Map {
        /// Map name.
        map: String,
        /// Why.
        reason: String,
    },
    /// A program (or an instruction of it) is malformed, or a call cannot be linked.
    #[error("program '{program}', instruction {insn}: {reason}")]
    Program {
        /// Program name.
        program: String,
        /// Instruction index (in the program's final, linked instruction array,
        /// or in its ELF section when linking failed).
        insn: usize,
        /// Why.
        reason: String,
    },
    /// The `.BTF` section is malformed.
    #[error("section '.BTF': {0}")]
    Btf(#[from] BtfError),
    /// The `.BTF.ext` section is malformed.
    #[error("section '.BTF.ext': {0}")]
    BtfExt(BtfError),
    /// A CO-RE relocation cannot be resolved or applied.
    #[error(
        "program '{program}': CO-RE relocation #{index} ({kind}) at instruction {insn}: {reason}"
    )]
    CoreRelocation {
        /// Program name.
        program: String,
        /// Index of the relocation within the program.
        index: usize,
        /// Instruction index within the program.
        insn: usize,
        /// Relocation kind, as libbpf names it.
        kind: String,
        /// Why.
        reason: String,
    },
}

impl From<object::read::Error> for ObjError {
    fn from(e: object::read::Error) -> Self {
        ObjError::Elf(e.to_string())
    }
}
