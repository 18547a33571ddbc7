//! The control socket under abuse: every bad request gets an error reply (or, for an
//! oversized line, a close), and the daemon keeps answering afterwards.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

struct Conn {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Conn {
    fn open(d: &Daemon) -> Conn {
        let s = UnixStream::connect(&d.sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Conn {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }
    fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }
    fn reply(&mut self) -> Value {
        let mut line = String::new();
        let n = self.r.read_line(&mut line).unwrap();
        assert!(n > 0, "connection closed");
        assert!(line.ends_with('\n'));
        serde_json::from_str(&line).unwrap()
    }
    fn ask(&mut self, bytes: &[u8]) -> Value {
        self.send(bytes);
        self.reply()
    }
}

fn assert_err(v: &Value, errno: i32, name: &str) {
    assert_eq!(v["v"], 1, "{v}");
    assert!(v.get("ok").is_none(), "{v}");
    assert_eq!(v["err"]["errno"], errno, "{v}");
    assert_eq!(v["err"]["name"], name, "{v}");
    assert!(!v["err"]["message"].as_str().unwrap().is_empty(), "{v}");
}

fn assert_ping(c: &mut Conn, id: u64) {
    let v = c.ask(format!("{{\"v\":1,\"id\":{id},\"op\":\"ping\"}}\n").as_bytes());
    assert_eq!(v["id"], id, "{v}");
    assert_eq!(v["ok"]["pong"], true, "{v}");
}

#[test]
fn control_socket_robustness() {
    let Some(d) = Daemon::start("ctl", &[]) else {
        return;
    };
    let mut c = Conn::open(&d);
    assert_ping(&mut c, 1);

    // Garbage, binary junk, truncated JSON, non-objects, missing members.
    assert_err(&c.ask(b"garbage\n"), libc::EINVAL, "EINVAL");
    assert_err(&c.ask(b"\x00\xff\xfe\x01junk\n"), libc::EINVAL, "EINVAL");
    assert_err(
        &c.ask(b"{\"v\":1,\"id\":2,\"op\":\n"),
        libc::EINVAL,
        "EINVAL",
    );
    assert_err(&c.ask(b"[1,2,3]\n"), libc::EINVAL, "EINVAL");
    assert_err(&c.ask(b"42\n"), libc::EINVAL, "EINVAL");
    let v = c.ask(b"{\"id\":3,\"op\":\"ping\"}\n");
    assert_err(&v, libc::EINVAL, "EINVAL");
    assert_eq!(v["id"], 3);
    assert_err(&c.ask(b"{\"v\":1,\"id\":4}\n"), libc::EINVAL, "EINVAL");
    assert_err(
        &c.ask(b"{\"v\":1,\"id\":5,\"op\":7}\n"),
        libc::EINVAL,
        "EINVAL",
    );
    assert_ping(&mut c, 6);

    // Wrong version: error with the id echoed.
    let v = c.ask(b"{\"v\":2,\"id\":\"seven\",\"op\":\"ping\"}\n");
    assert_err(&v, libc::EPROTONOSUPPORT, "EPROTONOSUPPORT");
    assert_eq!(v["id"], "seven");
    assert_err(
        &c.ask(b"{\"v\":\"1\",\"id\":8,\"op\":\"ping\"}\n"),
        libc::EPROTONOSUPPORT,
        "EPROTONOSUPPORT",
    );

    // Unknown op.
    let v = c.ask(b"{\"v\":1,\"id\":9,\"op\":\"launch_missiles\"}\n");
    assert_err(&v, libc::ENOSYS, "ENOSYS");
    assert_eq!(v["id"], 9);

    // Several requests in one write, answered in order; blank lines ignored.
    c.send(b"{\"v\":1,\"id\":10,\"op\":\"ping\"}\n\n{\"v\":1,\"id\":11,\"op\":\"stats\"}\n");
    assert_eq!(c.reply()["id"], 10);
    let v = c.reply();
    assert_eq!(v["id"], 11);
    assert!(v["ok"]["inodes_live"].as_i64().unwrap() >= 1, "{v}");
    assert_ping(&mut c, 12);

    // A peer that disconnects mid-line does no harm.
    {
        let mut s = UnixStream::connect(&d.sock).unwrap();
        s.write_all(b"{\"v\":1,\"id\":1,\"op\":\"pi").unwrap();
    }

    // An oversized line: an error reply (EMSGSIZE) and then a close; or just a close.
    {
        let mut big = Conn::open(&d);
        let payload = vec![b'a'; (1 << 20) + 100];
        let writer = {
            let mut w = big.w.try_clone().unwrap();
            std::thread::spawn(move || {
                let _ = w.write_all(&payload);
                let _ = w.write_all(b"\n");
            })
        };
        let mut line = String::new();
        match big.r.read_line(&mut line) {
            Ok(0) | Err(_) => {} // closed
            Ok(_) => {
                let v: Value = serde_json::from_str(&line).unwrap();
                assert_err(&v, libc::EMSGSIZE, "EMSGSIZE");
                // Then the connection ends.
                let mut rest = Vec::new();
                let _ = big.r.read_to_end(&mut rest);
                assert!(rest.is_empty(), "data after the EMSGSIZE reply");
            }
        }
        let _ = writer.join();
    }
    // A line of exactly the limit is still accepted.
    {
        let mut ok = Conn::open(&d);
        let mut payload = vec![b' '; 1 << 20];
        let req = b"{\"v\":1,\"id\":77,\"op\":\"ping\"}";
        payload[..req.len()].copy_from_slice(req);
        payload.push(b'\n');
        let v = ok.ask(&payload);
        assert_eq!(v["id"], 77, "{v}");
        assert_eq!(v["ok"]["pong"], true);
    }

    // The daemon still answers, on the old connection and on a new one.
    assert_ping(&mut c, 13);
    let mut c2 = Conn::open(&d);
    assert_ping(&mut c2, 14);
    // And the mount still works.
    std::fs::write(d.mnt.join("after"), b"ok").unwrap();
    assert_eq!(std::fs::read(d.mnt.join("after")).unwrap(), b"ok");
}

#[test]
fn second_daemon_on_same_socket_is_refused() {
    let Some(d) = Daemon::start("dup", &[]) else {
        return;
    };
    let other = TempDir::new("dup2");
    let out = std::process::Command::new(BIN)
        .arg("up")
        .arg(other.path())
        .arg("--socket")
        .arg(&d.sock)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already listening"), "{err}");
    assert!(!mounted_at(other.path()));
    // The first daemon is unaffected.
    let mut c = Conn::open(&d);
    assert_ping(&mut c, 1);
}
