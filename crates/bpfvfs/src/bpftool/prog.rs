//! `bpfvfs prog ...` and `bpfvfs link ...`: bpftool's prog.c and link.c (show and pin).

use super::cstr::{fprint_hex, is_prefix, strerror};
use super::{Argv, Cmd, Obj, Tool, LINK_TYPES, R};
use bpfvfs_bpf::uapi::ProgType;
use serde_json::Value;

/// MAX_PROG_FULL_NAME.
const MAX_PROG_FULL_NAME: usize = 128;

pub fn prog_help_text() -> String {
    let (b, o) = ("bpfvfs", "prog");
    format!(
        "Usage: {b} {o} {{ show | list }} [PROG]\n\
         \x20      {b} {o} pin   PROG FILE\n\
         \x20      {b} {o} {{ load | loadall }} OBJ  PATH \\\n\
         \x20                        [type TYPE] [map {{ idx IDX | name NAME }} MAP]\\\n\
         \x20                        [pinmaps MAP_DIR] [autoattach]\n\
         \x20      {b} {o} attach PROG LINK_FILE [target HOOK]\n\
         \x20      {b} {o} run PROG \\\n\
         \x20                        [data_in FILE [data_out FILE [data_size_out L]]] \\\n\
         \x20                        [ctx_in FILE [ctx_out FILE [ctx_size_out M]]] \\\n\
         \x20                        [repeat N]\n\
         \x20      {b} {o} tracelog\n\
         \x20      {b} {o} help\n\
         \n\
         \x20      MAP := {{ id MAP_ID | pinned FILE | name MAP_NAME }}\n\
         \x20      PROG := {{ id PROG_ID | pinned FILE | tag PROG_TAG | name PROG_NAME }}\n\
         \x20      TYPE := {{ socket | xdp | syscall | lsm/HOOK | fentry/FUNC | fexit/FUNC }}\n\
         \x20      FILE := a path in the bpfvfs tree (/sys/fs/bpf/...), or the same path under\n\
         \x20              the daemon's mount point\n\
         \x20      OPTIONS := {{ {{-j|--json}} [{{-p|--pretty}}] | {{-f|--bpffs}} | {{-n|--nomount}} }}\n"
    )
}

pub fn link_help_text() -> String {
    let (b, o) = ("bpfvfs", "link");
    format!(
        "Usage: {b} {o} {{ show | list }}   [LINK]\n\
         \x20      {b} {o} pin        LINK  FILE\n\
         \x20      {b} {o} detach     LINK\n\
         \x20      {b} {o} help\n\
         \n\
         \x20      LINK := {{ id LINK_ID | pinned FILE }}\n\
         \x20      FILE := a path in the bpfvfs tree (/sys/fs/bpf/...), or the same path under\n\
         \x20              the daemon's mount point\n\
         \x20      OPTIONS := {{ {{-j|--json}} [{{-p|--pretty}}] | {{-f|--bpffs}} | {{-n|--nomount}} }}\n"
    )
}

/// license_is_gpl_compatible.
fn gpl_compatible(license: &str) -> bool {
    matches!(
        license,
        "GPL"
            | "GPL v2"
            | "GPL and additional rights"
            | "Dual BSD/GPL"
            | "Dual MIT/GPL"
            | "Dual MPL/GPL"
    )
}

/// `loaded_at` as bpftool prints it: local time, `%FT%T%z` (text) or `%s` (JSON).
fn load_time(secs: u64, json: bool) -> String {
    if json {
        return secs.to_string();
    }
    let t = secs as libc::time_t;
    // SAFETY: plain data; localtime_r fills `tm`, strftime writes at most `buf.len()` bytes.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return secs.to_string();
        }
        let mut buf = [0u8; 64];
        let n = libc::strftime(buf.as_mut_ptr().cast(), buf.len(), c"%FT%T%z".as_ptr(), &tm);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// sscanf(s, "%02hhx" x 8) == 8.
fn parse_tag(s: &str) -> Option<[u8; 8]> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut tag = [0u8; 8];
    for t in tag.iter_mut() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while i < b.len() && i - start < 2 && b[i].is_ascii_hexdigit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        *t = u8::from_str_radix(&s[start..i], 16).ok()?;
    }
    Some(tag)
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

fn tag_of(v: &Value) -> Vec<u8> {
    v["tag"]
        .as_array()
        .map(|a| a.iter().map(|b| b.as_u64().unwrap_or(0) as u8).collect())
        .unwrap_or_else(|| vec![0; 8])
}

