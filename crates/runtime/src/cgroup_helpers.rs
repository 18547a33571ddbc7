//! Cgroup helpers and views: `bpf_get_current_cgroup_id` (80), `bpf_get_current_task_btf`
//! (158), `bpf_cgrp_storage_get` (210) / `bpf_cgrp_storage_delete` (211, over
//! `bpfvfs_bpf::maps::cgrp_storage`), and the `struct cgroup` views iterator, view and
//! tracing programs read (built in the run's [`ViewArena`] from the cgroup tree of this
//! instance's VFS).
//!
//! The current task's view is built before a run, not by the helper: a helper cannot add
//! to the arena while the run holds it. A program that calls `bpf_get_current_task_btf`
//! (the verifier's list of helpers used) gets the view built for each of its runs
//! ([`prepare`]); the helper returns its address. Likewise the caller's cgroup id for
//! `bpf_get_current_cgroup_id`.
//!
//! Whose group: the caller the edge recorded on the serving thread (`task::caller()`: a FUSE
//! request's process, or the control-socket peer of a `prog_test_run`, which the kernel runs
//! in the calling task), the root group when none is recorded, 0 when the instance has no
//! cgroup tree. Hook, iterator, view and test runs all prepare it the same way.

use crate::hook_run::RunExt;
use crate::iter::CgroupOrder;
use crate::kobj::{ArenaFull, CgroupDesc, ViewArena};
use bpfvfs_bpf::maps::cgrp_storage;
use bpfvfs_cgroup::{Cgroup, WalkOrder};
use bpfvfs_ebpf::helpers::HelperCtx;
use bpfvfs_ebpf::verifier::{HelperProto, HelperProtos, RetKind};
use bpfvfs_ebpf::{HelperError, Helpers, RegionKind};
use bpfvfs_vfs::Vfs;
use std::sync::Arc;

/// The tree walk of a cgroup iterator order.
pub fn walk_order(o: CgroupOrder) -> WalkOrder {
    match o {
        CgroupOrder::DescendantsPre => WalkOrder::DescendantsPre,
        CgroupOrder::DescendantsPost => WalkOrder::DescendantsPost,
        CgroupOrder::AncestorsUp => WalkOrder::AncestorsUp,
        CgroupOrder::SelfOnly => WalkOrder::SelfOnly,
    }
}

/// The view of `g` (and of its ancestors) in `arena`.
pub fn cgroup_view(arena: &mut ViewArena, g: &Arc<Cgroup>) -> Result<u64, ArenaFull> {
    let mut chain = vec![g.clone()];
    while let Some(p) = chain.last().and_then(|c| c.parent()) {
        chain.push(p);
    }
    chain.reverse();
    let names: Vec<String> = chain.iter().map(|c| c.name()).collect();
    let descs: Vec<CgroupDesc<'_>> = chain
        .iter()
        .zip(&names)
        .map(|(c, n)| CgroupDesc {
            id: c.id(),
            name: n.as_bytes(),
            obj: c.clone() as Arc<dyn std::any::Any + Send + Sync>,
        })
        .collect();
    arena.cgroup_chain(&descs)
}

/// The group whose view is at `addr` in `arena`.
pub fn cgroup_at(arena: &ViewArena, addr: u64) -> Option<Arc<Cgroup>> {
    arena
        .cgroup_at(addr)
        .and_then(|a| a.clone().downcast::<Cgroup>().ok())
}

/// Build what the helpers of this module read for one run of `lp`: the current task's view
/// (pid, tgid, comm of the caller the edge recorded, its group as `cgroups->dfl_cgrp`) if
/// the program calls `bpf_get_current_task_btf`, the caller's cgroup id if it calls
/// `bpf_get_current_cgroup_id`.
pub fn prepare(
    arena: &mut ViewArena,
    vfs: &Vfs,
    lp: &crate::exec::LoadedProg,
) -> Result<(), ArenaFull> {
    if !lp.uses_current {
        return Ok(());
    }
    let used = &lp.verified.helpers_used;
    // Several programs of one hook share the arena: build once.
    let task = used.contains(&158) && arena.task_addr() == 0;
    let cgid = used.contains(&80) && arena.current_cgroup().is_none();
    if !task && !cgid {
        return Ok(());
    }
    let tree = bpfvfs_cgroup::tree_of(vfs);
    let current = tree.as_ref().map(|t| t.current());
    if cgid {
        // No cgroup tree: 0 (no group to report).
        arena.set_current_cgroup(current.as_ref().map_or(0, |g| g.id()));
    }
    if task {
        let t = crate::hook_run::current_task();
        let cg = match &current {
            Some(g) => cgroup_view(arena, g)?,
            None => 0,
        };
        arena.task(t.pid, t.tgid, &t.comm, cg)?;
    }
    Ok(())
}

