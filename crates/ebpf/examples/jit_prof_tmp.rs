use bpfvfs_ebpf::asm::assemble;
use bpfvfs_ebpf::jit::Jit;
use bpfvfs_ebpf::{Env, Helpers, Insn, MapAccess, MemRef, Program};
use bpfvfs_ebpf::helpers::{HelperCtx, HelperError};
fn raw(_: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> { let k = unsafe { (a[1] as *const u32).read_unaligned() }; Ok(unsafe { (&raw mut VALUES).cast::<u64>().add((k & 255) as usize) } as u64) }
use std::ptr::NonNull;
static mut VALUES: [u64; 256] = [0; 256];
struct BenchMap;
unsafe impl MapAccess for BenchMap {
    fn key_size(&self, map: u64) -> Option<usize> { (map == 1).then_some(4) }
    fn value_size(&self, map: u64) -> Option<usize> { (map == 1).then_some(8) }
    fn lookup(&self, _map: u64, key: &[u8]) -> Option<MemRef> {
        let k = u32::from_ne_bytes(key.try_into().ok()?);
        if k >= 256 { return None; }
        Some(MemRef { ptr: NonNull::new(unsafe { (&raw mut VALUES).cast::<u64>().add(k as usize).cast() }).unwrap(), len: 8, writable: true })
    }
    fn update(&self, _: u64, _: &[u8], _: &[u8], _: u64) -> i64 { -22 }
    fn delete(&self, _: u64, _: &[u8]) -> i64 { -22 }
}
fn main() {
    let n = 100000;
    let src = format!("mov %r6, {n}\nmov %r7, 0\nloop:\nmov %r1, %r6\nand %r1, 255\nstxw [%r10-4], %r1\nlddw %r1, 1\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, skip\nldxdw %r1, [%r0]\nadd %r1, 1\nstxdw [%r0], %r1\nadd %r7, %r1\nskip:\nsub %r6, 1\njne %r6, 0, loop\nmov %r0, %r7\nexit");
    let p = Program::from_bytes(&Insn::slots_to_bytes(&assemble(&src).unwrap())).unwrap();
    let mut h = Helpers::standard();
    if std::env::args().nth(2).is_some() { h.register(1, "raw", raw); }
    let maps = BenchMap;
    let mut env = Env::new().with_maps(&maps);
    let mut vm = Jit::new(&p, &h).unwrap();
    let checked = std::env::args().nth(1).as_deref() != Some("u");
    let t = std::time::Instant::now();
    for _ in 0..300 {
        if checked { vm.run([0;5], &[], &mut env).unwrap(); } else { unsafe { vm.run_unchecked([0;5], &[], &mut env).unwrap(); } }
    }
    println!("{:.2} ns/iter", t.elapsed().as_nanos() as f64 / (300.0 * n as f64));
}
