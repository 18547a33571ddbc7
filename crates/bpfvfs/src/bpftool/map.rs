//! `bpfvfs map ...`: bpftool's map.c.

use super::cstr::{fprint_hex, is_prefix, round_up8, strerror, strtoul};
use super::{Argv, Cmd, Obj, Tool, R};
use bpfvfs_bpf::uapi::MapType;
use serde_json::{json, Value};

const BPF_ANY: u64 = 0;
const BPF_NOEXIST: u64 = 1;
const BPF_EXIST: u64 = 2;

/// struct bpf_map_info, as obj_get_info reports it.
/// BPF_MAP_TYPE_INODE_STORAGE.
const INODE_STORAGE: u32 = 28;
/// BPF_MAP_TYPE_CGRP_STORAGE: keyed by a group directory (`file DIR` or `cgroup DIR`).
const CGRP_STORAGE: u32 = 32;

#[derive(Clone, Debug, Default)]
pub struct MapInfo {
    pub id: u32,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub name: String,
    pub memlock: u64,
    pub frozen: bool,
    /// Bytes of one value as user space passes it (per-CPU maps: one slot per CPU).
    pub user_value_size: usize,
}

impl MapInfo {
    pub fn from_json(v: &Value) -> MapInfo {
        let u = |k: &str| v[k].as_u64().unwrap_or(0);
        let value_size = u("value_size") as u32;
        MapInfo {
            id: u("id") as u32,
            map_type: u("map_type") as u32,
            key_size: u("key_size") as u32,
            value_size,
            max_entries: u("max_entries") as u32,
            map_flags: u("map_flags") as u32,
            name: v["name"].as_str().unwrap_or("").to_string(),
            memlock: u("memlock"),
            frozen: v["frozen"].as_bool().unwrap_or(false),
            user_value_size: v["user_value_size"]
                .as_u64()
                .map(|n| n as usize)
                .unwrap_or(value_size as usize),
        }
    }

    fn per_cpu(&self) -> bool {
        // percpu_hash, percpu_array, lru_percpu_hash, percpu_cgroup_storage
        matches!(self.map_type, 5 | 6 | 10 | 21)
    }

    fn map_of_maps_or_progs(&self) -> bool {
        matches!(self.map_type, 3 | 12 | 13)
    }

    /// (possible CPUs, stride) of a per-CPU value.
    fn cpus(&self) -> (usize, usize) {
        let step = round_up8(self.value_size as usize).max(1);
        ((self.user_value_size / step).max(1), step)
    }

    /// The size of the value buffer bpftool allocates (alloc_value).
    fn value_buf_len(&self) -> usize {
        if self.per_cpu() {
            let (n, step) = self.cpus();
            n * step
        } else {
            self.value_size as usize
        }
    }
}

fn type_name(t: u32) -> Option<&'static str> {
    MapType::from_u32(t).map(|t| t.name())
}

pub fn help_text() -> String {
    let types: Vec<&str> = bpfvfs_bpf::map::MAP_TYPES
        .iter()
        .map(|e| e.map_type.name())
        .collect();
    let b = "bpfvfs";
    let o = "map";
    format!(
        "Usage: {b} {o} {{ show | list }}   [MAP]\n\
         \x20      {b} {o} create     FILE type TYPE key KEY_SIZE value VALUE_SIZE \\\n\
         \x20                                 entries MAX_ENTRIES name NAME [flags FLAGS] \\\n\
         \x20                                 [inner_map MAP]\n\
         \x20      {b} {o} dump       MAP\n\
         \x20      {b} {o} update     MAP [key DATA] [value VALUE] [UPDATE_FLAGS]\n\
         \x20      {b} {o} lookup     MAP [key DATA]\n\
         \x20      {b} {o} getnext    MAP [key DATA]\n\
         \x20      {b} {o} delete     MAP  key DATA\n\
         \x20      {b} {o} pin        MAP  FILE\n\
         \x20      {b} {o} freeze     MAP\n\
         \x20      {b} {o} help\n\
         \n\
         \x20      MAP := {{ id MAP_ID | pinned FILE | name MAP_NAME }}\n\
         \x20      DATA := {{ [hex] BYTES }}\n\
         \x20      VALUE := {{ DATA }}\n\
         \x20      UPDATE_FLAGS := {{ any | exist | noexist }}\n\
         \x20      TYPE := {{ {} }}\n\
         \x20      FILE := a path in the bpfvfs tree (/sys/fs/bpf/...), or the same path under\n\
         \x20              the daemon's mount point\n\
         \x20      OPTIONS := {{ {{-j|--json}} [{{-p|--pretty}}] | {{-f|--bpffs}} | {{-n|--nomount}} }}\n",
        types.join(" | ")
    )
}

