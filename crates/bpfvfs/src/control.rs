//! The control socket: a versioned, line-oriented JSON protocol over a Unix stream socket.
//!
//! # Protocol, version 1
//!
//! A client connects to the daemon's socket (`bpfvfs up --socket PATH`) and sends requests,
//! one JSON object per line (`\n`-terminated, UTF-8). Each request gets exactly one reply
//! line, in order. A connection may carry any number of requests.
//!
//! Request:
//! ```json
//! {"v":1,"id":7,"op":"stats"}
//! ```
//! - `v` (required): the protocol version, `1`.
//! - `id` (optional): any JSON value; echoed in the reply (`null` when absent).
//! - `op` (required): the operation name. Other members are the operation's arguments.
//!
//! Success reply: `{"v":1,"id":7,"ok":{...}}` (the value is operation-specific).
//!
//! Error reply: `{"v":1,"id":7,"err":{"errno":22,"name":"EINVAL","message":"..."}}`:
//! a Linux errno value, its symbolic name, and a human-readable message.
//!
//! Protocol-level errors:
//! - a line that is not a JSON object, or lacks `v`/`op`: `EINVAL`; the connection stays open;
//! - an unsupported `v`: `EPROTONOSUPPORT`; the connection stays open;
//! - an unknown `op`: `ENOSYS`; the connection stays open;
//! - a line longer than [`MAX_LINE`] bytes (excluding the newline): `EMSGSIZE` (with
//!   `"id":null`), after which the daemon closes the connection.
//!
//! Each connection is a session ([`Handler::connect`] makes one per connection, [`Session`]
//! serves its requests in order, and it is dropped when the connection ends). The daemon's
//! session holds the peer's credentials, read with `SO_PEERCRED` at accept time ([`Peer`]),
//! and a table of BPF handles, the connection's file descriptors; dropping the session
//! releases every handle (see `crate::session`).
//!
//! Operations (version 1):
//! - `ping` -> `{"pong":true,"version":"<daemon version>","pid":N,"mount_point":"/dir"}`
//! - `stats` -> the VFS counters (`inodes_live`, `dentries_hashed`, ... one member each),
//!   the FUSE edge's counters (`fuse_nodes`: node ids the kernel holds, `fuse_handles`: open
//!   handles), the BPF object counters (`maps_live`, ...), the control sessions
//!   (`control_sessions_live`, `control_handles_open`, ...), `mount_point`, and `mounts`:
//!   `[{"path":"/","fs_type":"tmpfs","options":"mode=1777"}, ...]`.
//! - bpf(2) commands on handles: `map_create`, `map_lookup_elem`, `map_update_elem`,
//!   `map_delete_elem`, `map_get_next_key`, `map_dump`, `map_freeze`, `obj_pin`, `obj_get`,
//!   `obj_get_info`, `get_next_id`, `get_by_id` (the object id as `obj_id`: `id` is the
//!   request's), `close`; and `list_pins`, `handles`, `statfs`, `mount`. Arguments, replies
//!   and errors: docs/control-protocol.md. Malformed arguments are `EINVAL`, unknown handles
//!   `EBADF`, and everything else the errno bpf(2) would give; the connection stays open.
//!
//! New operations are added without a version bump; a change to the framing or to the
//! meaning of existing members bumps `v`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The protocol version this build speaks.
pub const VERSION: u64 = 1;
/// The longest request line accepted, in bytes (newline excluded).
pub const MAX_LINE: usize = 1 << 20;

