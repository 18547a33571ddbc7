//! `bpfvfs map|prog|link ...`: bpftool's grammar and output, against a bpfvfs daemon.
//!
//! The commands follow bpftool v7.1 (its `main.c`, `common.c`, `map.c`, `prog.c`, `link.c`)
//! step by step, so that the same words give the same stdout, the same `Error: ...` lines
//! (or `{"error":...}` objects with `-j`), and the same exit status: bpftool returns
//! `-errno` from a failed bpf(2) call on some paths and `-1` on others, and the process exit
//! status is that value `& 0xff` (254 for ENOENT, 239 for EEXIST, 255 for -1 and usage
//! errors). Each bpf(2) call becomes a request on one control connection ([`Conn`]); the
//! connection's handles play the fds and are released when the command exits.
//!
//! Paths (`pinned PATH`, pin targets) are paths in the bpfvfs tree (`/sys/fs/bpf/m`), or host
//! paths under the daemon's mount point (`DIR/sys/fs/bpf/m`), which are translated; messages
//! show the path as given.
//!
//! Deliberate differences, all documented in the help text and the README:
//! - memlock figures come from bpfvfs's own accounting, not the kernel's;
//! - `-f` lists pins as paths in the bpfvfs tree;
//! - help texts list what bpfvfs implements (bpftool's list every kernel feature);
//! - commands bpfvfs does not implement (event_pipe, peek, push, pop, enqueue, dequeue,
//!   prog load/attach/run..., link detach) fail with an error;
//! - no "pids" lines: bpftool's own process iterator is not available.

mod cgroup;
mod cstr;
mod iter;
pub mod json;
mod map;
mod prog;
mod prog_load;

/// The `pinned` member of a JSON show record (printed only when the pin table is in use, `-f`).
fn json_pinned(jw: &mut JsonWriter, out: &mut String, pins: &[String]) {
    jw.name(out, "pinned");
    jw.start_array(out);
    for p in pins {
        jw.string(out, p);
    }
    jw.end_array(out);
}

/// The `pinned PATH` lines of a plain show record.
fn plain_pinned(s: &mut String, pins: &[String]) {
    for p in pins {
        s.push_str(&format!("\n\tpinned {p}"));
    }
}

use crate::control::{Client, ClientError};
use cstr::{dirname, is_prefix, strerror, strtoul};
use json::JsonWriter;
use serde_json::{json, Value};
use std::path::{Component, Path, PathBuf};

/// The global options bpftool takes.
#[derive(Clone, Debug, Default)]
pub struct Opts {
    pub json: bool,
    pub pretty: bool,
    /// -f/--bpffs: show pinned paths.
    pub show_pinned: bool,
    /// -n/--nomount: never mount bpffs to pin.
    pub nomount: bool,
}

/// What a command printed and its exit status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub status: i32,
}

/// Failures that end the command at once (no bpftool equivalent).
#[derive(Debug)]
pub enum Fatal {
    /// usage() was called: the help has been printed.
    Usage,
    /// The daemon cannot be reached, or spoke nonsense.
    Client(ClientError),
}

impl From<ClientError> for Fatal {
    fn from(e: ClientError) -> Fatal {
        Fatal::Client(e)
    }
}

pub type R<T> = Result<T, Fatal>;
/// A bpf(2)-like result: the errno on failure.
pub type Sys<T> = Result<T, i32>;

/// An object the command holds a handle to (bpftool's fd).
#[derive(Clone, Debug)]
pub struct Obj {
    pub handle: u64,
    pub id: u32,
    pub kind: String,
}

/// bpftool's argv/argc: the words of one command and the current position.
pub struct Argv<'a> {
    v: &'a [String],
    i: usize,
}