impl Tool {
    pub fn do_map(&mut self, args: &[String]) -> R<i32> {
        let cmds: &[(&str, Option<Cmd>)] = &[
            ("show", Some(Tool::map_show)),
            ("list", Some(Tool::map_show)),
            ("help", Some(|t: &mut Tool, _| Ok(t.help()))),
            ("dump", Some(Tool::map_dump)),
            ("update", Some(Tool::map_update)),
            ("lookup", Some(Tool::map_lookup)),
            ("getnext", Some(Tool::map_getnext)),
            ("delete", Some(Tool::map_delete)),
            ("pin", Some(Tool::map_pin)),
            ("event_pipe", None),
            ("create", Some(Tool::map_create)),
            ("peek", None),
            ("push", None),
            ("enqueue", None),
            ("pop", None),
            ("dequeue", None),
            ("freeze", Some(Tool::map_freeze)),
        ];
        self.cmd_select(args, cmds)
    }

    // ---- MAP := id N | pinned FILE | name NAME ----

    /// map_parse_fds: every map the words name (several for `name`); Err after a message
    /// (or silently when a name matches nothing: bpftool returns 0 maps and callers fail).
    fn map_parse_fds(&mut self, argv: &mut Argv) -> R<Result<Vec<Obj>, ()>> {
        let w = argv.arg();
        if is_prefix(w, "id") {
            argv.next();
            let Some(id) = self.parse_id(argv) else {
                return Ok(Err(()));
            };
            return match self.get_by_id("map", id)? {
                Ok(o) => Ok(Ok(vec![o])),
                Err(e) => {
                    self.p_err(format!("get map by id ({id}): {}", strerror(e)));
                    Ok(Err(()))
                }
            };
        } else if is_prefix(w, "name") {
            argv.next();
            let name = argv.arg().to_string();
            if name.len() > 15 {
                self.p_err("can't parse name");
                return Ok(Err(()));
            }
            argv.next();
            return self.objs_matching("map", "map", &|v: &Value| v["name"] == name.as_str());
        } else if is_prefix(w, "pinned") {
            argv.next();
            let path = argv.get();
            return Ok(match self.open_obj_pinned_any(path, "map")? {
                Some(o) => Ok(vec![o]),
                None => Err(()),
            });
        }
        self.p_err(format!("expected 'id', 'name' or 'pinned', got: '{w}'?"));
        Ok(Err(()))
    }

    /// map_parse_fd: exactly one map (Err(-1) otherwise).
    pub(super) fn map_parse_fd(&mut self, argv: &mut Argv) -> R<Result<Obj, i32>> {
        let objs = match self.map_parse_fds(argv)? {
            Ok(v) => v,
            Err(()) => return Ok(Err(-1)),
        };
        if objs.len() != 1 {
            if objs.len() > 1 {
                self.p_err("several maps match this handle");
            }
            for o in &objs {
                self.close(o)?;
            }
            return Ok(Err(-1));
        }
        Ok(Ok(objs.into_iter().next().expect("one")))
    }

    /// map_parse_fd_and_info.
    fn map_parse_fd_and_info(&mut self, argv: &mut Argv) -> R<Option<(Obj, MapInfo)>> {
        let o = match self.map_parse_fd(argv)? {
            Ok(o) => o,
            Err(_) => return Ok(None),
        };
        match self.info(&o)? {
            Ok(v) => Ok(Some((o, MapInfo::from_json(&v)))),
            Err(e) => {
                self.p_err(format!("can't get map info: {}", strerror(e)));
                self.close(&o)?;
                Ok(None)
            }
        }
    }

    // ---- output of one map ----

    fn show_map_close(
        &mut self,
        o: &Obj,
        info: &MapInfo,
        table: &Option<Vec<(u32, String)>>,
    ) -> R<()> {
        let pins: Vec<String> = table
            .iter()
            .flatten()
            .filter(|(id, _)| *id == info.id)
            .map(|(_, p)| p.clone())
            .collect();
        let table_nonempty = table.as_ref().is_some_and(|t| !t.is_empty());
        if self.json_output {
            let (jw, out) = (&mut self.jw, &mut self.out);
            jw.start_object(out);
            show_map_header_json(jw, out, info);
            jw.uint_field(out, "bytes_key", info.key_size as u64);
            jw.uint_field(out, "bytes_value", info.value_size as u64);
            jw.uint_field(out, "max_entries", info.max_entries as u64);
            jw.int_field(out, "bytes_memlock", info.memlock as i64);
            jw.int_field(out, "frozen", info.frozen as i64);
            if table_nonempty {
                super::json_pinned(jw, out, &pins);
            }
            jw.end_object(out);
        } else {
            let mut s = show_map_header_plain(info);
            s.push_str(&format!(
                "\tkey {}B  value {}B  max_entries {}",
                info.key_size, info.value_size, info.max_entries
            ));
            s.push_str(&format!("  memlock {}B", info.memlock));
            if table_nonempty {
                super::plain_pinned(&mut s, &pins);
            }
            if info.frozen {
                s.push_str("\n\tfrozen");
            }
            s.push('\n');
            self.print(s);
        }
        self.close(o)
    }