/// An error as carried in an `err` reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({name})")]
pub struct ControlError {
    pub errno: i32,
    pub name: String,
    pub message: String,
    /// A verifier log, for a program the verifier rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

impl ControlError {
    pub fn new(errno: i32, message: impl Into<String>) -> ControlError {
        ControlError {
            errno,
            name: errno_name(errno).to_string(),
            message: message.into(),
            log: None,
        }
    }
    /// A VFS error, with what was being done.
    pub fn vfs(e: bpfvfs_vfs::Errno, context: &str) -> ControlError {
        ControlError::new(e.0, format!("{context}: {}", e.message()))
    }
    pub fn invalid(message: impl Into<String>) -> ControlError {
        ControlError::new(libc::EINVAL, message)
    }
}

/// The symbolic name of an errno value.
pub fn errno_name(errno: i32) -> &'static str {
    let n = bpfvfs_vfs::Errno(errno).name();
    if n != "E?" {
        return n;
    }
    match errno {
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::EPROTO => "EPROTO",
        libc::EBADMSG => "EBADMSG",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::EPIPE => "EPIPE",
        libc::ESTALE => "ESTALE",
        libc::ENOTTY => "ENOTTY",
        _ => "E?",
    }
}

/// A parsed request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub id: Value,
    pub op: String,
    /// Every member other than `v`, `id` and `op`.
    pub args: Map<String, Value>,
}

/// Parse one request line. On failure returns the id (if one could be read) with the error.
pub fn parse_request(line: &[u8]) -> Result<Request, (Value, ControlError)> {
    let v: Value = serde_json::from_slice(line).map_err(|e| {
        (
            Value::Null,
            ControlError::invalid(format!("malformed request: {e}")),
        )
    })?;
    let Value::Object(mut obj) = v else {
        return Err((
            Value::Null,
            ControlError::invalid("malformed request: not a JSON object"),
        ));
    };
    let id = obj.remove("id").unwrap_or(Value::Null);
    match obj.remove("v") {
        Some(Value::Number(n)) if n.as_u64() == Some(VERSION) => {}
        Some(other) => {
            return Err((
                id,
                ControlError::new(
                    libc::EPROTONOSUPPORT,
                    format!("unsupported protocol version {other} (this daemon speaks {VERSION})"),
                ),
            ))
        }
        None => {
            return Err((
                id,
                ControlError::invalid("malformed request: missing \"v\" (protocol version)"),
            ))
        }
    }
    let op = match obj.remove("op") {
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err((
                id,
                ControlError::invalid("malformed request: \"op\" must be a string"),
            ))
        }
        None => {
            return Err((
                id,
                ControlError::invalid("malformed request: missing \"op\""),
            ))
        }
    };
    Ok(Request { id, op, args: obj })
}

/// The reply line (without the newline) for a result: `{"v":1,"id":...,"ok":...}` or
/// `{"v":1,"id":...,"err":{...}}`.
pub fn reply_line(id: &Value, result: &Result<Value, ControlError>) -> String {
    let (key, body) = match result {
        Ok(v) => ("ok", v.to_string()),
        Err(e) => (
            "err",
            serde_json::to_string(e).unwrap_or_else(|_| "null".into()),
        ),
    };
    format!("{{\"v\":{VERSION},\"id\":{id},\"{key}\":{body}}}")
}

/// The process at the other end of a connection, from `SO_PEERCRED`: its credentials as they
/// were when it called connect(2). `pid` is 0 when the peer lives in another pid namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

impl Peer {
    /// The credentials of the process connected to `stream`.
    pub fn of(stream: &UnixStream) -> io::Result<Peer> {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: a valid socket fd, and a buffer of the size we pass.
        let r = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Peer {
            pid: cred.pid,
            uid: cred.uid,
            gid: cred.gid,
        })
    }
}

/// What the daemon does for its clients: one [`Session`] per connection.
pub trait Handler: Send + Sync + 'static {
    /// A connection from `peer` was accepted. The session serves every request on it, in
    /// order, and is dropped when the connection ends (whatever the reason), releasing what
    /// it holds.
    fn connect(&self, peer: Peer) -> Box<dyn Session>;
}

/// The state of one connection.
pub trait Session: Send {
    /// Run `op`. Unknown operations must return ENOSYS.
    fn handle(&mut self, op: &str, args: &Map<String, Value>) -> Result<Value, ControlError>;

