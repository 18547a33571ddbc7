use bpfvfs_ebpf::asm::assemble;
use bpfvfs_ebpf::jit::{JitProgram, Mode};
use bpfvfs_ebpf::{Insn, Program};
fn main() {
    let src = std::fs::read_to_string(std::env::args().nth(1).unwrap()).unwrap();
    let mode = if std::env::args().nth(2).as_deref() == Some("checked") { Mode::Checked } else { Mode::Unchecked };
    let p = Program::from_bytes(&Insn::slots_to_bytes(&assemble(&src).unwrap())).unwrap();
    let j = JitProgram::compile(&p, &bpfvfs_ebpf::Helpers::standard(), mode).unwrap();
    std::fs::write("/tmp/jit.bin", j.code()).unwrap();
}
