//! Iterator and view programs built by clang from examples/iter_*.bpf.c and view_*.bpf.c:
//! each iterator target, the final call with a NULL object and its seq_num, buffers filled
//! object by object (an object that does not fit goes to the next buffer; one that fits no
//! buffer fails the read with E2BIG), the view's retry with a doubled buffer, the link's
//! parameter checks, and pinned links read through bpffs. Every engine configuration.

mod common;

use bpfvfs_bpf::{Bpf, Handle, MapDef, MapType};
use bpfvfs_cgroup::CgroupMode;
use bpfvfs_runtime::iter::{CgroupOrder, IterTarget};
use bpfvfs_runtime::{LoadOpts, LoadedObj, Runtime};
use bpfvfs_vfs::{Cred, Errno, Vfs};
use std::sync::Arc;

use common::load;

fn prog<'a>(o: &'a LoadedObj, name: &str) -> &'a Handle {
    &o.progs.iter().find(|(n, _)| n == name).expect(name).1
}

fn map<'a>(o: &'a LoadedObj, suffix: &str) -> &'a Handle {
    &o.maps
        .iter()
        .find(|(n, _)| n == suffix || n.ends_with(suffix))
        .expect(suffix)
        .1
}

fn read(vfs: &Vfs, path: &str) -> Result<String, Errno> {
    vfs.read_file(&Cred::root(), path.as_bytes())
        .map(|b| String::from_utf8(b).unwrap())
}

fn pin_and_read(bpf: &Bpf, link: &Handle, path: &str) -> Result<String, Errno> {
    bpf.obj_pin(&Cred::root(), link, None, path.as_bytes(), 0)
        .unwrap();
    read(bpf.vfs(), path)
}

#[test]
fn map_iterator_lists_maps_then_a_final_call() {
    let Some(obj) = common::example("iter_maps") else {
        return;
    };
    for cfg in common::configs() {
        let (_vfs, bpf, rt) = common::instance(cfg);
        let o = load(&rt, "iter_maps", &obj);
        let a = bpf
            .map_create(MapDef::new(MapType::Hash, 4, 8, 16).with_name("first"))
            .unwrap();
        let b = bpf
            .map_create(MapDef::new(MapType::Array, 4, 32, 3).with_name("second"))
            .unwrap();
        let link = rt
            .iter_link_create(prog(&o, "dump_maps"), IterTarget::Plain)
            .unwrap();
        // The object's own .rodata (the format strings) is a map too.
        let mut maps = bpf.registry().maps();
        maps.sort_by_key(|m| m.id());
        let mut want = String::new();
        for (i, m) in maps.iter().enumerate() {
            let d = m.def();
            want += &format!(
                "{i}: {} {} type {} key {} value {} max {}\n",
                m.id(),
                m.name(),
                d.map_type,
                d.key_size,
                d.value_size,
                d.max_entries
            );
        }
        // The kernel's final call sees the last object's seq_num.
        want += &format!("end seq_num {}\n", maps.len() - 1);
        assert!(
            want.contains(" first type 1 key 4 value 8 max 16\n"),
            "{want}"
        );
        assert_eq!(
            pin_and_read(&bpf, &link, "/sys/fs/bpf/maps").unwrap(),
            want,
            "{cfg:?}"
        );
        // Each open is a new session over the objects alive then.
        let c = bpf
            .map_create(MapDef::new(MapType::Hash, 8, 8, 4).with_name("third"))
            .unwrap();
        let again = read(bpf.vfs(), "/sys/fs/bpf/maps").unwrap();
        assert!(
            again.contains(&format!(
                " {} third type 1 key 8 value 8 max 4\n",
                c.obj.id()
            )),
            "{again}"
        );
        drop((a, b, c));
    }
}

