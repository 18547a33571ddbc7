//! `bpfvfs map|prog|link` against a live daemon: bpftool's words and output, pins visible
//! (and removable) through the FUSE mount, host paths under the mount point, JSON output, and
//! the caller's credentials (SO_PEERCRED) in permission checks.

mod common;

use common::*;
use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

/// The id at the start of `N: hash ...`.
/// The 20-byte value written to the array map in `per_cpu_and_array_maps`.
const A_VALUE: &str = "hex 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13";

/// A command line written as one string: its words.
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn id_of_show(s: &str) -> u64 {
    s.split(':').next().unwrap().trim().parse().unwrap()
}

#[test]
fn map_commands_and_pins_through_the_mount() {
    let Some(d) = Daemon::start("climap", &[]) else {
        return;
    };
    let bpffs = d.mnt.join("sys/fs/bpf");
    assert!(bpffs.is_dir(), "bpffs not visible at {}", bpffs.display());
    assert!(d.stats()["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["path"] == "/sys/fs/bpf" && m["fs_type"] == "bpf"));

    // create: pinned at a tree path, visible through FUSE as a 0600 regular file.
    assert_eq!(
        d.cli_ok(&[
            "map",
            "create",
            "/sys/fs/bpf/m",
            "type",
            "hash",
            "key",
            "4",
            "value",
            "8",
            "entries",
            "16",
            "name",
            "tst"
        ]),
        ""
    );
    let names: Vec<String> = std::fs::read_dir(&bpffs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"m".to_string()), "{names:?}");
    let md = std::fs::metadata(bpffs.join("m")).unwrap();
    assert!(md.is_file());
    assert_eq!(md.permissions().mode() & 0o7777, 0o600);
    assert_eq!(md.uid(), 0);

    // Same path again: EEXIST from the pin, exit 239.
    let (o, e, st) = parts(&d.cli(&words(
        "map create /sys/fs/bpf/m type hash key 4 value 8 entries 16 name tst",
    )));
    assert_eq!((o.as_str(), st), ("", 239));
    assert_eq!(
        e,
        "Error: can't pin the object (/sys/fs/bpf/m): File exists\n"
    );

    // show: text and JSON.
    let show = d.cli_ok(&["map", "show", "pinned", "/sys/fs/bpf/m"]);
    let id = id_of_show(&show);
    let lines: Vec<&str> = show.lines().collect();
    assert_eq!(lines[0], format!("{id}: hash  name tst  flags 0x0"));
    assert!(
        lines[1].starts_with("\tkey 4B  value 8B  max_entries 16  memlock "),
        "{show}"
    );
    assert_eq!(lines.len(), 2);
    let j = json_of(&d.cli_ok(&["-j", "map", "show", "pinned", "/sys/fs/bpf/m"]));
    assert_eq!(j["id"], id);
    assert_eq!(j["type"], "hash");
    assert_eq!(j["name"], "tst");
    assert_eq!(j["flags"], 0);
    assert_eq!(j["bytes_key"], 4);
    assert_eq!(j["bytes_value"], 8);
    assert_eq!(j["max_entries"], 16);
    assert!(j["bytes_memlock"].as_u64().unwrap() > 0);
    assert_eq!(j["frozen"], 0);
    assert!(j.get("pinned").is_none());
    let pretty = d.cli_ok(&["-p", "map", "show", "id", &id.to_string()]);
    assert!(pretty.starts_with("{\n    \"id\": "), "{pretty}");
    assert_eq!(json_of(&pretty), j);

    // update / lookup through the host path of the pin.
    let host_m = bpffs.join("m");
    let host_m = host_m.to_str().unwrap();
    d.cli_ok(&[
        "map", "update", "pinned", host_m, "key", "1", "0", "0", "0", "value", "2", "0", "0", "0",
        "0", "0", "0", "0",
    ]);
    d.cli_ok(&[
        "map", "update", "pinned", host_m, "key", "hex", "0a", "00", "00", "00", "value", "0x10",
        "0", "0", "0", "0", "0", "0", "0xff", "noexist",
    ]);
    assert_eq!(
        d.cli_ok(&[
            "map",
            "lookup",
            "pinned",
            "/sys/fs/bpf/m",
            "key",
            "1",
            "0",
            "0",
            "0"
        ]),
        "key: 01 00 00 00  value: 02 00 00 00 00 00 00 00\n"
    );
    let (o, e, st) = parts(&d.cli(&["map", "lookup", "pinned", host_m, "key", "3", "0", "0", "0"]));
    assert_eq!(
        (o.as_str(), e.as_str(), st),
        ("key:\n03 00 00 00\n\nNot found\n", "", 254)
    );
    let (o, e, st) = parts(&d.cli(&[
        "map",
        "update",
        "id",
        &id.to_string(),
        "key",
        "1",
        "0",
        "0",
        "0",
        "value",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "noexist",
    ]));
    assert_eq!(
        (o.as_str(), e.as_str(), st),
        ("", "Error: update failed: File exists\n", 239)
    );
    let j = json_of(&d.cli_ok(&[
        "-j", "map", "lookup", "name", "tst", "key", "10", "0", "0", "0",
    ]));
    assert_eq!(
        j["key"],
        serde_json::json!(["0x0a", "0x00", "0x00", "0x00"])
    );
    assert_eq!(
        j["value"],
        serde_json::json!(["0x10", "0x00", "0x00", "0x00", "0x00", "0x00", "0x00", "0xff"])
    );

    // getnext / dump / delete.
    let first = d.cli_ok(&["map", "getnext", "pinned", "/sys/fs/bpf/m"]);
    assert!(first.starts_with("key: None\nnext key:\n"), "{first}");
    let j = json_of(&d.cli_ok(&["-j", "map", "getnext", "pinned", "/sys/fs/bpf/m"]));
    assert_eq!(j["key"], Value::Null);
    assert_eq!(j["next_key"].as_array().unwrap().len(), 4);
    let dump = d.cli_ok(&["map", "dump", "pinned", "/sys/fs/bpf/m"]);
    let mut entries: Vec<&str> = dump.lines().collect();
    assert_eq!(entries.pop(), Some("Found 2 elements"));
    entries.sort();
    assert_eq!(
        entries,
        [
            "key: 01 00 00 00  value: 02 00 00 00 00 00 00 00",
            "key: 0a 00 00 00  value: 10 00 00 00 00 00 00 ff"
        ]
    );
    let j = json_of(&d.cli_ok(&["-j", "map", "dump", "id", &id.to_string()]));
    assert_eq!(j.as_array().unwrap().len(), 2);
    assert!(j.as_array().unwrap().iter().any(|e| e["key"][0] == "0x01"
        && e["value"]
            == serde_json::json!([
                "0x02", "0x00", "0x00", "0x00", "0x00", "0x00", "0x00", "0x00"
            ])));
    assert_eq!(
        d.cli_ok(&[
            "-j",
            "map",
            "delete",
            "pinned",
            "/sys/fs/bpf/m",
            "key",
            "10",
            "0",
            "0",
            "0"
        ]),
        "null\n"
    );
    let (o, e, st) = parts(&d.cli(&words("map delete pinned /sys/fs/bpf/m key 10 0 0 0")));
    assert_eq!(
        (o.as_str(), e.as_str(), st),
        ("", "Error: delete failed: No such file or directory\n", 254)
    );
    let (o, e, st) = parts(&d.cli(&words("map getnext pinned /sys/fs/bpf/m key 1 0 0 0")));
    assert_eq!(
        (o.as_str(), e.as_str(), st),
        (
            "",
            "Error: can't get next key: No such file or directory\n",
            254
        )
    );
    assert_eq!(
        d.cli_ok(&["map", "dump", "pinned", "/sys/fs/bpf/m"]),
        "key: 01 00 00 00  value: 02 00 00 00 00 00 00 00\nFound 1 element\n"
    );

    // Relative paths from a current directory inside the mount.
    let out = d.cli_in(Some(&bpffs), &["map", "show", "pinned", "m"]);
    assert_eq!(parts(&out).0.lines().next(), show.lines().next());
    let out = d.cli_in(Some(&d.mnt), &["map", "show", "pinned", "sys/fs/bpf/m"]);
    assert_eq!(parts(&out).0.lines().next(), show.lines().next());

    // pin: a second pin at a host path; -f lists both (as tree paths).
    let host_m2 = bpffs.join("m2");
    d.cli_ok(&[
        "map",
        "pin",
        "id",
        &id.to_string(),
        host_m2.to_str().unwrap(),
    ]);
    assert!(std::fs::symlink_metadata(&host_m2).unwrap().is_file());
    let f = d.cli_ok(&["-f", "map", "show", "id", &id.to_string()]);
    assert!(
        f.contains("\n\tpinned /sys/fs/bpf/m\n") || f.contains("\n\tpinned /sys/fs/bpf/m\n\t"),
        "{f}"
    );
    assert!(f.contains("\tpinned /sys/fs/bpf/m2\n"), "{f}");
    let j = json_of(&d.cli_ok(&["-f", "-j", "map", "show", "id", &id.to_string()]));
    let mut pins: Vec<&str> = j["pinned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    pins.sort();
    assert_eq!(pins, ["/sys/fs/bpf/m", "/sys/fs/bpf/m2"]);

    // A pin in a subdirectory made through the mount.
    std::fs::create_dir(bpffs.join("dir")).unwrap();
    d.cli_ok(&words("map pin pinned /sys/fs/bpf/m /sys/fs/bpf/dir/m3"));
    assert!(bpffs.join("dir/m3").is_file());

    // show (all) includes it; -j parses.
    let all = json_of(&d.cli_ok(&["-j", "map", "show"]));
    assert!(
        all.as_array().unwrap().iter().any(|m| m["id"] == id),
        "{all}"
    );
    let all = json_of(&d.cli_ok(&["-j", "map"]));
    assert!(all.is_array());

    // rm of every pin through FUSE frees the map.
    std::fs::remove_file(&host_m2).unwrap();
    std::fs::remove_file(bpffs.join("m")).unwrap();
    assert!(d
        .cli(&["map", "show", "id", &id.to_string()])
        .status
        .success());
    std::fs::remove_file(bpffs.join("dir/m3")).unwrap();
    let gone = wait_until(Duration::from_secs(10), || {
        !d.cli(&["map", "show", "id", &id.to_string()])
            .status
            .success()
    });
    assert!(gone, "map {id} survived the removal of its pins");
    let (o, e, st) = parts(&d.cli(&["map", "show", "id", &id.to_string()]));
    assert_eq!(
        (o.as_str(), e, st),
        (
            "",
            format!("Error: get map by id ({id}): No such file or directory\n"),
            255
        )
    );
    let j = json_of(
        &d.cli(&["-j", "map", "show", "id", &id.to_string()])
            .stdout
            .iter()
            .map(|&b| b as char)
            .collect::<String>(),
    );
    assert_eq!(
        j["error"],
        format!("get map by id ({id}): No such file or directory")
    );
}

#[test]
fn per_cpu_and_array_maps() {
    let Some(d) = Daemon::start("clipercpu", &[]) else {
        return;
    };
    d.cli_ok(&words(
        "map create /sys/fs/bpf/pc type percpu_array key 4 value 4 entries 2 name pc",
    ));
    d.cli_ok(&words(
        "map update pinned /sys/fs/bpf/pc key 1 0 0 0 value 1 2 3 4",
    ));
    let out = d.cli_ok(&words("map lookup pinned /sys/fs/bpf/pc key 1 0 0 0"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "key:");
    assert_eq!(lines[1], "01 00 00 00");
    assert!(lines.len() >= 3);
    for (i, l) in lines[2..].iter().enumerate() {
        assert_eq!(*l, format!("value (CPU {i:02}): 01 02 03 04"));
    }
    let j = json_of(&d.cli_ok(&words("-j map lookup pinned /sys/fs/bpf/pc key 1 0 0 0")));
    let values = j["values"].as_array().unwrap();
    assert_eq!(values.len(), lines.len() - 2);
    assert_eq!(values[0]["cpu"], 0);
    assert_eq!(
        values[0]["value"],
        serde_json::json!(["0x01", "0x02", "0x03", "0x04"])
    );

    d.cli_ok(&words(
        "map create /sys/fs/bpf/a type array key 4 value 20 entries 2 name a",
    ));
    d.cli_ok(&words(&format!(
        "map update pinned /sys/fs/bpf/a key 1 0 0 0 value {A_VALUE}"
    )));
    assert_eq!(
        d.cli_ok(&["map", "dump", "pinned", "/sys/fs/bpf/a"]),
        "key:\n00 00 00 00\nvalue:\n00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00\n00 00 00 00\n\
         key:\n01 00 00 00\nvalue:\n00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f\n10 11 12 13\n\
         Found 2 elements\n"
    );
    // An array cannot delete: EINVAL, exit 234.
    let (_, e, st) = parts(&d.cli(&words("map delete pinned /sys/fs/bpf/a key 0 0 0 0")));
    assert_eq!(
        (e.as_str(), st),
        ("Error: delete failed: Invalid argument\n", 234)
    );
    // freeze, then updates fail with EPERM (-1: exit 255).
    assert_eq!(d.cli_ok(&["map", "freeze", "pinned", "/sys/fs/bpf/a"]), "");
    let show = d.cli_ok(&["map", "show", "pinned", "/sys/fs/bpf/a"]);
    assert!(show.ends_with("\n\tfrozen\n"), "{show}");
    let (_, e, st) = parts(&d.cli(&words(&format!(
        "map update pinned /sys/fs/bpf/a key 0 0 0 0 value {A_VALUE}"
    ))));
    assert_eq!(
        (e.as_str(), st),
        ("Error: update failed: Operation not permitted\n", 255)
    );
}

#[test]
fn progs_and_links() {
    let Some(d) = Daemon::start("cliprog", &[]) else {
        return;
    };
    // bpffs at /sys/fs/bpf brings the preloaded iterators: two programs, two links.
    let progs = d.cli_ok(&["prog", "show"]);
    assert!(
        progs.contains(": tracing  name dump_bpf_map  tag 0000000000000000  gpl\n"),
        "{progs}"
    );
    assert!(
        progs.contains(": tracing  name dump_bpf_prog  tag "),
        "{progs}"
    );
    assert!(progs.contains("\tloaded_at "), "{progs}");
    assert!(
        progs.contains("\txlated 0B  not jited  memlock 4096B\n"),
        "{progs}"
    );
    let j = json_of(&d.cli_ok(&["-j", "prog", "show"]));
    let p = j
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "dump_bpf_map")
        .unwrap()
        .clone();
    assert_eq!(p["type"], "tracing");
    assert_eq!(p["gpl_compatible"], true);
    assert_eq!(p["jited"], false);
    assert!(p["loaded_at"].as_u64().unwrap() > 1_600_000_000);
    let pid = p["id"].as_u64().unwrap();

    let links = d.cli_ok(&["link", "show"]);
    assert!(
        links.contains(&format!(": iter  prog {pid}  target_name bpf_map  \n")),
        "{links}"
    );
    let j = json_of(&d.cli_ok(&["-j", "link", "show", "pinned", "/sys/fs/bpf/maps.debug"]));
    assert_eq!(j["type"], "iter");
    assert_eq!(j["prog_id"], pid);
    assert_eq!(j["target_name"], "bpf_map");
    let lid = j["id"].as_u64().unwrap();
    let f = d.cli_ok(&["-f", "link", "show", "id", &lid.to_string()]);
    assert_eq!(
        f,
        format!(
            "{lid}: iter  prog {pid}  target_name bpf_map  \n\tpinned /sys/fs/bpf/maps.debug\n"
        )
    );

    // Pins of programs and links.
    d.cli_ok(&["prog", "pin", "name", "dump_bpf_map", "/sys/fs/bpf/p"]);
    d.cli_ok(&[
        "link",
        "pin",
        "id",
        &lid.to_string(),
        &d.mnt.join("sys/fs/bpf/l").to_string_lossy(),
    ]);
    assert!(d.mnt.join("sys/fs/bpf/p").is_file());
    assert!(d.mnt.join("sys/fs/bpf/l").is_file());
    let j = json_of(&d.cli_ok(&["-f", "-j", "prog", "show", "pinned", "/sys/fs/bpf/p"]));
    assert_eq!(j["id"], pid);
    assert_eq!(j["pinned"], serde_json::json!(["/sys/fs/bpf/p"]));
    let (_, e, st) = parts(&d.cli(&["map", "show", "pinned", "/sys/fs/bpf/p"]));
    assert_eq!(
        (e.as_str(), st),
        ("Error: incorrect object type: prog\n", 255)
    );
    let (_, e, st) = parts(&d.cli(&["link", "show", "id", "99999"]));
    assert_eq!(
        (e.as_str(), st),
        (
            "Error: failed to get link with ID 99999: No such file or directory\n",
            254
        )
    );
    let (_, e, st) = parts(&d.cli(&["prog", "pin", "id", "1"]));
    assert_eq!(
        (e.as_str(), st),
        ("Error: 'pin' needs at least 3 arguments, 2 found\n", 234)
    );
}

#[test]
fn usage_and_missing_daemon() {
    let tmp = TempDir::new("nodaemon");
    let sock = tmp.path().join("none.sock");
    let out = std::process::Command::new(BIN)
        .arg("--socket")
        .arg(&sock)
        .args(["map", "show"])
        .output()
        .unwrap();
    let (o, e, st) = parts(&out);
    assert_eq!((o.as_str(), st), ("", 1));
    assert_eq!(
        e,
        format!(
            "bpfvfs: no daemon at {} (start one with: bpfvfs up DIR)\n",
            sock.display()
        )
    );
    // Help and usage errors need no daemon.
    let run = |args: &[&str]| {
        parts(
            &std::process::Command::new(BIN)
                .arg("--socket")
                .arg(&sock)
                .args(args)
                .output()
                .unwrap(),
        )
    };
    let (o, e, st) = run(&["map", "help"]);
    assert_eq!((o.as_str(), st), ("", 0));
    assert!(
        e.starts_with("Usage: bpfvfs map { show | list }   [MAP]\n"),
        "{e}"
    );
    assert!(e.contains("TYPE := { hash | array |"), "{e}");
    assert_eq!(run(&["-j", "map", "help"]), ("null\n".into(), "".into(), 0));
    let (_, e, st) = run(&["map", "lookup"]);
    assert!(e.starts_with("Usage: bpfvfs map"), "{e}");
    assert_eq!(st, 255);
    assert_eq!(
        run(&["-j", "map", "lookup"]),
        ("null\n".into(), "".into(), 255)
    );
    let (_, e, st) = run(&["map", "frobnicate"]);
    assert!(e.starts_with("Usage: bpfvfs map"), "{e}");
    assert_eq!(st, 255);
    assert_eq!(
        run(&["map", "event_pipe", "id", "1"]),
        (
            "".into(),
            "Error: 'map event_pipe' is not supported by bpfvfs\n".into(),
            255
        )
    );
    let (_, e, st) = run(&["prog", "help"]);
    assert!(
        e.starts_with("Usage: bpfvfs prog { show | list } [PROG]\n"),
        "{e}"
    );
    assert_eq!(st, 0);
    let (_, e, st) = run(&["link", "help"]);
    assert!(
        e.starts_with("Usage: bpfvfs link { show | list }   [LINK]\n"),
        "{e}"
    );
    assert_eq!(st, 0);
    // Unknown options: a usage error, 255 as bpftool.
    assert_eq!(run(&["map", "show", "--frob"]).2, 255);
}

#[test]
fn caller_credentials_come_from_the_socket() {
    let Some(prefix) = nobody_prefix() else {
        skip("needs root and setpriv to act as another user");
        return;
    };
    let Some(d) = Daemon::start("clicred", &[]) else {
        return;
    };
    d.cli_ok(&words(
        "map create /sys/fs/bpf/rootmap type array key 4 value 4 entries 1 name rootmap",
    ));
    // Let uid 65534 reach the socket (it is 0600), and its directory.
    std::fs::set_permissions(&d.sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(d.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |args: &[&str]| {
        let out = std::process::Command::new(&prefix[0])
            .args(&prefix[1..])
            .arg(BIN)
            .arg("--socket")
            .arg(&d.sock)
            .args(args)
            .current_dir("/")
            .output()
            .unwrap();
        parts(&out)
    };
    // Enumerating ids is privileged.
    assert_eq!(
        as_nobody(&["map", "show"]),
        (
            "".into(),
            "Error: can't get next map: Operation not permitted\n".into(),
            255
        )
    );
    let (_, e, st) = as_nobody(&["map", "show", "id", "1"]);
    assert_eq!(
        (e.as_str(), st),
        ("Error: get map by id (1): Operation not permitted\n", 255)
    );
    // Root's 0600 pin: EACCES (and bpftool's dirname-edited path in the message).
    assert_eq!(
        as_nobody(&[
            "map",
            "lookup",
            "pinned",
            "/sys/fs/bpf/rootmap",
            "key",
            "0",
            "0",
            "0",
            "0"
        ]),
        (
            "".into(),
            "Error: bpf obj get (/sys/fs/bpf): Permission denied\n".into(),
            255
        )
    );
    // Creating and pinning its own map works; the pin is owned by the caller.
    let (o, e, st) = as_nobody(&words(
        "map create /sys/fs/bpf/mine type hash key 4 value 4 entries 4 name mine",
    ));
    assert_eq!((o.as_str(), e.as_str(), st), ("", "", 0));
    let md = std::fs::metadata(d.mnt.join("sys/fs/bpf/mine")).unwrap();
    assert_eq!((md.uid(), md.gid()), (65534, 65534));
    assert_eq!(md.permissions().mode() & 0o7777, 0o600);
    let (_, e, st) = as_nobody(&words(
        "map update pinned /sys/fs/bpf/mine key 1 0 0 0 value 1 0 0 0",
    ));
    assert_eq!((e.as_str(), st), ("", 0));
}
