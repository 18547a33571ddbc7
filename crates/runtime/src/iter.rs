//! Iterator programs (`SEC("iter/<target>")`): their verifier description, the iterator
//! links that bind a program to a target, and the session that runs the program once per
//! object and once more at the end (kernel/bpf/bpf_iter.c, map_iter.c, prog_iter.c,
//! link_iter.c, cgroup_iter.c).
//!
//! A link's [`SeqSource`] runs one session per open of its pin: the objects are listed when
//! the session starts (ids in increasing order, as the kernel's idr walk; for `bpf_map_elem`
//! the keys in `get_next_key` order; for `cgroup` the walk order of the link), then
//! [`crate::seq::run_session`] decides which object goes in which buffer. Each call builds
//! the context `{ meta, object [, key, value] }` with fresh views (the `seq_num` of the
//! meta changes per call) and runs the program with its output buffer installed.

use crate::error::RuntimeError;
use crate::exec::{LoadedProg, RunMaps};
use crate::hook_run::{current_task, next_seed, RunExt};
use crate::kobj::{self, ViewArena};
use crate::seq::{self, SeqBuf, Shown};
use crate::Runtime;
use bpfvfs_bpf::{BpfObject, Handle, Link, LinkDetails, Map, Prog, SeqSource};
use bpfvfs_ebpf::verifier::{CtxField, CtxLayout, ProgTypeSpec};
use bpfvfs_ebpf::{Env, Region, RegionKind};
use bpfvfs_vfs::Errno;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// Iterator targets this runtime models.
pub const TARGETS: &[&str] = &["bpf_map", "bpf_prog", "bpf_link", "bpf_map_elem", "cgroup"];

/// Helpers an iterator (or view) program may call besides the tracing set: the seq
/// helpers, `bpf_get_current_task_btf`, `bpf_probe_read_kernel_str`.
pub const ITER_HELPERS: &[u32] = &[115, 126, 127, 150, 158];

/// The context fields of `struct bpf_iter__<target>`.
pub fn ctx_fields(target: &str) -> Option<Vec<CtxField>> {
    let meta = CtxField::ptr("meta", 0, "bpf_iter_meta", false);
    Some(match target {
        "bpf_map" => vec![meta, CtxField::ptr("map", 8, "bpf_map", true)],
        "bpf_prog" => vec![meta, CtxField::ptr("prog", 8, "bpf_prog", true)],
        "bpf_link" => vec![meta, CtxField::ptr("link", 8, "bpf_link", true)],
        // The map is the link's (never NULL); key and value are NULL in the final call.
        // Their sizes are known at link creation: the verifier records how far the
        // program reaches through each, checked against the map then.
        "bpf_map_elem" => vec![
            meta,
            CtxField::ptr("map", 8, "bpf_map", false),
            CtxField::buf("key", 16, 0, true),
            CtxField::buf("value", 24, 1, false),
        ],
        "cgroup" => vec![meta, CtxField::ptr("cgroup", 8, "cgroup", true)],
        _ => return None,
    })
}

/// The verifier's description of an `iter/<target>` program (BPF_PROG_TYPE_TRACING with
/// the iterator attach type): the context struct, returns 0 or 1.
pub fn iter_spec(target: Option<&str>) -> Result<ProgTypeSpec, String> {
    let t = target.ok_or("an iterator program needs a target (SEC(\"iter/bpf_map\"))")?;
    let fields = ctx_fields(t).ok_or_else(|| {
        format!(
            "iterator target {t:?} is not modelled (targets: {})",
            TARGETS.join(", ")
        )
    })?;
    Ok(spec_with(fields, "tracing", Some(26)))
}

pub(crate) fn spec_with(fields: Vec<CtxField>, name: &str, kernel: Option<u32>) -> ProgTypeSpec {
    let mut spec = ProgTypeSpec::tracing(&[], kobj::struct_specs());
    spec.name = name.into();
    spec.kernel_type = kernel;
    spec.ctx = CtxLayout::Fields {
        size: 8 * fields.len() as u32,
        fields,
    };
    spec.ret_range = Some((0, 1));
    spec.helpers.add(ITER_HELPERS);
    spec
}

