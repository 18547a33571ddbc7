//! View programs (`SEC("view/cgroup")`): the bpf_view design of the 2022 "pinning outside
//! bpffs" series. A view program formats one object — here one cgroup — into a seq_file; a
//! file exposed in a group's directory runs it for that group when opened.
//!
//! The context is the cgroup iterator's (`struct bpf_iter__cgroup { meta; cgroup; }`), so
//! one function body serves as `iter/cgroup` and as `view/cgroup`; a view run is one call
//! with `seq_num` 0 (no final NULL call), retried with a doubled buffer while its output
//! overflows (seq_read_iter's retry for single-record files). An `iter/cgroup` program may
//! be used as a view too, with the same single-call semantics.

use crate::exec::LoadedProg;
use crate::kobj::ViewArena;
use crate::seq::{self, Shown};
use crate::Runtime;
use bpfvfs_bpf::Prog;
use bpfvfs_cgroup::{Cgroup, SeqShow};
use bpfvfs_ebpf::verifier::ProgTypeSpec;
use bpfvfs_ebpf_obj::ProgramKind;
use bpfvfs_vfs::Errno;
use std::sync::{Arc, Weak};

/// View targets this runtime models.
pub const TARGETS: &[&str] = &["cgroup"];

/// The verifier's description of a `view/<target>` program: the iterator context of the
/// same target, returns 0 or 1.
pub fn view_spec(target: Option<&str>) -> Result<ProgTypeSpec, String> {
    let t = target.ok_or("a view program needs a target (SEC(\"view/cgroup\"))")?;
    if !TARGETS.contains(&t) {
        return Err(format!(
            "view target {t:?} is not modelled (targets: {})",
            TARGETS.join(", ")
        ));
    }
    let fields = crate::iter::ctx_fields(t).expect("view targets are iterator targets");
    Ok(crate::iter::spec_with(fields, "view", None))
}

/// Whether `prog` can show a cgroup: a `view/cgroup` or `iter/cgroup` program.
pub fn is_cgroup_view(prog: &Prog) -> bool {
    prog.exec::<LoadedProg>().is_some_and(|lp| {
        matches!(lp.section_kind, ProgramKind::View | ProgramKind::Iter)
            && prog.info().attach_to == "cgroup"
    })
}

/// What an exposed file of `prog` shows: `None` unless `prog` is a `view/cgroup` or
/// `iter/cgroup` program. The show holds the program (and a weak reference to the runtime).
pub fn view_show(rt: &Runtime, prog: &Arc<Prog>) -> Option<Arc<dyn SeqShow>> {
    if !is_cgroup_view(prog) {
        return None;
    }
    Some(Arc::new(CgroupView {
        rt: rt.me.clone(),
        prog: prog.clone(),
    }))
}

struct CgroupView {
    rt: Weak<Runtime>,
    prog: Arc<Prog>,
}

impl SeqShow for CgroupView {
    fn show(&self, group: &Arc<Cgroup>) -> Result<Vec<u8>, Errno> {
        let rt = self.rt.upgrade().ok_or(Errno::ENODEV)?;
        rt.view_run(&self.prog, group)
    }
}

impl Runtime {
    /// Run a cgroup view program for `group`: one call, seq_num 0, the whole output (the
    /// buffer doubled and the program run again while it overflows).
    pub fn view_run(&self, prog: &Prog, group: &Arc<Cgroup>) -> Result<Vec<u8>, Errno> {
        let lp = prog.exec::<LoadedProg>().ok_or(Errno::EINVAL)?;
        if !is_cgroup_view(prog) {
            return Err(Errno::EINVAL);
        }
        let session = crate::iter::next_session();
        let run = |arena: &mut ViewArena| {
            seq::run_single(|buf| {
                let full = |_| Errno::E2BIG;
                arena.clear();
                let meta = arena.iter_meta(session, 0).map_err(full)?;
                let cg = crate::cgroup_helpers::cgroup_view(arena, group).map_err(full)?;
                crate::cgroup_helpers::prepare(arena, self.bpf().vfs(), lp).map_err(full)?;
                let ctx = [meta, cg];
                let seq_addr = arena.seq_addr();
                let arena: &ViewArena = arena;
                let r = seq::with_seq(seq_addr, buf, || self.run_on_ctx(lp, arena, &ctx, None));
                match r {
                    Ok(0) => Ok(Shown::Ok),
                    Ok(_) => Ok(Shown::Again),
                    Err(e) => Err(e.errno()),
                }
            })
        };
        // One arena per thread, reused (a nested run on the same thread gets its own).
        thread_local! {
            static ARENA: std::cell::RefCell<ViewArena> = std::cell::RefCell::new(ViewArena::new());
        }
        ARENA.with(|cell| match cell.try_borrow_mut() {
            Ok(mut arena) => run(&mut arena),
            Err(_) => run(&mut ViewArena::new()),
        })
    }
}
