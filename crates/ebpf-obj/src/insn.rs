//! eBPF instruction slots and the opcode constants the loader needs.
//!
//! An instruction is 8 bytes (`struct bpf_insn`): `code:8, dst_reg:4, src_reg:4,
//! off:16, imm:32`, little-endian. `lddw` (`BPF_LD | BPF_IMM | BPF_DW`) takes two
//! slots; the second slot carries the upper 32 bits of the immediate in its `imm`.

/// Size of one instruction slot in bytes.
pub const INSN_SIZE: usize = 8;

/// Instruction class `BPF_LD`.
pub const BPF_LD: u8 = 0x00;
/// Instruction class `BPF_LDX`.
pub const BPF_LDX: u8 = 0x01;
/// Instruction class `BPF_ST`.
pub const BPF_ST: u8 = 0x02;
/// Instruction class `BPF_STX`.
pub const BPF_STX: u8 = 0x03;
/// Instruction class `BPF_ALU`.
pub const BPF_ALU: u8 = 0x04;
/// Instruction class `BPF_JMP`.
pub const BPF_JMP: u8 = 0x05;
/// Instruction class `BPF_JMP32`.
pub const BPF_JMP32: u8 = 0x06;
/// Instruction class `BPF_ALU64`.
pub const BPF_ALU64: u8 = 0x07;

/// Size modifier: 32-bit word.
pub const BPF_W: u8 = 0x00;
/// Size modifier: 16-bit half word.
pub const BPF_H: u8 = 0x08;
/// Size modifier: byte.
pub const BPF_B: u8 = 0x10;
/// Size modifier: 64-bit double word.
pub const BPF_DW: u8 = 0x18;

/// Mode: immediate.
pub const BPF_IMM: u8 = 0x00;
/// Mode: memory.
pub const BPF_MEM: u8 = 0x60;

/// Source: immediate operand.
pub const BPF_K: u8 = 0x00;
/// Source: register operand.
pub const BPF_X: u8 = 0x08;

/// Jump op: call.
pub const BPF_CALL: u8 = 0x80;
/// Jump op: exit.
pub const BPF_EXIT: u8 = 0x90;

/// Opcode of `lddw` (64-bit immediate load, two slots).
pub const LD_IMM64: u8 = BPF_LD | BPF_IMM | BPF_DW;
/// Opcode of `call`.
pub const CALL: u8 = BPF_JMP | BPF_CALL;
/// Opcode of `exit`.
pub const EXIT: u8 = BPF_JMP | BPF_EXIT;

/// `lddw` src_reg: imm is a map handle (the kernel's "map fd").
pub const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `lddw` src_reg: imm is a map handle, next imm an offset into its value.
pub const BPF_PSEUDO_MAP_VALUE: u8 = 2;
/// `lddw` src_reg: imm is a kernel BTF id (ksym).
pub const BPF_PSEUDO_BTF_ID: u8 = 3;
/// `lddw` src_reg: imm is a pc-relative instruction offset of a subprogram (callback).
pub const BPF_PSEUDO_FUNC: u8 = 4;
/// `call` src_reg: imm is a pc-relative bpf-to-bpf call offset.
pub const BPF_PSEUDO_CALL: u8 = 1;
/// `call` src_reg: imm is a kernel function BTF id.
pub const BPF_PSEUDO_KFUNC_CALL: u8 = 2;

/// The helper number libbpf writes into instructions whose CO-RE relocation
/// could not be resolved (`0xbad2310`, "bad relo"). A verifier that reaches such
/// a call reports "invalid func unknown#195896080".
pub const POISON_HELPER: i32 = 0x0bad_2310;

/// One 8-byte instruction slot, stored exactly as in the ELF file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Insn(pub [u8; 8]);