/// `enum bpf_cgroup_iter_order` (uapi values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupOrder {
    SelfOnly = 1,
    DescendantsPre = 2,
    DescendantsPost = 3,
    AncestorsUp = 4,
}

impl CgroupOrder {
    /// The kernel's value (0, unspecified, and anything else: EINVAL).
    pub fn from_u32(v: u32) -> Result<CgroupOrder, Errno> {
        Ok(match v {
            1 => CgroupOrder::SelfOnly,
            2 => CgroupOrder::DescendantsPre,
            3 => CgroupOrder::DescendantsPost,
            4 => CgroupOrder::AncestorsUp,
            _ => return Err(Errno::EINVAL),
        })
    }
    /// bpftool's names.
    pub fn parse(s: &str) -> Option<CgroupOrder> {
        Some(match s {
            "descendants_pre" => CgroupOrder::DescendantsPre,
            "descendants_post" => CgroupOrder::DescendantsPost,
            "ancestors_up" => CgroupOrder::AncestorsUp,
            "self_only" => CgroupOrder::SelfOnly,
            _ => return None,
        })
    }
}

/// What an iterator link iterates over (`union bpf_iter_link_info`).
#[derive(Clone)]
pub enum IterTarget {
    /// Targets without parameters (`bpf_map`, `bpf_prog`, `bpf_link`).
    Plain,
    /// `bpf_map_elem`: the elements of this map.
    Map(Arc<Map>),
    /// `cgroup`: from a group (the root when `None`) in an order (required).
    Cgroup {
        group: Option<Arc<bpfvfs_cgroup::Cgroup>>,
        order: Option<CgroupOrder>,
    },
}

/// One object a session shows.
enum Obj {
    Map(Arc<Map>),
    Prog(Arc<Prog>),
    Link(Arc<Link>),
    Elem(Vec<u8>),
    Cgroup(Arc<bpfvfs_cgroup::Cgroup>),
}

/// The session ids of this process (`meta->session_id`: one per open, from 1).
static SESSION: AtomicU64 = AtomicU64::new(0);

/// A new session id.
pub(crate) fn next_session() -> u64 {
    SESSION.fetch_add(1, Ordering::Relaxed) + 1
}

/// An iterator link's seq source: its program and target.
struct IterSeq {
    rt: Weak<Runtime>,
    prog: Arc<Prog>,
    target_name: String,
    target: IterTarget,
}

impl SeqSource for IterSeq {
    fn read_all(&self) -> Result<Vec<u8>, Errno> {
        let rt = self.rt.upgrade().ok_or(Errno::ENODEV)?;
        rt.iter_session(&self.prog, &self.target_name, &self.target)
    }
}