impl<'a> Argv<'a> {
    pub fn new(v: &'a [String], i: usize) -> Argv<'a> {
        Argv { v, i }
    }
    pub fn argc(&self) -> usize {
        self.v.len().saturating_sub(self.i)
    }
    pub fn cur(&self) -> Option<&'a str> {
        self.v.get(self.i).map(String::as_str)
    }
    /// The current word, or "" past the end (bpftool never reads there after its checks).
    pub fn arg(&self) -> &'a str {
        self.cur().unwrap_or("")
    }
    pub fn at(&self, k: usize) -> Option<&'a str> {
        self.v.get(self.i + k).map(String::as_str)
    }
    /// argv[-1].
    pub fn prev(&self) -> &'a str {
        if self.i == 0 {
            ""
        } else {
            self.v[self.i - 1].as_str()
        }
    }
    pub fn next(&mut self) {
        self.i += 1;
    }
    pub fn advance(&mut self, n: usize) {
        self.i += n;
    }
    /// GET_ARG: the current word, then move on.
    pub fn get(&mut self) -> &'a str {
        let a = self.arg();
        self.i += 1;
        a
    }
}

/// The daemon connection, opened on first use.
pub struct Conn {
    socket: PathBuf,
    client: Option<Client>,
    mount_point: Option<Option<PathBuf>>,
}

impl Conn {
    pub fn new(socket: &Path) -> Conn {
        Conn {
            socket: socket.to_path_buf(),
            client: None,
            mount_point: None,
        }
    }

    /// One request; a remote error becomes its errno.
    pub fn call(&mut self, op: &str, args: Value) -> R<Sys<Value>> {
        self.call_fds(op, args, &[])
    }

    /// One request with descriptors attached (SCM_RIGHTS); a remote error becomes its errno.
    pub fn call_fds(&mut self, op: &str, args: Value, fds: &[std::os::fd::RawFd]) -> R<Sys<Value>> {
        Ok(self.call_full_fds(op, args, fds)?.map_err(|e| e.errno))
    }

    /// One request, the remote error kept whole (message, verifier log).
    pub fn call_full(
        &mut self,
        op: &str,
        args: Value,
    ) -> R<Result<Value, crate::control::ControlError>> {
        self.call_full_fds(op, args, &[])
    }

    /// The connection (opened on first use), one request, the remote error kept whole.
    fn call_full_fds(
        &mut self,
        op: &str,
        args: Value,
        fds: &[std::os::fd::RawFd],
    ) -> R<Result<Value, crate::control::ControlError>> {
        if self.client.is_none() {
            self.client = Some(Client::connect(&self.socket)?);
        }
        let c = self.client.as_mut().expect("just connected");
        match c.call_with_fds(op, args, fds) {
            Ok(v) => Ok(Ok(v)),
            Err(ClientError::Remote(e)) => Ok(Err(e)),
            Err(e) => Err(Fatal::Client(e)),
        }
    }

    fn mount_point(&mut self) -> R<Option<PathBuf>> {
        if let Some(m) = &self.mount_point {
            return Ok(m.clone());
        }
        let mp = match self.call("ping", Value::Null)? {
            Ok(v) => v
                .get("mount_point")
                .and_then(Value::as_str)
                .map(PathBuf::from),
            Err(_) => None,
        };
        self.mount_point = Some(mp.clone());
        Ok(mp)
    }

    /// A path as given on the command line, as a path in the bpfvfs tree: host paths under
    /// the daemon's mount point (absolute, or relative to a current directory inside it) are
    /// translated; anything else is taken as a tree path as is.
    pub fn tree_path(&mut self, user: &str) -> R<String> {
        let Some(mp) = self.mount_point()? else {
            return Ok(user.to_string());
        };
        let host = if user.starts_with('/') {
            PathBuf::from(user)
        } else {
            match std::env::current_dir() {
                Ok(cwd) => cwd.join(user),
                Err(_) => return Ok(user.to_string()),
            }
        };
        Ok(translate(&host, &mp, user.ends_with('/')).unwrap_or_else(|| user.to_string()))
    }
}

/// `host` (made lexically clean) as a tree path if it lies under `mount_point`.
pub fn translate(host: &Path, mount_point: &Path, trailing_slash: bool) -> Option<String> {
    let mut clean = PathBuf::from("/");
    for c in host.components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                clean.pop();
            }
            Component::Normal(n) => clean.push(n),
        }
    }
    let rest = clean.strip_prefix(mount_point).ok()?;
    let mut s = format!("/{}", rest.to_string_lossy());
    if trailing_slash && s != "/" {
        s.push('/');
    }
    Some(s)
}

