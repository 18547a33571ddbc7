//! `bpfvfs prog load|loadall|run`: bpftool's load_with_options and do_run.
//!
//! The object file is read and parsed here (as libbpf opens it in the bpftool process), then
//! sent to the daemon, which creates the maps and verifies and prepares the programs
//! (`prog_load`); pins are made afterwards with `obj_pin`, as libbpf pins after loading. On a
//! verifier rejection the log is printed between libbpf's `-- BEGIN PROG LOAD LOG --` and
//! `-- END PROG LOAD LOG --` lines.
//!
//! Difference from bpftool 7.1, on purpose: bpftool cannot test-run `syscall` programs (it
//! always passes `repeat` and a ctx_out buffer, which the kernel refuses with EINVAL). Here a
//! syscall program is run as libbpf's bpf_prog_test_run_opts runs it (ctx_in only); the
//! context as the program left it is what `ctx_out FILE` receives, and `repeat N` runs it N
//! times (the reported duration is the average of the N runs, measured by the daemon).

use super::cstr::{is_prefix, strerror, strtoul};
use super::{Argv, Obj, Tool, R};
use bpfvfs_bpf::uapi::ProgType;
use bpfvfs_ebpf_obj::LoadedObject;
use serde_json::{json, Value};

/// bpftool's default size of the output buffers (data_out, ctx_out).
const DEFAULT_OUT_SIZE: u32 = 32 * 1024;

/// libbpf's sanitize_pin_path: bpffs refuses dots in names.
fn sanitize_pin_name(name: &str) -> String {
    name.replace('.', "_")
}

/// What `map { idx IDX | name NAME } MAP` asked for.
struct MapReplace {
    idx: Option<usize>,
    name: Option<String>,
    handle: u64,
}

impl Tool {
    pub(super) fn prog_load(&mut self, argv: Argv) -> R<i32> {
        self.load_with_options(argv, true)
    }

    pub(super) fn prog_loadall(&mut self, argv: Argv) -> R<i32> {
        self.load_with_options(argv, false)
    }

