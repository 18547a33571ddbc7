//! The `bpfvfs` command line.

use crate::bpftool;
use crate::control::{default_socket_path, Client, ClientError};
use crate::daemon::{self, UpConfig};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "bpfvfs",
    version,
    about = "A user-space Linux-style VFS served over FUSE",
    long_about = "A user-space Linux-style VFS served over FUSE.\n\n\
        `bpfvfs up DIR` runs the daemon in the foreground; the other commands talk to it \
        through its control socket."
)]
pub struct Cli {
    /// Control socket of the daemon [default: /run/bpfvfs.sock for root, else
    /// $XDG_RUNTIME_DIR/bpfvfs.sock or /tmp/bpfvfs-$UID.sock]
    #[arg(long, global = true, env = "BPFVFS_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Print results as JSON
    #[arg(short, long, global = true)]
    pub json: bool,

    /// Print results as pretty-printed JSON (implies -j)
    #[arg(short, long, global = true)]
    pub pretty: bool,

    /// map/prog/link show: also list the paths the objects are pinned at (bpftool's -f)
    #[arg(short = 'f', long = "bpffs", global = true)]
    pub bpffs: bool,

    /// Never mount bpffs on a pin's directory (bpftool's -n)
    #[arg(short = 'n', long = "nomount", global = true)]
    pub nomount: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount a fresh in-memory filesystem at DIR and serve it until SIGINT/SIGTERM
    Up(UpArgs),
    /// Print the daemon's counters
    Stats,
    /// BPF maps, as bpftool: show, create, dump, update, lookup, getnext, delete, pin,
    /// freeze (`bpfvfs map help`)
    Map(ToolArgs),
    /// BPF programs, as bpftool: show, pin, load, loadall, run, tracelog (`bpfvfs prog help`)
    Prog(ToolArgs),
    /// BPF links, as bpftool: show, pin (`bpfvfs link help`)
    Link(ToolArgs),
    /// The cgroup tree, as bpftool: tree (`bpfvfs cgroup help`)
    Cgroup(ToolArgs),
    /// BPF iterators, as bpftool: pin OBJ PATH [map MAP | cgroup GROUP [order ORDER]]
    /// (`bpfvfs iter help`)
    Iter(ToolArgs),
    /// Print filesystem events on PATHs as they happen, like inotifywait -m
    /// (`PATH EVENTS NAME` per line; one JSON object per line with -j)
    Watch(WatchArgs),
    /// Run eBPF conformance-suite files through the engine: one line per file, then
    /// `N passed, M failed` (no daemon needed)
    Conformance(ConformanceArgs),
    /// The conformance suite's plugin protocol: program as base16 text on stdin, MEM as
    /// base16 text, r0 in hex on stdout
    ConformancePlugin(PluginArgs),
}

#[derive(Debug, Args)]
pub struct ConformanceArgs {
    /// Execution engine
    #[arg(long, default_value = "interp", value_parser = ["interp", "jit"])]
    pub engine: String,
    /// Test files (the suite's `.data` format)
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Paths in the bpfvfs tree, or host paths under the mount point
    #[arg(value_name = "PATH", required_unless_present = "held")]
    pub paths: Vec<String>,
    /// Instead of watching: list the inode-destruction watches that pins outside bpffs
    /// hold (true pins, exposures in the cgroup tree) and exit
    #[arg(long = "held", conflicts_with_all = ["events", "count", "timeout"])]
    pub held: bool,
    /// Events to watch (repeatable or comma-separated: create,delete,modify,attrib,open,
    /// close_write,close_nowrite,close,moved_from,moved_to,move,delete_self,move_self,
    /// access); default: all
    #[arg(short = 'e', long = "event", value_name = "EVENT")]
    pub events: Vec<String>,
    /// Exit after this many events
    #[arg(short = 'c', long = "count", value_name = "N")]
    pub count: Option<u64>,
    /// Exit (status 2, as inotifywait) when no event came for this many seconds
    #[arg(short = 't', long = "timeout", value_name = "SECONDS")]
    pub timeout: Option<f64>,
}

#[derive(Debug, Args)]
pub struct PluginArgs {
    /// Execution engine
    #[arg(long, default_value = "interp", value_parser = ["interp", "jit"])]
    pub engine: String,
    /// The memory the program gets, as base16 text (bytes separated by spaces)
    #[arg(value_name = "MEM")]
    pub mem: Vec<String>,
}