#[test]
fn prog_and_link_iterators() {
    let Some(obj) = common::example("iter_progs") else {
        return;
    };
    for cfg in common::configs() {
        let (_vfs, bpf, rt) = common::instance(cfg);
        let o = load(&rt, "iter_progs", &obj);
        let progs_link = rt
            .iter_link_create(prog(&o, "dump_progs"), IterTarget::Plain)
            .unwrap();
        let links_link = rt
            .iter_link_create(prog(&o, "dump_links"), IterTarget::Plain)
            .unwrap();
        let (p1, p2) = (
            prog(&o, "dump_progs").obj.id(),
            prog(&o, "dump_links").obj.id(),
        );
        let progs = pin_and_read(&bpf, &progs_link, "/sys/fs/bpf/progs").unwrap();
        // Every program, by id: bpffs's preloaded iterators (maps.debug, progs.debug) too.
        let mut all = bpf.registry().progs();
        all.sort_by_key(|p| p.id());
        let want: String = all
            .iter()
            .map(|p| {
                format!(
                    "prog {} {} type {} attach {}\n",
                    p.id(),
                    p.info().name,
                    p.info().prog_type,
                    p.info().attach_to
                )
            })
            .collect();
        assert_eq!(progs, want, "{cfg:?}");
        assert!(
            progs.ends_with(&format!(
                "prog {p1} dump_progs type 26 attach bpf_prog\nprog {p2} dump_links type 26 attach bpf_link\n"
            )),
            "{progs}"
        );
        let links = pin_and_read(&bpf, &links_link, "/sys/fs/bpf/links").unwrap();
        // The preloaded links of maps.debug / progs.debug first.
        assert!(
            links.ends_with(&format!(
                "link {} type 4 prog {p1}\nlink {} type 4 prog {p2}\n",
                progs_link.obj.id(),
                links_link.obj.id()
            )),
            "{cfg:?} {links}"
        );
        assert_eq!(links.lines().count(), bpf.registry().links().len());
    }
}

#[test]
fn map_elem_iterator_shows_each_element_and_checks_sizes_at_link_creation() {
    let Some(obj) = common::example("iter_map_elem") else {
        return;
    };
    for cfg in common::configs() {
        let (_vfs, bpf, rt) = common::instance(cfg);
        let o = load(&rt, "iter_map_elem", &obj);
        let counts = map(&o, "counts");
        for k in 0u32..8 {
            bpf.map_update_elem(counts, &k.to_ne_bytes(), &(k as u64 * 10).to_ne_bytes(), 0)
                .unwrap();
        }
        let p = prog(&o, "dump_elems");
        let m = counts.obj.as_map().unwrap().clone();
        let link = rt.iter_link_create(p, IterTarget::Map(m)).unwrap();
        let mut want = "key value\n".to_string();
        for k in 0..8 {
            want += &format!("{k:<3} {}\n", k * 10);
        }
        want += "map counts: 7 elements before the end, sum 280\n";
        assert_eq!(
            pin_and_read(&bpf, &link, "/sys/fs/bpf/elems").unwrap(),
            want,
            "{cfg:?}"
        );
        // A per-CPU array: the value is a copy of every CPU's value (the first CPU's first),
        // as the kernel's.
        let pc = bpf
            .map_create(MapDef::new(MapType::PercpuArray, 4, 8, 2).with_name("pc"))
            .unwrap();
        let pcm = pc.obj.as_map().unwrap().clone();
        let width = pcm.ops().user_value_size(pcm.def());
        let mut v = vec![0u8; width];
        v[..8].copy_from_slice(&7u64.to_ne_bytes());
        bpf.map_update_elem(&pc, &1u32.to_ne_bytes(), &v, 0)
            .unwrap();
        let pl = rt.iter_link_create(p, IterTarget::Map(pcm)).unwrap();
        let text = String::from_utf8(pl.obj.as_link().unwrap().seq().unwrap().read_all().unwrap())
            .unwrap();
        assert_eq!(
            text, "key value\n0   0\n1   7\nmap pc: 1 elements before the end, sum 7\n",
            "{cfg:?}"
        );
        // The program reads 8 value bytes: a map with 4-byte values is refused (EACCES), as
        // the kernel checks the program's reach against the map when the link is made.
        let small = bpf
            .map_create(MapDef::new(MapType::Array, 4, 4, 2).with_name("small"))
            .unwrap();
        let e = rt
            .iter_link_create(p, IterTarget::Map(small.obj.as_map().unwrap().clone()))
            .unwrap_err();
        assert_eq!(e.errno(), Errno::EACCES, "{e}");
        // No map: EBADF; a type without an element iterator: EINVAL.
        assert_eq!(
            rt.iter_link_create(p, IterTarget::Plain)
                .unwrap_err()
                .errno(),
            Errno::EBADF
        );
        let ring = bpf
            .map_create(MapDef::new(MapType::Ringbuf, 0, 0, 4096).with_name("ring"))
            .unwrap();
        assert_eq!(
            rt.iter_link_create(p, IterTarget::Map(ring.obj.as_map().unwrap().clone()))
                .unwrap_err()
                .errno(),
            Errno::EINVAL
        );
    }
}

