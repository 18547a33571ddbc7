//! Helpers for the integration tests: start the real `bpfvfs up` on a temporary directory
//! with its own socket, wait for the mount, and clean up whatever happens.
//!
//! A test that cannot run here (no /dev/fuse, the mount refused by the environment) prints
//! why and returns early; failures of our own code still fail the test.

#![allow(dead_code)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_bpfvfs");

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "bpfvfs-test-{}-{}-{tag}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Never recurse into a live mount.
        if !mounted_at(&self.0.join("mnt")) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn skip(reason: &str) {
    eprintln!("SKIPPED: {reason}");
}

pub fn is_root() -> bool {
    // SAFETY: no failure modes.
    unsafe { libc::geteuid() == 0 }
}

/// The fstype of the topmost mount at `p`, from /proc/self/mountinfo.
pub fn mount_type_at(p: &Path) -> Option<String> {
    let s = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = p.as_os_str().as_bytes();
    let mut found = None;
    for line in s.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 5 {
            continue;
        }
        let mp = f[4].replace("\\040", " ");
        if mp.as_bytes() == want {
            let sep = f.iter().position(|&x| x == "-");
            found = sep.and_then(|i| f.get(i + 1)).map(|s| s.to_string());
        }
    }
    found
}

pub fn mounted_at(p: &Path) -> bool {
    mount_type_at(p).is_some_and(|t| t.starts_with("fuse"))
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Daemon {
    pub child: Option<Child>,
    pub mnt: PathBuf,
    pub sock: PathBuf,
    pub log: PathBuf,
    pub tmp: TempDir,
}

impl Daemon {
    /// Start `bpfvfs up` with extra arguments; None (after printing why) if FUSE cannot
    /// be used here.
    pub fn start(tag: &str, extra: &[&str]) -> Option<Daemon> {
        if !Path::new("/dev/fuse").exists() {
            skip("/dev/fuse is missing");
            return None;
        }
        let tmp = TempDir::new(tag);
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let mnt = std::fs::canonicalize(&mnt).unwrap();
        let sock = tmp.path().join("ctl.sock");
        let log = tmp.path().join("daemon.log");
        let logf = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .arg("up")
            .arg(&mnt)
            .arg("--socket")
            .arg(&sock)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("spawn bpfvfs");
        let mut d = Daemon {
            child: Some(child),
            mnt,
            sock,
            log,
            tmp,
        };
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if mounted_at(&d.mnt) && d.log_text().contains("bpfvfs: serving") {
                return Some(d);
            }
            if let Some(st) = d.child.as_mut().unwrap().try_wait().unwrap() {
                d.child = None;
                let log = d.log_text();
                if log.contains("cannot mount FUSE") {
                    skip(&format!(
                        "the environment refused the mount: {}",
                        log.trim()
                    ));
                    return None;
                }
                panic!("bpfvfs up exited ({st}) before serving:\n{log}");
            }
            if Instant::now() > end {
                panic!("bpfvfs up did not mount within 20s:\n{}", d.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(-1)
    }

    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// Wait for the daemon to exit (up to `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let end = Instant::now() + timeout;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `bpfvfs stats -j` against this daemon.
    pub fn stats(&self) -> serde_json::Value {
        let out = Command::new(BIN)
            .args(["stats", "-j", "--socket"])
            .arg(&self.sock)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bpfvfs stats failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn stat_u64(&self, key: &str) -> u64 {
        self.stats()[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no {key} in stats"))
    }

    /// Run a shell script in the mount.
    pub fn sh(&self, script: &str) -> Output {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(&self.mnt)
            .output()
            .unwrap()
    }

    /// Run a shell script in the mount and require success.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "script failed ({}):\n{script}\nstdout:\n{}\nstderr:\n{}\ndaemon log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal(libc::SIGTERM);
            if self.wait_exit(Duration::from_secs(15)).is_none() {
                self.signal(libc::SIGKILL);
                let _ = self.wait_exit(Duration::from_secs(5));
            }
        }
        if mounted_at(&self.mnt) {
            let c = CString::new(self.mnt.as_os_str().as_bytes()).unwrap();
            // SAFETY: valid path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// How to run a command as an unprivileged user (uid/gid 65534, no groups), if possible.
pub fn nobody_prefix() -> Option<Vec<String>> {
    if !is_root() {
        return None;
    }
    let ok = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "true",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(
            [
                "setpriv",
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                "--",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        );
    }
    None
}

/// Run `script` with sh as uid/gid 65534 in `dir`.
pub fn sh_as_nobody(prefix: &[String], dir: &Path, script: &str) -> Output {
    Command::new(&prefix[0])
        .args(&prefix[1..])
        .arg("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap()
}

impl Daemon {
    /// Run the bpfvfs CLI against this daemon (its socket), from `cwd` if given.
    pub fn cli_in(&self, cwd: Option<&Path>, args: &[&str]) -> Output {
        let mut c = Command::new(BIN);
        c.arg("--socket").arg(&self.sock).args(args);
        c.env_remove("BPFVFS_SOCKET");
        if let Some(d) = cwd {
            c.current_dir(d);
        }
        c.output().unwrap()
    }

    /// Run the bpfvfs CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_in(None, args)
    }

    /// Run the CLI and require exit status 0; its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "bpfvfs {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}\ndaemon log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A raw control connection: one JSON request per line, one reply per line.
pub struct Ctl {
    pub r: std::io::BufReader<std::os::unix::net::UnixStream>,
    pub w: std::os::unix::net::UnixStream,
    next: u64,
}

impl Ctl {
    pub fn open(sock: &Path) -> Ctl {
        let s = std::os::unix::net::UnixStream::connect(sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Ctl {
            w: s.try_clone().unwrap(),
            r: std::io::BufReader::new(s),
            next: 1,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.w.write_all(bytes).unwrap();
    }

    pub fn reply(&mut self) -> serde_json::Value {
        use std::io::BufRead;
        let mut line = String::new();
        let n = self.r.read_line(&mut line).unwrap();
        assert!(n > 0, "connection closed");
        serde_json::from_str(&line).unwrap()
    }

    /// Send `op` with the members of `args`; the whole reply.
    pub fn req(&mut self, op: &str, args: serde_json::Value) -> serde_json::Value {
        let mut m = match args {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        let id = self.next;
        self.next += 1;
        m.insert("v".into(), 1.into());
        m.insert("id".into(), id.into());
        m.insert("op".into(), op.into());
        let mut line = serde_json::Value::Object(m).to_string();
        line.push('\n');
        self.send_raw(line.as_bytes());
        let v = self.reply();
        assert_eq!(v["id"], id, "{v}");
        v
    }

    /// `op` must succeed: its `ok` value.
    pub fn ok(&mut self, op: &str, args: serde_json::Value) -> serde_json::Value {
        let v = self.req(op, args.clone());
        assert!(v.get("ok").is_some(), "{op} {args} failed: {v}");
        v["ok"].clone()
    }

    /// `op` must fail with `errno`.
    pub fn err(&mut self, op: &str, args: serde_json::Value, errno: i32) -> serde_json::Value {
        let v = self.req(op, args.clone());
        assert_eq!(v["err"]["errno"], errno, "{op} {args}: {v}");
        assert!(
            !v["err"]["message"].as_str().unwrap_or("").is_empty(),
            "{v}"
        );
        v
    }
}

/// Run a CLI output's parts as text: (stdout, stderr, exit status).
pub fn parts(o: &Output) -> (String, String, i32) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.code().unwrap_or(-1),
    )
}

/// Compile a BPF C file with clang (`-target bpf`, libbpf's and bpfvfs's headers) into
/// `out_dir`; None (after printing SKIPPED) when clang is missing.
pub fn compile_bpf(src: &Path, out_dir: &Path) -> Option<PathBuf> {
    let stem = src
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(".c", ".o");
    let out = out_dir.join(stem);
    let r = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86", "-c"])
        .arg(format!(
            "-I/usr/include/{}-linux-gnu",
            std::env::consts::ARCH
        ))
        .arg(format!(
            "-I{}/../../include/bpfvfs",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(src)
        .arg("-o")
        .arg(&out)
        .output();
    match r {
        Err(e) => {
            skip(&format!("clang not available: {e}"));
            None
        }
        Ok(o) => {
            assert!(
                o.status.success(),
                "clang: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            Some(out)
        }
    }
}

/// examples/NAME.bpf.c compiled into `out_dir`.
pub fn example_bpf(name: &str, out_dir: &Path) -> Option<PathBuf> {
    let src =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../examples/{name}.bpf.c"));
    compile_bpf(&src, out_dir)
}
