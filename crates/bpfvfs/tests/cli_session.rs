//! The BPF operations of the control socket on a live daemon: per-connection handle tables
//! released on disconnect, access modes enforced per handle, and malformed requests answered
//! with errors while the daemon keeps serving.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const BPF_F_RDONLY: u32 = 1 << 3;
const BPF_F_WRONLY: u32 = 1 << 4;

fn hash_map(c: &mut Ctl, name: &str) -> (u64, u64) {
    let v = c.ok(
        "map_create",
        json!({"map_type": "hash", "key_size": 4, "value_size": 8, "max_entries": 16, "name": name}),
    );
    (v["handle"].as_u64().unwrap(), v["id"].as_u64().unwrap())
}

/// Whether map `id` exists, asked on a fresh connection (which closes what it opens).
fn map_alive(d: &Daemon, id: u64) -> bool {
    let mut c = Ctl::open(&d.sock);
    let v = c.req("get_by_id", json!({"kind": "map", "obj_id": id}));
    if v.get("ok").is_some() {
        return true;
    }
    assert_eq!(v["err"]["errno"], libc::ENOENT, "{v}");
    false
}

#[test]
fn handles_are_per_connection_and_released_on_disconnect() {
    let Some(d) = Daemon::start("sess", &[]) else {
        return;
    };
    let base_handles = d.stat_u64("control_handles_open");
    let base_maps = d.stat_u64("maps_live");

    let mut c1 = Ctl::open(&d.sock);
    let (h1, id1) = hash_map(&mut c1, "s1");
    assert_eq!(h1, 1);
    let (h2, id2) = hash_map(&mut c1, "s2");
    assert_eq!(h2, 2);
    assert_ne!(id1, id2);
    // A closed number is not handed out again on this connection.
    let (h3, id3) = hash_map(&mut c1, "s3");
    c1.ok("close", json!({"handle": h3}));
    c1.err("close", json!({"handle": h3}), libc::EBADF);
    c1.err(
        "map_lookup_elem",
        json!({"handle": h3, "key": [0, 0, 0, 0]}),
        libc::EBADF,
    );
    let (h4, _) = hash_map(&mut c1, "s4");
    assert_eq!(h4, 4);
    c1.ok("close", json!({"handle": h4}));
    assert!(!map_alive(&d, id3), "closing the only handle frees the map");

    // Values in and out: byte arrays or hex strings.
    c1.ok(
        "map_update_elem",
        json!({"handle": h1, "key": "01000000", "value": [2, 0, 0, 0, 0, 0, 0, 0], "flags": 0}),
    );
    let v = c1.ok(
        "map_lookup_elem",
        json!({"handle": h1, "key": [1, 0, 0, 0]}),
    );
    assert_eq!(v["value"], json!([2, 0, 0, 0, 0, 0, 0, 0]));
    let v = c1.ok("map_get_next_key", json!({"handle": h1}));
    assert_eq!(v["next_key"], json!([1, 0, 0, 0]));
    let v = c1.ok("map_get_next_key", json!({"handle": h1, "key": null}));
    assert_eq!(v["next_key"], json!([1, 0, 0, 0]));
    c1.err(
        "map_get_next_key",
        json!({"handle": h1, "key": [1, 0, 0, 0]}),
        libc::ENOENT,
    );
    let v = c1.ok("map_dump", json!({"handle": h1}));
    assert_eq!(
        v["entries"],
        json!([{"key": [1, 0, 0, 0], "value": [2, 0, 0, 0, 0, 0, 0, 0]}])
    );
    c1.err(
        "map_update_elem",
        json!({"handle": h1, "key": [1, 0, 0, 0], "value": vec![0u8; 8], "flags": 1}),
        libc::EEXIST,
    );
    c1.ok(
        "map_delete_elem",
        json!({"handle": h1, "key": [1, 0, 0, 0]}),
    );
    c1.err(
        "map_delete_elem",
        json!({"handle": h1, "key": [1, 0, 0, 0]}),
        libc::ENOENT,
    );

    // Pin the second map; the first stays held only by the connection.
    c1.ok("obj_pin", json!({"handle": h2, "path": "/sys/fs/bpf/kept"}));
    let info = c1.ok("obj_get_info", json!({"handle": h2}));
    assert_eq!(info["kind"], "map");
    assert_eq!(info["id"], id2);
    assert_eq!(info["name"], "s2");
    assert_eq!(info["type_name"], "hash");
    assert_eq!(info["key_size"], 4);
    assert_eq!(info["access"], "rdwr");
    assert_eq!(info["pinned"], json!(["/sys/fs/bpf/kept"]));

    // Another connection numbers its own handles from 1.
    let mut c2 = Ctl::open(&d.sock);
    let v = c2.ok("get_by_id", json!({"kind": "map", "obj_id": id1}));
    assert_eq!(v["handle"], 1);
    assert_eq!(v["id"], id1);
    assert_eq!(v["kind"], "map");
    c2.ok("close", json!({"handle": 1}));
    c2.err("close", json!({"handle": 1}), libc::EBADF);
    let v = c2.ok("handles", json!({}));
    assert_eq!(v["handles"], json!([]));
    let v = c1.ok("handles", json!({}));
    assert_eq!(v["handles"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(d.stat_u64("control_handles_open"), base_handles + 2);
    assert_eq!(d.stat_u64("maps_live"), base_maps + 2);

    // Dropping the connection releases its handles: the unpinned map goes, the pinned stays.
    drop(c1);
    assert!(
        wait_until(Duration::from_secs(10), || !map_alive(&d, id1)),
        "map {id1} still alive after its connection closed"
    );
    assert!(map_alive(&d, id2));
    assert!(wait_until(Duration::from_secs(10), || {
        d.stat_u64("control_handles_open") == base_handles
    }));
    assert_eq!(d.stat_u64("maps_live"), base_maps + 1);
    let v = c2.ok("obj_get", json!({"path": "/sys/fs/bpf/kept"}));
    assert_eq!(v["id"], id2);
    assert_eq!(v["kind"], "map");
    // get_next_id walks the live maps only.
    let mut ids = Vec::new();
    let mut start = 0;
    loop {
        let v = c2.req("get_next_id", json!({"kind": "map", "start": start}));
        if v.get("err").is_some() {
            assert_eq!(v["err"]["errno"], libc::ENOENT, "{v}");
            break;
        }
        start = v["ok"]["id"].as_u64().unwrap();
        ids.push(start);
    }
    assert!(ids.contains(&id2) && !ids.contains(&id1), "{ids:?}");
}

#[test]
fn access_modes_are_enforced_per_handle() {
    let Some(d) = Daemon::start("access", &[]) else {
        return;
    };
    let mut c = Ctl::open(&d.sock);
    let (h, id) = hash_map(&mut c, "rw");
    let key = json!([7, 0, 0, 0]);
    c.ok(
        "map_update_elem",
        json!({"handle": h, "key": key, "value": vec![1u8; 8]}),
    );
    c.ok("obj_pin", json!({"handle": h, "path": "/sys/fs/bpf/rw"}));

    for how in ["obj_get", "get_by_id"] {
        let open = |c: &mut Ctl, flags: u32| -> Value {
            if how == "obj_get" {
                c.req(
                    "obj_get",
                    json!({"path": "/sys/fs/bpf/rw", "file_flags": flags}),
                )
            } else {
                c.req(
                    "get_by_id",
                    json!({"kind": "map", "obj_id": id, "file_flags": flags}),
                )
            }
        };
        let ro = open(&mut c, BPF_F_RDONLY)["ok"]["handle"].as_u64().unwrap();
        assert_eq!(
            c.ok("obj_get_info", json!({"handle": ro}))["access"],
            "rdonly"
        );
        c.ok("map_lookup_elem", json!({"handle": ro, "key": key}));
        c.ok("map_get_next_key", json!({"handle": ro}));
        c.ok("map_dump", json!({"handle": ro}));
        c.err(
            "map_update_elem",
            json!({"handle": ro, "key": key, "value": vec![2u8; 8]}),
            libc::EPERM,
        );
        c.err(
            "map_delete_elem",
            json!({"handle": ro, "key": key}),
            libc::EPERM,
        );
        c.err("map_freeze", json!({"handle": ro}), libc::EPERM);

        let wo = open(&mut c, BPF_F_WRONLY)["ok"]["handle"].as_u64().unwrap();
        assert_eq!(
            c.ok("obj_get_info", json!({"handle": wo}))["access"],
            "wronly"
        );
        c.err(
            "map_lookup_elem",
            json!({"handle": wo, "key": key}),
            libc::EPERM,
        );
        c.err("map_get_next_key", json!({"handle": wo}), libc::EPERM);
        c.err("map_dump", json!({"handle": wo}), libc::EPERM);
        c.ok(
            "map_update_elem",
            json!({"handle": wo, "key": key, "value": vec![3u8; 8]}),
        );
        c.ok("map_delete_elem", json!({"handle": wo, "key": key}));
        c.ok(
            "map_update_elem",
            json!({"handle": wo, "key": key, "value": vec![1u8; 8]}),
        );

        let both = open(&mut c, BPF_F_RDONLY | BPF_F_WRONLY);
        assert_eq!(both["err"]["errno"], libc::EINVAL, "{both}");
        let bad = open(&mut c, 1 << 20);
        assert_eq!(bad["err"]["errno"], libc::EINVAL, "{bad}");
        c.ok("close", json!({"handle": ro}));
        c.ok("close", json!({"handle": wo}));
    }

    // A map created read-only for user space refuses writes through any handle.
    let v = c.ok(
        "map_create",
        json!({"map_type": 2, "key_size": 4, "value_size": 4, "max_entries": 2,
               "map_flags": BPF_F_RDONLY, "name": "ro_map"}),
    );
    let h = v["handle"].as_u64().unwrap();
    c.err(
        "map_update_elem",
        json!({"handle": h, "key": [0, 0, 0, 0], "value": [1, 1, 1, 1]}),
        libc::EPERM,
    );
    c.ok("map_lookup_elem", json!({"handle": h, "key": [0, 0, 0, 0]}));

    // Freezing: no more writes from user space.
    let v = c.ok(
        "map_create",
        json!({"map_type": "array", "key_size": 4, "value_size": 4, "max_entries": 2, "name": "fz"}),
    );
    let h = v["handle"].as_u64().unwrap();
    c.ok("map_freeze", json!({"handle": h}));
    assert_eq!(c.ok("obj_get_info", json!({"handle": h}))["frozen"], true);
    c.err(
        "map_update_elem",
        json!({"handle": h, "key": [0, 0, 0, 0], "value": [1, 1, 1, 1]}),
        libc::EPERM,
    );
}

#[test]
fn handle_limit_per_connection() {
    let Some(d) = Daemon::start("emfile", &[]) else {
        return;
    };
    let base = d.stat_u64("control_handles_open");
    let mut c = Ctl::open(&d.sock);
    let (_, id) = hash_map(&mut c, "lim");
    // Pipeline the requests: 4095 more opens fill the table.
    let mut batch = String::new();
    for i in 0..4095 {
        batch.push_str(&format!(
            "{{\"v\":1,\"id\":{},\"op\":\"get_by_id\",\"kind\":\"map\",\"obj_id\":{id}}}\n",
            100_000 + i
        ));
    }
    // From another thread: the replies must be read while the requests are written.
    let mut w = c.w.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        w.write_all(batch.as_bytes()).unwrap();
    });
    for _ in 0..4095 {
        let v = c.reply();
        assert!(v.get("ok").is_some(), "{v}");
    }
    writer.join().unwrap();
    c.err(
        "get_by_id",
        json!({"kind": "map", "obj_id": id}),
        libc::EMFILE,
    );
    c.err(
        "obj_get",
        json!({"path": "/sys/fs/bpf/maps.debug"}),
        libc::EMFILE,
    );
    c.ok("close", json!({"handle": 17}));
    let v = c.ok("get_by_id", json!({"kind": "map", "obj_id": id}));
    assert!(v["handle"].as_u64().unwrap() > 4096, "{v}");
    assert_eq!(d.stat_u64("control_handles_open"), base + 4096);
    drop(c);
    assert!(wait_until(Duration::from_secs(10), || {
        d.stat_u64("control_handles_open") == base
    }));
    assert!(!map_alive(&d, id));
}

