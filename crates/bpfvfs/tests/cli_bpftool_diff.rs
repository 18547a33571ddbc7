//! Differential test against the real bpftool: the same words run through `bpftool` on a
//! scratch bpffs of the host kernel, and through `bpfvfs` on the same path inside a live
//! daemon's tree (where the test mounts a bpffs too), must print the same stdout and stderr
//! and exit with the same status. Object ids and memlock figures are masked (ids come from
//! different namespaces; memlock from different accounting); help texts are deliberately
//! different, so for commands that print one only the exit status and stdout are compared.
//!
//! Skipped, with the reason printed, where the test is not root, bpftool is missing, or the
//! kernel refuses (no bpffs mount, no map creation).

mod common;

use common::*;
use serde_json::json;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bpftool() -> Option<PathBuf> {
    for p in [
        "/usr/sbin/bpftool",
        "/usr/bin/bpftool",
        "/sbin/bpftool",
        "/usr/local/sbin/bpftool",
    ] {
        if Path::new(p).exists() {
            return Some(PathBuf::from(p));
        }
    }
    None
}

/// A bpffs of the host kernel on a fresh directory, unmounted and removed on drop.
struct HostBpffs(PathBuf);

impl HostBpffs {
    fn mount(path: &Path) -> Result<HostBpffs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let c = CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: valid NUL-terminated strings; no data argument.
        let r = unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                c.as_ptr(),
                c"bpf".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            let _ = std::fs::remove_dir(path);
            return Err(format!("mount -t bpf on {}: {e}", path.display()));
        }
        Ok(HostBpffs(path.to_path_buf()))
    }
}