fn set_per_obj(bpf: &Bpf, o: &LoadedObj, n: u32) {
    bpf.map_update_elem(map(o, ".data"), &0u32.to_ne_bytes(), &n.to_ne_bytes(), 0)
        .unwrap();
}

#[test]
fn objects_fill_buffers_whole_and_one_too_large_fails_e2big() {
    let Some(obj) = common::example("iter_big") else {
        return;
    };
    for cfg in common::configs() {
        let (_vfs, bpf, rt) = common::instance(cfg);
        let o = load(&rt, "iter_big", &obj);
        let nmaps = bpf.registry().maps().len();
        assert!(nmaps >= 2);
        let link = rt
            .iter_link_create(prog(&o, "big_maps"), IterTarget::Plain)
            .unwrap();
        bpf.obj_pin(&Cred::root(), &link, None, b"/sys/fs/bpf/big", 0)
            .unwrap();
        // 20000 bytes per object: one object per 32 KiB buffer, all shown, in order.
        set_per_obj(&bpf, &o, 20000);
        let out = read(bpf.vfs(), "/sys/fs/bpf/big").unwrap();
        assert_eq!(out.len(), 20000 * nmaps + 4, "{cfg:?}");
        assert!(out.ends_with("end\n"));
        // 32767 bytes fit an empty buffer (one byte stays free); 32768 do not: E2BIG.
        set_per_obj(&bpf, &o, 32767);
        assert_eq!(
            read(bpf.vfs(), "/sys/fs/bpf/big").unwrap().len(),
            32767 * nmaps + 4
        );
        set_per_obj(&bpf, &o, 32768);
        assert_eq!(read(bpf.vfs(), "/sys/fs/bpf/big").err(), Some(Errno::E2BIG));
    }
}

fn cgroup_instance(
    cfg: bpfvfs_runtime::RuntimeConfig,
) -> (
    Arc<Vfs>,
    Arc<Bpf>,
    Arc<Runtime>,
    Arc<bpfvfs_cgroup::CgroupTree>,
) {
    let (vfs, bpf, rt) = common::instance(cfg);
    let tree = bpfvfs_cgroup::install(&vfs, CgroupMode::Local).unwrap();
    (vfs, bpf, rt, tree)
}

fn ino(vfs: &Vfs, path: &str) -> u64 {
    vfs.stat(&Cred::root(), None, path.as_bytes(), true)
        .unwrap()
        .ino
}

#[test]
fn view_retries_with_a_doubled_buffer() {
    let Some(obj) = common::example("iter_big") else {
        return;
    };
    for cfg in common::configs() {
        let (vfs, bpf, rt, tree) = cgroup_instance(cfg);
        let o = load(&rt, "iter_big", &obj);
        vfs.mkdir(&Cred::root(), None, b"/sys/fs/cgroup/a", 0o755)
            .unwrap();
        let g = tree.by_id(ino(&vfs, "/sys/fs/cgroup/a")).unwrap();
        let p = prog(&o, "big_view").obj.as_prog().unwrap().clone();
        let show = bpfvfs_runtime::view::view_show(&rt, &p).expect("a view program");
        // 100 KiB: pages 1, 2, 4, ..., 128 KiB; the output is whole.
        set_per_obj(&bpf, &o, 100_000);
        assert_eq!(show.show(&g).unwrap().len(), 100_000, "{cfg:?}");
        set_per_obj(&bpf, &o, 10);
        assert_eq!(show.show(&g).unwrap().len(), 10);
        // Not a view: None.
        let it = prog(&o, "big_maps").obj.as_prog().unwrap().clone();
        assert!(bpfvfs_runtime::view::view_show(&rt, &it).is_none());
    }
}

