//! The `equiv` target: interpreter vs JIT on arbitrary programs.
//!
//! # Input
//! ```text
//! byte 0          memory length n (0-255; less if the input is shorter)
//! bytes 1..1+n    the memory (r1 = its address, r2 = n, writable)
//! the rest        program slots; a trailing partial slot is ignored
//! ```
//! Programs that do not load are skipped by `check_bytes`; the oracle is that both engines
//! load the same programs and leave the same r0 (or error), memory, stack and trace output,
//! in the checked mode and, when the checked run succeeded, in the unchecked mode.

/// Back-edge budget per run: enough for real loops, small enough for ~1000 runs/s.
pub const BUDGET: u64 = 4096;

/// Splits an input into (memory, program bytes).
pub fn split(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&n, rest) = data.split_first()?;
    let n = (n as usize).min(rest.len());
    let (mem, prog) = rest.split_at(n);
    Some((mem, &prog[..prog.len() / 8 * 8]))
}

/// An input for `mem` and `program`.
pub fn encode(mem: &[u8], program: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![u8::try_from(mem.len()).ok()?];
    out.extend_from_slice(mem);
    out.extend_from_slice(program);
    Some(out)
}

#[cfg(target_arch = "x86_64")]
pub fn run(data: &[u8]) {
    let Some((mem, prog)) = split(data) else {
        return;
    };
    if prog.is_empty() {
        return;
    }
    if let Err(e) = bpfvfs_ebpf::jit::equiv::check_bytes(prog, mem, BUDGET) {
        let listing = bpfvfs_ebpf::Program::from_bytes(prog)
            .map(|p| p.disassemble())
            .unwrap_or_default();
        panic!("interpreter and JIT disagree: {e}\nmemory: {mem:02x?}\n{listing}");
    }
}

/// The JIT is x86-64 only.
#[cfg(not(target_arch = "x86_64"))]
pub fn run(_data: &[u8]) {}
