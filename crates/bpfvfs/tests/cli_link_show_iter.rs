//! `bpfvfs link show` of iterator and view links against a live daemon, text and JSON:
//! iterator links print what bpftool 7.1 prints for them on the host kernel (checked there
//! with the same objects: `target_name bpf_map_elem  map_id N  `, `target_name cgroup
//! cgroup_id N  order descendants_pre  `); view links, which have no kernel link type, print
//! bpfvfs's own `view  prog N  attach_type view  cgroup_id N  [inherit  ]`.

mod common;

use common::*;
use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(d: &Daemon, args: &[&str]) -> Value {
    let mut a = vec!["-j"];
    a.extend_from_slice(args);
    let out = d.cli_ok(&a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn id_of(d: &Daemon, kind: &str, pinned: &str) -> u64 {
    json(d, &[kind, "show", "pinned", pinned])["id"]
        .as_u64()
        .unwrap()
}

#[test]
fn link_show_iterator_and_view_links() {
    let Some(d) = Daemon::start("clilinkiter", &["--cgroup", "local"]) else {
        return;
    };
    let tmp = d.tmp.path().to_path_buf();
    let (Some(elem_o), Some(cg_o), Some(view_o)) = (
        example_bpf("iter_map_elem", &tmp),
        example_bpf("iter_cgroup_ids", &tmp),
        example_bpf("view_cgroup_info", &tmp),
    ) else {
        return;
    };
    let cg = d.mnt.join("sys/fs/cgroup");
    for p in ["a", "a/b", "c"] {
        std::fs::create_dir(cg.join(p)).unwrap();
    }
    let ino = |p: &str| std::fs::metadata(cg.join(p)).unwrap().ino();

    // A map-element iterator: the map's id.
    d.cli_ok(&[
        "map",
        "create",
        "/sys/fs/bpf/cm",
        "type",
        "array",
        "key",
        "4",
        "value",
        "8",
        "entries",
        "4",
        "name",
        "cm",
    ]);
    let map_id = id_of(&d, "map", "/sys/fs/bpf/cm");
    d.cli_ok(&[
        "iter",
        "pin",
        s(&elem_o),
        "/sys/fs/bpf/elems",
        "map",
        "pinned",
        "/sys/fs/bpf/cm",
    ]);
    let j = json(&d, &["link", "show", "pinned", "/sys/fs/bpf/elems"]);
    let (lid, pid) = (j["id"].as_u64().unwrap(), j["prog_id"].as_u64().unwrap());
    // bpftool's field order, compared as text.
    assert_eq!(
        d.cli_ok(&["-j", "link", "show", "pinned", "/sys/fs/bpf/elems"]),
        format!(
            "{{\"id\":{lid},\"type\":\"iter\",\"prog_id\":{pid},\"target_name\":\"bpf_map_elem\",\"map_id\":{map_id}}}\n"
        )
    );
    assert_eq!(
        d.cli_ok(&["link", "show", "pinned", "/sys/fs/bpf/elems"]),
        format!("{lid}: iter  prog {pid}  target_name bpf_map_elem  map_id {map_id}  \n")
    );

    // Cgroup iterators: the start group's id (the inode number of its directory) and the
    // order, for each order; the root when the group is the mount itself.
    let orders = [
        ("a", "descendants_pre"),
        ("a/b", "descendants_post"),
        ("a/b", "ancestors_up"),
        ("", "self_only"),
    ];
    for (i, (group, order)) in orders.iter().enumerate() {
        let pin = format!("/sys/fs/bpf/cg{i}");
        d.cli_ok(&[
            "iter",
            "pin",
            s(&cg_o),
            &pin,
            "cgroup",
            s(&cg.join(group)),
            "order",
            order,
        ]);
        let j = json(&d, &["link", "show", "pinned", &pin]);
        let (lid, pid) = (j["id"].as_u64().unwrap(), j["prog_id"].as_u64().unwrap());
        let gid = ino(group);
        assert_eq!(
            d.cli_ok(&["link", "show", "pinned", &pin]),
            format!(
                "{lid}: iter  prog {pid}  target_name cgroup  cgroup_id {gid}  order {order}  \n"
            )
        );
        assert_eq!(
            d.cli_ok(&["-j", "link", "show", "pinned", &pin]),
            format!(
                "{{\"id\":{lid},\"type\":\"iter\",\"prog_id\":{pid},\"target_name\":\"cgroup\",\"cgroup_id\":{gid},\"order\":\"{order}\"}}\n"
            )
        );
        // -f: the pin path on its own line after the fields.
        assert_eq!(
            d.cli_ok(&["-f", "link", "show", "pinned", &pin]),
            format!(
                "{lid}: iter  prog {pid}  target_name cgroup  cgroup_id {gid}  order {order}  \n\tpinned {pin}\n"
            )
        );
    }

    // The preloaded maps.debug link keeps its plain form (no parameters).
    let dbg = d.cli_ok(&["link", "show", "pinned", "/sys/fs/bpf/maps.debug"]);
    assert!(dbg.ends_with("  target_name bpf_map  \n"), "{dbg}");

    // A view link kept by the daemon (`cgroup attach ... view ... inherit`): listed by
    // `link show` with the group and the inherit flag; without inherit, no flag.
    d.cli_ok(&["prog", "loadall", s(&view_o), "/sys/fs/bpf/vci"]);
    let view_pid = id_of(&d, "prog", "/sys/fs/bpf/vci/cgroup_info");
    let prog = ["pinned", "/sys/fs/bpf/vci/cgroup_info"];
    d.cli_ok(&[
        "cgroup",
        "attach",
        s(&cg.join("a")),
        "view",
        prog[0],
        prog[1],
        "inherit",
    ]);
    // (Not in a/b: the file a's attachment inherits is already there, EEXIST.)
    d.cli_ok(&[
        "cgroup",
        "attach",
        s(&cg.join("c")),
        "view",
        prog[0],
        prog[1],
    ]);
    let all = d.cli_ok(&["link", "show"]);
    let views: Vec<&str> = all.lines().filter(|l| l.contains(": view  ")).collect();
    assert_eq!(views.len(), 2, "{all}");
    let want_a = format!(
        "  prog {view_pid}  attach_type view  cgroup_id {}  inherit  ",
        ino("a")
    );
    let want_c = format!(
        "  prog {view_pid}  attach_type view  cgroup_id {}  ",
        ino("c")
    );
    assert!(views.iter().any(|l| l.ends_with(&want_a)), "{all}");
    assert!(views.iter().any(|l| l.ends_with(&want_c)), "{all}");
    let j = json(&d, &["link", "show"]);
    let jv: Vec<&Value> = j
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["type"] == "view")
        .collect();
    assert_eq!(jv.len(), 2, "{j}");
    for l in &jv {
        assert_eq!(l["prog_id"], view_pid);
        assert_eq!(l["attach_type"], "view");
        let inherit = l["inherit"].as_bool().unwrap();
        let want = if inherit { ino("a") } else { ino("c") };
        assert_eq!(l["cgroup_id"], want, "{l}");
    }
    assert_ne!(jv[0]["inherit"], jv[1]["inherit"]);
    // Detached: gone from the list.
    d.cli_ok(&[
        "cgroup",
        "detach",
        s(&cg.join("a")),
        "view",
        prog[0],
        prog[1],
    ]);
    d.cli_ok(&[
        "cgroup",
        "detach",
        s(&cg.join("c")),
        "view",
        prog[0],
        prog[1],
    ]);
    let all = d.cli_ok(&["link", "show"]);
    assert!(!all.contains(": view  "), "{all}");
}