/// One bpftool-style command being run.
pub struct Tool {
    pub opts: Opts,
    pub json_output: bool,
    pub jw: JsonWriter,
    pub out: String,
    pub err: String,
    pub conn: Conn,
    /// The object word ("map", "prog", "link") for help texts.
    object: &'static str,
    /// `file FILE` given in place of a key (inode-storage maps).
    pub elem_file: Option<String>,
    /// FILE opened on the mount, passed by descriptor with the next `file_fd` request.
    pub elem_fd: Option<std::fs::File>,
}

/// Run `bpfvfs OBJECT ARGS...` against the daemon at `socket`.
pub fn run(
    socket: &Path,
    object: &str,
    args: &[String],
    opts: &Opts,
) -> Result<Output, ClientError> {
    let object: &'static str = match object {
        "map" => "map",
        "prog" => "prog",
        "cgroup" => "cgroup",
        "iter" => "iter",
        _ => "link",
    };
    let json_output = opts.json || opts.pretty;
    let mut t = Tool {
        opts: opts.clone(),
        json_output,
        jw: JsonWriter::new(opts.pretty),
        out: String::new(),
        err: String::new(),
        conn: Conn::new(socket),
        object,
        elem_file: None,
        elem_fd: None,
    };
    let r = match object {
        "map" => t.do_map(args),
        "prog" => t.do_prog(args),
        "cgroup" => t.do_cgroup(args),
        "iter" => t.do_iter(args),
        _ => t.do_link(args),
    };
    let ret = match r {
        Ok(ret) => ret,
        Err(Fatal::Usage) => -1,
        Err(Fatal::Client(e)) => return Err(e),
    };
    if t.json_output {
        t.jw.finish(&mut t.out);
    }
    Ok(Output {
        stdout: t.out,
        stderr: t.err,
        status: ret & 0xff,
    })
}

type Cmd = fn(&mut Tool, Argv) -> R<i32>;

impl Tool {
    // ---- output (p_err, p_info, json helpers) ----

    pub fn p_err(&mut self, msg: impl AsRef<str>) {
        let msg = msg.as_ref();
        if self.json_output {
            self.jw.start_object(&mut self.out);
            self.jw.name(&mut self.out, "error");
            self.jw.enquote(&mut self.out, msg);
            self.jw.end_object(&mut self.out);
        } else {
            self.err.push_str("Error: ");
            self.err.push_str(msg);
            self.err.push('\n');
        }
    }

    pub fn p_info(&mut self, msg: impl AsRef<str>) {
        if !self.json_output {
            self.err.push_str(msg.as_ref());
            self.err.push('\n');
        }
    }

    pub fn print(&mut self, s: impl AsRef<str>) {
        self.out.push_str(s.as_ref());
    }

    pub fn j_null(&mut self) {
        self.jw.null(&mut self.out);
    }

    /// BAD_ARG(): "what is 'X'?", -1.
    pub fn bad_arg(&mut self, argv: &Argv) -> i32 {
        self.p_err(format!("what is '{}'?", argv.arg()));
        -1
    }

    /// REQ_ARGS(n).
    pub fn req_args(&mut self, argv: &Argv, n: usize) -> bool {
        if argv.argc() < n {
            self.p_err(format!(
                "'{}' needs at least {} arguments, {} found",
                argv.prev(),
                n,
                argv.argc()
            ));
            return false;
        }
        true
    }

    /// usage(): the object's help, then exit(-1).
    pub fn usage(&mut self) -> Fatal {
        self.help();
        Fatal::Usage
    }

    /// do_help of the current object.
    pub fn help(&mut self) -> i32 {
        if self.json_output {
            self.j_null();
            return 0;
        }
        let text = match self.object {
            "map" => map::help_text(),
            "cgroup" => cgroup::help_text(),
            "iter" => iter::help_text(),
            "prog" => prog::prog_help_text(),
            _ => prog::link_help_text(),
        };
        self.err.push_str(&text);
        0
    }