#[test]
fn malformed_bpf_requests_get_errors() {
    let Some(d) = Daemon::start("badargs", &[]) else {
        return;
    };
    let mut c = Ctl::open(&d.sock);
    let (h, _) = hash_map(&mut c, "bad");
    let einval = libc::EINVAL;

    // map_create: missing members, wrong types, bad values.
    let good = json!({"map_type": "hash", "key_size": 4, "value_size": 8, "max_entries": 4});
    for missing in ["map_type", "key_size", "value_size", "max_entries"] {
        let mut a = good.clone();
        a.as_object_mut().unwrap().remove(missing);
        let v = c.err("map_create", a, einval);
        assert!(
            v["err"]["message"].as_str().unwrap().contains(missing),
            "{v}"
        );
    }
    for (k, bad) in [
        ("key_size", json!("4")),
        ("key_size", json!(-4)),
        ("key_size", json!(4.5)),
        ("key_size", json!(1u64 << 32)),
        ("map_type", json!("no_such_type")),
        ("map_type", json!([1])),
        ("map_flags", json!(true)),
        ("name", json!(7)),
        ("name", json!("this-is-not-valid")),
        ("name", json!("sixteen_chars_xx")),
        ("map_extra", json!(-1)),
    ] {
        let mut a = good.clone();
        a[k] = bad.clone();
        c.err("map_create", a, einval);
    }
    let mut a = good.clone();
    a["key_size"] = json!(0);
    c.err("map_create", a, einval);
    c.err(
        "map_create",
        json!({"map_type": 999, "key_size": 4, "value_size": 4, "max_entries": 1}),
        einval,
    );
    c.err(
        "map_create",
        json!({"map_type": "hash", "key_size": 4, "value_size": 4, "max_entries": 1, "inner_map": 99}),
        libc::EBADF,
    );

    // Handles: not a number (EINVAL), not open (EBADF).
    let key = json!([0, 0, 0, 0]);
    c.err("map_lookup_elem", json!({"key": key}), einval);
    c.err(
        "map_lookup_elem",
        json!({"handle": "1", "key": key}),
        einval,
    );
    c.err(
        "map_lookup_elem",
        json!({"handle": 1.5, "key": key}),
        einval,
    );
    c.err(
        "map_lookup_elem",
        json!({"handle": null, "key": key}),
        einval,
    );
    c.err(
        "map_lookup_elem",
        json!({"handle": 999, "key": key}),
        libc::EBADF,
    );
    c.err(
        "map_lookup_elem",
        json!({"handle": 0, "key": key}),
        libc::EBADF,
    );
    c.err(
        "map_lookup_elem",
        json!({"handle": -1, "key": key}),
        libc::EBADF,
    );
    c.err(
        "map_lookup_elem",
        json!({"handle": 1u64 << 40, "key": key}),
        libc::EBADF,
    );
    c.err("close", json!({"handle": 12345}), libc::EBADF);

    // Keys and values: wrong sizes, wrong element types, oversized.
    c.err("map_lookup_elem", json!({"handle": h}), einval);
    c.err(
        "map_lookup_elem",
        json!({"handle": h, "key": [0, 0, 0]}),
        einval,
    );
    c.err(
        "map_lookup_elem",
        json!({"handle": h, "key": [0, 0, 0, 0, 0]}),
        einval,
    );
    c.err(
        "map_lookup_elem",
        json!({"handle": h, "key": [0, 0, 0, 256]}),
        einval,
    );
    c.err(
        "map_lookup_elem",
        json!({"handle": h, "key": [0, 0, 0, -1]}),
        einval,
    );
    c.err(
        "map_lookup_elem",
        json!({"handle": h, "key": ["a", 0, 0, 0]}),
        einval,
    );
    c.err(
        "map_lookup_elem",
        json!({"handle": h, "key": "0000000"}),
        einval,
    );
    c.err(
        "map_lookup_elem",
        json!({"handle": h, "key": "zz000000"}),
        einval,
    );
    c.err(
        "map_lookup_elem",
        json!({"handle": h, "key": {"a": 1}}),
        einval,
    );
    c.err("map_lookup_elem", json!({"handle": h, "key": 0}), einval);
    c.err(
        "map_lookup_elem",
        json!({"handle": h, "key": "00000000"}),
        libc::ENOENT,
    );
    c.err("map_update_elem", json!({"handle": h, "key": key}), einval);
    c.err(
        "map_update_elem",
        json!({"handle": h, "key": key, "value": vec![0u8; 9]}),
        einval,
    );
    c.err(
        "map_update_elem",
        json!({"handle": h, "key": key, "value": vec![0u8; 7]}),
        einval,
    );
    c.err(
        "map_update_elem",
        json!({"handle": h, "key": key, "value": vec![0u8; 100_000]}),
        einval,
    );
    c.err(
        "map_update_elem",
        json!({"handle": h, "key": key, "value": "00".repeat(200_000)}),
        einval,
    );
    c.err(
        "map_update_elem",
        json!({"handle": h, "key": key, "value": vec![0u8; 8], "flags": 3}),
        einval,
    );
    c.err(
        "map_update_elem",
        json!({"handle": h, "key": key, "value": vec![0u8; 8], "flags": "any"}),
        einval,
    );
    c.err("map_get_next_key", json!({"handle": h, "key": [1]}), einval);
    c.err("map_delete_elem", json!({"handle": h}), einval);

    // Objects: kinds, ids, paths.
    c.err("get_next_id", json!({"kind": "bogus"}), einval);
    c.err("get_next_id", json!({}), einval);
    c.err("get_next_id", json!({"kind": "map", "start": "0"}), einval);
    c.err("get_by_id", json!({"kind": "map"}), einval);
    c.err(
        "get_by_id",
        json!({"kind": "map", "obj_id": 999_999}),
        libc::ENOENT,
    );
    c.err("obj_pin", json!({"handle": h}), einval);
    c.err("obj_pin", json!({"handle": h, "path": 5}), einval);
    c.err(
        "obj_pin",
        // (Outside bpffs a pin is a true pin now, issue 9: a dotted bpffs name is EPERM.)
        json!({"handle": h, "path": "/sys/fs/bpf/a.b"}),
        libc::EPERM,
    );
    c.err(
        "obj_pin",
        json!({"handle": h, "path": "/sys/fs/bpf/maps.debug"}),
        libc::EEXIST,
    );
    c.err(
        "obj_pin",
        json!({"handle": h, "path": "/sys/fs/bpf/no/such"}),
        libc::ENOENT,
    );
    c.err("obj_get", json!({}), einval);
    c.err("obj_get", json!({"path": "/sys/fs/bpf/none"}), libc::ENOENT);
    c.err("obj_get", json!({"path": "/sys/fs/bpf"}), libc::EACCES);
    c.err(
        "obj_get",
        json!({"path": "/sys/fs/bpf/maps.debug", "file_flags": 8}),
        einval,
    );
    c.err("obj_get_info", json!({"handle": 4242}), libc::EBADF);
    c.err("statfs", json!({}), einval);
    c.err("statfs", json!({"path": "/nope"}), libc::ENOENT);
    assert_eq!(
        c.ok("statfs", json!({"path": "/sys/fs/bpf"}))["fs_type"],
        "bpf"
    );
    assert_eq!(c.ok("statfs", json!({"path": "/"}))["fs_type"], "tmpfs");
    c.err("mount", json!({"path": "/sys"}), einval);
    c.err(
        "mount",
        json!({"fs_type": "nosuchfs", "path": "/sys"}),
        libc::ENODEV,
    );
    c.err("list_pins", json!({"kind": 3}), einval);
    // A program handle is no map.
    let v = c.ok("obj_get", json!({"path": "/sys/fs/bpf/maps.debug"}));
    assert_eq!(v["kind"], "link");
    let link = v["handle"].as_u64().unwrap();
    c.err(
        "map_lookup_elem",
        json!({"handle": link, "key": key}),
        einval,
    );
    c.err("map_dump", json!({"handle": link}), einval);

    // Framing trouble on the same connection: truncated and garbage lines.
    c.send_raw(b"{\"v\":1,\"id\":5000,\"op\":\"map_update_elem\",\"handle\":1,\"key\":[0,0\n");
    let v = c.reply();
    assert_eq!(v["err"]["errno"], einval, "{v}");
    c.send_raw(b"{\"v\":1,\"id\":5001,\"op\":\"map_create\",\"key_size\":\x01\x02}\n");
    assert_eq!(c.reply()["err"]["errno"], einval);
    c.send_raw(b"{\"v\":1,\"id\":5002,\"op\":\"map_lookup_elem\",\"handle\":{\"x\":[[[[]]]]},\"key\":[]}\n");
    assert_eq!(c.reply()["err"]["errno"], einval);

    // An oversized request for a new op: EMSGSIZE and a close; the daemon serves on.
    {
        let mut big = Ctl::open(&d.sock);
        let mut line =
            "{\"v\":1,\"id\":1,\"op\":\"map_update_elem\",\"handle\":1,\"key\":[0,0,0,0],\"value\":\""
                .to_string();
        line.push_str(&"00".repeat(600_000));
        line.push_str("\"}\n");
        let mut w = big.w.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let _ = w.write_all(line.as_bytes());
        });
        let mut buf = String::new();
        use std::io::BufRead;
        match big.r.read_line(&mut buf) {
            Ok(0) | Err(_) => {}
            Ok(_) => {
                let v: Value = serde_json::from_str(&buf).unwrap();
                assert_eq!(v["err"]["errno"], libc::EMSGSIZE, "{v}");
            }
        }
        let _ = writer.join();
    }

    // The first connection and its handle still work, and so does a new one.
    c.ok(
        "map_update_elem",
        json!({"handle": h, "key": key, "value": vec![9u8; 8]}),
    );
    assert_eq!(
        c.ok("map_lookup_elem", json!({"handle": h, "key": key}))["value"],
        json!(vec![9u8; 8])
    );
    let mut c2 = Ctl::open(&d.sock);
    assert_eq!(c2.ok("ping", json!({}))["pong"], true);
    assert!(d.child.is_some());
}
