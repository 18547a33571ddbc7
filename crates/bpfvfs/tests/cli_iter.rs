//! `bpfvfs iter pin` against a live daemon, with clang-built iterators from examples/: a map
//! iterator and a map-element iterator (the map given as bpftool's MAP) pinned in bpffs and
//! read with `cat` through the FUSE mount; a cgroup iterator over a local cgroup tree in a
//! given order, its ids those `stat` shows; bpftool's messages and exit statuses for a
//! missing object, a missing order and a bad order.

mod common;

use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn cat(d: &Daemon, tree_path: &str) -> String {
    std::fs::read_to_string(d.mnt.join(tree_path.trim_start_matches('/'))).unwrap()
}

#[test]
fn iter_pin_map_and_map_elem_iterators() {
    let Some(d) = Daemon::start("cliiter", &[]) else {
        return;
    };
    let tmp = d.tmp.path().to_path_buf();
    let Some(maps_o) = example_bpf("iter_maps", &tmp) else {
        return;
    };
    let Some(elem_o) = example_bpf("iter_map_elem", &tmp) else {
        return;
    };
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
    for (k, v) in [("0", "10"), ("1", "20"), ("3", "5")] {
        d.cli_ok(&[
            "map",
            "update",
            "pinned",
            "/sys/fs/bpf/cm",
            "key",
            k,
            "0",
            "0",
            "0",
            "value",
            v,
            "0",
            "0",
            "0",
            "0",
            "0",
            "0",
            "0",
        ]);
    }
    assert_eq!(
        d.cli_ok(&["iter", "pin", s(&maps_o), "/sys/fs/bpf/maps"]),
        ""
    );
    let text = cat(&d, "/sys/fs/bpf/maps");
    assert!(text.contains(" cm type 2 key 4 value 8 max 4\n"), "{text}");
    assert!(
        text.lines().last().unwrap().starts_with("end seq_num "),
        "{text}"
    );
    // The map as bpftool's MAP (here: pinned FILE).
    d.cli_ok(&[
        "iter",
        "pin",
        s(&elem_o),
        "/sys/fs/bpf/elems",
        "map",
        "pinned",
        "/sys/fs/bpf/cm",
    ]);
    assert_eq!(
        cat(&d, "/sys/fs/bpf/elems"),
        "key value\n0   10\n1   20\n2   0\n3   5\nmap cm: 3 elements before the end, sum 35\n"
    );
    // Each read is a new session: the same text again.
    assert!(cat(&d, "/sys/fs/bpf/elems").ends_with("sum 35\n"));

    // bpftool's errors: an object that is not there (-ENOENT: 254); a map-element
    // iterator without its map (-EBADF: 247).
    let out = d.cli(&["iter", "pin", "/nonexistent.o", "/sys/fs/bpf/x"]);
    assert_eq!(out.status.code(), Some(254));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: can't open objfile /nonexistent.o\n"
    );
    let out = d.cli(&["iter", "pin", s(&elem_o), "/sys/fs/bpf/y"]);
    assert_eq!(out.status.code(), Some(247), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr)
        .ends_with("Error: attach_iter failed for program dump_elems\n"));
    assert!(!d.mnt.join("sys/fs/bpf/y").exists());
}

#[test]
fn iter_pin_cgroup_iterator_in_an_order() {
    let Some(d) = Daemon::start("cliitercg", &["--cgroup", "local"]) else {
        return;
    };
    let tmp = d.tmp.path().to_path_buf();
    let Some(o) = example_bpf("iter_cgroup_ids", &tmp) else {
        return;
    };
    let cg = d.mnt.join("sys/fs/cgroup");
    for p in ["a", "a/b", "c"] {
        std::fs::create_dir(cg.join(p)).unwrap();
    }
    d.cli_ok(&[
        "iter",
        "pin",
        s(&o),
        "/sys/fs/bpf/post",
        "cgroup",
        s(&cg.join("a")),
        "order",
        "descendants_post",
    ]);
    let ino = |p: &str| std::fs::metadata(cg.join(p)).unwrap().ino();
    assert_eq!(
        cat(&d, "/sys/fs/bpf/post"),
        format!(
            "0: id {} level 2 name b\n1: id {} level 1 name a\nend seq_num 1\n",
            ino("a/b"),
            ino("a")
        )
    );
    // A tree path works as well as the path under the mount.
    d.cli_ok(&[
        "iter",
        "pin",
        s(&o),
        "/sys/fs/bpf/pre",
        "cgroup",
        "/sys/fs/cgroup",
        "order",
        "descendants_pre",
    ]);
    let pre = cat(&d, "/sys/fs/bpf/pre");
    assert_eq!(pre.lines().count(), 5, "{pre}");
    assert!(pre.starts_with("0: id "), "{pre}");
    assert!(
        pre.contains(&format!("3: id {} level 1 name c\n", ino("c"))),
        "{pre}"
    );

    // No order: the kernel's EINVAL (exit status 234); an unknown order: -1 (255).
    let out = d.cli(&[
        "iter",
        "pin",
        s(&o),
        "/sys/fs/bpf/x",
        "cgroup",
        "/sys/fs/cgroup",
    ]);
    assert_eq!(out.status.code(), Some(234), "{out:?}");
    let out = d.cli(&[
        "iter",
        "pin",
        s(&o),
        "/sys/fs/bpf/x",
        "cgroup",
        "/sys/fs/cgroup",
        "order",
        "sideways",
    ]);
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: unknown cgroup iterator order 'sideways'\n"
    );
}