    /// cmd_select: the first command the word is a prefix of; none given: the first command.
    fn cmd_select(&mut self, args: &[String], cmds: &[(&str, Option<Cmd>)]) -> R<i32> {
        if args.is_empty() {
            if let Some((_, Some(f))) = cmds.first() {
                return f(self, Argv::new(args, 0));
            }
        }
        let word = args.first().map(String::as_str).unwrap_or("");
        for (name, f) in cmds {
            if is_prefix(word, name) {
                return match f {
                    Some(f) => f(self, Argv::new(args, 1)),
                    None => {
                        self.p_err(format!(
                            "'{} {}' is not supported by bpfvfs",
                            self.object, name
                        ));
                        Ok(-1)
                    }
                };
            }
        }
        self.help();
        Ok(-1)
    }

    // ---- bpf(2) through the daemon ----

    pub fn sys(&mut self, op: &str, args: Value) -> R<Sys<Value>> {
        if args.get("file_fd").is_some() {
            if let Some(f) = self.elem_fd.take() {
                use std::os::fd::AsRawFd;
                return self.conn.call_fds(op, args, &[f.as_raw_fd()]);
            }
        }
        self.conn.call(op, args)
    }

    pub fn close(&mut self, o: &Obj) -> R<()> {
        let _ = self.sys("close", json!({"handle": o.handle}))?;
        Ok(())
    }

    fn obj_of(v: &Value) -> Obj {
        Obj {
            handle: v["handle"].as_u64().unwrap_or(0),
            id: v["id"].as_u64().unwrap_or(0) as u32,
            kind: v["kind"].as_str().unwrap_or("").to_string(),
        }
    }

    pub fn get_by_id(&mut self, kind: &str, id: u32) -> R<Sys<Obj>> {
        Ok(self
            .sys("get_by_id", json!({"kind": kind, "obj_id": id}))?
            .map(|v| Self::obj_of(&v)))
    }

    pub fn get_next_id(&mut self, kind: &str, start: u32) -> R<Sys<u32>> {
        Ok(self
            .sys("get_next_id", json!({"kind": kind, "start": start}))?
            .map(|v| v["id"].as_u64().unwrap_or(0) as u32))
    }

    /// One step of a `show` walk over every object of `kind` (`noun` names it in the
    /// "can't get next" message): the next object after `*id`, skipping ids that vanish in
    /// between. Err(errno) ends the walk, ENOENT being its normal end; other errors have been
    /// reported as bpftool does.
    pub fn next_by_id(&mut self, kind: &str, noun: &str, id: &mut u32) -> R<Sys<Obj>> {
        loop {
            *id = match self.get_next_id(kind, *id)? {
                Ok(n) => n,
                Err(e) => {
                    if e != libc::ENOENT {
                        let hint = if e == libc::EINVAL {
                            " -- kernel too old?"
                        } else {
                            ""
                        };
                        self.p_err(format!("can't get next {noun}: {}{hint}", strerror(e)));
                    }
                    return Ok(Err(e));
                }
            };
            match self.get_by_id(kind, *id)? {
                Ok(o) => return Ok(Ok(o)),
                Err(libc::ENOENT) => continue,
                Err(e) => {
                    self.p_err(format!("can't get {kind} by id ({id}): {}", strerror(e)));
                    return Ok(Err(e));
                }
            }
        }
    }

    pub fn info(&mut self, o: &Obj) -> R<Sys<Value>> {
        // Pins come from list_pins (-f), once per command.
        self.sys(
            "obj_get_info",
            json!({"handle": o.handle, "with_pins": false}),
        )
    }

    fn obj_get(&mut self, user_path: &str) -> R<Sys<Obj>> {
        let path = self.conn.tree_path(user_path)?;
        Ok(self
            .sys("obj_get", json!({"path": path, "file_flags": 0}))?
            .map(|v| Self::obj_of(&v)))
    }

