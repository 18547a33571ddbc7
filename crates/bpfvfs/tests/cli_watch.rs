//! `bpfvfs watch` on a live daemon: events caused by ordinary tools working through the FUSE
//! mount reach the watcher, in order, with names and paired rename cookies; -j prints JSON
//! lines; --count and --timeout end the watch; a bad path or event name is a clear error.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn spawn_watch(d: &Daemon, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_bpfvfs"))
        .arg("--socket")
        .arg(&d.sock)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait until the watcher says its watches are in place.
fn established(child: &mut std::process::Child) {
    let err = child.stderr.take().unwrap();
    let mut r = BufReader::new(err);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "watch exited early");
        if line.contains("Watches established.") {
            return;
        }
    }
}

#[test]
fn events_through_the_mount_in_order() {
    let Some(d) = Daemon::start("cliwatch", &[]) else {
        return;
    };
    d.sh_ok("mkdir d");
    let dir = d.mnt.join("d");
    let mut w = spawn_watch(
        &d,
        &[
            "-j",
            "watch",
            dir.to_str().unwrap(),
            "-e",
            "create,delete,moved_from,moved_to,attrib,close_write",
            "-c",
            "8",
        ],
    );
    established(&mut w);
    d.sh_ok("echo hi > d/f && mkdir d/sub && chmod 600 d/f && mv d/f d/g && rm d/g && rmdir d/sub");
    let out = w.wait_with_output().unwrap();
    assert!(out.status.success());
    let evs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let short: Vec<String> = evs
        .iter()
        .map(|e| {
            let names: Vec<&str> = e["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap())
                .collect();
            format!("{} {}", names.join(","), e["name"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(
        short,
        vec![
            "CREATE f",
            "CLOSE_WRITE f",
            "CREATE,ISDIR sub",
            "ATTRIB f",
            "MOVED_FROM f",
            "MOVED_TO g",
            "DELETE g",
            "DELETE,ISDIR sub",
        ],
        "{evs:#?}"
    );
    // The rename pair shares one non-zero cookie.
    assert_ne!(evs[4]["cookie"], 0);
    assert_eq!(evs[4]["cookie"], evs[5]["cookie"]);
    assert_eq!(evs[0]["path"], dir.to_str().unwrap());
}

#[test]
fn plain_output_timeout_and_errors() {
    let Some(d) = Daemon::start("cliwatch2", &[]) else {
        return;
    };
    d.sh_ok("mkdir d && touch d/x");
    // A tree path works as well as a host path.
    let mut w = spawn_watch(&d, &["watch", "/d/x", "-c", "2"]);
    established(&mut w);
    d.sh_ok("echo more >> d/x");
    let out = w.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("/d/x OPEN"), "{text}");
    assert!(lines[1].starts_with("/d/x MODIFY"), "{text}");

    // xattr changes and fallocate through the mount are events too.
    let mut w = spawn_watch(&d, &["watch", "/d/x", "-e", "attrib,modify", "-c", "3"]);
    established(&mut w);
    d.sh_ok("setfattr -n user.k -v 1 d/x 2>/dev/null || python3 -c \"import os; os.setxattr('d/x', 'user.k', b'1')\"");
    d.sh_ok("python3 -c \"import os; os.removexattr('d/x', 'user.k')\"");
    d.sh_ok("fallocate -l 8192 d/x");
    let out = w.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        vec!["/d/x ATTRIB ", "/d/x ATTRIB ", "/d/x MODIFY "],
        "{text}"
    );

    // No event within the timeout: exit status 2.
    let mut w = spawn_watch(&d, &["watch", "/d", "-t", "0.5"]);
    established(&mut w);
    let st = w.wait().unwrap();
    assert_eq!(st.code(), Some(2));

    // Errors.
    let out = d.cli(&["watch", "/nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Couldn't watch /nope"),
        "{:?}",
        out
    );
    let out = d.cli(&["watch", "/d", "-e", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown event \"bogus\""));
    // The watcher's connection is gone: its group and marks with it.
    std::thread::sleep(Duration::from_millis(100));
}