    fn map_show(&mut self, mut argv: Argv) -> R<i32> {
        let table = self.pinned_table("map")?;
        if argv.argc() == 2 {
            return self.map_show_subset(&mut argv, &table);
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
            let o = match self.next_by_id("map", "map", &mut id)? {
                Ok(o) => o,
                Err(e) => {
                    last_errno = e;
                    break;
                }
            };
            let info = match self.info(&o)? {
                Ok(v) => MapInfo::from_json(&v),
                Err(e) => {
                    self.p_err(format!("can't get map info: {}", strerror(e)));
                    self.close(&o)?;
                    last_errno = e;
                    break;
                }
            };
            self.show_map_close(&o, &info, &table)?;
        }
        if self.json_output {
            self.jw.end_array(&mut self.out);
        }
        Ok(if last_errno == libc::ENOENT { 0 } else { -1 })
    }

    fn map_show_subset(&mut self, argv: &mut Argv, table: &Option<Vec<(u32, String)>>) -> R<i32> {
        let objs = match self.map_parse_fds(argv)? {
            Ok(v) if !v.is_empty() => v,
            _ => return Ok(-1),
        };
        let many = objs.len() > 1;
        if self.json_output && many {
            self.jw.start_array(&mut self.out);
        }
        let mut err = -1;
        for (i, o) in objs.iter().enumerate() {
            match self.info(o)? {
                Ok(v) => {
                    err = 0;
                    let info = MapInfo::from_json(&v);
                    self.show_map_close(o, &info, table)?;
                }
                Err(e) => {
                    self.p_err(format!("can't get map info: {}", strerror(e)));
                    for o in &objs[i..] {
                        self.close(o)?;
                    }
                    err = -e;
                    break;
                }
            }
        }
        if self.json_output && many {
            self.jw.end_array(&mut self.out);
        }
        Ok(err)
    }

    // ---- dump ----

    fn map_dump(&mut self, mut argv: Argv) -> R<i32> {
        if argv.argc() != 2 {
            return Err(self.usage());
        }
        let objs = match self.map_parse_fds(&mut argv)? {
            Ok(v) if !v.is_empty() => v,
            _ => return Ok(-1),
        };
        let many = objs.len() > 1;
        if self.json_output && many {
            self.jw.start_array(&mut self.out);
        }
        let mut err = -1;
        for (i, o) in objs.iter().enumerate() {
            let info = match self.info(o)? {
                Ok(v) => MapInfo::from_json(&v),
                Err(e) => {
                    self.p_err(format!("can't get map info: {}", strerror(e)));
                    for o in &objs[i..] {
                        self.close(o)?;
                    }
                    break;
                }
            };
            err = self.dump_one(o, &info, many)?;
            if !self.json_output && i != objs.len() - 1 {
                self.print("\n");
            }
            if err != 0 {
                for o in &objs[i + 1..] {
                    self.close(o)?;
                }
                break;
            }
        }
        if self.json_output && many {
            self.jw.end_array(&mut self.out);
        }
        Ok(err)
    }