#[test]
fn cgroup_iterator_walks_in_the_link_order_and_the_same_body_is_a_view() {
    let Some(obj) = common::example("view_cgroup_info") else {
        return;
    };
    for cfg in common::configs() {
        let (vfs, bpf, rt, tree) = cgroup_instance(cfg);
        let o = load(&rt, "view_cgroup_info", &obj);
        let root = Cred::root();
        for d in ["a", "a/b", "a/c", "d"] {
            vfs.mkdir(&root, None, format!("/sys/fs/cgroup/{d}").as_bytes(), 0o755)
                .unwrap();
        }
        let id = |p: &str| ino(&vfs, &format!("/sys/fs/cgroup{p}"));
        let rootid = id("");
        assert_eq!(tree.root().id(), rootid);
        let walk = prog(&o, "cgroup_walk");
        let a = tree.by_id(id("/a")).unwrap();
        // An order is required (EINVAL), as the kernel's.
        assert_eq!(
            rt.iter_link_create(
                walk,
                IterTarget::Cgroup {
                    group: Some(a.clone()),
                    order: None
                }
            )
            .unwrap_err()
            .errno(),
            Errno::EINVAL
        );
        let line = |n: usize, p: &str, level: u32, name: &str| {
            format!(
                "{n} id {} level {level} name {name} root {rootid} cur {rootid}\n",
                id(p)
            )
        };
        let cases = [
            (
                CgroupOrder::DescendantsPre,
                vec![("/a", 1, "a"), ("/a/b", 2, "b"), ("/a/c", 2, "c")],
            ),
            (
                CgroupOrder::DescendantsPost,
                vec![("/a/b", 2, "b"), ("/a/c", 2, "c"), ("/a", 1, "a")],
            ),
            (CgroupOrder::AncestorsUp, vec![("/a", 1, "a"), ("", 0, "")]),
            (CgroupOrder::SelfOnly, vec![("/a", 1, "a")]),
        ];
        for (i, (order, groups)) in cases.iter().enumerate() {
            let link = rt
                .iter_link_create(
                    walk,
                    IterTarget::Cgroup {
                        group: Some(a.clone()),
                        order: Some(*order),
                    },
                )
                .unwrap();
            let mut want = String::new();
            for (n, (p, level, name)) in groups.iter().enumerate() {
                want += &line(n, p, *level, name);
            }
            want += &format!("end {}\n", groups.len() - 1);
            let got = pin_and_read(&bpf, &link, &format!("/sys/fs/bpf/cg{i}")).unwrap();
            assert_eq!(got, want, "{order:?} {cfg:?}");
        }
        // The view: one call for the group, seq_num 0, no final call.
        let view = prog(&o, "cgroup_info").obj.as_prog().unwrap().clone();
        let show = bpfvfs_runtime::view::view_show(&rt, &view).unwrap();
        let b = tree.by_id(id("/a/b")).unwrap();
        assert_eq!(show.show(&b).unwrap(), line(0, "/a/b", 2, "b").into_bytes());
        // The iter/cgroup body serves as a view too.
        let as_view = bpfvfs_runtime::view::view_show(&rt, walk.obj.as_prog().unwrap()).unwrap();
        assert_eq!(
            as_view.show(&b).unwrap(),
            line(0, "/a/b", 2, "b").into_bytes()
        );
    }
}

/// What the verifier refuses: unknown targets, unmodelled fields, return values outside
/// [0, 1], writes to the read-only key, and a dereference of the nullable object.
#[test]
fn iterator_programs_are_checked_like_the_kernels() {
    let dir = std::env::temp_dir().join(format!("bpfvfs-iter-refusals-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "unknown_target",
            "SEC(\"iter/task_vma\") int p(void *ctx) { return 0; }",
            "iterator target \"task_vma\" is not modelled",
        ),
        (
            "ret_range",
            "SEC(\"iter/bpf_map\") int p(struct bpf_iter__bpf_map *ctx) { return 2; }",
            "",
        ),
        (
            "null_object",
            "SEC(\"iter/bpf_map\") int p(struct bpf_iter__bpf_map *ctx) { return ctx->map->id & 1; }",
            "",
        ),
        (
            "rdonly_key",
            "SEC(\"iter/bpf_map_elem\") int p(struct bpf_iter__bpf_map_elem *ctx) { __u32 *k = ctx->key; if (k) *k = 1; return 0; }",
            "rdonly",
        ),
        (
            "unknown_view",
            "SEC(\"view/task\") int p(void *ctx) { return 0; }",
            "view target \"task\" is not modelled",
        ),
    ];
    let (_vfs, _bpf, rt) = common::instance(Default::default());
    for (name, body, msg) in cases {
        let src = dir.join(format!("{name}.bpf.c"));
        std::fs::write(
            &src,
            format!(
                "#include \"vmlinux.h\"\n#include <bpf/bpf_helpers.h>\n{body}\nchar LICENSE[] SEC(\"license\") = \"GPL\";\n"
            ),
        )
        .unwrap();
        let Some(obj) = common::compile(&src) else {
            return;
        };
        let e = rt.load_object(&obj, &LoadOpts::new(name)).expect_err(name);
        let text = format!("{e} {}", e.verifier_log().unwrap_or(""));
        assert!(text.contains(msg), "{name}: {text}");
    }
}