    /// Run `op` with the file descriptors the client passed (SCM_RIGHTS) so far and that no
    /// earlier request took, oldest first; an operation that uses one removes it. The default
    /// ignores them.
    fn handle_with_fds(
        &mut self,
        op: &str,
        args: &Map<String, Value>,
        fds: &mut VecDeque<OwnedFd>,
    ) -> Result<Value, ControlError> {
        let _ = fds;
        self.handle(op, args)
    }
}

/// Descriptors a connection may have queued; more are closed on arrival.
pub const MAX_QUEUED_FDS: usize = 16;

/// The connection's byte stream, read with recvmsg so that descriptors passed with
/// SCM_RIGHTS are collected (in arrival order) alongside the bytes.
struct FdStream {
    stream: UnixStream,
    fds: Rc<RefCell<VecDeque<OwnedFd>>>,
}

impl Read for FdStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut cmsg = [0u64; 64]; // 512 bytes, aligned for cmsghdr
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; every pointer in it refers to live buffers above.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cmsg);
        // SAFETY: a valid socket fd and msghdr; MSG_CMSG_CLOEXEC keeps received fds private.
        let n = unsafe { libc::recvmsg(self.stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: walking the control messages the kernel just wrote into `cmsg`, with the
        // libc accessors; each SCM_RIGHTS payload is an array of ints we now own.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(c).cast::<libc::c_int>();
                    let len = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                    for i in 0..len / std::mem::size_of::<libc::c_int>() {
                        let fd = OwnedFd::from_raw_fd(data.add(i).read_unaligned());
                        let mut q = self.fds.borrow_mut();
                        if q.len() < MAX_QUEUED_FDS {
                            q.push_back(fd);
                        } // else dropped: closed
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok(n as usize)
    }
}

/// The error for an operation the handler does not know.
pub fn unknown_op(op: &str) -> ControlError {
    ControlError::new(libc::ENOSYS, format!("unknown op {op:?}"))
}

enum Line {
    Complete,
    Eof,
    TooLong,
}

/// Read one line of at most `max` bytes (newline excluded) into `buf`, newline stripped.
fn read_line_limited<R: BufRead>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    buf.clear();
    let n = r.by_ref().take(max as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(Line::Eof);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Line::Complete);
    }
    if buf.len() > max {
        return Ok(Line::TooLong);
    }
    Ok(Line::Complete) // the last line, unterminated
}

fn serve_connection(stream: UnixStream, handler: &dyn Handler) -> io::Result<()> {
    let peer = Peer::of(&stream)?;
    let mut session = handler.connect(peer);
    let mut writer = stream.try_clone()?;
    let fds: Rc<RefCell<VecDeque<OwnedFd>>> = Rc::default();
    let mut reader = BufReader::new(FdStream {
        stream,
        fds: fds.clone(),
    });
    let mut buf = Vec::new();
    loop {
        match read_line_limited(&mut reader, &mut buf, MAX_LINE)? {
            Line::Eof => return Ok(()),
            Line::TooLong => {
                let err = ControlError::new(
                    libc::EMSGSIZE,
                    format!("request line longer than {MAX_LINE} bytes; closing the connection"),
                );
                let mut line = reply_line(&Value::Null, &Err(err));
                line.push('\n');
                writer.write_all(line.as_bytes())?;
                let _ = writer.shutdown(std::net::Shutdown::Write);
                // Swallow what the client is still sending for a moment, so that it reads
                // the reply rather than a reset.
                drain(reader.into_inner().stream, Duration::from_secs(2));
                return Ok(());
            }
            Line::Complete => {
                if buf.iter().all(|b| b.is_ascii_whitespace()) {
                    continue; // blank lines are ignored
                }
                let (id, result) = match parse_request(&buf) {
                    Ok(req) => {
                        tracing::debug!(op = %req.op, "control request");
                        let mut queued = std::mem::take(&mut *fds.borrow_mut());
                        let r = session.handle_with_fds(&req.op, &req.args, &mut queued);
                        // Descriptors the request did not take stay queued for the next.
                        let mut q = fds.borrow_mut();
                        queued.extend(q.drain(..));
                        *q = queued;
                        (req.id, r)
                    }
                    Err((id, e)) => (id, Err(e)),
                };
                let mut line = reply_line(&id, &result);
                line.push('\n');
                writer.write_all(line.as_bytes())?;
            }
        }
    }
}