    /// map_dump: walk with get_next_key, look each key up.
    fn dump_one(&mut self, o: &Obj, info: &MapInfo, show_header: bool) -> R<i32> {
        if self.json_output {
            if show_header {
                self.jw.start_object(&mut self.out);
                show_map_header_json(&mut self.jw, &mut self.out, info);
                self.jw.name(&mut self.out, "elements");
            }
            self.jw.start_array(&mut self.out);
        } else if show_header {
            let h = show_map_header_plain(info);
            self.print(h);
        }
        let mut num = 0u32;
        let mut err = 0;
        let mut prev: Option<Vec<u8>> = None;
        if info.map_type == INODE_STORAGE || info.map_type == CGRP_STORAGE {
            // Keyed by inode: the daemon lists (inode, path, value) in one step.
            match self.sys("map_dump", json!({"handle": o.handle}))? {
                Ok(v) => {
                    for e in v["entries"].as_array().into_iter().flatten() {
                        let value = bytes_of(&e["value"]);
                        self.print_file_entry(e["path"].as_str(), e["inode"].as_u64(), &value);
                        num += 1;
                    }
                }
                Err(e) => err = -e,
            }
        } else {
            loop {
                let mut args = json!({"handle": o.handle});
                if let Some(k) = &prev {
                    args["key"] = json!(k);
                }
                let key = match self.sys("map_get_next_key", args)? {
                    Ok(v) => bytes_of(&v["next_key"]),
                    Err(libc::ENOENT) => break,
                    Err(e) => {
                        err = -e;
                        break;
                    }
                };
                match self.sys("map_lookup_elem", json!({"handle": o.handle, "key": key}))? {
                    Ok(v) => {
                        let value = bytes_of(&v["value"]);
                        self.print_entry(info, &key, &value);
                        num += 1;
                    }
                    Err(e) => self.print_entry_error(info, &key, e),
                }
                prev = Some(key);
                if num as u64 > (info.max_entries as u64) * 2 + 1024 {
                    break; // a map changing under us must not loop forever
                }
            }
        }
        if self.json_output {
            self.jw.end_array(&mut self.out);
            if show_header {
                self.jw.end_object(&mut self.out);
            }
        } else {
            self.print(format!(
                "Found {} element{}\n",
                num,
                if num != 1 { "s" } else { "" }
            ));
        }
        self.close(o)?;
        Ok(err)
    }

    /// An inode-storage element: `file: PATH  inode: N  value: HEX` (JSON: file, inode,
    /// value).
    fn print_file_entry(&mut self, file: Option<&str>, ino: Option<u64>, value: &[u8]) {
        if self.json_output {
            self.jw.start_object(&mut self.out);
            match file {
                Some(f) => self.jw.string_field(&mut self.out, "file", f),
                None => self.jw.null_field(&mut self.out, "file"),
            }
            self.jw.uint_field(&mut self.out, "inode", ino.unwrap_or(0));
            self.jw.name(&mut self.out, "value");
            self.hex_data_json(value);
            self.jw.end_object(&mut self.out);
        } else {
            let s = format!(
                "file: {}  inode: {}  value: {}\n",
                file.unwrap_or("(no name)"),
                ino.unwrap_or(0),
                fprint_hex(value, " ")
            );
            self.print(s);
        }
    }

    fn print_entry(&mut self, info: &MapInfo, key: &[u8], value: &[u8]) {
        if self.json_output {
            self.print_entry_json(info, key, value);
        } else {
            let s = print_entry_plain(info, key, value);
            self.print(s);
        }
    }

    fn hex_data_json(&mut self, data: &[u8]) {
        self.jw.start_array(&mut self.out);
        for b in data {
            self.jw.raw(&mut self.out, &format!("\"0x{b:02x}\""));
        }
        self.jw.end_array(&mut self.out);
    }

    fn print_entry_json(&mut self, info: &MapInfo, key: &[u8], value: &[u8]) {
        self.jw.start_object(&mut self.out);
        self.jw.name(&mut self.out, "key");
        self.hex_data_json(key);
        if !info.per_cpu() {
            self.jw.name(&mut self.out, "value");
            let n = (info.value_size as usize).min(value.len());
            self.hex_data_json(&value[..n]);
        } else {
            let (n, step) = info.cpus();
            self.jw.name(&mut self.out, "values");
            self.jw.start_array(&mut self.out);
            for i in 0..n {
                self.jw.start_object(&mut self.out);
                self.jw.int_field(&mut self.out, "cpu", i as i64);
                self.jw.name(&mut self.out, "value");
                let start = (i * step).min(value.len());
                let end = (start + info.value_size as usize).min(value.len());
                self.hex_data_json(&value[start..end]);
                self.jw.end_object(&mut self.out);
            }
            self.jw.end_array(&mut self.out);
        }
        self.jw.end_object(&mut self.out);
    }

    fn print_entry_error(&mut self, info: &MapInfo, key: &[u8], errno: i32) {
        if info.map_of_maps_or_progs() && errno == libc::ENOENT {
            return;
        }
        if self.json_output {
            self.jw.start_object(&mut self.out);
            self.jw.name(&mut self.out, "key");
            self.hex_data_json(key);
            self.jw.name(&mut self.out, "value");
            self.jw.start_object(&mut self.out);
            self.jw
                .string_field(&mut self.out, "error", &strerror(errno));
            self.jw.end_object(&mut self.out);
            self.jw.end_object(&mut self.out);
        } else {
            let msg = if errno == libc::ENOENT {
                "<no entry>".to_string()
            } else if errno == libc::ENOSPC && info.map_type == 20 {
                "<cannot read>".to_string()
            } else {
                strerror(errno)
            };
            let break_names = info.key_size > 16 || msg.len() > 16;
            let single_line = info.key_size as usize + msg.len() <= 24 && !break_names;
            let mut s = format!("key:{}", if break_names { '\n' } else { ' ' });
            s.push_str(&fprint_hex(key, " "));
            s.push_str(if single_line { "  " } else { "\n" });
            s.push_str(&format!(
                "value:{}{}\n",
                if break_names { '\n' } else { ' ' },
                msg
            ));
            self.print(s);
        }
    }

