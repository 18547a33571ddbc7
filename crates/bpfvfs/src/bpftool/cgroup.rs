//! `bpfvfs cgroup`, following bpftool 7.1's `cgroup` object: `tree [CGROUP_ROOT]
//! [effective]`, and `attach|detach CGROUP view PROG [inherit]` (issue 9's view links).
//!
//! bpftool lists, per cgroup v2 directory below CGROUP_ROOT that has programs attached, the
//! directory's path and one line per program (`ID AttachType AttachFlags Name`), under a
//! two-line header; groups without programs are not listed, and with -j the output is an
//! array of `{"cgroup": PATH, "programs": [...]}`. Here the attached programs are view
//! programs (attach type `view`, flags `inherit` when given); `effective` also lists the
//! copies a group inherits from its ancestors, as bpftool's `effective` lists the programs
//! in effect. Paths are printed as given: under CGROUP_ROOT as typed (a host path under the
//! daemon's mount or a tree path), else as tree paths (/sys/fs/cgroup/...).

use super::*;
use serde_json::json;

/// bpftool's header for `cgroup show` / `cgroup tree`.
const HEADER: &str = "ID       AttachType      AttachFlags     Name           \n";

pub fn help_text() -> String {
    let (b, o) = ("bpfvfs", "cgroup");
    format!(
        "Usage: {b} {o} tree [CGROUP_ROOT] [effective]\n\
         \x20      {b} {o} attach CGROUP ATTACH_TYPE PROG [ATTACH_FLAGS]\n\
         \x20      {b} {o} detach CGROUP ATTACH_TYPE PROG\n\
         \x20      {b} {o} help\n\
         \n\
         \x20      ATTACH_TYPE := {{ view }}\n\
         \x20      ATTACH_FLAGS := {{ inherit }}\n\
         \x20      PROG := {{ id PROG_ID | pinned FILE | tag PROG_TAG | name PROG_NAME }}\n\
         \x20      CGROUP_ROOT := a group directory: a path in the bpfvfs tree\n\
         \x20                     (/sys/fs/cgroup/...) or the same path under the daemon's\n\
         \x20                     mount point (default: the tree's root group)\n\
         \x20      OPTIONS := {{ {{-j|--json}} [{{-p|--pretty}}] }}\n"
    )
}

impl Tool {
    pub fn do_cgroup(&mut self, args: &[String]) -> R<i32> {
        let cmds: &[(&str, Option<Cmd>)] = &[
            ("tree", Some(Tool::cgroup_tree)),
            ("attach", Some(Tool::cgroup_attach)),
            ("detach", Some(Tool::cgroup_detach)),
            ("help", Some(|t: &mut Tool, _| Ok(t.help()))),
        ];
        self.cmd_select(args, cmds)
    }

    /// do_attach / do_detach's common part: `CGROUP ATTACH_TYPE PROG`. The group must exist
    /// (bpftool opens it) and the type must be `view`, the one this tree knows (issue 9:
    /// a view program exposed as a file named after it).
    fn cgroup_attach_args(&mut self, argv: &mut Argv, what: &str) -> R<Result<(String, Obj), i32>> {
        if argv.argc() < 4 {
            self.p_err(format!("too few parameters for cgroup {what}"));
            return Ok(Err(-1));
        }
        let group = argv.arg().to_string();
        if self.fs_type_of(&group)?.is_none() {
            self.p_err(format!("can't open cgroup {group}"));
            return Ok(Err(-1));
        }
        argv.next();
        if argv.arg() != "view" {
            self.p_err("invalid attach type");
            return Ok(Err(-1));
        }
        argv.next();
        let o = match self.prog_parse_fd(argv)? {
            Ok(o) => o,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok((self.conn.tree_path(&group)?, o)))
    }

    /// do_attach: `cgroup attach CGROUP view PROG [inherit]`. The daemon keeps the view
    /// link, as the kernel keeps a BPF_PROG_ATTACH attachment after bpftool exits.
    fn cgroup_attach(&mut self, mut argv: Argv) -> R<i32> {
        let (group, o) = match self.cgroup_attach_args(&mut argv, "attach")? {
            Ok(x) => x,
            Err(e) => return Ok(e),
        };
        let mut inherit = false;
        while let Some(a) = argv.cur() {
            if is_prefix(a, "inherit") {
                inherit = true;
            } else {
                self.p_err(format!("unknown option: {a}"));
                self.close(&o)?;
                return Ok(-1);
            }
            argv.next();
        }
        let r = self.sys(
            "view_attach",
            json!({"handle": o.handle, "path": group, "inherit": inherit}),
        )?;
        self.close(&o)?;
        if r.is_err() {
            self.p_err("failed to attach program");
            return Ok(-1);
        }
        if self.json_output {
            self.jw.null(&mut self.out);
        }
        Ok(0)
    }

