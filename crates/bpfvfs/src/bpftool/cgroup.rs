//! `bpfvfs cgroup`, following bpftool 7.1's `cgroup` object: `tree [CGROUP_ROOT]
//! [effective]`.
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
         \x20      {b} {o} help\n\
         \n\
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
            ("help", Some(|t: &mut Tool, _| Ok(t.help()))),
        ];
        self.cmd_select(args, cmds)
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