impl Drop for HostBpffs {
    fn drop(&mut self) {
        let c = CString::new(self.0.to_str().unwrap()).unwrap();
        // SAFETY: valid path. Unmounting drops the pins (and so the maps) made here.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Replace the run of digits after every `prefix` with `N`.
fn mask_after(s: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(prefix) {
        out.push_str(&rest[..i + prefix.len()]);
        rest = &rest[i + prefix.len()..];
        let n = rest.bytes().take_while(u8::is_ascii_digit).count();
        if n > 0 {
            out.push('N');
            rest = &rest[n..];
        }
    }
    out.push_str(rest);
    out
}

/// Ids and memlock figures masked.
fn mask(s: &str) -> String {
    let mut lines = Vec::new();
    for line in s.split('\n') {
        let n = line.bytes().take_while(u8::is_ascii_digit).count();
        let line = if n > 0 && line[n..].starts_with(": ") {
            format!("N{}", &line[n..])
        } else {
            line.to_string()
        };
        lines.push(line);
    }
    let mut s = lines.join("\n");
    for p in [
        "\"id\":",
        "\"id\": ",
        "memlock ",
        "\"bytes_memlock\":",
        "\"bytes_memlock\": ",
        "by id (",
        "with ID ",
    ] {
        s = mask_after(&s, p);
    }
    s
}

/// One invocation: the words, with `{P}` the scratch directory, `{N}` a name unique to this
/// run and `{ID}` the id of the hash map on each side.
struct Case {
    words: &'static str,
    /// Prints a help text (deliberately different): compare status and stdout only.
    usage: bool,
}

const fn c(words: &'static str) -> Case {
    Case {
        words,
        usage: false,
    }
}

const fn u(words: &'static str) -> Case {
    Case { words, usage: true }
}

const CASES: &[Case] = &[
    // create, and the same pin path again (EEXIST: 239)
    c("map create {P}/h type hash key 4 value 8 entries 16 name {N}"),
    c("map create {P}/h type hash key 4 value 8 entries 16 name {N}"),
    c("map show pinned {P}/h"),
    c("-j map show pinned {P}/h"),
    c("-p map show name {N}"),
    c("map show id {ID}"),
    // update any | noexist | exist
    c("map update pinned {P}/h key 1 0 0 0 value 2 0 0 0 0 0 0 0 any"),
    c("map update pinned {P}/h key 1 0 0 0 value 3 0 0 0 0 0 0 0 noexist"),
    c("map update pinned {P}/h key hex 01 00 00 00 value 0x04 0 0 0 0 0 0 0x10 exist"),
    c("map update pinned {P}/h key 2 0 0 0 value 2 0 0 0 0 0 0 0 exist"),
    c("-j map update pinned {P}/h key 1 0 0 0 value 5 0 0 0 0 0 0 0 any"),
    c("-j map update pinned {P}/h key 1 0 0 0 value 5 0 0 0 0 0 0 0 noexist"),
    // lookup hit and miss
    c("map lookup pinned {P}/h key 1 0 0 0"),
    c("map lookup pinned {P}/h key 3 0 0 0"),
    c("-j map lookup pinned {P}/h key 1 0 0 0"),
    c("-j map lookup pinned {P}/h key 3 0 0 0"),
    c("-p map lookup id {ID} key 0x1 0 0 0"),
    // getnext first / next (of a missing key: the first) / last
    c("map getnext pinned {P}/h"),
    c("map getnext pinned {P}/h key 9 0 0 0"),
    c("map getnext pinned {P}/h key 1 0 0 0"),
    c("-j map getnext pinned {P}/h"),
    c("-j map getnext pinned {P}/h key 9 0 0 0"),
    // dump
    c("map dump pinned {P}/h"),
    c("-j map dump pinned {P}/h"),
    c("-p map dump id {ID}"),
    // delete miss and hit
    c("map delete pinned {P}/h key 3 0 0 0"),
    c("-j map delete pinned {P}/h key 3 0 0 0"),
    c("map delete pinned {P}/h key 1 0 0 0"),
    c("map dump pinned {P}/h"),
    c("-j map dump pinned {P}/h"),
    c("map getnext pinned {P}/h"),
    // pins
    c("map pin pinned {P}/h {P}/h2"),
    c("map pin pinned {P}/h {P}/h2"),
    c("-j map pin id {ID} {P}/h3"),
    c("map pin pinned {P}/h {P}/a.b"),
    c("map pin pinned {P}/h {P}/h/x"),
    c("map pin pinned {P}/h {P}/nodir/x"),
    c("-n map pin pinned {P}/h {P}/nodir/x"),
    c("map pin pinned {P}/h"),
    c("map show pinned {P}/h2"),
    // an array: ordered dumps, no deletes, bounds
    c("-j map create {P}/a type array key 4 value 4 entries 3 name {N}a"),
    c("map update pinned {P}/a key 1 0 0 0 value 7 7 7 7"),
    c("map dump pinned {P}/a"),
    c("-j map dump pinned {P}/a"),
    c("map getnext pinned {P}/a key 1 0 0 0"),
    c("map getnext pinned {P}/a key 2 0 0 0"),
    c("map delete pinned {P}/a key 1 0 0 0"),
    c("map update pinned {P}/a key 1 0 0 0 value 7 7 7 7 noexist"),
    c("map update pinned {P}/a key 5 0 0 0 value 7 7 7 7"),
    c("map freeze pinned {P}/a"),
    c("map show pinned {P}/a"),
    c("-j map show pinned {P}/a"),
    c("map update pinned {P}/a key 1 0 0 0 value 7 7 7 7"),
    // long values break lines
    c("map create {P}/big type array key 4 value 20 entries 1 name {N}b"),
    c("map update pinned {P}/big key 0 0 0 0 value hex 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13"),
    c("map lookup pinned {P}/big key 0 0 0 0"),
    c("map dump pinned {P}/big"),
    // bad DATA and flags
    c("map update pinned {P}/h key 1 0 0 value 1 2 3 4 5 6 7 8"),
    c("map update pinned {P}/h key 1 0 0 0 0 value 1 2 3 4 5 6 7 8"),
    c("map update pinned {P}/h key 1 0 0 0 value 1 2 3 4 5 6 7"),
    c("map update pinned {P}/h key 1 0 0 0"),
    c("map update pinned {P}/h value 1 0 0 0 0 0 0 0"),
    c("map update pinned {P}/h key 1 0 0 0 value 1 2 3 4 5 6 7 8 any exist"),
    c("map update pinned {P}/h key 1 0 0 0 value 1 2 3 4 5 6 7 8 key 1"),
    c("map update pinned {P}/h key 1 0 0 0 value 1 2 3 4 5 6 7 8 flags"),
    c("map update pinned {P}/h key hex 01 0 0 zz value 1 2 3 4 5 6 7 8"),
    c("-j map update pinned {P}/h key 1 0 0 value 1 2 3 4 5 6 7 8"),
    c("map lookup pinned {P}/h"),
    c("map lookup pinned {P}/h key 1 0 0 0 value 1"),
    c("map lookup pinned {P}/h key 1 0 0 0 any"),
    c("map delete pinned {P}/h"),
    // bad MAP
    c("map lookup pinned {P}/nope key 1 0 0 0"),
    c("map lookup pinned {P} key 1 0 0 0"),
    c("map show pinned {P}/h/x"),
    c("map lookup id 4000000000 key 1 0 0 0"),
    c("map lookup id abc key 1 0 0 0"),
    c("map lookup name {N}zz key 1 0 0 0"),
    c("-j map lookup name {N}zz key 1 0 0 0"),
    c("map lookup name waytoolongforamapname key 1 0 0 0"),
    c("map lookup foo 3 key 1 0 0 0"),
    c("map show name {N}zz"),
    c("map show id"),
    c("map show pinned {P}/h extra"),
    c("prog show pinned {P}/h"),
    c("link show pinned {P}/h"),
    c("-j link show pinned {P}/h"),
    c("link show id 4000000000"),
    c("link pin id 4000000000 {P}/l"),
    c("prog show id 4000000000"),
    c("prog show tag 0102"),
    c("prog pin id 1"),
    // bad create
    c("map create {P}/c1 type hash key 0 value 8 entries 16 name {N}c"),
    c("map create {P}/c1 type hashx key 4 value 8 entries 16 name {N}c"),
    c("map create {P}/c1 type hash key 4 value 8 entries 16"),
    c("map create {P}/c1 type hash key 4 value 8 entries 16 name"),
    c("map create {P}/c1 type hash key 4x value 8 entries 16 name {N}c"),
    c("map create {P}/c1 type hash key 4 key 4 value 8 entries 16 name {N}c"),
    c("map create {P}/c1 type hash key 4 value 8 entries 16 name {N}c frob 1"),
    c("map create {P}/c1 type hash key 4 value 8 entries 16 name bad-name"),
    c("map create {P}/c1"),
    c("map create {P}/c2 type hash key 4 value 8 entries 16 name {N}_name_longer_than_15 flags 0x1"),
    c("map show pinned {P}/c2"),
    // usage errors: the help text differs, the status must not
    u("map lookup"),
    u("map dump pinned {P}/h extra"),
    u("map frobnicate"),
    c("-j map lookup"),
    c("-j map help"),
];

const PERCPU_CASES: &[Case] = &[
    c("map create {P}/pc type percpu_array key 4 value 4 entries 2 name {N}p"),
    c("map update pinned {P}/pc key 1 0 0 0 value 1 2 3 4"),
    c("map lookup pinned {P}/pc key 1 0 0 0"),
    c("-j map lookup pinned {P}/pc key 1 0 0 0"),
    c("map dump pinned {P}/pc"),
    c("-j map dump pinned {P}/pc"),
];

/// The number of possible CPUs of the host (what bpftool sizes per-CPU values with).
fn possible_cpus() -> Option<usize> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible").ok()?;
    let mut n = 0;
    for part in s.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => n += b.parse::<usize>().ok()? - a.parse::<usize>().ok()? + 1,
            None => n += 1,
        }
    }
    Some(n)
}