/// Whether a program calling `helpers_used` needs [`prepare`].
pub(crate) fn uses_current(helpers_used: &[u32]) -> bool {
    helpers_used.iter().any(|&h| h == 158 || h == 80)
}

fn arena_of<'c>(ctx: &'c mut HelperCtx) -> Result<&'c ViewArena, HelperError> {
    let ext = RunExt::of(ctx)?;
    // SAFETY: the arena outlives the run that installed this RunExt.
    Ok(unsafe { &*ext.arena })
}

/// bpf_get_current_task_btf(): the task view built for this run.
fn get_current_task_btf(ctx: &mut HelperCtx, _a: [u64; 5]) -> Result<u64, HelperError> {
    let t = arena_of(ctx)?.task_addr();
    if t == 0 {
        return Err(HelperError::Other(
            "bpf_get_current_task_btf: no task view was built for this run".into(),
        ));
    }
    Ok(t)
}

/// bpf_get_current_cgroup_id(): the caller's group, looked up for this run.
fn get_current_cgroup_id(ctx: &mut HelperCtx, _a: [u64; 5]) -> Result<u64, HelperError> {
    arena_of(ctx)?.current_cgroup().ok_or_else(|| {
        HelperError::Other("bpf_get_current_cgroup_id: no cgroup was looked up for this run".into())
    })
}

/// The group behind argument `addr` (0: none) of a cgroup-storage helper.
fn group_arg(ctx: &mut HelperCtx, addr: u64) -> Result<Option<Arc<Cgroup>>, HelperError> {
    if addr == 0 {
        return Ok(None);
    }
    match cgroup_at(arena_of(ctx)?, addr) {
        Some(g) => Ok(Some(g)),
        // The verifier only passes cgroup pointers here: one that is not a view of this run
        // is a bug, not a program error.
        None => Err(HelperError::Other(format!("{addr:#x} is not a cgroup"))),
    }
}

/// bpf_cgrp_storage_get(map, cgroup, value, flags).
fn cgrp_storage_get(ctx: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
    let map: *const bpfvfs_bpf::Map = RunExt::of(ctx)?.map(a[0])?;
    let group = group_arg(ctx, a[1])?;
    // SAFETY: the maps slice is the running LoadedProg's, alive for the run.
    let map = unsafe { &*map };
    let vs = map.def().value_size as usize;
    let mut init = Vec::new();
    let init: Option<&[u8]> = if a[2] == 0 {
        None
    } else {
        init.resize(vs, 0);
        ctx.read(a[2], &mut init)?;
        Some(&init)
    };
    // Nested in the run's own pin (RunMaps): the value stays valid until the run ends.
    let guard = crossbeam_epoch::pin();
    match cgrp_storage::cgrp_storage_get(map, group.as_ref(), init, a[3], &guard) {
        // SAFETY: the storage contract: valid while this thread stays pinned, which the run's
        // guard ensures until the run ends.
        Some(p) => Ok(unsafe { ctx.register_region(RegionKind::MapValue, p, vs, true) }),
        None => Ok(0),
    }
}

/// bpf_cgrp_storage_delete(map, cgroup).
fn cgrp_storage_delete(ctx: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
    let map: *const bpfvfs_bpf::Map = RunExt::of(ctx)?.map(a[0])?;
    let group = group_arg(ctx, a[1])?;
    // SAFETY: as in cgrp_storage_get.
    let map = unsafe { &*map };
    let guard = crossbeam_epoch::pin();
    Ok(cgrp_storage::cgrp_storage_delete(map, group.as_ref(), &guard) as u64)
}

/// Register the helpers of this module in a runtime's tables.
pub(crate) fn register(helpers: &mut Helpers, protos: &mut HelperProtos) {
    helpers.register(158, "bpf_get_current_task_btf", get_current_task_btf);
    helpers.register(80, "bpf_get_current_cgroup_id", get_current_cgroup_id);
    helpers.register(210, "bpf_cgrp_storage_get", cgrp_storage_get);
    helpers.register(211, "bpf_cgrp_storage_delete", cgrp_storage_delete);
    protos.register(
        158,
        HelperProto::new(
            "bpf_get_current_task_btf",
            RetKind::BtfId("task_struct"),
            &[],
        ),
    );
}