fn drain(mut s: UnixStream, total: Duration) {
    let deadline = Instant::now() + total;
    let mut sink = [0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match s.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Errors of setting up the control socket.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("a daemon is already listening on {}", .0.display())]
    InUse(PathBuf),
    #[error("{} exists and is not a socket", .0.display())]
    NotASocket(PathBuf),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// A running control server.
pub struct Server {
    path: PathBuf,
    /// (dev, ino) of the socket file we created, so we remove only our own.
    ident: Option<(u64, u64)>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Bind `path` (replacing a stale socket nobody listens on) and serve `handler`, one
    /// thread per connection. The socket is made accessible to its owner only.
    pub fn start(path: &Path, handler: Arc<dyn Handler>) -> Result<Server, SocketError> {
        let io_err = |source| SocketError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path) {
                Ok(_) => return Err(SocketError::InUse(path.to_path_buf())),
                Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                    tracing::info!(path = %path.display(), "removing stale control socket");
                    std::fs::remove_file(path).map_err(io_err)?;
                }
                Err(e) => return Err(io_err(e)),
            },
            Ok(_) => return Err(SocketError::NotASocket(path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let listener = UnixListener::bind(path).map_err(io_err)?;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        let ident = std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let accept = std::thread::Builder::new()
            .name("control-accept".into())
            .spawn(move || accept_loop(listener, handler, stop2))
            .map_err(io_err)?;
        Ok(Server {
            path: path.to_path_buf(),
            ident,
            stop,
            accept: Some(accept),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop accepting connections and remove the socket file (if it is still ours).
    /// Connections in progress are not waited for.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.stop.store(true, Ordering::Release);
        // Wake the accept loop.
        let _ = UnixStream::connect(&self.path);
        let _ = accept.join();
        let ours = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if ours.is_some() && ours == self.ident {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: UnixListener, handler: Arc<dyn Handler>, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            return;
        }
        match conn {
            Ok(stream) => {
                let h = handler.clone();
                let r = std::thread::Builder::new()
                    .name("control-conn".into())
                    .spawn(move || {
                        if let Err(e) = serve_connection(stream, &*h) {
                            tracing::debug!("control connection ended: {e}");
                        }
                    });
                if let Err(e) = r {
                    tracing::warn!("cannot start a control connection thread: {e}");
                }
            }
            Err(e) => {
                tracing::warn!("control socket accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Errors a client sees.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no daemon at {}", .0.display())]
    NoDaemon(PathBuf),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("bad reply from the daemon: {0}")]
    BadReply(String),
    #[error("{0}")]
    Remote(ControlError),
}

/// A blocking client.
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ECONNREFUSED) => {
                ClientError::NoDaemon(path.to_path_buf())
            }
            _ => ClientError::Io {
                path: path.to_path_buf(),
                source: e,
            },
        })?;
        let writer = stream.try_clone().map_err(|source| ClientError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Client {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
        })
    }

    /// Send `op` with `args` (an object, or null) and wait for its reply.
    pub fn call(&mut self, op: &str, args: Value) -> Result<Value, ClientError> {
        self.call_with_fds(op, args, &[])
    }

    /// As [`Client::call`], passing `fds` with the request (SCM_RIGHTS), as bpf(2) takes a
    /// file descriptor for an inode-storage key.
    pub fn call_with_fds(
        &mut self,
        op: &str,
        args: Value,
        fds: &[RawFd],
    ) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut obj = match args {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        obj.insert("v".into(), Value::from(VERSION));
        obj.insert("id".into(), Value::from(id));
        obj.insert("op".into(), Value::from(op));
        let mut line = Value::Object(obj).to_string();
        line.push('\n');
        let io_err = |source| ClientError::Io {
            path: self.path.clone(),
            source,
        };
        if fds.is_empty() {
            self.writer.write_all(line.as_bytes()).map_err(io_err)?;
        } else {
            send_with_fds(&self.writer, line.as_bytes(), fds).map_err(io_err)?;
        }
        let mut reply = String::new();
        let n = self
            .reader
            .read_line(&mut reply)
            .map_err(|source| ClientError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Err(ClientError::BadReply("connection closed".into()));
        }
        let v: Value =
            serde_json::from_str(&reply).map_err(|e| ClientError::BadReply(e.to_string()))?;
        if v.get("id") != Some(&Value::from(id)) {
            return Err(ClientError::BadReply(format!("unexpected id in {reply:?}")));
        }
        if let Some(ok) = v.get("ok") {
            return Ok(ok.clone());
        }
        match v
            .get("err")
            .map(|e| serde_json::from_value::<ControlError>(e.clone()))
        {
            Some(Ok(e)) => Err(ClientError::Remote(e)),
            _ => Err(ClientError::BadReply(reply)),
        }
    }
}

