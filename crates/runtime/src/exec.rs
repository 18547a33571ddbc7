//! A loaded program's executable form, and running it.
//!
//! # References and grace periods
//!
//! A [`LoadedProg`] holds a strong reference to every map the program uses (the kernel's
//! `used_maps`), so maps outlive every run of the program. Map helpers get memory through
//! [`RunMaps`], which pins a crossbeam-epoch guard for the whole run: a value a program got
//! from `bpf_map_lookup_elem` stays allocated until the run ends even if user space deletes
//! the element meanwhile (the RCU read-side section a kernel program runs in).
//!
//! # Checked and unchecked runs
//!
//! Programs reach this module only after the verifier accepted them, so by default they run
//! unchecked (no per-access bounds checks), as in the kernel. [`crate::RuntimeConfig::checked`]
//! runs them checked instead: every access is validated against the context, stack, map
//! values handed out and the program's direct map values (global data), which are registered
//! as regions for each run.

use crate::progtypes::ProgTypeEntry;
use bpfvfs_bpf::maps::ringbuf::RingBuf;
use bpfvfs_bpf::uapi::{BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST};
use bpfvfs_bpf::Map;
use bpfvfs_ebpf::verifier::VerifiedInfo;
use bpfvfs_ebpf::{
    Env, ExecError, Helpers, Interpreter, MapAccess, MemRef, Program, Region, RegionKind,
};
use crossbeam_epoch::Guard;
use std::ptr::NonNull;
use std::sync::Arc;

#[cfg(target_arch = "x86_64")]
use bpfvfs_ebpf::jit::{Jit, JitProgram};

/// Which engine runs programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    Interp,
    Jit,
}

/// Memory a program reaches without a helper: the value of a global-data array map.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DirectValue {
    pub addr: usize,
    pub len: usize,
    pub writable: bool,
}

/// What a [`bpfvfs_bpf::Prog`] carries as its executable (`Prog::exec::<LoadedProg>()`).
pub struct LoadedProg {
    pub(crate) program: Program,
    pub(crate) helpers: Arc<Helpers>,
    #[cfg(target_arch = "x86_64")]
    pub(crate) jit: Option<(Arc<JitProgram>, Arc<JitProgram>)>,
    /// The maps the program references; map handle `h` in the program is `maps[h - 1]`.
    pub(crate) maps: Vec<Arc<Map>>,
    pub(crate) direct: Vec<DirectValue>,
    pub type_entry: &'static ProgTypeEntry,
    /// The section kind (fentry and fexit share a program type).
    pub section_kind: bpfvfs_ebpf_obj::ProgramKind,
    pub verified: VerifiedInfo,
    pub(crate) checked: bool,
}

impl LoadedProg {
    pub fn maps(&self) -> &[Arc<Map>] {
        &self.maps
    }
    /// The program as prepared (after map references were resolved).
    pub fn program(&self) -> &Program {
        &self.program
    }
    /// Bytes of native code, when JIT-compiled.
    pub fn jited_len(&self) -> usize {
        #[cfg(target_arch = "x86_64")]
        if let Some((_, u)) = &self.jit {
            return u.code_size();
        }
        0
    }
}

impl std::fmt::Debug for LoadedProg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedProg")
            .field("type", &self.type_entry.name)
            .field("insns", &self.program.len())
            .field("maps", &self.maps.len())
            .finish()
    }
}

/// The maps of one run, as the engine's map helpers see them.
pub struct RunMaps<'p> {
    maps: &'p [Arc<Map>],
    guard: Guard,
}