impl Runtime {
    /// BPF_LINK_CREATE for an iterator program: checks the target's parameters as the
    /// kernel's attach_target callbacks do, and returns a link whose pin, read, runs a
    /// session ([`bpfvfs_bpf::Link::seq`]).
    pub fn iter_link_create(
        &self,
        prog: &Handle,
        target: IterTarget,
    ) -> Result<Handle, RuntimeError> {
        let p = prog.obj.as_prog().map_err(|errno| RuntimeError::Os {
            context: "iter link: not a program".into(),
            errno,
        })?;
        let einval = |why: &str| RuntimeError::Os {
            context: format!("iter link for program {}: {why}", p.info().name),
            errno: Errno::EINVAL,
        };
        let lp = p
            .exec::<LoadedProg>()
            .ok_or_else(|| einval("no executable form"))?;
        if lp.section_kind != bpfvfs_ebpf_obj::ProgramKind::Iter {
            return Err(einval("not an iterator program"));
        }
        let name = p.info().attach_to.clone();
        match (&*name, &target) {
            ("bpf_map" | "bpf_prog" | "bpf_link", IterTarget::Plain) => {}
            ("bpf_map_elem", IterTarget::Map(m)) => check_map_elem(lp, m)?,
            ("bpf_map_elem", _) => {
                return Err(RuntimeError::Os {
                    context: "iter link: bpf_map_elem needs a map".into(),
                    errno: Errno::EBADF,
                })
            }
            ("cgroup", IterTarget::Cgroup { order, .. }) => {
                if order.is_none() {
                    return Err(einval("cgroup iterator needs an order"));
                }
            }
            ("cgroup", IterTarget::Plain) => {
                return Err(einval("cgroup iterator needs an order"));
            }
            _ => return Err(einval("parameters do not match the iterator target")),
        }
        let h = self
            .bpf()
            .link_create(prog, "iter", &name, None)
            .map_err(|errno| RuntimeError::Os {
                context: "iter link".into(),
                errno,
            })?;
        let link = h.obj.as_link().expect("link_create makes a link");
        // What the link's info reports (bpf_iter_map_fill_link_info and cgroup_iter's).
        match &target {
            IterTarget::Map(m) => link.set_details(LinkDetails::IterMap { map_id: m.id() }),
            IterTarget::Cgroup {
                group,
                order: Some(order),
            } => {
                let start = group
                    .clone()
                    .or_else(|| bpfvfs_cgroup::tree_of(self.bpf().vfs()).map(|t| t.root()));
                link.set_details(LinkDetails::IterCgroup {
                    cgroup_id: start.map_or(0, |g| g.id()),
                    order: *order as u32,
                });
            }
            _ => {}
        }
        link.set_seq(Arc::new(IterSeq {
            rt: self.me.clone(),
            prog: p.clone(),
            target_name: name,
            target,
        }));
        Ok(h)
    }

    /// Run one session of `prog` over `target` (what reading a pinned iterator link does).
    pub fn iter_session(
        &self,
        prog: &Arc<Prog>,
        target_name: &str,
        target: &IterTarget,
    ) -> Result<Vec<u8>, Errno> {
        let lp = prog.exec::<LoadedProg>().ok_or(Errno::EINVAL)?;
        let session = next_session();
        let reg = self.bpf().registry();
        let objs: Vec<Obj> = match (target_name, target) {
            ("bpf_map", _) => sorted(reg.maps(), |m| m.id())
                .into_iter()
                .map(Obj::Map)
                .collect(),
            ("bpf_prog", _) => sorted(reg.progs(), |p| p.id())
                .into_iter()
                .map(Obj::Prog)
                .collect(),
            ("bpf_link", _) => sorted(reg.links(), |l| l.id())
                .into_iter()
                .map(Obj::Link)
                .collect(),
            ("bpf_map_elem", IterTarget::Map(m)) => {
                map_keys(m).into_iter().map(Obj::Elem).collect()
            }
            ("cgroup", IterTarget::Cgroup { group, order }) => {
                let tree = bpfvfs_cgroup::tree_of(self.bpf().vfs()).ok_or(Errno::ENOENT)?;
                let start = group.clone().unwrap_or_else(|| tree.root());
                let order = order.ok_or(Errno::EINVAL)?;
                tree.walk(&start, crate::cgroup_helpers::walk_order(order))
                    .into_iter()
                    .map(Obj::Cgroup)
                    .collect()
            }
            _ => return Err(Errno::EINVAL),
        };
        let elem_map = match target {
            IterTarget::Map(m) => Some(m.clone()),
            _ => None,
        };
        // The cgroup iterator: a non-zero return stops the walk after this group, and a walk
        // cannot continue in a second read (cgroup_iter.c).
        let cgroup = target_name == "cgroup";
        let rules = seq::SessionRules {
            single_read: cgroup,
        };
        // One arena for the session, cleared per call (views are per call).
        let mut arena = ViewArena::new();
        seq::run_session(objs.len(), rules, |i, seq_num, buf| {
            let obj = i.map(|i| &objs[i]);
            arena.clear();
            let r = self.iter_call(
                &mut arena,
                lp,
                session,
                seq_num,
                obj,
                elem_map.as_deref(),
                buf,
            );
            match r {
                Ok(Shown::Again) if cgroup => Ok(Shown::Stop),
                r => r,
            }
        })
    }