struct Side {
    stdout: String,
    stderr: String,
    status: i32,
}

fn run(cmd: &mut Command) -> Side {
    let out = cmd.output().unwrap();
    Side {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        status: out.status.code().unwrap_or(-1),
    }
}

#[test]
fn same_words_same_output_as_bpftool() {
    if !is_root() {
        skip("the bpftool differential test needs root (bpf(2) and mount)");
        return;
    }
    let Some(bpftool) = bpftool() else {
        skip("bpftool is not installed");
        return;
    };
    let Some(d) = Daemon::start("bpftool-diff", &[]) else {
        return;
    };
    let p = PathBuf::from(format!("/tmp/bpfvfs-diff-{}", std::process::id()));
    let host = match HostBpffs::mount(&p) {
        Ok(h) => h,
        Err(e) => {
            skip(&format!("the kernel refused a scratch bpffs: {e}"));
            return;
        }
    };
    // The same path in the bpfvfs tree, with a bpffs mounted on it.
    std::fs::create_dir_all(d.mnt.join(p.strip_prefix("/").unwrap())).unwrap();
    let mut ctl = Ctl::open(&d.sock);
    ctl.ok(
        "mount",
        json!({"fs_type": "bpf", "path": p.to_str().unwrap()}),
    );

    let name = format!("d{}", std::process::id() % 1_000_000);
    let dir = p.to_str().unwrap().to_string();
    let words = |t: &str, id: &str| -> Vec<String> {
        t.replace("{P}", &dir)
            .replace("{N}", &name)
            .replace("{ID}", id)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let kernel = |w: &[String]| run(Command::new(&bpftool).args(w));
    let ours = |w: &[String]| {
        run(Command::new(BIN)
            .arg("--socket")
            .arg(&d.sock)
            .env_remove("BPFVFS_SOCKET")
            .args(w))
    };

    // Can the kernel make maps here at all?
    let probe = kernel(&words(CASES[0].words, ""));
    if probe.status != 0 {
        skip(&format!(
            "the kernel refused to create a map: {}",
            probe.stderr.trim()
        ));
        return;
    }
    let first = ours(&words(CASES[0].words, ""));
    assert_eq!(
        (first.stdout.as_str(), first.stderr.as_str(), first.status),
        ("", "", 0),
        "bpfvfs: {}",
        CASES[0].words
    );
    let id_of = |s: &Side| -> String {
        let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
        v["id"].as_u64().unwrap().to_string()
    };
    let show = format!("-j map show pinned {dir}/h");
    let kid = id_of(&kernel(&words(&show, "")));
    let oid = id_of(&ours(&words(&show, "")));

    let mut cases: Vec<&Case> = CASES[1..].iter().collect();
    let ncpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if possible_cpus() == Some(ncpus) {
        cases.extend(PERCPU_CASES.iter());
    } else {
        eprintln!(
            "note: per-CPU cases skipped: {ncpus} CPUs available but {:?} possible",
            possible_cpus()
        );
    }

    let mut failures = Vec::new();
    for case in &cases {
        let k = kernel(&words(case.words, &kid));
        let o = ours(&words(case.words, &oid));
        let same = if case.usage {
            k.status == o.status
                && mask(&k.stdout) == mask(&o.stdout)
                && k.stderr.starts_with("Usage: ") == o.stderr.starts_with("Usage: ")
        } else {
            k.status == o.status
                && mask(&k.stdout) == mask(&o.stdout)
                && mask(&k.stderr) == mask(&o.stderr)
        };
        if !same {
            failures.push(format!(
                "`{}`\n  bpftool: status {} stdout {:?} stderr {:?}\n  bpfvfs:  status {} stdout {:?} stderr {:?}",
                case.words,
                k.status,
                mask(&k.stdout),
                mask(&k.stderr),
                o.status,
                mask(&o.stdout),
                mask(&o.stderr)
            ));
        }
    }
    drop(host);
    assert!(
        failures.is_empty(),
        "{} of {} invocations differ from bpftool:\n{}",
        failures.len(),
        cases.len() + 1,
        failures.join("\n")
    );
    eprintln!("{} invocations matched bpftool", cases.len() + 1);
}

#[test]
fn masking() {
    assert_eq!(
        mask("275: hash  name tst  flags 0x0\n\tkey 4B  value 8B  max_entries 16  memlock 2320B\n"),
        "N: hash  name tst  flags 0x0\n\tkey 4B  value 8B  max_entries 16  memlock NB\n"
    );
    assert_eq!(
        mask("{\"id\":26,\"bytes_memlock\":2320,\"x\":\"get map by id (7): y\"}"),
        "{\"id\":N,\"bytes_memlock\":N,\"x\":\"get map by id (N): y\"}"
    );
}