/// The cgroup helpers end to end: a tracing program on vfs_open counts opens per group in
/// cgroup local storage (the opening task's group, `bpf_get_current_task_btf()->cgroups->
/// dfl_cgrp`), a view shows one group's count, and an iterator lists every group's count
/// with `bpf_cgrp_storage_get` on the iterated groups.
#[test]
fn cgroup_storage_counts_opens_per_group_of_the_caller() {
    let dir = std::env::temp_dir().join(format!("bpfvfs-iter-cgopens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("cgopens.bpf.c");
    std::fs::write(
        &src,
        r#"#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} opens SEC(".maps");

SEC("fentry/vfs_open")
int BPF_PROG(count_open, const struct path *path, struct file *file)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 *n = bpf_cgrp_storage_get(&opens, task->cgroups->dfl_cgrp, 0,
					BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}

SEC("view/cgroup")
int show_opens(struct bpf_iter__cgroup *ctx)
{
	__u64 *n;
	if (!ctx->cgroup)
		return 0;
	n = bpf_cgrp_storage_get(&opens, ctx->cgroup, 0, 0);
	BPF_SEQ_PRINTF(ctx->meta->seq, "opens: %llu\n", n ? *n : 0);
	return 0;
}

SEC("iter/cgroup")
int all_opens(struct bpf_iter__cgroup *ctx)
{
	struct cgroup *cgrp = ctx->cgroup;
	__u64 *n;
	if (!cgrp)
		return 0;
	n = bpf_cgrp_storage_get(&opens, cgrp, 0, 0);
	BPF_SEQ_PRINTF(ctx->meta->seq, "%s=%llu\n", cgrp->kn->name, n ? *n : 0);
	if (n && *n == 1)
		bpf_cgrp_storage_delete(&opens, cgrp);
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
"#,
    )
    .unwrap();
    let Some(obj) = common::compile(&src) else {
        return;
    };
    for cfg in common::configs() {
        let (vfs, _bpf, rt, tree) = cgroup_instance(cfg);
        let o = load(&rt, "cgopens", &obj);
        let root = Cred::root();
        for d in ["a", "b"] {
            vfs.mkdir(&root, None, format!("/sys/fs/cgroup/{d}").as_bytes(), 0o755)
                .unwrap();
        }
        vfs.write_file(&root, b"/f", b"x").unwrap();
        let a = tree.by_id(ino(&vfs, "/sys/fs/cgroup/a")).unwrap();
        let b = tree.by_id(ino(&vfs, "/sys/fs/cgroup/b")).unwrap();
        let _link = rt.attach(prog(&o, "count_open"), None).unwrap();
        vfs.set_hooks_enabled(true);
        // A thread per group, moved into it, opening as itself (the FUSE edge records the
        // caller the same way).
        let opens = |g: &Arc<bpfvfs_cgroup::Cgroup>, n: usize| {
            std::thread::scope(|s| {
                s.spawn(|| {
                    // SAFETY: plain syscall.
                    let pid = unsafe { libc::gettid() } as u32;
                    tree.move_pid(g, pid).unwrap();
                    bpfvfs_vfs::task::set_caller(Some(bpfvfs_vfs::task::Caller {
                        pid,
                        uid: 0,
                        gid: 0,
                    }));
                    for _ in 0..n {
                        vfs.read_file(&Cred::root(), b"/f").unwrap();
                    }
                });
            })
        };
        opens(&a, 3);
        opens(&b, 1);
        let view = prog(&o, "show_opens").obj.as_prog().unwrap().clone();
        let show = bpfvfs_runtime::view::view_show(&rt, &view).unwrap();
        assert_eq!(show.show(&a).unwrap(), b"opens: 3\n", "{cfg:?}");
        assert_eq!(show.show(&b).unwrap(), b"opens: 1\n", "{cfg:?}");
        // The iterator reads every group's count and deletes the counts of 1.
        let link = rt
            .iter_link_create(
                prog(&o, "all_opens"),
                IterTarget::Cgroup {
                    group: None,
                    order: Some(CgroupOrder::DescendantsPre),
                },
            )
            .unwrap();
        let h = link.obj.as_link().unwrap().seq().unwrap();
        let first = String::from_utf8(h.read_all().unwrap()).unwrap();
        assert!(first.ends_with("a=3\nb=1\n"), "{first}");
        let second = String::from_utf8(h.read_all().unwrap()).unwrap();
        assert!(second.ends_with("a=3\nb=0\n"), "{second}");
        vfs.set_hooks_enabled(false);
    }
}

/// The view layouts the verifier and the runtime use are those of include/bpfvfs/vmlinux.h
/// (the committed BTF): every field of the iterator and cgroup structs at the same offset.
#[test]
fn view_offsets_match_vmlinux_h() {
    use bpfvfs_runtime::kobj::{off, struct_specs};
    let btf = bpfvfs_runtime::kernel_btf();
    let offset = |st: &str, field: &str| -> u32 {
        let id = btf
            .find_by_name_kind(st, bpfvfs_ebpf_obj::BtfKind::Struct)
            .unwrap_or_else(|| panic!("no struct {st}"));
        btf.type_by_id(id)
            .unwrap()
            .members()
            .iter()
            .find(|m| btf.string_at(m.name_off).unwrap() == field)
            .unwrap_or_else(|| panic!("no {st}.{field}"))
            .bit_offset
            / 8
    };
    let cases: &[(&str, &str, usize)] = &[
        ("bpf_iter_meta", "seq", off::META_SEQ),
        ("bpf_iter_meta", "session_id", off::META_SESSION_ID),
        ("bpf_iter_meta", "seq_num", off::META_SEQ_NUM),
        ("bpf_map", "id", off::MAP_ID),
        ("bpf_map", "name", off::MAP_NAME),
        ("bpf_map", "max_entries", off::MAP_MAX_ENTRIES),
        ("bpf_map", "map_type", off::MAP_TYPE),
        ("bpf_map", "key_size", off::MAP_KEY_SIZE),
        ("bpf_map", "value_size", off::MAP_VALUE_SIZE),
        ("bpf_prog_aux", "id", off::AUX_ID),
        ("bpf_prog_aux", "name", off::AUX_NAME),
        (
            "bpf_prog_aux",
            "attach_func_name",
            off::AUX_ATTACH_FUNC_NAME,
        ),
        ("bpf_prog", "len", off::PROG_LEN),
        ("bpf_prog", "type", off::PROG_TYPE),
        ("bpf_prog", "aux", off::PROG_AUX),
        ("bpf_link", "id", off::LINK_ID),
        ("bpf_link", "type", off::LINK_TYPE),
        ("bpf_link", "prog", off::LINK_PROG),
        ("kernfs_node", "parent", off::KN_PARENT),
        ("kernfs_node", "name", off::KN_NAME),
        ("kernfs_node", "id", off::KN_ID),
        ("cgroup", "kn", off::CGRP_KN),
        ("cgroup", "level", off::CGRP_LEVEL),
        ("cgroup", "ancestors", off::CGRP_ANCESTORS),
        ("css_set", "dfl_cgrp", off::CSS_DFL_CGRP),
        ("task_struct", "pid", off::TASK_PID),
        ("task_struct", "tgid", off::TASK_TGID),
        ("task_struct", "cgroups", off::TASK_CGROUPS),
        ("task_struct", "comm", off::TASK_COMM),
    ];
    let specs = struct_specs();
    for (st, field, want) in cases {
        assert_eq!(offset(st, field) as usize, *want, "{st}.{field}");
        // The verifier's table has the field at the same offset (arrays by element).
        let spec = specs.iter().find(|s| s.name == *st).unwrap();
        let f = spec
            .fields
            .iter()
            .find(|f| f.name == *field || f.name == format!("{field}[0]"))
            .unwrap_or_else(|| panic!("verifier table lacks {st}.{field}"));
        assert_eq!(f.off as usize, *want, "verifier {st}.{field}");
    }
}

/// Figures (run with `--release -- --ignored --nocapture`): one session of the map iterator
/// over 200 maps (per session and per object), and one view run, on the JIT.
#[test]
#[ignore = "prints timing figures for docs/benchmarks.md, asserts nothing: run with -- --ignored --nocapture"]
fn figures() {
    let (Some(maps_obj), Some(view_obj)) = (
        common::example("iter_maps"),
        common::example("view_cgroup_info"),
    ) else {
        return;
    };
    let (vfs, bpf, rt, tree) = cgroup_instance(Default::default());
    let o = load(&rt, "iter_maps", &maps_obj);
    let _maps: Vec<Handle> = (0..200)
        .map(|i| {
            bpf.map_create(MapDef::new(MapType::Hash, 4, 8, 16).with_name(&format!("m{i}")))
                .unwrap()
        })
        .collect();
    let link = rt
        .iter_link_create(prog(&o, "dump_maps"), IterTarget::Plain)
        .unwrap();
    let seq = link.obj.as_link().unwrap().seq().unwrap();
    let n = bpf.registry().maps().len();
    let runs = 200;
    let t = std::time::Instant::now();
    let mut bytes = 0;
    for _ in 0..runs {
        bytes = seq.read_all().unwrap().len();
    }
    let per = t.elapsed() / runs;
    println!(
        "map iterator: {n} maps, {bytes} bytes: {per:?} per session, {:?} per object",
        per / n as u32
    );
    let v = load(&rt, "view_cgroup_info", &view_obj);
    vfs.mkdir(&Cred::root(), None, b"/sys/fs/cgroup/a", 0o755)
        .unwrap();
    vfs.mkdir(&Cred::root(), None, b"/sys/fs/cgroup/a/b", 0o755)
        .unwrap();
    let g = tree.by_id(ino(&vfs, "/sys/fs/cgroup/a/b")).unwrap();
    let show = bpfvfs_runtime::view::view_show(&rt, prog(&v, "cgroup_info").obj.as_prog().unwrap())
        .unwrap();
    let runs = 20_000;
    let t = std::time::Instant::now();
    for _ in 0..runs {
        show.show(&g).unwrap();
    }
    println!(
        "view run (level-2 group): {:?} per show",
        t.elapsed() / runs
    );
}

/// Sessions run while another thread inserts and deletes elements: every line shown is a
/// whole element as the writer wrote it (value = key * 10), elements deleted during the
/// walk are skipped, nothing faults (checked configurations verify every access).
#[test]
fn map_elem_sessions_race_with_updates_and_deletes() {
    let Some(obj) = common::example("iter_map_elem") else {
        return;
    };
    for cfg in common::configs() {
        let (_vfs, bpf, rt) = common::instance(cfg);
        let o = load(&rt, "iter_map_elem", &obj);
        let h = bpf
            .map_create(MapDef::new(MapType::Hash, 4, 8, 64).with_name("racy"))
            .unwrap();
        let link = rt
            .iter_link_create(
                prog(&o, "dump_elems"),
                IterTarget::Map(h.obj.as_map().unwrap().clone()),
            )
            .unwrap();
        let seq = link.obj.as_link().unwrap().seq().unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut x = 1u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    let k = (x >> 16) % 64;
                    if x & 1 == 0 {
                        let _ = bpf.map_update_elem(
                            &h,
                            &k.to_ne_bytes(),
                            &(k as u64 * 10).to_ne_bytes(),
                            0,
                        );
                    } else {
                        let _ = bpf.map_delete_elem(&h, &k.to_ne_bytes());
                    }
                }
            });
            for _ in 0..200 {
                let out = String::from_utf8(seq.read_all().unwrap()).unwrap();
                let mut n = 0;
                let mut seen = std::collections::HashSet::new();
                for line in out.lines() {
                    if line == "key value" || line.starts_with("map racy: ") {
                        continue;
                    }
                    let mut w = line.split_whitespace();
                    let k: u64 = w.next().unwrap().parse().unwrap();
                    let v: u64 = w.next().unwrap().parse().unwrap();
                    assert_eq!(v, k * 10, "{cfg:?}: {line}");
                    assert!(seen.insert(k), "{cfg:?}: key {k} shown twice");
                    n += 1;
                }
                assert!(n <= 64);
                assert!(
                    out.ends_with("\n") && out.lines().last().unwrap().starts_with("map racy: ")
                );
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
}