/// The words of a bpftool-style command.
#[derive(Debug, Args)]
pub struct ToolArgs {
    /// The command and its arguments, in bpftool's grammar (e.g. `lookup pinned
    /// /sys/fs/bpf/m key 1 0 0 0`). Paths are in the bpfvfs tree or under the mount point.
    #[arg(value_name = "COMMAND")]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Directory to mount on (must exist)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    /// Limit on file data, in bytes, with an optional k/m/g suffix (default: unlimited)
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub size: Option<u64>,

    /// Limit on the number of inodes, optional k/m/g suffix (default: unlimited)
    #[arg(long, value_name = "N", value_parser = parse_size)]
    pub nr_inodes: Option<u64>,

    /// FUSE worker threads (default: number of CPUs, 2..16)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(2..=1024))]
    pub threads: Option<u16>,

    /// Seconds the kernel may cache attributes and names (0 = always ask; strictest
    /// permission checks on path components)
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_ttl)]
    pub ttl: Duration,

    /// The cgroup tree at /sys/fs/cgroup: `local` (groups made here with mkdir) or `host`
    /// (the host's cgroup v2 hierarchy, read-only; `host=PATH` names its mount)
    #[arg(long, value_name = "MODE", default_value = "local", value_parser = parse_cgroup)]
    pub cgroup: crate::daemon::CgroupChoice,
}

fn parse_cgroup(s: &str) -> Result<crate::daemon::CgroupChoice, String> {
    use crate::daemon::CgroupChoice;
    match s {
        "local" => Ok(CgroupChoice::Local),
        "host" => Ok(CgroupChoice::Host(None)),
        _ => match s.strip_prefix("host=") {
            Some(p) if !p.is_empty() => Ok(CgroupChoice::Host(Some(PathBuf::from(p)))),
            _ => Err(format!("{s:?}: want local, host or host=PATH")),
        },
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    bpfvfs_vfs::memfs::parse_size(s)
        .map_err(|_| format!("{s:?} is not a size (a number with an optional k, m or g suffix)"))
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=86400.0).contains(&v) {
        return Err("must be between 0 and 86400 seconds".into());
    }
    Ok(Duration::from_secs_f64(v))
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = match EnvFilter::try_from_default_env() {
        Ok(f) => f,
        Err(_) => EnvFilter::new(match verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }),
    };
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn print_json(v: &serde_json::Value, pretty: bool) {
    let s = if pretty {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    };
    println!("{}", s.unwrap_or_else(|_| "null".into()));
}

fn client_error(socket: &std::path::Path, e: ClientError) -> i32 {
    match e {
        ClientError::NoDaemon(_) => eprintln!(
            "bpfvfs: no daemon at {} (start one with: bpfvfs up DIR)",
            socket.display()
        ),
        e => eprintln!("bpfvfs: {e}"),
    }
    1
}

/// bpftool's is_prefix: `w` is a non-empty prefix of `word`.
fn is_prefix_word(w: &str, word: &str) -> bool {
    !w.is_empty() && word.starts_with(w)
}

/// `bpfvfs prog tracelog`: print the daemon's trace pipe as lines arrive, until SIGINT or
/// SIGTERM (bpftool reads the kernel's trace_pipe the same way). With -j: a JSON array of the
/// lines, closed when interrupted.
fn tracelog(socket: &std::path::Path, json: bool) -> i32 {
    use std::io::Write;
    let mut client = match crate::control::Client::connect(socket) {
        Ok(c) => c,
        Err(e) => return client_error(socket, e),
    };
    let stop = match crate::daemon::block_termination_signals() {
        Ok(set) => set,
        Err(e) => {
            eprintln!("bpfvfs: {e}");
            return 1;
        }
    };
    let mut out = std::io::stdout();
    let mut first = true;
    if json {
        let _ = write!(out, "[");
        let _ = out.flush();
    }
    loop {
        if crate::daemon::poll_signal(&stop) {
            break;
        }
        let r = client.call(
            "trace_read",
            serde_json::json!({"max": 256, "wait_ms": 200}),
        );
        let v = match r {
            Ok(v) => v,
            Err(e) => {
                if json {
                    let _ = writeln!(out, "]");
                }
                return client_error(socket, e);
            }
        };
        for l in v["lines"].as_array().into_iter().flatten() {
            let l = l.as_str().unwrap_or("");
            if json {
                let sep = if first { "" } else { "," };
                let _ = write!(out, "{sep}{}", serde_json::Value::String(l.to_string()));
            } else {
                let _ = writeln!(out, "{l}");
            }
            first = false;
        }
        let _ = out.flush();
    }
    if json {
        let _ = writeln!(out, "]");
    }
    0
}

