//! BPF_PROG_TEST_RUN: run a loaded program on caller-provided input, with the kernel's
//! argument rules for each program type (net/bpf/test_run.c).

use crate::error::RuntimeError;
use crate::exec::{LoadedProg, RunMaps};
use crate::hook_run::RunExt;
use crate::kobj::ViewArena;
use crate::progtypes::TestRunKind;
use crate::Runtime;
use bpfvfs_bpf::Prog;
use bpfvfs_ebpf::{Env, Region, RegionKind, TaskInfo};
use bpfvfs_vfs::Errno;
use std::time::Instant;

/// `BPF_F_TEST_RUN_ON_CPU`, `BPF_F_TEST_XDP_LIVE_FRAMES`.
pub const BPF_F_TEST_RUN_ON_CPU: u32 = 1 << 0;
pub const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
pub const BPF_F_TEST_SKB_CHECKSUM_COMPLETE: u32 = 1 << 2;

/// The `test` member of `union bpf_attr`, as owned buffers.
#[derive(Clone, Debug, Default)]
pub struct TestRunInput {
    pub data_in: Option<Vec<u8>>,
    /// Capacity of the caller's data_out buffer; `None`: no data_out buffer.
    pub data_size_out: Option<u32>,
    pub ctx_in: Option<Vec<u8>>,
    /// Capacity of the caller's ctx_out buffer; `None`: no ctx_out buffer.
    pub ctx_size_out: Option<u32>,
    pub repeat: u32,
    pub flags: u32,
    pub cpu: u32,
    /// The task the program's task helpers report (the caller's, when known); default: the
    /// calling thread.
    pub task: Option<TaskInfo>,
}

/// What the kernel writes back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestRunOutput {
    pub retval: u32,
    /// Average ns per run (0 where the kernel reports none, as for syscall programs).
    pub duration_ns: u32,
    /// data_out (possibly truncated to `data_size_out`), and the full size in `data_size_out`.
    pub data_out: Option<Vec<u8>>,
    pub data_size_out: u32,
    /// ctx_out; for syscall programs, the context buffer after the run (the kernel copies it
    /// back over ctx_in).
    pub ctx_out: Option<Vec<u8>>,
}

fn einval(why: &str) -> RuntimeError {
    RuntimeError::test_run(Errno::EINVAL, why)
}

impl Runtime {
    /// Run `prog` once (or `repeat` times where the type allows it).
    pub fn test_run(
        &self,
        prog: &Prog,
        input: &TestRunInput,
    ) -> Result<TestRunOutput, RuntimeError> {
        let lp = prog.exec::<LoadedProg>().ok_or_else(|| {
            RuntimeError::test_run(
                Errno::ENOTSUP_,
                format!("program {} has no executable form here", prog.info().name),
            )
        })?;
        match lp.type_entry.test_run {
            TestRunKind::Syscall => self.run_syscall(lp, input),
            TestRunKind::Skb | TestRunKind::Xdp => self.run_packet(lp, input),
            TestRunKind::None => Err(RuntimeError::test_run(
                Errno::ENOTSUP_,
                format!("{} programs cannot be test-run", lp.type_entry.name),
            )),
        }
    }