    /// do_detach: `cgroup detach CGROUP view PROG`.
    fn cgroup_detach(&mut self, mut argv: Argv) -> R<i32> {
        let (group, o) = match self.cgroup_attach_args(&mut argv, "detach")? {
            Ok(x) => x,
            Err(e) => return Ok(e),
        };
        let r = self.sys("view_detach", json!({"path": group, "prog_id": o.id}))?;
        self.close(&o)?;
        if r.is_err() {
            self.p_err("failed to detach program");
            return Ok(-1);
        }
        if self.json_output {
            self.jw.null(&mut self.out);
        }
        Ok(0)
    }

    /// do_show_tree.
    fn cgroup_tree(&mut self, mut argv: Argv) -> R<i32> {
        let mut root: Option<String> = None;
        let mut effective = false;
        while let Some(a) = argv.cur() {
            if is_prefix(a, "effective") {
                effective = true;
            } else if root.is_none() {
                root = Some(a.to_string());
            } else {
                self.p_err(format!("unknown argument: {a}"));
                return Ok(-1);
            }
            argv.next();
        }
        let mut args = json!({});
        let shown_root = root.clone();
        if let Some(r) = &root {
            args["path"] = json!(self.conn.tree_path(r)?);
        }
        let tree = match self.sys("cgroup_tree", args)? {
            Ok(v) => v,
            Err(e) => {
                self.p_err(format!(
                    "can't open cgroup {}: {}",
                    root.as_deref().unwrap_or("/sys/fs/cgroup"),
                    strerror(e)
                ));
                return Ok(-1);
            }
        };
        let groups = tree["groups"].as_array().cloned().unwrap_or_default();
        // The start group's tree path, to print the others relative to CGROUP_ROOT.
        let start = groups
            .first()
            .and_then(|g| g["path"].as_str())
            .unwrap_or("")
            .to_string();
        if self.json_output {
            self.jw.start_array(&mut self.out);
        } else {
            self.print("CgroupPath\n");
            self.print(HEADER);
        }
        for g in &groups {
            let progs: Vec<&Value> = g["programs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| effective || !p["inherited"].as_bool().unwrap_or(false))
                .collect();
            if progs.is_empty() {
                continue;
            }
            let tree_path = g["path"].as_str().unwrap_or("");
            let path = match &shown_root {
                Some(r) => format!(
                    "{}{}",
                    r.trim_end_matches('/'),
                    tree_path.strip_prefix(start.as_str()).unwrap_or(tree_path)
                ),
                None => tree_path.to_string(),
            };
            // bpftool indents the programs of groups below the walk's start (ftw level > 0).
            let level = tree_path != start;
            if self.json_output {
                self.jw.start_object(&mut self.out);
                self.jw.string_field(&mut self.out, "cgroup", &path);
                self.jw.name(&mut self.out, "programs");
                self.jw.start_array(&mut self.out);
            } else {
                self.print(format!("{path}\n"));
            }
            for p in progs {
                let id = p["id"].as_u64().unwrap_or(0);
                let ty = p["attach_type"].as_str().unwrap_or("");
                let flags = p["attach_flags"].as_str().unwrap_or("");
                let name = p["name"].as_str().unwrap_or("");
                if self.json_output {
                    self.jw.start_object(&mut self.out);
                    self.jw.uint_field(&mut self.out, "id", id);
                    self.jw.string_field(&mut self.out, "attach_type", ty);
                    self.jw.string_field(&mut self.out, "attach_flags", flags);
                    self.jw.string_field(&mut self.out, "name", name);
                    self.jw.end_object(&mut self.out);
                } else {
                    let indent = if level { "    " } else { "" };
                    self.print(format!("{indent}{id:<8} {ty:<15} {flags:<15} {name:<15}\n"));
                }
            }
            if self.json_output {
                self.jw.end_array(&mut self.out);
                self.jw.end_object(&mut self.out);
            }
        }
        if self.json_output {
            self.jw.end_array(&mut self.out);
        }
        Ok(0)
    }
}
