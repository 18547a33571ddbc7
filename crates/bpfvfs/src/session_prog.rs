//! Program operations of a control connection: `prog_load` (BPF_PROG_LOAD of a whole ELF
//! object, as libbpf's bpf_object__load does), `prog_test_run` (BPF_PROG_TEST_RUN) and
//! `trace_read` (the trace pipe). Loaded maps and programs become handles of the connection,
//! so they live until pinned or closed, like the fds libbpf returns.

use super::*;
use bpfvfs_runtime::{LoadOpts, RuntimeError, TestRunInput};
use std::time::Duration;

/// A runtime error as a reply: its errno, message, and verifier log when there is one.
fn runtime_error(op: &str, e: &RuntimeError) -> ControlError {
    let mut c = ControlError::new(e.errno().0, format!("{op}: {e}"));
    c.log = e.verifier_log().map(str::to_string);
    c
}

impl BpfSession {
    fn runtime(&self, op: &str) -> Result<Arc<bpfvfs_runtime::Runtime>, ControlError> {
        self.runtime.clone().ok_or_else(|| {
            ControlError::new(
                libc::EOPNOTSUPP,
                format!("{op}: this server does not load or run programs"),
            )
        })
    }

    pub(super) fn prog_load(&mut self, a: &Args) -> Result<Value, ControlError> {
        let rt = self.runtime(a.op)?;
        let object = a.bytes("object")?;
        let mut opts = LoadOpts::new(a.str_or("obj_name", "obj")?);
        opts.cred = self.cred.clone();
        if let Some(t) = a.get("type") {
            match t {
                Value::String(s) => opts.prog_type = Some(s.clone()),
                _ => return Err(invalid(a.op, "\"type\" must be a string")),
            }
        }
        if let Some(v) = a.get("reuse_maps") {
            let Value::Array(items) = v else {
                return Err(invalid(a.op, "\"reuse_maps\" must be an array"));
            };
            for it in items {
                let (Some(name), Some(h)) = (
                    it.get("name").and_then(Value::as_str),
                    it.get("handle").and_then(Value::as_u64),
                ) else {
                    return Err(invalid(
                        a.op,
                        "\"reuse_maps\" items are {\"name\": string, \"handle\": number}",
                    ));
                };
                let h = u32::try_from(h)
                    .ok()
                    .and_then(|h| self.handles.get(&h))
                    .ok_or_else(|| {
                        ControlError::new(libc::EBADF, format!("{}: no handle {h}", a.op))
                    })?;
                opts.reuse_maps.push((name.to_string(), h.clone()));
            }
        }
        let loaded = rt
            .load_object(&object, &opts)
            .map_err(|e| runtime_error(a.op, &e))?;
        let mut maps = Vec::new();
        for (name, h) in loaded.maps {
            let id = h.obj.id();
            let n = self.install(h)?;
            maps.push(json!({"name": name, "handle": n, "id": id}));
        }
        let mut progs = Vec::new();
        for (name, h) in loaded.progs {
            let id = h.obj.id();
            let n = self.install(h)?;
            progs.push(json!({"name": name, "handle": n, "id": id}));
        }
        Ok(json!({"maps": maps, "progs": progs}))
    }