    /// statfs(path) says bpffs (is_bpffs).
    fn is_bpffs(&mut self, user_path: &str) -> R<bool> {
        Ok(self.fs_type_of(user_path)?.as_deref() == Some("bpf"))
    }

    /// The filesystem type statfs(path) reports, if the path exists.
    fn fs_type_of(&mut self, user_path: &str) -> R<Option<String>> {
        let path = self.conn.tree_path(user_path)?;
        Ok(match self.sys("statfs", json!({"path": path}))? {
            Ok(v) => v["fs_type"].as_str().map(str::to_string),
            Err(_) => None,
        })
    }

    /// Every pin of `kind` (bpftool's build_pinned_obj_table), as (id, path).
    pub fn pinned_table(&mut self, kind: &str) -> R<Option<Vec<(u32, String)>>> {
        if !self.opts.show_pinned {
            return Ok(None);
        }
        let v = match self.sys("list_pins", json!({"kind": kind}))? {
            Ok(v) => v,
            Err(_) => return Ok(Some(Vec::new())),
        };
        let pins = v["pins"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        (
                            p["id"].as_u64().unwrap_or(0) as u32,
                            p["path"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(pins))
    }

    // ---- common.c ----

    /// open_obj_pinned (not quiet).
    fn open_obj_pinned(&mut self, path: &str) -> R<Option<Obj>> {
        match self.obj_get(path)? {
            Ok(o) => Ok(Some(o)),
            Err(e) => {
                // dirname() edits the buffer the message prints.
                let (pname, dir) = dirname(path);
                let msg = if e == libc::EACCES && !self.is_bpffs(&dir)? {
                    "directory not in bpf file system (bpffs)".to_string()
                } else {
                    strerror(e)
                };
                let shown = if e == libc::EACCES {
                    pname
                } else {
                    path.to_string()
                };
                self.p_err(format!("bpf obj get ({shown}): {msg}"));
                Ok(None)
            }
        }
    }

    /// open_obj_pinned_any: the pinned object, if it is of kind `kind`.
    pub fn open_obj_pinned_any(&mut self, path: &str, kind: &str) -> R<Option<Obj>> {
        let Some(o) = self.open_obj_pinned(path)? else {
            return Ok(None);
        };
        if o.kind != kind {
            self.p_err(format!("incorrect object type: {}", o.kind));
            self.close(&o)?;
            return Ok(None);
        }
        Ok(Some(o))
    }

    /// mount_bpffs_for_pin: bpftool mounts bpffs on the pin's directory when it is not on
    /// one already (unless -n); so does this, in the bpfvfs tree.
    pub(super) fn mount_bpffs_for_pin(&mut self, name: &str) -> R<i32> {
        let (_, dir) = dirname(name);
        // An existing directory of any filesystem: bpfvfs pins there (bpffs pin, true pin,
        // or exposure in the cgroup tree; issue 9) instead of mounting bpffs over it.
        if self.fs_type_of(&dir)?.is_some() {
            return Ok(0);
        }
        if self.opts.nomount {
            self.p_err("no BPF file system found, not mounting it due to --nomount option");
            return Ok(-1);
        }
        let tree_dir = self.conn.tree_path(&dir)?;
        // Never over the whole tree (a relative name typed outside the mount lands there).
        let r = if translate(Path::new(&tree_dir), Path::new("/"), false).as_deref() == Some("/") {
            Err(libc::EBUSY)
        } else {
            self.sys(
                "mount",
                json!({"fs_type": "bpf", "path": tree_dir, "options": "mode=0700"}),
            )?
        };
        if let Err(e) = r {
            self.p_err(format!(
                "can't mount BPF file system to pin the object ({name}): mount --make-private {dir} failed: {}",
                strerror(e)
            ));
            return Ok(-1);
        }
        Ok(0)
    }

    /// do_pin_fd.
    pub fn do_pin_fd(&mut self, o: &Obj, name: &str) -> R<i32> {
        let err = self.mount_bpffs_for_pin(name)?;
        if err != 0 {
            return Ok(err);
        }
        let path = self.conn.tree_path(name)?;
        match self.sys("obj_pin", json!({"handle": o.handle, "path": path}))? {
            Ok(_) => Ok(0),
            Err(e) => {
                self.p_err(format!("can't pin the object ({name}): {}", strerror(e)));
                Ok(-e)
            }
        }
    }

    /// do_pin_any: `OBJ FILE`, with `get_fd` parsing OBJ (its failure value is returned).
    pub fn do_pin_any(
        &mut self,
        mut argv: Argv,
        get_fd: fn(&mut Tool, &mut Argv) -> R<Result<Obj, i32>>,
    ) -> R<i32> {
        if !self.req_args(&argv, 3) {
            return Ok(-libc::EINVAL);
        }
        let o = match get_fd(self, &mut argv)? {
            Ok(o) => o,
            Err(fd) => return Ok(fd),
        };
        let file = argv.arg();
        let err = self.do_pin_fd(&o, file)?;
        self.close(&o)?;
        Ok(err)
    }

    /// `id N`: strtoul(..., 0) into a u32, "can't parse X as ID".
    pub fn parse_id(&mut self, argv: &mut Argv) -> Option<u32> {
        let a = argv.arg();
        let (v, rest) = strtoul(a, 0);
        if rest {
            self.p_err(format!("can't parse {a} as ID"));
            return None;
        }
        argv.next();
        Some(v as u32)
    }

    /// Every object of `kind` whose info satisfies `want`, as bpftool's *_fd_by_name walks:
    /// Ok(list) or Err(()) after an error message. `what` names the kind in messages.
    pub fn objs_matching(
        &mut self,
        kind: &str,
        what: &str,
        want: &dyn Fn(&Value) -> bool,
    ) -> R<Result<Vec<Obj>, ()>> {
        let mut id = 0;
        let mut found: Vec<Obj> = Vec::new();
        loop {
            id = match self.get_next_id(kind, id)? {
                Ok(n) => n,
                Err(libc::ENOENT) => return Ok(Ok(found)),
                Err(e) => {
                    self.p_err(strerror(e));
                    return self.fail_closing(found);
                }
            };
            let o = match self.get_by_id(kind, id)? {
                Ok(o) => o,
                Err(e) => {
                    self.p_err(format!("can't get {what} by id ({id}): {}", strerror(e)));
                    return self.fail_closing(found);
                }
            };
            let info = match self.info(&o)? {
                Ok(v) => v,
                Err(e) => {
                    self.p_err(format!("can't get {what} info ({id}): {}", strerror(e)));
                    self.close(&o)?;
                    return self.fail_closing(found);
                }
            };
            if want(&info) {
                found.push(o);
            } else {
                self.close(&o)?;
            }
        }
    }

    fn fail_closing(&mut self, objs: Vec<Obj>) -> R<Result<Vec<Obj>, ()>> {
        for o in &objs {
            self.close(o)?;
        }
        Ok(Err(()))
    }
}

/// libbpf's link type names (libbpf_bpf_link_type_str).
pub const LINK_TYPES: &[&str] = &[
    "unspec",
    "raw_tracepoint",
    "tracing",
    "cgroup",
    "iter",
    "netns",
    "xdp",
    "perf_event",
    "kprobe_multi",
    "struct_ops",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translate_host_paths() {
        let mp = Path::new("/tmp/x/mnt");
        assert_eq!(
            translate(Path::new("/tmp/x/mnt/sys/fs/bpf/m"), mp, false).as_deref(),
            Some("/sys/fs/bpf/m")
        );
        assert_eq!(
            translate(Path::new("/tmp/x/mnt"), mp, false).as_deref(),
            Some("/")
        );
        assert_eq!(
            translate(Path::new("/tmp/x/mnt/./a/../b"), mp, true).as_deref(),
            Some("/b/")
        );
        assert_eq!(translate(Path::new("/tmp/x/mntx/a"), mp, false), None);
        assert_eq!(translate(Path::new("/sys/fs/bpf/m"), mp, false), None);
    }
}