    // ---- DATA parsing ----

    /// parse_bytes: `[hex] BYTES`, exactly `n` of them into `buf`.
    fn parse_bytes(&mut self, argv: &mut Argv, name: &str, buf: &mut [u8], n: usize) -> bool {
        let mut base = 0;
        if argv.cur().is_some_and(|a| is_prefix(a, "hex")) {
            base = 16;
            argv.next();
        }
        let mut i = 0;
        while i < n {
            let Some(a) = argv.at(i) else { break };
            let (v, rest) = strtoul(a, base);
            if rest {
                self.p_err(format!("error parsing byte: {a}"));
                return false;
            }
            buf[i] = v as u8;
            i += 1;
        }
        if i != n {
            self.p_err(format!("{name} expected {n} bytes got {i}"));
            return false;
        }
        argv.advance(i);
        true
    }

    /// The start of `map update|lookup|getnext|delete MAP ...`: usage without a MAP, else
    /// the map, its info and a zeroed key buffer; None (exit -1) when MAP is not found.
    fn map_elem_start(&mut self, argv: &mut Argv) -> R<Option<(Obj, MapInfo, Vec<u8>)>> {
        if argv.argc() < 2 {
            return Err(self.usage());
        }
        let Some((o, info)) = self.map_parse_fd_and_info(argv)? else {
            return Ok(None);
        };
        let key = vec![0u8; info.key_size as usize];
        Ok(Some((o, info, key)))
    }

    /// `key DATA` alone (lookup, getnext, delete).
    fn parse_key(&mut self, argv: &mut Argv, info: &MapInfo, key: Option<&mut Vec<u8>>) -> bool {
        self.parse_elem(argv, info, key, None, info.key_size, 0, None)
    }

    /// parse_elem: `key DATA`, `value VALUE` and a flag word, in any order, each at most
    /// once; `key`/`value`/`flags` are None where the command takes none.
    #[allow(clippy::too_many_arguments)]
    fn parse_elem(
        &mut self,
        argv: &mut Argv,
        info: &MapInfo,
        mut key: Option<&mut Vec<u8>>,
        mut value: Option<&mut Vec<u8>>,
        key_size: u32,
        value_size: u32,
        mut flags: Option<&mut u64>,
    ) -> bool {
        loop {
            let Some(a) = argv.cur() else {
                if key.is_none() && value.is_none() {
                    return true;
                }
                self.p_err(format!(
                    "did not find {}",
                    if key.is_some() { "key" } else { "value" }
                ));
                return false;
            };
            let by_file = match info.map_type {
                INODE_STORAGE => a == "file",
                CGRP_STORAGE => a == "file" || a == "cgroup",
                _ => false,
            };
            if by_file && key.is_some() {
                // bpfvfs: inode-storage maps are keyed by a file (Linux: an fd of it).
                key = None;
                argv.next();
                let Some(f) = argv.cur() else {
                    self.p_err("file needs a path");
                    return false;
                };
                self.elem_file = Some(f.to_string());
                argv.next();
            } else if is_prefix(a, "key") {
                let Some(k) = key.take() else {
                    self.p_err(if key_size != 0 {
                        "duplicate key"
                    } else {
                        "unnecessary key"
                    });
                    return false;
                };
                argv.next();
                if !self.parse_bytes(argv, "key", k, key_size as usize) {
                    return false;
                }
            } else if is_prefix(a, "value") {
                let Some(v) = value.take() else {
                    self.p_err(if value_size != 0 {
                        "duplicate value"
                    } else {
                        "unnecessary value"
                    });
                    return false;
                };
                argv.next();
                if !self.parse_bytes(argv, "value", v, value_size as usize) {
                    return false;
                }
                fill_per_cpu_value(info, v);
            } else if is_prefix(a, "any") || is_prefix(a, "noexist") || is_prefix(a, "exist") {
                let Some(f) = flags.take() else {
                    self.p_err(format!("flags specified multiple times: {a}"));
                    return false;
                };
                *f = if is_prefix(a, "any") {
                    BPF_ANY
                } else if is_prefix(a, "noexist") {
                    BPF_NOEXIST
                } else {
                    BPF_EXIST
                };
                argv.next();
            } else {
                self.p_err(format!("expected key or value, got: {a}"));
                return false;
            }
        }
    }