impl<'p> RunMaps<'p> {
    pub fn new(lp: &'p LoadedProg) -> RunMaps<'p> {
        RunMaps {
            maps: &lp.maps,
            guard: crossbeam_epoch::pin(),
        }
    }

    fn map(&self, h: u64) -> Option<&Arc<Map>> {
        let i = (h as usize).checked_sub(1)?;
        self.maps.get(i)
    }

    fn ringbuf(&self, h: u64) -> Option<&RingBuf> {
        self.map(h)?.ops().as_any().downcast_ref::<RingBuf>()
    }
}

fn neg(e: bpfvfs_vfs::Errno) -> i64 {
    -(e.0 as i64)
}

// SAFETY: `lookup` returns memory from `MapOps::lookup_ptr`, valid while `self.guard` is
// pinned, i.e. for the whole run (RunMaps lives as long as the run's Env); array values live
// as long as the map, which the LoadedProg keeps. Ring-buffer records are valid until
// committed, and the ring lives as long as its map.
unsafe impl MapAccess for RunMaps<'_> {
    fn key_size(&self, map: u64) -> Option<usize> {
        self.map(map).map(|m| m.key_size())
    }
    fn value_size(&self, map: u64) -> Option<usize> {
        self.map(map).map(|m| m.def().value_size as usize)
    }
    fn lookup(&self, map: u64, key: &[u8]) -> Option<MemRef> {
        let m = self.map(map)?;
        let p = m.ops().lookup_ptr(key, &self.guard)?;
        Some(MemRef {
            ptr: NonNull::new(p)?,
            len: m.def().value_size as usize,
            writable: m.def().map_flags & bpfvfs_bpf::uapi::BPF_F_RDONLY_PROG == 0,
        })
    }
    fn update(&self, map: u64, key: &[u8], value: &[u8], flags: u64) -> i64 {
        let Some(m) = self.map(map) else {
            return neg(bpfvfs_vfs::Errno::EINVAL);
        };
        if flags & !(BPF_NOEXIST | BPF_EXIST | BPF_F_LOCK) != 0
            || flags & (BPF_NOEXIST | BPF_EXIST) == BPF_NOEXIST | BPF_EXIST
        {
            return neg(bpfvfs_vfs::Errno::EINVAL);
        }
        match m.ops().prog_update(key, value, flags) {
            Ok(()) => 0,
            Err(e) => neg(e),
        }
    }
    fn delete(&self, map: u64, key: &[u8]) -> i64 {
        let Some(m) = self.map(map) else {
            return neg(bpfvfs_vfs::Errno::EINVAL);
        };
        match m.ops().delete(key) {
            Ok(()) => 0,
            Err(e) => neg(e),
        }
    }
    fn ringbuf_output(&self, map: u64, data: &[u8], flags: u64) -> i64 {
        match self.ringbuf(map) {
            Some(rb) => match rb.output(data, flags) {
                Ok(()) => 0,
                Err(e) => neg(e),
            },
            None => neg(bpfvfs_vfs::Errno::EINVAL),
        }
    }
    fn ringbuf_reserve(&self, map: u64, size: u64, flags: u64) -> Option<MemRef> {
        if flags != 0 {
            return None;
        }
        let rb = self.ringbuf(map)?;
        let p = rb.reserve(size)?;
        Some(MemRef {
            ptr: p,
            len: size as usize,
            writable: true,
        })
    }
    fn ringbuf_commit(&self, addr: u64, flags: u64, discard: bool) {
        let Some(p) = NonNull::new(addr as usize as *mut u8) else {
            return;
        };
        // The record names its ring only by address: the ring that accepts it owns it.
        for m in self.maps {
            if let Some(rb) = m.ops().as_any().downcast_ref::<RingBuf>() {
                let r = if discard {
                    rb.discard(p, flags)
                } else {
                    rb.submit(p, flags)
                };
                if r.is_ok() {
                    return;
                }
            }
        }
    }
}

enum Vm<'p> {
    Interp(Interpreter<'p>),
    #[cfg(target_arch = "x86_64")]
    Jit(Box<Jit<'p>>),
}

/// Runs one loaded program, reusing its stack and region set across runs (one per thread).
pub struct Runner<'p> {
    lp: &'p LoadedProg,
    vm: Vm<'p>,
}

impl<'p> Runner<'p> {
    pub fn new(lp: &'p LoadedProg) -> Result<Runner<'p>, crate::RuntimeError> {
        #[cfg(target_arch = "x86_64")]
        if let Some((checked, unchecked)) = &lp.jit {
            let vm = Jit::with_code(
                &lp.program,
                &lp.helpers,
                checked.clone(),
                Some(unchecked.clone()),
            )
            .map_err(|e| crate::RuntimeError::Jit {
                prog: String::new(),
                error: e.to_string(),
            })?;
            return Ok(Runner {
                lp,
                vm: Vm::Jit(Box::new(vm)),
            });
        }
        let vm = Interpreter::new(&lp.program, &lp.helpers).map_err(|error| {
            crate::RuntimeError::Prepare {
                prog: String::new(),
                error,
            }
        })?;
        Ok(Runner {
            lp,
            vm: Vm::Interp(vm),
        })
    }

    /// Run once with r1..r5 = `args`; `regions` are the memory the arguments point to (the
    /// context, packet data).
    pub fn run(
        &mut self,
        args: [u64; 5],
        regions: &[Region<'_>],
        env: &mut Env<'_>,
    ) -> Result<u64, ExecError> {
        if self.lp.checked {
            let mut all: Vec<Region<'_>> = regions.to_vec();
            for d in &self.lp.direct {
                // SAFETY: `d` is the value memory of an array map the LoadedProg holds; it is
                // valid for the map's life, longer than this run.
                all.push(unsafe {
                    Region::from_raw_parts(
                        RegionKind::MapValue,
                        d.addr as *mut u8,
                        d.len,
                        d.writable,
                    )
                });
            }
            return match &mut self.vm {
                Vm::Interp(vm) => vm.run(args, &all, env),
                #[cfg(target_arch = "x86_64")]
                Vm::Jit(vm) => vm.run(args, &all, env),
            };
        }
        // SAFETY: the verifier accepted this program for its type: every access it can make
        // is to its stack, the context and packet memory described by `regions` (built by the
        // program type's context builder to the layout the verifier checked against),
        // memory map helpers returned (valid for the run, see RunMaps), or the direct map
        // values whose maps the LoadedProg keeps alive.
        unsafe {
            match &mut self.vm {
                Vm::Interp(vm) => vm.run_unchecked(args, regions, env),
                #[cfg(target_arch = "x86_64")]
                Vm::Jit(vm) => vm.run_unchecked(args, regions, env),
            }
        }
    }
}