    pub(super) fn prog_test_run(&mut self, a: &Args) -> Result<Value, ControlError> {
        let rt = self.runtime(a.op)?;
        let h = self.handle(a, "handle")?;
        let prog = h.obj.as_prog().map_err(|e| errno(a.op, e))?.clone();
        let opt_u32 = |key: &str| -> Result<Option<u32>, ControlError> {
            match a.get(key) {
                None => Ok(None),
                Some(v) => Ok(Some(a.u64_of(key, v, u32::MAX as u64)? as u32)),
            }
        };
        let input = TestRunInput {
            data_in: a.opt_bytes("data_in")?,
            data_size_out: opt_u32("data_size_out")?,
            ctx_in: a.opt_bytes("ctx_in")?,
            ctx_size_out: opt_u32("ctx_size_out")?,
            repeat: a.u32_or("repeat", 0)?,
            flags: a.u32_or("flags", 0)?,
            cpu: a.u32_or("cpu", 0)?,
            task: None,
        };
        // bpfvfs extension: "runs": N repeats a test run that takes no `repeat` (syscall
        // programs) N times here, and reports the average time of one run.
        let runs = a.u32_or("runs", 1)?.max(1);
        let start = std::time::Instant::now();
        let mut out = rt
            .test_run(&prog, &input)
            .map_err(|e| runtime_error(a.op, &e))?;
        for _ in 1..runs {
            out = rt
                .test_run(&prog, &input)
                .map_err(|e| runtime_error(a.op, &e))?;
        }
        if a.get("runs").is_some() {
            let avg = start.elapsed().as_nanos() / runs as u128;
            out.duration_ns = avg.min(u32::MAX as u128) as u32;
        }
        let mut r = json!({
            "retval": out.retval,
            "duration": out.duration_ns,
            "data_size_out": out.data_size_out,
        });
        if let Some(d) = out.data_out {
            r["data_out"] = bytes_json(&d);
        }
        if let Some(c) = out.ctx_out {
            r["ctx_out"] = bytes_json(&c);
        }
        Ok(r)
    }

    /// BPF_LINK_CREATE for a VFS hook: attach the program where its section says (or at
    /// `target`); the link is a new handle.
    pub(super) fn link_create(&mut self, a: &Args) -> Result<Value, ControlError> {
        let rt = self.runtime(a.op)?;
        let h = self.handle(a, "handle")?.clone();
        let target = match a.get("target") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(invalid(a.op, "\"target\" must be a string")),
        };
        // attach type "view": the target is a cgroup directory (issue 9's link API).
        let link = if a.get("attach_type").and_then(Value::as_str) == Some("view") {
            let dir = target.ok_or_else(|| a.missing("target"))?;
            let inherit = a.get("inherit").and_then(Value::as_bool).unwrap_or(false);
            rt.view_link_create(&self.cred, &h, &dir, inherit)
        } else {
            rt.attach(&h, target.as_deref())
        }
        .map_err(|e| runtime_error(a.op, &e))?;
        self.opened(link)
    }

    /// `cgroup attach GROUP view PROG [inherit]`: the daemon keeps the link (the attachment
    /// outlives this connection) until `view_detach` or the group's removal.
    pub(super) fn view_attach(&mut self, a: &Args) -> Result<Value, ControlError> {
        let rt = self.runtime(a.op)?;
        let h = self.handle(a, "handle")?.clone();
        let dir = a.str("path")?;
        let inherit = a.get("inherit").and_then(Value::as_bool).unwrap_or(false);
        let link = rt
            .view_attach(&self.cred, &h, dir, inherit)
            .map_err(|e| runtime_error(a.op, &e))?;
        Ok(json!({"link_id": link.obj.id()}))
    }

    /// `cgroup detach GROUP view PROG`.
    pub(super) fn view_detach(&mut self, a: &Args) -> Result<Value, ControlError> {
        let rt = self.runtime(a.op)?;
        let dir = a.str("path")?;
        let id = a.u32_or("prog_id", 0)?;
        rt.view_detach(&self.cred, dir, id)
            .map_err(|e| runtime_error(a.op, &e))?;
        Ok(json!({}))
    }

    /// BPF_LINK_DETACH: the program leaves its hook now; the link object lives on, defunct,
    /// while referenced.
    pub(super) fn link_detach(&mut self, a: &Args) -> Result<Value, ControlError> {
        let h = self.handle(a, "handle")?;
        let l = h.obj.as_link().map_err(|e| errno(a.op, e))?;
        l.detach();
        Ok(json!({}))
    }

    pub(super) fn trace_read(&mut self, a: &Args) -> Result<Value, ControlError> {
        let rt = self.runtime(a.op)?;
        let max = a.u32_or("max", 256)?.clamp(1, 4096) as usize;
        // Bounded so a reader never pins a server thread for long.
        let wait = Duration::from_millis(a.u64_or("wait_ms", 0)?.min(5_000));
        let lines = rt.trace().read(max, wait);
        Ok(json!({ "lines": lines }))
    }
}