    // ---- update / lookup / getnext / delete ----

    /// The request arguments naming the element: `"file"` (inode storage) or `"key"`.
    /// A FILE on the daemon's mount is opened and its descriptor passed with the request, as
    /// bpf(2) takes an fd; any other FILE is taken as a path in the bpfvfs tree.
    fn elem_args(&mut self, o: &Obj, key: &[u8]) -> R<Value> {
        let Some(f) = self.elem_file.take() else {
            return Ok(json!({"handle": o.handle, "key": key}));
        };
        let tree = self.conn.tree_path(&f)?;
        let on_mount = tree != f || !f.starts_with('/');
        if on_mount {
            if let Ok(file) = std::fs::File::open(&f) {
                self.elem_fd = Some(file);
                return Ok(json!({"handle": o.handle, "file_fd": true, "shown": f}));
            }
        }
        Ok(json!({"handle": o.handle, "file": tree, "shown": f}))
    }

    fn map_update(&mut self, mut argv: Argv) -> R<i32> {
        let Some((o, info, mut key)) = self.map_elem_start(&mut argv)? else {
            return Ok(-1);
        };
        let mut value = vec![0u8; info.value_buf_len()];
        let mut flags = BPF_ANY;
        let ok = self.parse_elem(
            &mut argv,
            &info,
            (info.key_size != 0).then_some(&mut key),
            (info.value_size != 0).then_some(&mut value),
            info.key_size,
            info.value_size,
            Some(&mut flags),
        );
        let err = if !ok {
            -1
        } else {
            let mut args = self.elem_args(&o, &key)?;
            args["value"] = json!(value);
            args["flags"] = json!(flags);
            let r = self.sys("map_update_elem", args)?;
            match r {
                Ok(_) => 0,
                Err(e) => {
                    self.p_err(format!("update failed: {}", strerror(e)));
                    -e
                }
            }
        };
        self.close(&o)?;
        if err == 0 && self.json_output {
            self.j_null();
        }
        Ok(err)
    }

    fn map_lookup(&mut self, mut argv: Argv) -> R<i32> {
        let Some((o, info, mut key)) = self.map_elem_start(&mut argv)? else {
            return Ok(-1);
        };
        let ok = self.parse_key(&mut argv, &info, (info.key_size != 0).then_some(&mut key));
        let err = if !ok {
            -1
        } else {
            let args = self.elem_args(&o, &key)?;
            let file = args
                .get("shown")
                .and_then(Value::as_str)
                .map(str::to_string);
            match self.sys("map_lookup_elem", args)? {
                Ok(v) => {
                    let value = bytes_of(&v["value"]);
                    match file {
                        Some(f) => self.print_file_entry(Some(&f), v["inode"].as_u64(), &value),
                        None => self.print_entry(&info, &key, &value),
                    }
                    0
                }
                Err(e) => {
                    if e == libc::ENOENT {
                        if self.json_output {
                            self.j_null();
                        } else {
                            let s = format!("key:\n{}\n\nNot found\n", fprint_hex(&key, " "));
                            self.print(s);
                        }
                    } else {
                        self.p_err(format!("lookup failed: {}", strerror(e)));
                    }
                    -e
                }
            }
        };
        self.close(&o)?;
        Ok(err)
    }

    fn map_getnext(&mut self, mut argv: Argv) -> R<i32> {
        let Some((o, info, mut key)) = self.map_elem_start(&mut argv)? else {
            return Ok(-1);
        };
        let have_key = argv.argc() > 0;
        if have_key && !self.parse_key(&mut argv, &info, Some(&mut key)) {
            self.close(&o)?;
            return Ok(-1);
        }
        let mut args = json!({"handle": o.handle});
        if have_key {
            args["key"] = json!(key);
        }
        let err = match self.sys("map_get_next_key", args)? {
            Ok(v) => {
                let next = bytes_of(&v["next_key"]);
                if self.json_output {
                    self.jw.start_object(&mut self.out);
                    if have_key {
                        self.jw.name(&mut self.out, "key");
                        self.hex_data_json(&key);
                    } else {
                        self.jw.null_field(&mut self.out, "key");
                    }
                    self.jw.name(&mut self.out, "next_key");
                    self.hex_data_json(&next);
                    self.jw.end_object(&mut self.out);
                } else {
                    let mut s = if have_key {
                        format!("key:\n{}\n", fprint_hex(&key, " "))
                    } else {
                        "key: None\n".to_string()
                    };
                    s.push_str(&format!("next key:\n{}\n", fprint_hex(&next, " ")));
                    self.print(s);
                }
                0
            }
            Err(e) => {
                self.p_err(format!("can't get next key: {}", strerror(e)));
                -e
            }
        };
        self.close(&o)?;
        Ok(err)
    }

