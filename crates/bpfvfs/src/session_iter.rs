//! `iter_link_create`: BPF_LINK_CREATE of an iterator program (`union bpf_iter_link_info`):
//! `{"handle": PROG}` for targets without parameters, `"map": MAP_HANDLE` for
//! `bpf_map_elem`, `"cgroup": PATH` (a group directory in the bpfvfs tree) and `"order"`
//! (`descendants_pre`, `descendants_post`, `ancestors_up`, `self_only`) for `cgroup`. The
//! link becomes a handle of the connection; pinning it makes it readable (`cat PIN` runs the
//! iterator).

use super::*;
use bpfvfs_runtime::iter::{CgroupOrder, IterTarget};

impl BpfSession {
    pub(super) fn iter_link_create(&mut self, a: &Args) -> Result<Value, ControlError> {
        let rt = self.runtime.clone().ok_or_else(|| {
            ControlError::new(
                libc::EOPNOTSUPP,
                format!("{}: this server does not load or run programs", a.op),
            )
        })?;
        let prog = self.handle(a, "handle")?.clone();
        let order = match a.get("order") {
            None => None,
            Some(Value::String(s)) => Some(CgroupOrder::parse(s).ok_or_else(|| {
                ControlError::new(libc::EINVAL, format!("{}: unknown order {s:?}", a.op))
            })?),
            Some(_) => return Err(invalid(a.op, "\"order\" must be a string")),
        };
        let target = if a.get("map").is_some() {
            let m = self
                .handle(a, "map")?
                .map()
                .map_err(|e| errno(a.op, e))?
                .clone();
            IterTarget::Map(m)
        } else if a.get("cgroup").is_some() || order.is_some() {
            let group = match a.get("cgroup") {
                None => None,
                Some(_) => {
                    let path = a.str("cgroup")?;
                    Some(
                        self.bpf
                            .cgroup_of_path(&self.cred, path.as_bytes())
                            .map_err(|e| errno(&format!("{} {path}", a.op), e))?,
                    )
                }
            };
            IterTarget::Cgroup { group, order }
        } else {
            IterTarget::Plain
        };
        let link = rt.iter_link_create(&prog, target).map_err(|e| {
            let mut c = ControlError::new(e.errno().0, format!("{}: {e}", a.op));
            c.log = e.verifier_log().map(str::to_string);
            c
        })?;
        self.opened(link)
    }
}