    /// One program call: views for `obj` (None: the final call), output into `buf`.
    #[allow(clippy::too_many_arguments)]
    fn iter_call(
        &self,
        arena: &mut ViewArena,
        lp: &LoadedProg,
        session: u64,
        seq_num: u64,
        obj: Option<&Obj>,
        elem_map: Option<&Map>,
        buf: &mut SeqBuf,
    ) -> Result<Shown, Errno> {
        let full = |_| Errno::E2BIG;
        let meta = arena.iter_meta(session, seq_num).map_err(full)?;
        let mut ctx = [meta, 0, 0, 0];
        // The element's value, lent writable for the call (the kernel hands the program the
        // map's own value memory).
        let guard = crossbeam_epoch::pin();
        let mut value_region: Option<Region<'_>> = None;
        let mut value_copy: Vec<u8>;
        if let Some(m) = elem_map {
            ctx[1] = arena.bpf_map(m).map_err(full)?;
        }
        match obj {
            None => {}
            Some(Obj::Map(m)) => ctx[1] = arena.bpf_map(m).map_err(full)?,
            Some(Obj::Prog(p)) => ctx[1] = arena.bpf_prog(p).map_err(full)?,
            Some(Obj::Link(l)) => ctx[1] = arena.bpf_link(l).map_err(full)?,
            // A group removed since the walk was listed is skipped: nothing shown, its
            // seq_num used (cgroup_iter skips dead groups the same way).
            Some(Obj::Cgroup(g)) if g.is_removed() => return Ok(Shown::Ok),
            Some(Obj::Cgroup(g)) => {
                ctx[1] = crate::cgroup_helpers::cgroup_view(arena, g).map_err(full)?
            }
            Some(Obj::Elem(key)) => {
                let m = elem_map.ok_or(Errno::EINVAL)?;
                // The key is a read-only copy; the value is the element's as it is now (an
                // element deleted since the listing is not shown, as the kernel's walk
                // would not reach it).
                ctx[2] = arena.bytes(key);
                let vs = m.def().value_size as usize;
                match m.ops().lookup_ptr(key, &guard) {
                    Some(p) => {
                        // SAFETY: the value stays allocated while `guard` is pinned, which
                        // outlives the run below.
                        value_region = Some(unsafe {
                            Region::from_raw_parts(RegionKind::MapValue, p, vs, true)
                        });
                        ctx[3] = p as u64;
                    }
                    None => {
                        // Types without addressable values (per-CPU): a copy, writes lost.
                        // Gone since the listing (ENOENT): nothing to show.
                        value_copy = m.lookup(key).unwrap_or_default();
                        if value_copy.is_empty() {
                            return Ok(Shown::Ok);
                        }
                        value_region =
                            Some(Region::writable(RegionKind::MapValue, &mut value_copy));
                        ctx[3] = value_region.as_ref().map_or(0, |r| r.addr());
                    }
                }
            }
        }
        crate::cgroup_helpers::prepare(arena, self.bpf().vfs(), lp).map_err(full)?;
        let n = if elem_map.is_some() { 4 } else { 2 };
        let seq_addr = arena.seq_addr();
        let r = seq::with_seq(seq_addr, buf, || {
            self.run_on_ctx(lp, arena, &ctx[..n], value_region.as_ref())
        });
        drop(guard);
        match r {
            Ok(0) => Ok(Shown::Ok),
            Ok(_) => Ok(Shown::Again),
            Err(e) => Err(e.errno()),
        }
    }