    fn map_delete(&mut self, mut argv: Argv) -> R<i32> {
        let Some((o, info, mut key)) = self.map_elem_start(&mut argv)? else {
            return Ok(-1);
        };
        let ok = self.parse_key(&mut argv, &info, Some(&mut key));
        let err = if !ok {
            -1
        } else {
            let args = self.elem_args(&o, &key)?;
            match self.sys("map_delete_elem", args)? {
                Ok(_) => 0,
                Err(e) => {
                    self.p_err(format!("delete failed: {}", strerror(e)));
                    -e
                }
            }
        };
        self.close(&o)?;
        if err == 0 && self.json_output {
            self.j_null();
        }
        Ok(err)
    }

    // ---- pin / create / freeze ----

    fn map_pin(&mut self, argv: Argv) -> R<i32> {
        let err = self.do_pin_any(argv, |t, a| t.map_parse_fd(a))?;
        if err == 0 && self.json_output {
            self.j_null();
        }
        Ok(err)
    }

    fn map_create(&mut self, mut argv: Argv) -> R<i32> {
        if !self.req_args(&argv, 7) {
            return Ok(-1);
        }
        let pinfile = argv.get();
        let mut map_type: u32 = 0;
        let (mut key_size, mut value_size, mut max_entries, mut map_flags) =
            (0u32, 0u32, 0u32, 0u32);
        let mut name: Option<&str> = None;
        let mut inner: Option<Obj> = None;
        let result = loop {
            if argv.argc() == 0 {
                break None;
            }
            if !self.req_args(&argv, 2) {
                break Some(-1);
            }
            let w = argv.arg();
            if is_prefix(w, "type") {
                argv.next();
                if map_type != 0 {
                    self.p_err("map type already specified");
                    break Some(-1);
                }
                let t = argv.arg();
                match MapType::from_name(t) {
                    Some(mt) => map_type = mt.as_u32(),
                    None => {
                        self.p_err(format!("unrecognized map type: {t}"));
                        break Some(-1);
                    }
                }
                argv.next();
            } else if is_prefix(w, "name") {
                argv.next();
                name = Some(argv.get());
            } else if is_prefix(w, "key") {
                if !self.parse_u32_arg(&mut argv, &mut key_size, "key size") {
                    break Some(-1);
                }
            } else if is_prefix(w, "value") {
                if !self.parse_u32_arg(&mut argv, &mut value_size, "value size") {
                    break Some(-1);
                }
            } else if is_prefix(w, "entries") {
                if !self.parse_u32_arg(&mut argv, &mut max_entries, "max entries") {
                    break Some(-1);
                }
            } else if is_prefix(w, "flags") {
                if !self.parse_u32_arg(&mut argv, &mut map_flags, "flags") {
                    break Some(-1);
                }
            } else if is_prefix(w, "dev") {
                argv.next();
                // No network devices exist in bpfvfs: if_nametoindex fails.
                self.p_err(format!(
                    "unrecognized netdevice '{}': {}",
                    argv.arg(),
                    strerror(libc::ENODEV)
                ));
                break Some(-1);
            } else if is_prefix(w, "inner_map") {
                argv.next();
                if argv.argc() < 2 {
                    return Err(self.usage());
                }
                match self.map_parse_fd_and_info(&mut argv)? {
                    Some((o, _)) => {
                        if let Some(old) = inner.replace(o) {
                            self.close(&old)?;
                        }
                    }
                    None => return Ok(-1),
                }
            } else {
                self.p_err(format!("unknown arg {w}"));
                break Some(-1);
            }
        };
        if let Some(err) = result {
            return self.create_exit(inner, err);
        }
        let Some(name) = name else {
            self.p_err("map name not specified");
            return self.create_exit(inner, -1);
        };
        // libbpf copies the name into the 16-byte attribute: at most 15 bytes reach the kernel.
        let mut cut = name.len().min(15);
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut args = json!({
            "map_type": map_type, "key_size": key_size, "value_size": value_size,
            "max_entries": max_entries, "map_flags": map_flags, "name": &name[..cut],
        });
        if let Some(i) = &inner {
            args["inner_map"] = json!(i.handle);
        }
        let o = match self.sys("map_create", args)? {
            Ok(v) => Tool::obj_of(&v),
            Err(e) => {
                self.p_err(format!("map create failed: {}", strerror(e)));
                return self.create_exit(inner, -1);
            }
        };
        let err = self.do_pin_fd(&o, pinfile)?;
        self.close(&o)?;
        if err == 0 && self.json_output {
            self.j_null();
        }
        self.create_exit(inner, err)
    }