    fn load_with_options(&mut self, mut argv: Argv, first_prog_only: bool) -> R<i32> {
        if !self.req_args(&argv, 2) {
            return Err(self.usage());
        }
        let file = argv.get().to_string();
        let pinfile = argv.get().to_string();
        let mut prog_type: Option<String> = None;
        let mut pinmaps: Option<String> = None;
        let mut replaces: Vec<MapReplace> = Vec::new();
        let mut autoattach = false;
        while argv.argc() > 0 {
            let w = argv.arg();
            if is_prefix(w, "autoattach") {
                autoattach = true;
                argv.next();
            } else if is_prefix(w, "type") {
                argv.next();
                if !self.req_args(&argv, 1) {
                    return Ok(-1);
                }
                let t = argv.get();
                if bpfvfs_ebpf_obj::parse_section(t).kind == bpfvfs_ebpf_obj::ProgramKind::Unknown {
                    self.p_err(format!("unknown program type '{t}'"));
                    return Ok(-1);
                }
                prog_type = Some(t.to_string());
            } else if is_prefix(w, "map") {
                argv.next();
                if !self.req_args(&argv, 4) {
                    return Ok(-1);
                }
                let (mut idx, mut name) = (None, None);
                if is_prefix(argv.arg(), "idx") {
                    argv.next();
                    let a = argv.arg();
                    let (v, rest) = strtoul(a, 0);
                    if rest {
                        self.p_err(format!("can't parse {a} as IDX"));
                        return Ok(-1);
                    }
                    idx = Some(v as usize);
                } else if is_prefix(argv.arg(), "name") {
                    argv.next();
                    name = Some(argv.arg().to_string());
                } else {
                    self.p_err(format!("expected 'idx' or 'name', got: '{}'?", argv.arg()));
                    return Ok(-1);
                }
                argv.next();
                let o = match self.map_parse_fd(&mut argv)? {
                    Ok(o) => o,
                    Err(_) => return Ok(-1),
                };
                replaces.push(MapReplace {
                    idx,
                    name,
                    handle: o.handle,
                });
            } else if is_prefix(w, "pinmaps") {
                argv.next();
                if !self.req_args(&argv, 1) {
                    return Ok(-1);
                }
                pinmaps = Some(argv.get().to_string());
            } else if is_prefix(w, "dev") {
                self.p_err("offload device (dev) is not supported by bpfvfs");
                return Ok(-1);
            } else {
                self.p_err(format!(
                    "expected no more arguments, 'type', 'map' or 'dev', got: '{w}'?"
                ));
                return Ok(-1);
            }
        }

        // Open the object here, as libbpf does in bpftool's process.
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) => {
                self.err.push_str(&format!(
                    "libbpf: elf: failed to open {file}: {}\n",
                    strerror(e.raw_os_error().unwrap_or(libc::EIO))
                ));
                self.p_err("failed to open object file");
                return Ok(-1);
            }
        };
        let obj_name = bpfvfs_ebpf_obj::object_name_from_path(&file);
        let parsed = match LoadedObject::parse(&bytes, &obj_name) {
            Ok(o) => o,
            Err(e) => {
                self.err.push_str(&format!("libbpf: {file}: {e}\n"));
                self.p_err("failed to open object file");
                return Ok(-1);
            }
        };
        let mut reuse = Vec::new();
        for r in &replaces {
            let name = match (&r.idx, &r.name) {
                (Some(i), _) => match parsed.maps.get(*i) {
                    Some(m) => m.name.clone(),
                    None => {
                        self.p_err(format!("map idx '{i}' not used"));
                        return Ok(-1);
                    }
                },
                (None, Some(n)) => {
                    if parsed.map(n).is_none() {
                        self.p_err(format!("map '{n}' not used"));
                        return Ok(-1);
                    }
                    n.clone()
                }
                (None, None) => unreachable!("parsed above"),
            };
            reuse.push(json!({"name": name, "handle": r.handle}));
        }

        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let loaded = match self.sys_full(
            "prog_load",
            json!({"object": hex, "obj_name": obj_name, "type": prog_type, "reuse_maps": reuse}),
        )? {
            Ok(v) => v,
            Err(e) => {
                self.libbpf_load_failure(&obj_name, &e);
                self.p_err("failed to load object file");
                return Ok(-1);
            }
        };
        let progs = loaded["progs"].as_array().cloned().unwrap_or_default();
        let maps = loaded["maps"].as_array().cloned().unwrap_or_default();

        if first_prog_only {
            let Some(first) = progs.first() else {
                self.p_err("object file doesn't contain any bpf program");
                return Ok(-1);
            };
            let err = self.mount_bpffs_for_pin(&pinfile)?;
            if err != 0 {
                return Ok(-1);
            }
            let path = self.conn.tree_path(&pinfile)?;
            let what = if autoattach {
                self.auto_attach(first)?
            } else {
                first["handle"].clone()
            };
            if let Err(e) = self.sys("obj_pin", json!({"handle": what, "path": path}))? {
                let section = parsed
                    .programs
                    .first()
                    .map(|p| p.section.clone())
                    .unwrap_or_default();
                self.err
                    .push_str(&format!("libbpf: failed to pin program: {}\n", strerror(e)));
                self.p_err(format!("failed to pin program {section}"));
                return Ok(-1);
            }
        } else {
            let mut names: Vec<(String, Value)> = Vec::new();
            for p in &progs {
                let what = if autoattach {
                    self.auto_attach(p)?
                } else {
                    p["handle"].clone()
                };
                names.push((p["name"].as_str().unwrap_or("").to_string(), what));
            }
            if self.pin_all(&pinfile, &names)?.is_err() {
                self.p_err("failed to pin all programs");
                return Ok(-1);
            }
        }
        if let Some(dir) = pinmaps {
            let names: Vec<(String, Value)> = maps
                .iter()
                .map(|m| {
                    (
                        sanitize_pin_name(m["name"].as_str().unwrap_or("")),
                        m["handle"].clone(),
                    )
                })
                .collect();
            if self.pin_all(&dir, &names)?.is_err() {
                self.p_err("failed to pin all maps");
                return Ok(-1);
            }
        }
        if self.json_output {
            self.j_null();
        }
        Ok(0)
    }

    /// bpftool's auto_attach_program: attach where the section says and return the link's
    /// handle (pinned instead of the program); a program that cannot be attached is pinned
    /// itself, with bpftool's notice.
    fn auto_attach(&mut self, prog: &Value) -> R<Value> {
        match self.sys("link_create", json!({"handle": prog["handle"]}))? {
            Ok(l) => Ok(l["handle"].clone()),
            Err(_) => {
                self.p_info(format!(
                    "Program {} does not support autoattach, falling back to pinning",
                    prog["name"].as_str().unwrap_or("")
                ));
                Ok(prog["handle"].clone())
            }
        }
    }

    /// `prog attach PROG LINK_FILE [target HOOK]`: attach to a VFS hook (where the section
    /// says, or HOOK) and pin the link, which keeps the program attached.
    pub(super) fn prog_attach(&mut self, mut argv: Argv) -> R<i32> {
        if !self.req_args(&argv, 3) {
            return Ok(-1);
        }
        let o = match self.prog_parse_fd(&mut argv)? {
            Ok(o) => o,
            Err(_) => return Ok(-1),
        };
        let link_path = argv.get().to_string();
        let mut args = json!({"handle": o.handle});
        if argv.argc() > 0 {
            if !is_prefix(argv.arg(), "target") || argv.argc() != 2 {
                self.p_err(format!("expected 'target HOOK', got: '{}'?", argv.arg()));
                self.close(&o)?;
                return Ok(-1);
            }
            argv.next();
            args["target"] = json!(argv.get());
        }
        let link = match self.sys_full("link_create", args)? {
            Ok(l) => l,
            Err(e) => {
                self.p_err(format!("failed to attach program: {}", e.message));
                self.close(&o)?;
                return Ok(-1);
            }
        };
        let l = Obj {
            handle: link["handle"].as_u64().unwrap_or(0),
            id: link["id"].as_u64().unwrap_or(0) as u32,
            kind: "link".into(),
        };
        let err = self.do_pin_fd(&l, &link_path)?;
        self.close(&l)?;
        self.close(&o)?;
        if err == 0 && self.json_output {
            self.j_null();
        }
        Ok(if err == 0 { 0 } else { -1 })
    }

    /// `link detach LINK`: the program leaves its hook; the link stays (defunct) while pinned.
    pub(super) fn link_detach_cmd(&mut self, mut argv: Argv) -> R<i32> {
        if !self.req_args(&argv, 2) {
            return Ok(-1);
        }
        let o = match self.link_parse_fd_pub(&mut argv)? {
            Ok(o) => o,
            Err(_) => return Ok(-1),
        };
        let r = self.sys("link_detach", json!({"handle": o.handle}))?;
        self.close(&o)?;
        match r {
            Ok(_) => {
                if self.json_output {
                    self.j_null();
                }
                Ok(0)
            }
            Err(e) => {
                self.p_err(format!("failed link detach: {}", strerror(e)));
                Ok(-e)
            }
        }
    }

    /// A request whose error reply is kept whole (message and verifier log).
    fn sys_full(
        &mut self,
        op: &str,
        args: Value,
    ) -> R<Result<Value, crate::control::ControlError>> {
        self.conn.call_full(op, args)
    }

    /// What libbpf prints when bpf_object__load fails.
    fn libbpf_load_failure(&mut self, obj_name: &str, e: &crate::control::ControlError) {
        let prog = e
            .message
            .split("program ")
            .nth(1)
            .and_then(|s| s.split(':').next())
            .unwrap_or("")
            .to_string();
        let mut s = String::new();
        if let Some(log) = &e.log {
            s.push_str(&format!(
                "libbpf: prog '{prog}': BPF program load failed: {}\n",
                strerror(e.errno)
            ));
            s.push_str(&format!(
                "libbpf: prog '{prog}': -- BEGIN PROG LOAD LOG --\n"
            ));
            s.push_str(log);
            if !log.ends_with('\n') {
                s.push('\n');
            }
            s.push_str("-- END PROG LOAD LOG --\n");
            s.push_str(&format!(
                "libbpf: prog '{prog}': failed to load: -{}\n",
                e.errno
            ));
        } else {
            s.push_str(&format!("libbpf: {}\n", e.message));
        }
        s.push_str(&format!("libbpf: failed to load object '{obj_name}'\n"));
        self.err.push_str(&s);
    }

    /// bpf_object__pin_programs / __pin_maps: DIR/NAME for each, DIR made first; on a
    /// failure the pins made so far are removed again.
    fn pin_all(&mut self, dir: &str, items: &[(String, Value)]) -> R<Result<(), ()>> {
        let tree_dir = self.conn.tree_path(dir)?;
        let tree_dir = tree_dir.trim_end_matches('/').to_string();
        match self.sys("mkdir", json!({"path": tree_dir, "mode": 0o700}))? {
            Ok(_) | Err(libc::EEXIST) => {}
            Err(e) => {
                self.err
                    .push_str(&format!("libbpf: failed to mkdir {dir}: {}\n", strerror(e)));
                return Ok(Err(()));
            }
        }
        let mut done: Vec<String> = Vec::new();
        for (name, handle) in items {
            let path = format!("{tree_dir}/{name}");
            if let Err(e) = self.sys("obj_pin", json!({"handle": handle, "path": path}))? {
                self.err.push_str(&format!(
                    "libbpf: failed to pin at {path}: {}\n",
                    strerror(e)
                ));
                for p in done {
                    let _ = self.sys("unlink", json!({ "path": p }))?;
                }
                return Ok(Err(()));
            }
            done.push(path);
        }
        Ok(Ok(()))
    }

    pub(super) fn prog_run(&mut self, mut argv: Argv) -> R<i32> {
        // bpftool needs PROG and data_in; ours also runs syscall programs, which take ctx_in
        // only: PROG alone is enough.
        if !self.req_args(&argv, 2) {
            return Ok(-1);
        }
        let o = match self.prog_parse_fd(&mut argv)? {
            Ok(o) => o,
            Err(_) => return Ok(-1),
        };
        let mut data_in: Option<String> = None;
        let mut data_out: Option<String> = None;
        let mut ctx_in: Option<String> = None;
        let mut ctx_out: Option<String> = None;
        let mut data_size_out: u32 = 0;
        let mut ctx_size_out: u32 = 0;
        let mut repeat: u32 = 1;
        while argv.argc() > 0 {
            let w = argv.arg();
            // detect_common_prefix; `ctx` alone is this tool's short form of ctx_in.
            for group in [
                &["data_in", "data_out", "data_size_out"][..],
                &["ctx_in", "ctx_out", "ctx_size_out"][..],
            ] {
                let hits: Vec<&str> = group.iter().copied().filter(|x| is_prefix(w, x)).collect();
                if hits.len() > 1 && w != "ctx" {
                    self.p_err(format!(
                        "ambiguous prefix: '{w}' could be '{}'",
                        hits.join("' or '")
                    ));
                    return Ok(-1);
                }
            }
            let key = w.to_string();
            argv.next();
            if !self.req_args(&argv, 1) {
                return Ok(-1);
            }
            let val = argv.get().to_string();
            let parse = |t: &mut Tool, what: &str| -> Option<u32> {
                let (v, rest) = strtoul(&val, 0);
                if rest {
                    t.p_err(format!("can't parse {val} as {what}"));
                    return None;
                }
                Some(v as u32)
            };
            if is_prefix(&key, "data_in") {
                if val == "-" && ctx_in.as_deref() == Some("-") {
                    self.p_err("cannot use standard input for both data_in and ctx_in");
                    return Ok(-1);
                }
                data_in = Some(val);
            } else if is_prefix(&key, "data_out") {
                data_out = Some(val);
            } else if is_prefix(&key, "data_size_out") {
                let Some(v) = parse(self, "output data size") else {
                    return Ok(-1);
                };
                data_size_out = v;
            } else if is_prefix(&key, "ctx_in") || key == "ctx" {
                if val == "-" && data_in.as_deref() == Some("-") {
                    self.p_err("cannot use standard input for both data_in and ctx_in");
                    return Ok(-1);
                }
                ctx_in = Some(val);
            } else if is_prefix(&key, "ctx_out") {
                ctx_out = Some(val);
            } else if is_prefix(&key, "ctx_size_out") {
                let Some(v) = parse(self, "output context size") else {
                    return Ok(-1);
                };
                ctx_size_out = v;
            } else if is_prefix(&key, "repeat") {
                let Some(v) = parse(self, "repeat number") else {
                    return Ok(-1);
                };
                repeat = v;
            } else {
                self.p_err(format!(
                    "expected no more arguments, 'data_in', 'data_out', 'data_size_out', \
                     'ctx_in', 'ctx_out', 'ctx_size_out' or 'repeat', got: '{key}'?"
                ));
                return Ok(-1);
            }
        }
        let read = |t: &mut Tool, f: &Option<String>| -> Result<Option<Vec<u8>>, ()> {
            let Some(f) = f else { return Ok(None) };
            let r = if f == "-" {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut v).map(|_| v)
            } else {
                std::fs::read(f)
            };
            match r {
                Ok(v) => Ok(Some(v)),
                Err(e) => {
                    t.p_err(format!(
                        "failed to open {f}: {}",
                        strerror(e.raw_os_error().unwrap_or(libc::EIO))
                    ));
                    Err(())
                }
            }
        };
        let Ok(din) = read(self, &data_in) else {
            return Ok(-1);
        };
        let Ok(cin) = read(self, &ctx_in) else {
            return Ok(-1);
        };
        let info = match self.info(&o)? {
            Ok(v) => v,
            Err(e) => {
                self.p_err(format!("can't get prog info: {}", strerror(e)));
                return Ok(-1);
            }
        };
        let is_syscall = info["prog_type"].as_u64() == Some(ProgType::Syscall.as_u32() as u64);
        let mut args = json!({ "handle": o.handle });
        if let Some(d) = &din {
            args["data_in"] = Value::String(d.iter().map(|b| format!("{b:02x}")).collect());
            args["data_size_out"] = json!(if data_size_out == 0 {
                DEFAULT_OUT_SIZE
            } else {
                data_size_out
            });
        }
        if let Some(c) = &cin {
            args["ctx_in"] = Value::String(c.iter().map(|b| format!("{b:02x}")).collect());
            if !is_syscall {
                args["ctx_size_out"] = json!(if ctx_size_out == 0 {
                    DEFAULT_OUT_SIZE
                } else {
                    ctx_size_out
                });
            }
        }
        if is_syscall {
            // Syscall programs take no `repeat`: the daemon repeats the run (`runs`) and times
            // the runs themselves, not this command's round trips.
            args["runs"] = json!(repeat.max(1));
        } else {
            args["repeat"] = json!(repeat);
        }
        let v = match self.sys("prog_test_run", args)? {
            Ok(v) => v,
            Err(e) => {
                self.p_err(format!("failed to run program: {}", strerror(e)));
                return Ok(-1);
            }
        };
        let bytes = |v: &Value| -> Vec<u8> {
            v.as_array()
                .map(|a| a.iter().map(|x| x.as_u64().unwrap_or(0) as u8).collect())
                .unwrap_or_default()
        };
        if self.json_output {
            self.jw.start_object(&mut self.out);
        }
        let mut err = 0;
        if let Some(d) = v.get("data_out") {
            err += self.print_run_output(&bytes(d), data_out.as_deref(), "data_out");
        }
        if let Some(c) = v.get("ctx_out") {
            err += self.print_run_output(&bytes(c), ctx_out.as_deref(), "ctx_out");
        }
        let retval = v["retval"].as_u64().unwrap_or(0);
        let duration = v["duration"].as_u64().unwrap_or(0);
        if self.json_output {
            self.jw.uint_field(&mut self.out, "retval", retval);
            self.jw.uint_field(&mut self.out, "duration", duration);
            self.jw.end_object(&mut self.out);
        } else {
            let avg = if repeat > 1 { " (average)" } else { "" };
            self.print(format!(
                "Return value: {retval}, duration{avg}: {duration}ns\n"
            ));
        }
        self.close(&o)?;
        Ok(if err != 0 { -1 } else { 0 })
    }

    /// print_run_output: "-" prints (hex, or a JSON byte array), a file name is written.
    fn print_run_output(&mut self, data: &[u8], fname: Option<&str>, key: &str) -> i32 {
        let Some(f) = fname else { return 0 };
        if f == "-" {
            if self.json_output {
                self.jw.name(&mut self.out, key);
                self.jw.start_array(&mut self.out);
                for b in data {
                    self.jw.uint(&mut self.out, *b as u64);
                }
                self.jw.end_array(&mut self.out);
            } else {
                let s = hex_print(data);
                self.print(s);
            }
            return 0;
        }
        match std::fs::write(f, data) {
            Ok(()) => 0,
            Err(e) => {
                self.p_err(format!(
                    "failed to open {f}: {}",
                    strerror(e.raw_os_error().unwrap_or(libc::EIO))
                ));
                1
            }
        }
    }
}

/// bpftool's hex_print: offset, 16 bytes as hex in pairs, then the printable characters.
fn hex_print(data: &[u8]) -> String {
    let mut s = String::new();
    for i in (0..data.len()).step_by(16) {
        s.push_str(&format!("{i:07x}\t"));
        let end = (i + 16).min(data.len());
        for (j, b) in data.iter().enumerate().take(end).skip(i) {
            s.push_str(&format!("{b:02x}{}", if j % 2 == 1 { " " } else { "" }));
        }
        for j in end..i + 16 {
            s.push_str(&format!("  {}", if j % 2 == 1 { " " } else { "" }));
        }
        s.push_str("| ");
        for (j, &b) in data.iter().enumerate().take(end).skip(i) {
            let c = if (b' '..=b'~').contains(&b) {
                b as char
            } else {
                '.'
            };
            s.push(c);
            if j == i + 7 {
                s.push(' ');
            }
        }
        s.push('\n');
    }
    s
}
