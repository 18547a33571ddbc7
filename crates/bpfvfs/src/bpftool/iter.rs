//! `bpfvfs iter`, following bpftool 7.1's `iter` object: `pin OBJ PATH [map MAP]`, plus the
//! cgroup iterator's parameters (`cgroup GROUP [order ORDER]`, which bpftool 7.1 cannot
//! pass; the kernel's `union bpf_iter_link_info`). The object's first program is loaded,
//! an iterator link is created for it and pinned at PATH; `cat PATH` then runs the iterator.
//! Messages and exit statuses are bpftool's (`-errno` of the failed call, `-1` otherwise).

use super::*;
use serde_json::json;

pub fn help_text() -> String {
    let (b, o) = ("bpfvfs", "iter");
    format!(
        "Usage: {b} {o} pin OBJ PATH [map MAP | cgroup GROUP [order ORDER]]\n\
         \x20      {b} {o} help\n\
         \n\
         \x20      OBJ := a clang-built object whose first program is SEC(\"iter/...\")\n\
         \x20      MAP := {{ id MAP_ID | pinned FILE | name MAP_NAME }}\n\
         \x20      GROUP := a group directory: a path in the bpfvfs tree (/sys/fs/cgroup/...)\n\
         \x20               or the same path under the daemon's mount point\n\
         \x20      ORDER := {{ descendants_pre | descendants_post | ancestors_up | self_only }}\n\
         \x20      OPTIONS := {{ {{-j|--json}} [{{-p|--pretty}}] | {{-n|--nomount}} }}\n"
    )
}

impl Tool {
    pub fn do_iter(&mut self, args: &[String]) -> R<i32> {
        let cmds: &[(&str, Option<Cmd>)] = &[
            ("help", Some(|t: &mut Tool, _| Ok(t.help()))),
            ("pin", Some(Tool::iter_pin)),
        ];
        self.cmd_select(args, cmds)
    }

    /// do_pin.
    fn iter_pin(&mut self, mut argv: Argv) -> R<i32> {
        if !self.req_args(&argv, 2) {
            return Err(self.usage());
        }
        let objfile = argv.get().to_string();
        let path = argv.get().to_string();
        let mut link_args = json!({});
        // Optional arguments (bpftool ignores words it does not know after them).
        if argv.argc() > 0 {
            if is_prefix(argv.arg(), "map") {
                argv.next();
                if !self.req_args(&argv, 2) {
                    self.p_err("incorrect map spec");
                    return Ok(-1);
                }
                match self.map_parse_fd(&mut argv)? {
                    Ok(o) => link_args["map"] = json!(o.handle),
                    Err(_) => return Ok(-1),
                }
            } else if is_prefix(argv.arg(), "cgroup") {
                argv.next();
                if !self.req_args(&argv, 1) {
                    self.p_err("incorrect cgroup spec");
                    return Ok(-1);
                }
                let group = argv.get().to_string();
                link_args["cgroup"] = json!(self.conn.tree_path(&group)?);
                if argv.argc() > 0 && is_prefix(argv.arg(), "order") {
                    argv.next();
                    if !self.req_args(&argv, 1) {
                        return Ok(-1);
                    }
                    let order = argv.get();
                    if !matches!(
                        order,
                        "descendants_pre" | "descendants_post" | "ancestors_up" | "self_only"
                    ) {
                        self.p_err(format!("unknown cgroup iterator order '{order}'"));
                        return Ok(-1);
                    }
                    link_args["order"] = json!(order);
                }
            }
        }

        // bpf_object__open: the file is read and parsed here, as in bpftool's process.
        let bytes = match std::fs::read(&objfile) {
            Ok(b) => b,
            Err(e) => {
                self.p_err(format!("can't open objfile {objfile}"));
                return Ok(-e.raw_os_error().unwrap_or(libc::EIO));
            }
        };
        let obj_name = bpfvfs_ebpf_obj::object_name_from_path(&objfile);
        if bpfvfs_ebpf_obj::LoadedObject::parse(&bytes, &obj_name).is_err() {
            self.p_err(format!("can't open objfile {objfile}"));
            return Ok(-libc::EINVAL);
        }
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let loaded = match self
            .conn
            .call_full("prog_load", json!({"object": hex, "obj_name": obj_name}))?
        {
            Ok(v) => v,
            Err(e) => {
                if let Some(log) = &e.log {
                    self.err.push_str(log);
                    if !log.ends_with('\n') {
                        self.err.push('\n');
                    }
                }
                self.p_err(format!("can't load objfile {objfile}"));
                return Ok(-e.errno);
            }
        };
        let Some(first) = loaded["progs"].as_array().and_then(|p| p.first()).cloned() else {
            self.p_err(format!("can't find bpf program in objfile {objfile}"));
            return Ok(-libc::ENOENT);
        };
        let name = first["name"].as_str().unwrap_or("").to_string();
        link_args["handle"] = first["handle"].clone();
        let link = match self.conn.call_full("iter_link_create", link_args)? {
            Ok(v) => v,
            Err(e) => {
                self.err
                    .push_str(&format!("libbpf: {}\n", e.message.trim_end()));
                self.p_err(format!("attach_iter failed for program {name}"));
                return Ok(-e.errno);
            }
        };
        let err = self.mount_bpffs_for_pin(&path)?;
        if err != 0 {
            return Ok(err);
        }
        let tree = self.conn.tree_path(&path)?;
        if let Err(e) = self.sys("obj_pin", json!({"handle": link["handle"], "path": tree}))? {
            self.err
                .push_str(&format!("libbpf: failed to pin link: {}\n", strerror(e)));
            self.p_err(format!("pin_iter failed for program {name} to path {path}"));
            return Ok(-e);
        }
        Ok(0)
    }
}