    /// Run `lp` with r1 = the context words `ctx`, views from `arena`, and `extra` memory.
    pub(crate) fn run_on_ctx(
        &self,
        lp: &LoadedProg,
        arena: &ViewArena,
        ctx: &[u64],
        extra: Option<&Region<'_>>,
    ) -> Result<u64, RuntimeError> {
        // SAFETY: u64 words viewed as bytes for the context region; borrowed for the run.
        let ctx_bytes =
            unsafe { std::slice::from_raw_parts(ctx.as_ptr().cast::<u8>(), ctx.len() * 8) };
        let ctx_region = Region::readonly(RegionKind::Context, ctx_bytes);
        let r1 = ctx_region.addr();
        // The usual case fits a stack array (views, names, context, value): no allocation.
        let mut fixed = [ctx_region; 4];
        let spilled: Vec<Region<'_>>;
        let regions: &[Region<'_>] = match arena.regions_into(&mut fixed[..2]) {
            Some(k) => {
                fixed[k] = ctx_region;
                let mut n = k + 1;
                if let Some(e) = extra {
                    fixed[n] = *e;
                    n += 1;
                }
                &fixed[..n]
            }
            None => {
                let mut v = arena.regions();
                v.push(ctx_region);
                v.extend(extra.copied());
                spilled = v;
                &spilled
            }
        };
        let maps = RunMaps::new(lp);
        let mut ext = RunExt {
            arena,
            maps: &lp.maps[..],
        };
        let task = current_task();
        let (comm, pid) = (task.comm, task.pid);
        let mut sink = |m: &[u8]| self.trace().push(&comm, pid, 0, m);
        let mut env = Env {
            maps: Some(&maps),
            trace: Some(&mut sink),
            task: task.clone(),
            clock: bpfvfs_ebpf::helpers::real_clock,
            prandom: next_seed(),
            user: Some(&mut ext),
        };
        lp.run([r1, 0, 0, 0, 0], regions, &mut env)
    }
}

fn sorted<T>(mut v: Vec<Arc<T>>, id: impl Fn(&T) -> u32) -> Vec<Arc<T>> {
    v.sort_by_key(|o| id(o));
    v
}

/// The keys of `m` in get_next_key order, each once. A key deleted under the cursor makes
/// get_next_key start over from the first key: keys already listed are skipped, and the
/// walk is bounded (twice the map's capacity) so a map churning under it still ends.
fn map_keys(m: &Map) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut cur: Option<Vec<u8>> = None;
    let bound = 2 * m.def().max_entries as usize + 2;
    for _ in 0..bound {
        let Ok(k) = m.get_next_key(cur.as_deref()) else {
            break;
        };
        if seen.insert(k.clone()) {
            keys.push(k.clone());
        }
        cur = Some(k);
    }
    keys
}

/// bpf_iter_attach_map: the map types with element iterators, and the program's reach
/// through key and value within the map's sizes (EACCES otherwise).
fn check_map_elem(lp: &LoadedProg, m: &Map) -> Result<(), RuntimeError> {
    use bpfvfs_bpf::MapType;
    let percpu = matches!(
        m.map_type(),
        Some(MapType::PercpuHash | MapType::PercpuArray | MapType::LruPercpuHash)
    );
    if !percpu
        && !matches!(
            m.map_type(),
            Some(MapType::Hash | MapType::LruHash | MapType::Array)
        )
    {
        return Err(RuntimeError::Os {
            context: format!("iter link: map {} has no element iterator", m.name()),
            errno: Errno::EINVAL,
        });
    }
    let d = m.def();
    let value_size = if percpu {
        m.ops().user_value_size(d) as u32
    } else {
        d.value_size
    };
    let [k, v] = lp.verified.max_buf_access;
    if k > d.key_size || v > value_size {
        return Err(RuntimeError::Os {
            context: format!(
                "iter link: the program reads {k} key bytes and {v} value bytes, map {} has {} and {}",
                m.name(),
                d.key_size,
                value_size
            ),
            errno: Errno::EACCES,
        });
    }
    Ok(())
}

/// The program of an iterator link handle, if it is one.
pub fn link_prog(h: &Handle) -> Option<&Arc<Prog>> {
    match &h.obj {
        BpfObject::Link(l) if l.seq().is_some() => Some(l.prog()),
        _ => None,
    }
}