    fn env_for<'a>(
        &'a self,
        input: &TestRunInput,
        maps: &'a RunMaps<'a>,
        ext: Option<&'a mut RunExt>,
    ) -> Env<'a> {
        // Field by field: Env::new asks the kernel for the task and the time on every run.
        Env {
            maps: Some(maps),
            trace: None,
            task: input
                .task
                .clone()
                .unwrap_or_else(crate::hook_run::current_task),
            clock: bpfvfs_ebpf::helpers::real_clock,
            prandom: crate::hook_run::next_seed(),
            user: ext.map(|e| e as &mut dyn std::any::Any),
        }
    }

    /// What the task and cgroup helpers read in a test run of `lp`, as a hook run has it:
    /// the caller's cgroup id for `bpf_get_current_cgroup_id` (the group of the caller the
    /// edge recorded — the kernel runs BPF_PROG_TEST_RUN in the calling task — the root
    /// group when none, 0 without a cgroup tree). Empty when the program calls none of
    /// them: nothing is built or installed.
    fn helper_arena(&self, lp: &LoadedProg) -> Result<HelperArena, RuntimeError> {
        let used = &lp.verified.helpers_used;
        if !used.contains(&80) && !used.contains(&158) {
            return Ok(HelperArena(None));
        }
        let mut arena = SPARE_ARENA
            .with(|s| s.take())
            .unwrap_or_else(|| Box::new(ViewArena::new()));
        arena.reset(lp.view_needs);
        let r = crate::cgroup_helpers::prepare(&mut arena, self.bpf().vfs(), lp);
        // Dropped (and so given back) on error too.
        let arena = HelperArena(Some(arena));
        r.map_err(|_| RuntimeError::test_run(Errno::E2BIG, "too many kernel objects"))?;
        Ok(arena)
    }

    /// bpf_prog_test_run_syscall: the context is the caller's buffer, copied back after the
    /// run; no data, no ctx_out, no repeat, no flags, no duration.
    fn run_syscall(
        &self,
        lp: &LoadedProg,
        input: &TestRunInput,
    ) -> Result<TestRunOutput, RuntimeError> {
        if input.data_in.is_some()
            || input.data_size_out.is_some()
            || input.ctx_size_out.is_some()
            || input.repeat != 0
            || input.flags != 0
        {
            return Err(einval(
                "syscall programs take only ctx_in (no data_in/data_out/ctx_out, repeat or flags)",
            ));
        }
        let ctx_in = input.ctx_in.as_deref().unwrap_or(&[]);
        if ctx_in.len() < lp.verified.max_ctx_offset as usize || ctx_in.len() > u16::MAX as usize {
            return Err(einval(&format!(
                "ctx_in is {} bytes; this program needs at least {} (and at most 65535)",
                ctx_in.len(),
                lp.verified.max_ctx_offset
            )));
        }
        // 8-byte aligned copy of the context, as the kernel's kmalloc'ed one is.
        let mut words = vec![0u64; ctx_in.len().div_ceil(8)];
        let ctx = &mut bytes_of_mut(&mut words)[..ctx_in.len()];
        ctx.copy_from_slice(ctx_in);
        let arena = self.helper_arena(lp)?;
        let mut ext = arena.get().map(|a| RunExt {
            arena: a,
            maps: &lp.maps[..],
        });
        let maps = RunMaps::new(lp);
        let mut sink = |m: &[u8]| self.trace_message(input, m);
        let mut env = self
            .env_for(input, &maps, ext.as_mut())
            .with_trace(&mut sink);
        let mut runner = lp.runner()?;
        let mut regions = arena.get().map_or_else(Vec::new, |a| a.regions());
        let r0 = if ctx.is_empty() {
            runner.run([0; 5], &regions, &mut env)?
        } else {
            let region = Region::writable(RegionKind::Context, ctx);
            regions.push(region);
            runner.run([region.addr(), 0, 0, 0, 0], &regions, &mut env)?
        };
        Ok(TestRunOutput {
            retval: r0 as u32,
            duration_ns: 0,
            data_out: None,
            data_size_out: 0,
            ctx_out: (!ctx_in.is_empty()).then(|| ctx.to_vec()),
        })
    }

    /// bpf_prog_test_run_skb / _xdp: the packet in data_in, an optional context, `repeat`
    /// runs on the same packet, the average duration, and the packet (and context) after.
    fn run_packet(
        &self,
        lp: &LoadedProg,
        input: &TestRunInput,
    ) -> Result<TestRunOutput, RuntimeError> {
        use bpfvfs_ebpf::pktctx::{SkbRun, XdpRun};
        let xdp = lp.type_entry.test_run == TestRunKind::Xdp;
        let allowed_flags = if xdp {
            0
        } else {
            BPF_F_TEST_SKB_CHECKSUM_COMPLETE
        };
        if input.flags & !allowed_flags != 0 || input.cpu != 0 {
            return Err(einval(
                "flags and cpu are not supported for this program type",
            ));
        }
        let data_in = input
            .data_in
            .as_deref()
            .ok_or_else(|| einval("data_in is required for packet programs"))?;
        // The kernel's context rules: ctx_in given, or only a ctx_out buffer (a zeroed
        // context), or neither (no context out).
        let ctx: Option<&[u8]> = match (&input.ctx_in, input.ctx_size_out) {
            (Some(c), _) => Some(c),
            (None, Some(_)) => Some(&[]),
            (None, None) => None,
        };
        let pkt_err = |e: bpfvfs_ebpf::pktctx::PktError| {
            RuntimeError::test_run(Errno(e.errno()), e.to_string())
        };
        let arena = self.helper_arena(lp)?;
        let mut ext = arena.get().map(|a| RunExt {
            arena: a,
            maps: &lp.maps[..],
        });
        // Views the helpers built (none for bpf_get_current_cgroup_id alone), added to the
        // packet's regions.
        let views = arena.get().map_or_else(Vec::new, |a| a.regions());
        let maps = RunMaps::new(lp);
        let mut sink = |m: &[u8]| self.trace_message(input, m);
        let mut env = self
            .env_for(input, &maps, ext.as_mut())
            .with_trace(&mut sink);
        let mut runner = lp.runner()?;
        let repeat = input.repeat.max(1);
        let (r0, duration, data_out, ctx_out) = if xdp {
            let mut run = XdpRun::new(data_in, ctx).map_err(pkt_err)?;
            let args = run.args();
            let (r0, d) = timed(repeat, || {
                let regions = run.regions();
                Ok(if views.is_empty() {
                    runner.run(args, &regions, &mut env)?
                } else {
                    runner.run(args, &with_views(regions, &views), &mut env)?
                })
            })?;
            (
                r0,
                d,
                run.data_out().to_vec(),
                run.ctx_out().map(|c| c.to_vec()),
            )
        } else {
            let mut run = SkbRun::new(data_in, ctx).map_err(pkt_err)?;
            let args = run.args();
            let (r0, d) = timed(repeat, || {
                let regions = run.regions();
                Ok(if views.is_empty() {
                    runner.run(args, &regions, &mut env)?
                } else {
                    runner.run(args, &with_views(regions, &views), &mut env)?
                })
            })?;
            (
                r0,
                d,
                run.data_out().to_vec(),
                run.ctx_out().map(|c| c.to_vec()),
            )
        };
        // bpf_test_finish: outputs larger than the caller's buffers are truncated and the
        // call fails with ENOSPC.
        let mut out = TestRunOutput {
            retval: r0 as u32,
            duration_ns: duration,
            data_size_out: data_out.len() as u32,
            data_out: None,
            ctx_out: None,
        };
        if let Some(cap) = input.data_size_out {
            if (cap as usize) < data_out.len() {
                return Err(RuntimeError::test_run(
                    Errno::ENOSPC,
                    format!(
                        "data_out needs {} bytes, the buffer has {cap}",
                        data_out.len()
                    ),
                ));
            }
            out.data_out = Some(data_out);
        }
        if let (Some(cap), Some(c)) = (input.ctx_size_out, ctx_out) {
            if (cap as usize) < c.len() {
                return Err(RuntimeError::test_run(
                    Errno::ENOSPC,
                    format!("ctx_out needs {} bytes, the buffer has {cap}", c.len()),
                ));
            }
            out.ctx_out = Some(c);
        }
        Ok(out)
    }

    fn trace_message(&self, input: &TestRunInput, msg: &[u8]) {
        let task = input
            .task
            .clone()
            .unwrap_or_else(crate::hook_run::current_task);
        self.trace()
            .push(&task.comm, task.pid, task.cpu.unwrap_or(input.cpu), msg);
    }
}