/// (link type, attach type name for tracing links) for a bpfvfs link's attach type.
fn link_type(attach_type: &str) -> (usize, &'static str) {
    match attach_type {
        "raw_tp" | "raw_tracepoint" => (1, ""),
        "lsm" => (2, "lsm_mac"),
        "fentry" => (2, "trace_fentry"),
        "fexit" => (2, "trace_fexit"),
        "fmod_ret" | "modify_return" => (2, "modify_return"),
        "cgroup" => (3, ""),
        "iter" => (4, ""),
        "netns" => (5, ""),
        "xdp" => (6, ""),
        "perf_event" => (7, ""),
        "kprobe_multi" => (8, ""),
        "struct_ops" => (9, ""),
        _ => (0, ""),
    }
}

/// bpftool's name of a cgroup iterator order (`enum bpf_cgroup_iter_order`).
fn cgroup_order_name(order: u64) -> &'static str {
    match order {
        0 => "order_unspec",
        1 => "self_only",
        2 => "descendants_pre",
        3 => "descendants_post",
        4 => "ancestors_up",
        _ => "unknown",
    }
}

/// Iterator targets whose links name a map (bpftool's is_iter_map_target).
fn is_iter_map_target(t: &str) -> bool {
    t == "bpf_map_elem" || t == "bpf_sk_storage_map"
}

impl Tool {
    pub fn do_prog(&mut self, args: &[String]) -> R<i32> {
        let cmds: &[(&str, Option<Cmd>)] = &[
            ("show", Some(Tool::prog_show)),
            ("list", Some(Tool::prog_show)),
            ("help", Some(|t: &mut Tool, _| Ok(t.help()))),
            ("dump", None),
            ("pin", Some(Tool::prog_pin)),
            ("load", Some(Tool::prog_load)),
            ("loadall", Some(Tool::prog_loadall)),
            ("attach", Some(Tool::prog_attach)),
            ("detach", None),
            ("tracelog", None),
            ("run", Some(Tool::prog_run)),
            ("profile", None),
        ];
        self.cmd_select(args, cmds)
    }

    pub fn do_link(&mut self, args: &[String]) -> R<i32> {
        let cmds: &[(&str, Option<Cmd>)] = &[
            ("show", Some(Tool::link_show)),
            ("list", Some(Tool::link_show)),
            ("help", Some(|t: &mut Tool, _| Ok(t.help()))),
            ("pin", Some(Tool::link_pin)),
            ("detach", Some(Tool::link_detach_cmd)),
        ];
        self.cmd_select(args, cmds)
    }

    // ---- PROG := id N | tag TAG | name NAME | pinned FILE ----

    fn prog_parse_fds(&mut self, argv: &mut Argv) -> R<Result<Vec<Obj>, ()>> {
        let w = argv.arg();
        if is_prefix(w, "id") {
            argv.next();
            let Some(id) = self.parse_id(argv) else {
                return Ok(Err(()));
            };
            return match self.get_by_id("prog", id)? {
                Ok(o) => Ok(Ok(vec![o])),
                Err(e) => {
                    self.p_err(format!("get by id ({id}): {}", strerror(e)));
                    Ok(Err(()))
                }
            };
        } else if is_prefix(w, "tag") {
            argv.next();
            let Some(tag) = parse_tag(argv.arg()) else {
                self.p_err("can't parse tag");
                return Ok(Err(()));
            };
            argv.next();
            return self.objs_matching("prog", "prog", &|v: &Value| tag_of(v) == tag);
        } else if is_prefix(w, "name") {
            argv.next();
            let name = argv.arg().to_string();
            if name.len() > MAX_PROG_FULL_NAME - 1 {
                self.p_err("can't parse name");
                return Ok(Err(()));
            }
            argv.next();
            return self.objs_matching("prog", "prog", &|v: &Value| v["name"] == name.as_str());
        } else if is_prefix(w, "pinned") {
            argv.next();
            let path = argv.get();
            return Ok(match self.open_obj_pinned_any(path, "prog")? {
                Some(o) => Ok(vec![o]),
                None => Err(()),
            });
        }
        self.p_err(format!(
            "expected 'id', 'tag', 'name' or 'pinned', got: '{w}'?"
        ));
        Ok(Err(()))
    }