    fn create_exit(&mut self, inner: Option<Obj>, err: i32) -> R<i32> {
        if let Some(i) = inner {
            self.close(&i)?;
        }
        Ok(err)
    }

    /// parse_u32_arg: `WORD N` with strtoul(.., 0); "already specified" only if nonzero.
    fn parse_u32_arg(&mut self, argv: &mut Argv, val: &mut u32, what: &str) -> bool {
        argv.next();
        if *val != 0 {
            self.p_err(format!("{what} already specified"));
            return false;
        }
        let a = argv.arg();
        let (v, rest) = strtoul(a, 0);
        *val = v as u32;
        if rest {
            self.p_err(format!("can't parse {a} as {what}"));
            return false;
        }
        argv.next();
        true
    }

    fn map_freeze(&mut self, mut argv: Argv) -> R<i32> {
        if !self.req_args(&argv, 2) {
            return Ok(-1);
        }
        let o = match self.map_parse_fd(&mut argv)? {
            Ok(o) => o,
            Err(_) => return Ok(-1),
        };
        if argv.argc() > 0 {
            self.close(&o)?;
            return Ok(self.bad_arg(&argv));
        }
        let r = self.sys("map_freeze", json!({"handle": o.handle}))?;
        self.close(&o)?;
        if let Err(e) = r {
            self.p_err(format!("failed to freeze map: {}", strerror(e)));
            return Ok(-e);
        }
        if self.json_output {
            self.j_null();
        }
        Ok(0)
    }
}

/// fill_per_cpu_value: the parsed value copied into every CPU's slot.
fn fill_per_cpu_value(info: &MapInfo, v: &mut [u8]) {
    if !info.per_cpu() {
        return;
    }
    let (n, step) = info.cpus();
    let vs = (info.value_size as usize).min(v.len());
    for i in 1..n {
        let start = i * step;
        if start + vs > v.len() {
            break;
        }
        v.copy_within(0..vs, start);
    }
}

fn bytes_of(v: &Value) -> Vec<u8> {
    v.as_array()
        .map(|a| a.iter().map(|b| b.as_u64().unwrap_or(0) as u8).collect())
        .unwrap_or_default()
}

fn show_map_header_json(jw: &mut super::JsonWriter, out: &mut String, info: &MapInfo) {
    jw.uint_field(out, "id", info.id as u64);
    match type_name(info.map_type) {
        Some(t) => jw.string_field(out, "type", t),
        None => jw.uint_field(out, "type", info.map_type as u64),
    }
    if !info.name.is_empty() {
        jw.string_field(out, "name", &info.name);
    }
    jw.name(out, "flags");
    jw.raw(out, &(info.map_flags as i32).to_string());
}

fn show_map_header_plain(info: &MapInfo) -> String {
    let mut s = format!("{}: ", info.id);
    match type_name(info.map_type) {
        Some(t) => s.push_str(&format!("{t}  ")),
        None => s.push_str(&format!("type {}  ", info.map_type)),
    }
    if !info.name.is_empty() {
        s.push_str(&format!("name {}  ", info.name));
    }
    s.push_str(&format!("flags 0x{:x}\n", info.map_flags));
    s
}

fn print_entry_plain(info: &MapInfo, key: &[u8], value: &[u8]) -> String {
    let mut s = String::new();
    if !info.per_cpu() {
        let break_names = info.key_size > 16 || info.value_size > 16;
        let single_line = info.key_size + info.value_size <= 24 && !break_names;
        if info.key_size != 0 {
            s.push_str(&format!("key:{}", if break_names { '\n' } else { ' ' }));
            s.push_str(&fprint_hex(key, " "));
            s.push_str(if single_line { "  " } else { "\n" });
        }
        if info.value_size != 0 {
            s.push_str(&format!("value:{}", if break_names { '\n' } else { ' ' }));
            let n = (info.value_size as usize).min(value.len());
            s.push_str(&fprint_hex(&value[..n], " "));
        }
        s.push('\n');
    } else {
        let (n, step) = info.cpus();
        if info.key_size != 0 {
            s.push_str("key:\n");
            s.push_str(&fprint_hex(key, " "));
            s.push('\n');
        }
        if info.value_size != 0 {
            for i in 0..n {
                s.push_str(&format!(
                    "value (CPU {:02}):{}",
                    i,
                    if info.value_size > 16 { '\n' } else { ' ' }
                ));
                let start = (i * step).min(value.len());
                let end = (start + info.value_size as usize).min(value.len());
                s.push_str(&fprint_hex(&value[start..end], " "));
                s.push('\n');
            }
        }
    }
    s
}