/// Write `data` with `fds` attached to its first byte (the rest, if the kernel takes only part,
/// plainly).
fn send_with_fds(stream: &UnixStream, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    if fds.len() > MAX_QUEUED_FDS {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut cmsg = [0u64; 64];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let payload = std::mem::size_of_val(fds);
    // SAFETY: msghdr/cmsghdr are plain data; the control buffer (512 bytes) holds one
    // cmsghdr with at most 16 ints; iov points at `data`, which sendmsg only reads.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(payload as u32) as usize;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(payload as u32) as usize;
        std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(c), payload);
        libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut w = stream;
    w.write_all(&data[n as usize..])
}

/// The default socket path: `/run/bpfvfs.sock` for root, else
/// `$XDG_RUNTIME_DIR/bpfvfs.sock`, else `/tmp/bpfvfs-$UID.sock`.
pub fn default_socket_path() -> PathBuf {
    // SAFETY: geteuid has no failure modes.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return PathBuf::from("/run/bpfvfs.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("bpfvfs.sock"),
        _ => PathBuf::from(format!("/tmp/bpfvfs-{uid}.sock")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    struct EchoSession {
        peer: Peer,
        count: u64,
    }
    impl Handler for Echo {
        fn connect(&self, peer: Peer) -> Box<dyn Session> {
            Box::new(EchoSession { peer, count: 0 })
        }
    }
    impl Session for EchoSession {
        fn handle(&mut self, op: &str, args: &Map<String, Value>) -> Result<Value, ControlError> {
            self.count += 1;
            match op {
                "ping" => Ok(serde_json::json!({"pong": true})),
                "echo" => Ok(Value::Object(args.clone())),
                "whoami" => Ok(serde_json::json!({
                    "pid": self.peer.pid, "uid": self.peer.uid, "gid": self.peer.gid,
                    "count": self.count,
                })),
                _ => Err(unknown_op(op)),
            }
        }
    }

    #[test]
    fn parse() {
        let r = parse_request(br#"{"v":1,"id":3,"op":"stats","x":1}"#).unwrap();
        assert_eq!(r.id, Value::from(3));
        assert_eq!(r.op, "stats");
        assert_eq!(r.args.get("x"), Some(&Value::from(1)));
        let (id, e) = parse_request(br#"{"v":2,"id":"a","op":"stats"}"#).unwrap_err();
        assert_eq!(id, Value::from("a"));
        assert_eq!(e.errno, libc::EPROTONOSUPPORT);
        assert_eq!(e.name, "EPROTONOSUPPORT");
        assert_eq!(
            parse_request(b"{\"v\":1").unwrap_err().1.errno,
            libc::EINVAL
        );
        assert_eq!(parse_request(b"[1]").unwrap_err().1.errno, libc::EINVAL);
        assert_eq!(
            parse_request(br#"{"v":1}"#).unwrap_err().1.errno,
            libc::EINVAL
        );
        assert_eq!(
            parse_request(br#"{"op":"x"}"#).unwrap_err().1.errno,
            libc::EINVAL
        );
        assert_eq!(
            parse_request(&[0xff, 0xfe]).unwrap_err().1.errno,
            libc::EINVAL
        );
    }

    #[test]
    fn reply_shapes() {
        let ok = reply_line(&Value::from(1), &Ok(serde_json::json!({"a":1})));
        assert_eq!(ok, r#"{"v":1,"id":1,"ok":{"a":1}}"#);
        let err = reply_line(&Value::Null, &Err(ControlError::invalid("bad")));
        let v: Value = serde_json::from_str(&err).unwrap();
        assert_eq!(v["err"]["errno"], 22);
        assert_eq!(v["err"]["name"], "EINVAL");
        assert_eq!(v["err"]["message"], "bad");
        assert_eq!(v["id"], Value::Null);
    }

    #[test]
    fn line_limit() {
        let mut buf = Vec::new();
        let mut r = io::Cursor::new(b"abc\ndefg\nxy".to_vec());
        assert!(matches!(
            read_line_limited(&mut r, &mut buf, 4).unwrap(),
            Line::Complete
        ));
        assert_eq!(buf, b"abc");
        assert!(matches!(
            read_line_limited(&mut r, &mut buf, 4).unwrap(),
            Line::Complete
        ));
        assert_eq!(buf, b"defg");
        assert!(matches!(
            read_line_limited(&mut r, &mut buf, 4).unwrap(),
            Line::Complete
        ));
        assert_eq!(buf, b"xy");
        assert!(matches!(
            read_line_limited(&mut r, &mut buf, 4).unwrap(),
            Line::Eof
        ));
        let mut r = io::Cursor::new(b"abcde\n".to_vec());
        assert!(matches!(
            read_line_limited(&mut r, &mut buf, 4).unwrap(),
            Line::TooLong
        ));
    }

    #[test]
    fn server_round_trip() {
        let dir = std::env::temp_dir().join(format!("bpfvfs-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let server = Server::start(&path, Arc::new(Echo)).unwrap();
        assert!(matches!(
            Server::start(&path, Arc::new(Echo)),
            Err(SocketError::InUse(_))
        ));
        let mut c = Client::connect(&path).unwrap();
        assert_eq!(c.call("ping", Value::Null).unwrap()["pong"], true);
        assert_eq!(
            c.call("echo", serde_json::json!({"k":"v"})).unwrap()["k"],
            "v"
        );
        match c.call("nope", Value::Null) {
            Err(ClientError::Remote(e)) => assert_eq!(e.errno, libc::ENOSYS),
            other => panic!("{other:?}"),
        }
        // SO_PEERCRED: this process; per-connection state.
        let me = c.call("whoami", Value::Null).unwrap();
        assert_eq!(me["pid"], std::process::id());
        // SAFETY: no failure modes.
        assert_eq!(me["uid"], unsafe { libc::geteuid() });
        assert_eq!(me["gid"], unsafe { libc::getegid() });
        assert_eq!(me["count"], 4);
        let mut c2 = Client::connect(&path).unwrap();
        assert_eq!(c2.call("whoami", Value::Null).unwrap()["count"], 1);
        server.stop();
        assert!(!path.exists());
        assert!(matches!(
            Client::connect(&path),
            Err(ClientError::NoDaemon(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
