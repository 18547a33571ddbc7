//! View programs in the cgroup tree, from the runtime's side (issue 9 items 3 and 7).
//!
//! `bpfvfs-bpf` makes and removes the exposed files (`expose.rs`) but cannot run programs;
//! this file gives it the view factory (a view program → the show function of its file) and
//! checks program types for the link API (`link_create` with attach type "view" and the
//! group's directory as target; `cgroup attach GROUP view PROG`).

use crate::{Runtime, RuntimeError};
use bpfvfs_bpf::expose::PinError;
use bpfvfs_bpf::{BpfObject, Handle};
use bpfvfs_cgroup::SeqShow;
use bpfvfs_vfs::{Cred, Errno};
use std::sync::Arc;

/// Install the view factory of `rt` in its `Bpf`: exposed files of view (and cgroup
/// iterator) programs run them for their group. Holds the runtime weakly, so the `Bpf`
/// (which outlives it) does not keep it alive.
pub(crate) fn install_view_factory(rt: &Arc<Runtime>) {
    let me = Arc::downgrade(rt);
    rt.bpf()
        .set_view_factory(Arc::new(move |o: &BpfObject| -> Option<Arc<dyn SeqShow>> {
            match o {
                BpfObject::Prog(p) => crate::view::view_show(&*me.upgrade()?, p),
                _ => None,
            }
        }));
}

fn pin_error(what: &str, e: PinError) -> RuntimeError {
    RuntimeError::Os {
        context: format!("{what}: {e}"),
        errno: e.errno(),
    }
}

impl Runtime {
    fn check_view(&self, prog: &Handle, what: &str) -> Result<(), RuntimeError> {
        let p = prog.obj.as_prog().map_err(|errno| RuntimeError::Os {
            context: format!("{what}: not a program"),
            errno,
        })?;
        if !crate::view::is_cgroup_view(p) {
            return Err(RuntimeError::Os {
                context: format!(
                    "{what}: program {} is not a view/cgroup or iter/cgroup program",
                    p.info().name
                ),
                errno: Errno::EINVAL,
            });
        }
        Ok(())
    }

    /// BPF_LINK_CREATE, attach type "view": the link exposes a file named after the program
    /// in the group at `group_dir` (and, with `inherit`, in every descendant); detaching or
    /// freeing the link removes it.
    pub fn view_link_create(
        &self,
        cred: &Cred,
        prog: &Handle,
        group_dir: &str,
        inherit: bool,
    ) -> Result<Handle, RuntimeError> {
        let what = format!("view link to {group_dir}");
        self.check_view(prog, &what)?;
        self.bpf()
            .view_link_create(cred, prog, group_dir.as_bytes(), inherit)
            .map_err(|e| pin_error(&what, e))
    }

    /// `cgroup attach GROUP view PROG [inherit]`: as [`Runtime::view_link_create`], but the
    /// instance keeps the link until `view_detach` or the group's removal.
    pub fn view_attach(
        &self,
        cred: &Cred,
        prog: &Handle,
        group_dir: &str,
        inherit: bool,
    ) -> Result<Handle, RuntimeError> {
        let what = format!("attach view to {group_dir}");
        self.check_view(prog, &what)?;
        self.bpf()
            .view_attach(cred, prog, group_dir.as_bytes(), inherit)
            .map_err(|e| pin_error(&what, e))
    }

    /// `cgroup detach GROUP view PROG`.
    pub fn view_detach(
        &self,
        cred: &Cred,
        group_dir: &str,
        prog_id: u32,
    ) -> Result<(), RuntimeError> {
        self.bpf()
            .view_detach(cred, group_dir.as_bytes(), prog_id)
            .map_err(|e| pin_error(&format!("detach view from {group_dir}"), e))
    }
}