impl Insn {
    /// Build an instruction from its fields.
    pub fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        let mut b = [0u8; 8];
        b[0] = code;
        b[1] = (dst & 0x0f) | (src << 4);
        b[2..4].copy_from_slice(&off.to_le_bytes());
        b[4..8].copy_from_slice(&imm.to_le_bytes());
        Insn(b)
    }

    /// From a little-endian 64-bit word (the layout `u64::from_le_bytes` gives).
    pub fn from_u64(v: u64) -> Insn {
        Insn(v.to_le_bytes())
    }

    /// As a little-endian 64-bit word.
    pub fn to_u64(self) -> u64 {
        u64::from_le_bytes(self.0)
    }

    /// Opcode byte.
    pub fn code(&self) -> u8 {
        self.0[0]
    }
    /// Instruction class (`code & 7`).
    pub fn class(&self) -> u8 {
        self.0[0] & 0x07
    }
    /// Destination register.
    pub fn dst(&self) -> u8 {
        self.0[1] & 0x0f
    }
    /// Source register.
    pub fn src(&self) -> u8 {
        self.0[1] >> 4
    }
    /// Signed 16-bit offset.
    pub fn off(&self) -> i16 {
        i16::from_le_bytes([self.0[2], self.0[3]])
    }
    /// Signed 32-bit immediate.
    pub fn imm(&self) -> i32 {
        i32::from_le_bytes([self.0[4], self.0[5], self.0[6], self.0[7]])
    }

    /// Set the opcode byte.
    pub fn set_code(&mut self, code: u8) {
        self.0[0] = code;
    }
    /// Set the destination register.
    pub fn set_dst(&mut self, dst: u8) {
        self.0[1] = (self.0[1] & 0xf0) | (dst & 0x0f);
    }
    /// Set the source register.
    pub fn set_src(&mut self, src: u8) {
        self.0[1] = (self.0[1] & 0x0f) | (src << 4);
    }
    /// Set the offset.
    pub fn set_off(&mut self, off: i16) {
        self.0[2..4].copy_from_slice(&off.to_le_bytes());
    }
    /// Set the immediate.
    pub fn set_imm(&mut self, imm: i32) {
        self.0[4..8].copy_from_slice(&imm.to_le_bytes());
    }

    /// Is this the first slot of an `lddw`?
    pub fn is_ld_imm64(&self) -> bool {
        self.code() == LD_IMM64
    }
    /// Is this a `call` (helper, bpf-to-bpf or kfunc)?
    pub fn is_call(&self) -> bool {
        self.code() == CALL
    }
    /// Is this a bpf-to-bpf call (`call` with src_reg = BPF_PSEUDO_CALL)?
    pub fn is_pseudo_call(&self) -> bool {
        self.is_call() && self.src() == BPF_PSEUDO_CALL
    }
    /// Is this an `lddw` of a subprogram address (src_reg = BPF_PSEUDO_FUNC)?
    pub fn is_pseudo_func(&self) -> bool {
        self.is_ld_imm64() && self.src() == BPF_PSEUDO_FUNC
    }
}

impl std::fmt::Debug for Insn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Insn {{ code: {:#04x}, dst: r{}, src: r{}, off: {}, imm: {} }}",
            self.code(),
            self.dst(),
            self.src(),
            self.off(),
            self.imm()
        )
    }
}

impl From<[u8; 8]> for Insn {
    fn from(b: [u8; 8]) -> Insn {
        Insn(b)
    }
}

impl From<Insn> for [u8; 8] {
    fn from(i: Insn) -> [u8; 8] {
        i.0
    }
}

/// Split a byte slice into instruction slots. `None` when the length is not a
/// multiple of 8.
pub fn insns_from_bytes(bytes: &[u8]) -> Option<Vec<Insn>> {
    if bytes.len() % INSN_SIZE != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(INSN_SIZE)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                Insn(b)
            })
            .collect(),
    )
}

/// Concatenate instruction slots back into bytes.
pub fn insns_to_bytes(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(|i| i.0).collect()
}

/// Memory access size in bytes of an LDX/ST/STX instruction (`None` for other sizes).
pub(crate) fn mem_size_bytes(code: u8) -> Option<u32> {
    match code & 0x18 {
        BPF_DW => Some(8),
        BPF_W => Some(4),
        BPF_H => Some(2),
        BPF_B => Some(1),
        _ => None,
    }
}

/// The size-modifier bits for an access of `bytes` bytes.
pub(crate) fn mem_size_code(bytes: u32) -> Option<u8> {
    match bytes {
        8 => Some(BPF_DW),
        4 => Some(BPF_W),
        2 => Some(BPF_H),
        1 => Some(BPF_B),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_roundtrip() {
        let mut i = Insn::new(CALL, 0, BPF_PSEUDO_CALL, -3, -1);
        assert_eq!(i.code(), 0x85);
        assert_eq!(i.src(), 1);
        assert_eq!(i.dst(), 0);
        assert_eq!(i.off(), -3);
        assert_eq!(i.imm(), -1);
        assert!(i.is_pseudo_call());
        i.set_dst(10);
        i.set_src(2);
        i.set_imm(0x1234_5678);
        assert_eq!((i.dst(), i.src(), i.imm()), (10, 2, 0x1234_5678));
        assert_eq!(Insn::from_u64(i.to_u64()), i);
        assert_eq!(
            insns_from_bytes(&insns_to_bytes(&[i, i])).unwrap(),
            vec![i, i]
        );
        assert!(insns_from_bytes(&[0; 7]).is_none());
    }
}