/// `bpfvfs watch`: add a mark per path on this connection's watch group, then print events
/// until SIGINT/SIGTERM, `--count` events, or `--timeout` seconds without one.
fn watch(socket: &std::path::Path, a: &WatchArgs, json: bool) -> i32 {
    use std::io::Write;
    if a.held {
        return watch_held(socket, json);
    }
    let mut names = Vec::new();
    for e in &a.events {
        for n in e.split(',').filter(|n| !n.is_empty()) {
            if bpfvfs_vfs::fsnotify::mask_from_name(n).is_none() {
                eprintln!("bpfvfs: watch: unknown event {n:?}");
                return 2;
            }
            names.push(n.to_string());
        }
    }
    let mut client = match crate::control::Client::connect(socket) {
        Ok(c) => c,
        Err(e) => return client_error(socket, e),
    };
    let stop = match crate::daemon::block_termination_signals() {
        Ok(set) => set,
        Err(e) => {
            eprintln!("bpfvfs: {e}");
            return 1;
        }
    };
    let mut conn = crate::bpftool::Conn::new(socket);
    // wd -> the path as the user gave it (inotifywait's %w).
    let mut paths: std::collections::HashMap<i64, String> = Default::default();
    eprintln!("Setting up watches.");
    for p in &a.paths {
        let tree = match conn.tree_path(p) {
            Ok(t) => t,
            Err(_) => p.clone(),
        };
        let mut args = serde_json::json!({ "path": tree });
        if !names.is_empty() {
            args["events"] = serde_json::json!(names);
        }
        match client.call("watch_add", args) {
            Ok(v) => {
                paths.insert(v["wd"].as_i64().unwrap_or(-1), p.clone());
            }
            Err(crate::control::ClientError::Remote(e)) => {
                eprintln!("Couldn't watch {p}: {}", e.message);
                return 1;
            }
            Err(e) => return client_error(socket, e),
        }
    }
    eprintln!("Watches established.");
    let mut out = std::io::stdout();
    let mut seen: u64 = 0;
    let mut idle = std::time::Instant::now();
    loop {
        if crate::daemon::poll_signal(&stop) {
            return 0;
        }
        if let Some(t) = a.timeout {
            if idle.elapsed().as_secs_f64() >= t {
                return 2;
            }
        }
        let v = match client.call(
            "watch_read",
            serde_json::json!({"max": 256, "wait_ms": 200}),
        ) {
            Ok(v) => v,
            Err(e) => return client_error(socket, e),
        };
        for ev in v["events"].as_array().into_iter().flatten() {
            idle = std::time::Instant::now();
            let wd = ev["wd"].as_i64().unwrap_or(-1);
            let path = paths.get(&wd).cloned().unwrap_or_default();
            let events: Vec<&str> = ev["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str())
                .collect();
            let name = ev["name"].as_str().unwrap_or("");
            if json {
                let o = serde_json::json!({
                    "path": path,
                    "events": events,
                    "name": ev["name"],
                    "cookie": ev["cookie"],
                    "wd": wd,
                });
                let _ = writeln!(out, "{o}");
            } else {
                let _ = writeln!(out, "{path} {} {name}", events.join(","));
            }
            seen += 1;
            if a.count.is_some_and(|c| seen >= c) {
                let _ = out.flush();
                return 0;
            }
        }
        let _ = out.flush();
    }
}

/// `bpfvfs watch --held`: one line per destruction watch a pin outside bpffs holds:
/// `ino INO STATE PURPOSE KIND ID PATH` (plus `exposed at PATH` for exposures).
fn watch_held(socket: &std::path::Path, json: bool) -> i32 {
    let mut client = match crate::control::Client::connect(socket) {
        Ok(c) => c,
        Err(e) => return client_error(socket, e),
    };
    let v = match client.call("held_watches", serde_json::json!({})) {
        Ok(v) => v,
        Err(e) => return client_error(socket, e),
    };
    let empty = Vec::new();
    let ws = v["watches"].as_array().unwrap_or(&empty);
    if json {
        println!("{}", serde_json::Value::Array(ws.clone()));
        return 0;
    }
    for w in ws {
        let mut line = format!(
            "ino {} {} {} {} {} {}",
            w["ino"],
            w["state"].as_str().unwrap_or("?"),
            w["purpose"].as_str().unwrap_or("?"),
            w["kind"].as_str().unwrap_or("?"),
            w["id"],
            w["path"].as_str().unwrap_or("(unlinked)")
        );
        if let Some(e) = w["exposed_at"].as_str() {
            line.push_str(&format!(" exposed at {e}"));
        }
        println!("{line}");
    }
    0
}

/// Run the command line; returns the exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                // bpftool exits 255 on usage errors.
                _ if std::env::args().any(|a| matches!(a.as_str(), "map" | "prog" | "link")) => 255,
                _ => 2,
            };
        }
    };
    init_logging(cli.verbose);
    let socket = cli.socket.clone().unwrap_or_else(default_socket_path);
    match &cli.command {
        Command::Watch(a) => watch(&socket, a, cli.json || cli.pretty),
        Command::Up(a) => {
            let cfg = UpConfig {
                dir: a.dir.clone(),
                socket,
                size: a.size.unwrap_or(0),
                nr_inodes: a.nr_inodes.unwrap_or(0),
                threads: a
                    .threads
                    .map(usize::from)
                    .unwrap_or_else(|| bpfvfs_fuse::MountOptions::default().threads),
                ttl: a.ttl,
                cgroup: a.cgroup.clone(),
            };
            match daemon::up(&cfg) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("bpfvfs: {e}");
                    1
                }
            }
        }
        Command::Prog(a)
            if a.args
                .first()
                .is_some_and(|w| is_prefix_word(w, "tracelog")) =>
        {
            tracelog(&socket, cli.json || cli.pretty)
        }
        Command::Map(a)
        | Command::Prog(a)
        | Command::Link(a)
        | Command::Cgroup(a)
        | Command::Iter(a) => {
            let object = match &cli.command {
                Command::Map(_) => "map",
                Command::Prog(_) => "prog",
                Command::Cgroup(_) => "cgroup",
                Command::Iter(_) => "iter",
                _ => "link",
            };
            let opts = bpftool::Opts {
                json: cli.json,
                pretty: cli.pretty,
                show_pinned: cli.bpffs,
                nomount: cli.nomount,
            };
            match bpftool::run(&socket, object, &a.args, &opts) {
                Ok(out) => {
                    use std::io::Write;
                    let _ = std::io::stdout().write_all(out.stdout.as_bytes());
                    let _ = std::io::stdout().flush();
                    let _ = std::io::stderr().write_all(out.stderr.as_bytes());
                    out.status
                }
                Err(e) => client_error(&socket, e),
            }
        }
        Command::Conformance(a) => {
            use bpfvfs_ebpf::conformance::{cli_files, engine_by_name};
            let engine = match engine_by_name(&a.engine) {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("bpfvfs: {e}");
                    return 2;
                }
            };
            match cli_files(engine.as_ref(), &a.files, &mut std::io::stdout().lock()) {
                Ok(s) if s.failed == 0 => 0,
                Ok(_) => 1,
                Err(e) => {
                    eprintln!("bpfvfs: conformance: {e}");
                    2
                }
            }
        }
        Command::ConformancePlugin(a) => {
            use bpfvfs_ebpf::conformance::{cli_plugin, engine_by_name};
            let engine = match engine_by_name(&a.engine) {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("bpfvfs: {e}");
                    return 2;
                }
            };
            cli_plugin(
                engine.as_ref(),
                &a.mem,
                &mut std::io::stdin().lock(),
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            )
        }
        Command::Stats => {
            let r =
                Client::connect(&socket).and_then(|mut c| c.call("stats", serde_json::Value::Null));
            match r {
                Ok(v) => {
                    if cli.json || cli.pretty {
                        print_json(&v, cli.pretty);
                    } else {
                        print!("{}", daemon::format_stats(&v));
                    }
                    0
                }
                Err(e) => client_error(&socket, e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn globals_anywhere() {
        let c = Cli::try_parse_from(["bpfvfs", "stats", "-j", "--socket", "/x"]).unwrap();
        assert!(c.json);
        assert_eq!(c.socket, Some(PathBuf::from("/x")));
        let c =
            Cli::try_parse_from(["bpfvfs", "-vv", "-p", "up", "/mnt", "--size", "64m"]).unwrap();
        assert_eq!(c.verbose, 2);
        assert!(c.pretty);
        match c.command {
            Command::Up(a) => {
                assert_eq!(a.size, Some(64 << 20));
                assert_eq!(a.ttl, Duration::from_secs(1));
            }
            _ => panic!(),
        }
        assert!(Cli::try_parse_from(["bpfvfs", "up", "/mnt", "--threads", "1"]).is_err());
        assert!(Cli::try_parse_from(["bpfvfs", "up", "/mnt", "--size", "12q"]).is_err());
    }
}