/// Time `n` runs of `f`, returning the average in ns (saturating at u32::MAX, as the kernel's
/// 32-bit duration field).
pub(crate) fn timed(
    n: u32,
    mut f: impl FnMut() -> Result<u64, RuntimeError>,
) -> Result<(u64, u32), RuntimeError> {
    let n = n.max(1);
    let start = Instant::now();
    let mut r0 = 0;
    for _ in 0..n {
        r0 = f()?;
    }
    let avg = start.elapsed().as_nanos() / n as u128;
    Ok((r0, avg.min(u32::MAX as u128) as u32))
}

thread_local! {
    /// The arena of the last test run on this thread, kept for the next one (taken out
    /// while in use, so a nested run makes its own).
    static SPARE_ARENA: std::cell::Cell<Option<Box<ViewArena>>> = const { std::cell::Cell::new(None) };
}

/// The view arena of one test run, if its program needs one; given back to the thread on
/// drop.
struct HelperArena(Option<Box<ViewArena>>);

impl HelperArena {
    fn get(&self) -> Option<&ViewArena> {
        self.0.as_deref()
    }
}

impl Drop for HelperArena {
    fn drop(&mut self) {
        if let Some(a) = self.0.take() {
            SPARE_ARENA.with(|s| s.set(Some(a)));
        }
    }
}

/// A packet run's regions and the views the helpers built.
fn with_views<'a>(packet: [Region<'a>; 2], views: &[Region<'a>]) -> Vec<Region<'a>> {
    let mut v = packet.to_vec();
    v.extend_from_slice(views);
    v
}

fn bytes_of_mut(w: &mut [u64]) -> &mut [u8] {
    // SAFETY: u64 has no padding and any byte pattern is a valid u64; the length covers
    // exactly the words' bytes and the borrow is carried over.
    unsafe { std::slice::from_raw_parts_mut(w.as_mut_ptr().cast::<u8>(), w.len() * 8) }
}