    pub(super) fn prog_parse_fd(&mut self, argv: &mut Argv) -> R<Result<Obj, i32>> {
        let objs = match self.prog_parse_fds(argv)? {
            Ok(v) => v,
            Err(()) => return Ok(Err(-1)),
        };
        if objs.len() != 1 {
            if objs.len() > 1 {
                self.p_err("several programs match this handle");
            }
            for o in &objs {
                self.close(o)?;
            }
            return Ok(Err(-1));
        }
        Ok(Ok(objs.into_iter().next().expect("one")))
    }

    fn show_prog(&mut self, o: &Obj, table: &Option<Vec<(u32, String)>>) -> R<i32> {
        let info = match self.info(o)? {
            Ok(v) => v,
            Err(e) => {
                self.p_err(format!("can't get prog info: {}", strerror(e)));
                return Ok(-1);
            }
        };
        let id = u(&info, "id") as u32;
        let ptype = u(&info, "prog_type") as u32;
        let type_name = ProgType::from_u32(ptype).map(|t| t.name());
        let name = info["name"].as_str().unwrap_or("").to_string();
        let tag = tag_of(&info);
        let gpl = gpl_compatible(info["license"].as_str().unwrap_or(""));
        let loaded_at = u(&info, "loaded_at");
        let uid = u(&info, "uid");
        let xlated = u(&info, "insn_count") * 8;
        let jited = u(&info, "jited_len");
        let memlock = u(&info, "memlock");
        let map_ids: Vec<u64> = info["map_ids"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let pins: Vec<String> = table
            .iter()
            .flatten()
            .filter(|(i, _)| *i == id)
            .map(|(_, p)| p.clone())
            .collect();
        let table_nonempty = table.as_ref().is_some_and(|t| !t.is_empty());
        if self.json_output {
            let (jw, out) = (&mut self.jw, &mut self.out);
            jw.start_object(out);
            jw.uint_field(out, "id", id as u64);
            match type_name {
                Some(t) => jw.string_field(out, "type", t),
                None => jw.uint_field(out, "type", ptype as u64),
            }
            if !name.is_empty() {
                jw.string_field(out, "name", &name);
            }
            jw.name(out, "tag");
            jw.raw(out, &format!("\"{}\"", fprint_hex(&tag, "")));
            jw.bool_field(out, "gpl_compatible", gpl);
            if loaded_at != 0 {
                jw.name(out, "loaded_at");
                jw.raw(out, &load_time(loaded_at, true));
                jw.uint_field(out, "uid", uid);
            }
            jw.uint_field(out, "bytes_xlated", xlated);
            jw.bool_field(out, "jited", jited > 0);
            if jited > 0 {
                jw.uint_field(out, "bytes_jited", jited);
            }
            jw.int_field(out, "bytes_memlock", memlock as i64);
            if !map_ids.is_empty() {
                jw.name(out, "map_ids");
                jw.start_array(out);
                for m in &map_ids {
                    jw.uint(out, *m);
                }
                jw.end_array(out);
            }
            if table_nonempty {
                super::json_pinned(jw, out, &pins);
            }
            jw.end_object(out);
        } else {
            let mut s = format!("{id}: ");
            match type_name {
                Some(t) => s.push_str(&format!("{t}  ")),
                None => s.push_str(&format!("type {ptype}  ")),
            }
            if !name.is_empty() {
                s.push_str(&format!("name {name}  "));
            }
            s.push_str("tag ");
            s.push_str(&fprint_hex(&tag, ""));
            if gpl {
                s.push_str("  gpl");
            }
            s.push('\n');
            if loaded_at != 0 {
                s.push_str(&format!(
                    "\tloaded_at {}  uid {}\n",
                    load_time(loaded_at, false),
                    uid
                ));
            }
            s.push_str(&format!("\txlated {xlated}B"));
            if jited > 0 {
                s.push_str(&format!("  jited {jited}B"));
            } else {
                s.push_str("  not jited");
            }
            s.push_str(&format!("  memlock {memlock}B"));
            if !map_ids.is_empty() {
                let ids: Vec<String> = map_ids.iter().map(|m| m.to_string()).collect();
                s.push_str(&format!("  map_ids {}", ids.join(",")));
            }
            if table_nonempty {
                super::plain_pinned(&mut s, &pins);
            }
            s.push('\n');
            self.print(s);
        }
        Ok(0)
    }

    fn prog_show(&mut self, mut argv: Argv) -> R<i32> {
        let table = self.pinned_table("prog")?;
        if argv.argc() == 2 {
            let objs = match self.prog_parse_fds(&mut argv)? {
                Ok(v) if !v.is_empty() => v,
                _ => return Ok(-1),
            };
            let many = objs.len() > 1;
            if self.json_output && many {
                self.jw.start_array(&mut self.out);
            }
            let mut err = -1;
            for o in &objs {
                err = self.show_prog(o, &table)?;
                self.close(o)?;
                if err != 0 {
                    break;
                }
            }
            if self.json_output && many {
                self.jw.end_array(&mut self.out);
            }
            return Ok(err);
        }
        if argv.argc() != 0 {
            return Ok(self.bad_arg(&argv));
        }
        if self.json_output {
            self.jw.start_array(&mut self.out);
        }
        let mut id = 0;
        let err;
        loop {
            let o = match self.next_by_id("prog", "program", &mut id)? {
                Ok(o) => o,
                Err(e) => {
                    err = if e == libc::ENOENT { 0 } else { -1 };
                    break;
                }
            };
            let r = self.show_prog(&o, &table)?;
            self.close(&o)?;
            if r != 0 {
                err = r;
                break;
            }
        }
        if self.json_output {
            self.jw.end_array(&mut self.out);
        }
        Ok(err)
    }

    fn prog_pin(&mut self, argv: Argv) -> R<i32> {
        let err = self.do_pin_any(argv, |t, a| t.prog_parse_fd(a))?;
        if err == 0 && self.json_output {
            self.j_null();
        }
        Ok(err)
    }

    // ---- LINK := id N | pinned FILE ----

    pub(super) fn link_parse_fd_pub(&mut self, argv: &mut Argv) -> R<Result<Obj, i32>> {
        self.link_parse_fd(argv)
    }

    fn link_parse_fd(&mut self, argv: &mut Argv) -> R<Result<Obj, i32>> {
        let w = argv.arg();
        if is_prefix(w, "id") {
            argv.next();
            let Some(id) = self.parse_id(argv) else {
                return Ok(Err(-1));
            };
            return match self.get_by_id("link", id)? {
                Ok(o) => Ok(Ok(o)),
                Err(e) => {
                    self.p_err(format!(
                        "failed to get link with ID {}: {}",
                        id as i32,
                        strerror(e)
                    ));
                    Ok(Err(-e))
                }
            };
        } else if is_prefix(w, "pinned") {
            argv.next();
            let path = argv.get();
            return Ok(self.open_obj_pinned_any(path, "link")?.ok_or(-1));
        }
        self.p_err(format!("expected 'id' or 'pinned', got: '{w}'?"));
        Ok(Err(-1))
    }

    fn show_link(&mut self, o: &Obj, table: &Option<Vec<(u32, String)>>) -> R<i32> {
        let info = match self.info(o)? {
            Ok(v) => v,
            Err(e) => {
                self.p_err(format!("can't get link info: {}", strerror(e)));
                return Ok(-e);
            }
        };
        let id = u(&info, "id") as u32;
        let prog_id = u(&info, "prog_id") as u32;
        let attach = info["attach_type"].as_str().unwrap_or("").to_string();
        let target = info["target"].as_str().unwrap_or("").to_string();
        let (ltype, attach_name) = link_type(&attach);
        // Tracing links show their program's type.
        let mut prog_type: Option<Result<String, ()>> = None;
        if ltype == 2 {
            prog_type = Some(match self.get_by_id("prog", prog_id)? {
                Ok(p) => {
                    let r = self.info(&p)?;
                    self.close(&p)?;
                    match r {
                        Ok(pi) => {
                            let t = u(&pi, "prog_type") as u32;
                            Ok(ProgType::from_u32(t)
                                .map(|t| t.name().to_string())
                                .unwrap_or_else(|| t.to_string()))
                        }
                        Err(e) => {
                            self.p_err(format!("can't get prog info: {}", strerror(e)));
                            Err(())
                        }
                    }
                }
                Err(_) => Err(()),
            });
        }
        let pins: Vec<String> = table
            .iter()
            .flatten()
            .filter(|(i, _)| *i == id)
            .map(|(_, p)| p.clone())
            .collect();
        let table_nonempty = table.as_ref().is_some_and(|t| !t.is_empty());
        // bpfvfs's view links have no kernel link type: shown as type "view" (an extension).
        let view = attach == "view";
        let type_name = if view { "view" } else { LINK_TYPES[ltype] };
        let inherit = info["inherit"].as_bool().unwrap_or(false);
        if self.json_output {
            let (jw, out) = (&mut self.jw, &mut self.out);
            jw.start_object(out);
            jw.uint_field(out, "id", id as u64);
            jw.string_field(out, "type", type_name);
            jw.uint_field(out, "prog_id", prog_id as u64);
            match ltype {
                1 => jw.string_field(out, "tp_name", &target),
                2 => match &prog_type {
                    Some(Ok(t)) => {
                        jw.string_field(out, "prog_type", t);
                        jw.string_field(out, "attach_type", attach_name);
                    }
                    _ => return Ok(0), // bpftool stops here, the object left open
                },
                4 => {
                    jw.string_field(out, "target_name", &target);
                    if is_iter_map_target(&target) {
                        jw.uint_field(out, "map_id", u(&info, "map_id"));
                    }
                    if target == "cgroup" {
                        jw.uint_field(out, "cgroup_id", u(&info, "cgroup_id"));
                        jw.string_field(out, "order", cgroup_order_name(u(&info, "order")));
                    }
                }
                _ if view => {
                    jw.string_field(out, "attach_type", "view");
                    jw.uint_field(out, "cgroup_id", u(&info, "cgroup_id"));
                    jw.bool_field(out, "inherit", inherit);
                }
                _ => {}
            }
            if table_nonempty {
                super::json_pinned(jw, out, &pins);
            }
            jw.end_object(out);
        } else {
            let mut s = format!("{id}: {type_name}  prog {prog_id}  ");
            match ltype {
                1 => s.push_str(&format!("\n\ttp '{target}'  ")),
                2 => match &prog_type {
                    Some(Ok(t)) => {
                        s.push_str(&format!("\n\tprog_type {t}  attach_type {attach_name}  "))
                    }
                    _ => {
                        self.print(s);
                        return Ok(0);
                    }
                },
                4 => {
                    s.push_str(&format!("target_name {target}  "));
                    if is_iter_map_target(&target) {
                        s.push_str(&format!("map_id {}  ", u(&info, "map_id")));
                    }
                    if target == "cgroup" {
                        s.push_str(&format!(
                            "cgroup_id {}  order {}  ",
                            u(&info, "cgroup_id"),
                            cgroup_order_name(u(&info, "order"))
                        ));
                    }
                }
                _ if view => {
                    s.push_str(&format!(
                        "attach_type view  cgroup_id {}  ",
                        u(&info, "cgroup_id")
                    ));
                    if inherit {
                        s.push_str("inherit  ");
                    }
                }
                _ => {}
            }
            if table_nonempty {
                super::plain_pinned(&mut s, &pins);
            }
            s.push('\n');
            self.print(s);
        }
        Ok(0)
    }

    fn link_show(&mut self, mut argv: Argv) -> R<i32> {
        let table = self.pinned_table("link")?;
        if argv.argc() == 2 {
            let o = match self.link_parse_fd(&mut argv)? {
                Ok(o) => o,
                Err(fd) => return Ok(fd),
            };
            let r = self.show_link(&o, &table)?;
            self.close(&o)?;
            return Ok(r);
        }
        if argv.argc() != 0 {
            return Ok(self.bad_arg(&argv));
        }
        if self.json_output {
            self.jw.start_array(&mut self.out);
        }
        let mut id = 0;
        let last_errno;
        loop {
            let o = match self.next_by_id("link", "link", &mut id)? {
                Ok(o) => o,
                Err(e) => {
                    last_errno = e;
                    break;
                }
            };
            let r = self.show_link(&o, &table)?;
            self.close(&o)?;
            if r != 0 {
                last_errno = -r;
                break;
            }
        }
        if self.json_output {
            self.jw.end_array(&mut self.out);
        }
        Ok(if last_errno == libc::ENOENT { 0 } else { -1 })
    }

    fn link_pin(&mut self, argv: Argv) -> R<i32> {
        let err = self.do_pin_any(argv, |t, a| t.link_parse_fd(a))?;
        if err == 0 && self.json_output {
            self.j_null();
        }
        Ok(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(
            parse_tag("0102030405060708"),
            Some([1, 2, 3, 4, 5, 6, 7, 8])
        );
        assert_eq!(parse_tag("0102"), None);
        assert!(gpl_compatible("Dual BSD/GPL") && !gpl_compatible("MIT"));
        assert_eq!(load_time(5, true), "5");
    }
}
