//! Loading an ELF object: what libbpf's `bpf_object__load` and the kernel's `BPF_PROG_LOAD`
//! do between them.
//!
//! Order matters for clean failure: every program's type is resolved before anything is
//! created, then the maps are created (global data sections filled, `.rodata` frozen), then
//! each program is verified and prepared. If any step fails, the handles made so far are
//! dropped on return, so no map or program of a failed load stays alive (nothing was pinned
//! yet: pins by name are made only once every program loaded).

use crate::error::RuntimeError;
use crate::exec::{DirectValue, EngineKind, LoadedProg};
use crate::progtypes::{self, ProgTypeEntry};
use crate::Runtime;
use bpfvfs_bpf::uapi::{BPF_F_MMAPABLE, BPF_F_RDONLY_PROG};
use bpfvfs_bpf::{Handle, MapDef, MapType, ProgInfo};
use bpfvfs_ebpf::insn::{Insn, LdImmKind};
use bpfvfs_ebpf::interp::{LoadOptions, PseudoLoad};
use bpfvfs_ebpf::verifier::{self, MapInfo, VerifierEnv};
use bpfvfs_ebpf::Program;
use bpfvfs_ebpf_obj::{
    parse_section, LoadedObject, MapRelocKind, MapSource, MapSpec, Pinning, ProgramSpec,
};
use bpfvfs_vfs::{Cred, Errno};
use std::sync::Arc;

/// Where maps with `LIBBPF_PIN_BY_NAME` are pinned, as libbpf's default pin root.
pub const PIN_ROOT: &str = "/sys/fs/bpf";

/// Options of one load.
#[derive(Clone, Debug)]
pub struct LoadOpts {
    /// The object's name (libbpf: the file name without `.o`/`.bpf.o`), which prefixes the
    /// names of global-data maps.
    pub obj_name: String,
    /// Type every program as this section head instead of its own (bpftool's `type TYPE`).
    pub prog_type: Option<String>,
    /// Use these existing maps instead of creating the object's map of that name
    /// (bpftool's `map name NAME MAP`).
    pub reuse_maps: Vec<(String, Handle)>,
    /// Owner of the loaded objects and of pins by name.
    pub cred: Cred,
}

impl LoadOpts {
    pub fn new(obj_name: &str) -> LoadOpts {
        LoadOpts {
            obj_name: obj_name.to_string(),
            prog_type: None,
            reuse_maps: Vec::new(),
            cred: Cred::root(),
        }
    }
}

/// What a load made: one handle per map (in the object's order) and per program.
pub struct LoadedObj {
    pub maps: Vec<(String, Handle)>,
    pub progs: Vec<(String, Handle)>,
}

impl std::fmt::Debug for LoadedObj {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |v: &[(String, Handle)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        f.debug_struct("LoadedObj")
            .field("maps", &names(&self.maps))
            .field("progs", &names(&self.progs))
            .finish()
    }
}

/// Kernel object names hold at most 15 characters.
fn obj_name(s: &str) -> String {
    s.chars().take(15).collect()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The kernel's program tag: SHA-1 of the instructions with map references blanked (both
/// halves of a map `lddw`), first 8 bytes.
pub fn prog_tag(insns: &[Insn]) -> [u8; 8] {
    let mut bytes = Vec::with_capacity(insns.len() * 8);
    let mut blank_next = false;
    for i in insns {
        let mut i = *i;
        let is_map_ld = i.code == 0x18 && matches!(i.src, 1 | 2 | 5 | 6);
        if blank_next || is_map_ld {
            i.imm = 0;
        }
        blank_next = is_map_ld;
        bytes.extend_from_slice(&i.to_bytes());
    }
    let d = crate::sha1::sha1(&bytes);
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&d[..8]);
    tag
}

struct ObjMap {
    name: String,
    handle: Handle,
    /// Created by this load and to be pinned at PIN_ROOT/name once everything loaded.
    pin_by_name: bool,
}

impl Runtime {
    /// Load every program of an ELF object. See the module documentation for the steps.
    pub fn load_object(&self, bytes: &[u8], opts: &LoadOpts) -> Result<LoadedObj, RuntimeError> {
        let mut obj = LoadedObject::parse(bytes, &opts.obj_name)?;
        if obj.programs.is_empty() {
            return Err(RuntimeError::NoPrograms);
        }
        let types = obj
            .programs
            .iter()
            .map(|p| self.type_of(p, opts.prog_type.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        if obj.programs.iter().any(|p| !p.core_relos.is_empty()) {
            // CO-RE relocations resolve against bpfvfs's "kernel BTF" (the types of
            // include/bpfvfs/vmlinux.h), so a program built against a real kernel's vmlinux.h
            // reads our layout. Types we do not describe fall back to the object's own BTF:
            // their fields are then refused by the verifier, with the field's name.
            let ours = crate::kernel_btf();
            let mut tried = obj.clone();
            match tried.apply_core_relocations(ours) {
                Ok(()) => obj = tried,
                Err(e) => {
                    tracing::debug!("CO-RE against bpfvfs's BTF failed ({e}); using the object's");
                    if let Some(btf) = obj.btf.clone() {
                        obj.apply_core_relocations(&btf)?;
                    }
                }
            }
        }
        let maps = self.create_maps(&obj, opts)?;
        let mut progs = Vec::new();
        for (spec, entry) in obj.programs.iter().zip(types) {
            let h = self.load_program(spec, entry, &maps, opts)?;
            progs.push((spec.name.clone(), h));
        }
        for m in &maps {
            if m.pin_by_name {
                let path = format!("{PIN_ROOT}/{}", m.name);
                self.bpf()
                    .obj_pin(&opts.cred, &m.handle, None, path.as_bytes(), 0)
                    .map_err(|errno| RuntimeError::Map {
                        map: m.name.clone(),
                        context: format!("pin at {path}"),
                        errno,
                    })?;
            }
        }
        Ok(LoadedObj {
            maps: maps.into_iter().map(|m| (m.name, m.handle)).collect(),
            progs,
        })
    }

    fn type_of(
        &self,
        p: &ProgramSpec,
        over: Option<&str>,
    ) -> Result<&'static ProgTypeEntry, RuntimeError> {
        let kind = match over {
            Some(t) => parse_section(t).kind,
            None => p.kind,
        };
        let entry = progtypes::for_kind(kind).ok_or_else(|| RuntimeError::NotSupported {
            what: format!(
                "program {} (section {:?}, type {})",
                p.name,
                p.section,
                over.unwrap_or("from the section")
            ),
            why: "this program type is not modelled (types: syscall, socket, xdp)".into(),
        })?;
        if entry.spec.is_none() {
            return Err(RuntimeError::NotSupported {
                what: format!("program {} ({} program)", p.name, entry.name),
                why: entry.unsupported.into(),
            });
        }
        Ok(entry)
    }

    fn create_maps(
        &self,
        obj: &LoadedObject,
        opts: &LoadOpts,
    ) -> Result<Vec<ObjMap>, RuntimeError> {
        let mut out = Vec::with_capacity(obj.maps.len());
        for spec in &obj.maps {
            if let Some((_, h)) = opts.reuse_maps.iter().find(|(n, _)| *n == spec.name) {
                check_compatible(spec, h)?;
                out.push(ObjMap {
                    name: spec.name.clone(),
                    handle: h.clone(),
                    pin_by_name: false,
                });
                continue;
            }
            if spec.is_map_in_map() || spec.map_type == MapType::ProgArray.as_u32() {
                return Err(RuntimeError::NotSupported {
                    what: format!("map {} (type {})", spec.name, spec.map_type),
                    why: "map-in-map and program-array maps are not built".into(),
                });
            }
            if spec.pinning == Pinning::ByName {
                let path = format!("{PIN_ROOT}/{}", spec.name);
                match self.bpf().obj_get(&opts.cred, None, path.as_bytes(), 0) {
                    Ok(h) => {
                        check_compatible(spec, &h)?;
                        out.push(ObjMap {
                            name: spec.name.clone(),
                            handle: h,
                            pin_by_name: false,
                        });
                        continue;
                    }
                    Err(Errno::ENOENT) => {}
                    Err(errno) => {
                        return Err(RuntimeError::Map {
                            map: spec.name.clone(),
                            context: format!("reuse the map pinned at {path}"),
                            errno,
                        })
                    }
                }
            }
            let mut flags = spec.map_flags;
            if matches!(spec.source, MapSource::Data(_)) {
                // libbpf makes global data mmapable where the kernel allows it.
                flags |= BPF_F_MMAPABLE;
            }
            let def = MapDef {
                map_type: spec.map_type,
                key_size: spec.key_size,
                value_size: spec.value_size,
                max_entries: spec.max_entries,
                map_flags: flags,
                name: obj_name(&spec.name),
                map_extra: spec.map_extra,
                inner_map_id: 0,
            };
            let err = |context: &str, errno| RuntimeError::Map {
                map: spec.name.clone(),
                context: context.into(),
                errno,
            };
            let h = self.bpf().map_create(def).map_err(|e| err("create", e))?;
            if let Some(init) = &spec.initial_data {
                let mut v = init.clone();
                v.resize(spec.value_size as usize, 0);
                self.bpf()
                    .map_update_elem(&h, &0u32.to_ne_bytes(), &v, 0)
                    .map_err(|e| err("set initial value", e))?;
            }
            if spec.is_read_only_data() {
                self.bpf().map_freeze(&h).map_err(|e| err("freeze", e))?;
            }
            out.push(ObjMap {
                name: spec.name.clone(),
                handle: h,
                pin_by_name: spec.pinning == Pinning::ByName,
            });
        }
        Ok(out)
    }

    fn load_program(
        &self,
        spec: &ProgramSpec,
        entry: &'static ProgTypeEntry,
        maps: &[ObjMap],
        opts: &LoadOpts,
    ) -> Result<Handle, RuntimeError> {
        let name = spec.name.clone();
        let mut spec = spec.clone();
        // Map handle h names maps[h - 1]; 0 is never a map.
        spec.patch_map_references(|i| (i < maps.len()).then_some(i as u32 + 1))?;
        let insns: Vec<Insn> = spec
            .insns
            .iter()
            .map(|i| Insn::from_u64(i.to_u64()))
            .collect();
        let arcs: Vec<Arc<bpfvfs_bpf::Map>> = maps
            .iter()
            .map(|m| m.handle.map().cloned())
            .collect::<Result<_, _>>()
            .map_err(|errno| RuntimeError::Os {
                context: "object map handle".into(),
                errno,
            })?;
        let infos: Vec<MapInfo> = arcs
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let d = m.def();
                let mut mi = MapInfo::new(
                    i as i32 + 1,
                    verifier::MapType(d.map_type),
                    d.key_size,
                    d.value_size,
                    d.max_entries,
                );
                mi.name = d.name.clone();
                mi.flags = d.map_flags;
                mi
            })
            .collect();
        let kind = match &opts.prog_type {
            Some(t) => parse_section(t).kind,
            None => spec.kind,
        };
        let ty = (entry.spec.expect("type_of admits only types with a spec"))(
            kind,
            spec.attach_target.as_deref(),
        )
        .map_err(|reason| RuntimeError::ProgType {
            prog: name.clone(),
            reason,
        })?;
        let env = VerifierEnv::new(&ty, &infos, self.protos());
        let line = |i: usize| {
            spec.line_info_for(i)
                .map(|l| format!("{} @ {}:{}", l.source.trim(), l.file_name, l.line))
        };
        let verified = verifier::verify(&insns, &env, Some(&line)).map_err(|error| {
            RuntimeError::Verifier {
                prog: name.clone(),
                error,
            }
        })?;

        // Context accesses rewritten for the run-time context (XDP's xdp_md is a view of a
        // hidden xdp_buff), as the kernel's convert_ctx_accesses.
        let insns = verifier::convert_ctx_accesses(&insns, &ty, &verified).map_err(|why| {
            RuntimeError::ProgType {
                prog: name.clone(),
                reason: why,
            }
        })?;

        // Direct value loads (global data) resolve to the address of the array's value.
        let guard = crossbeam_epoch::pin();
        let resolve = |pl: &PseudoLoad| -> Result<u64, String> {
            let map = (pl.imm as u32 as usize)
                .checked_sub(1)
                .and_then(|i| arcs.get(i))
                .ok_or_else(|| format!("no map with handle {}", pl.imm))?;
            match pl.kind {
                LdImmKind::MapFd => Ok(pl.imm as u32 as u64),
                LdImmKind::MapValue => {
                    let p = map
                        .ops()
                        .lookup_ptr(&0u32.to_ne_bytes(), &guard)
                        .ok_or("map has no directly addressable value")?;
                    Ok((p.expose_provenance() as u64).wrapping_add(pl.next_imm as u32 as u64))
                }
                k => Err(format!("{k:?} loads are not supported")),
            }
        };
        let program = Program::load(
            &insns,
            LoadOptions {
                resolve: Some(&resolve),
            },
        )
        .map_err(|error| RuntimeError::Prepare {
            prog: name.clone(),
            error,
        })?;
        let mut direct_maps: Vec<usize> = Vec::new();
        for r in &spec.map_relocs {
            if matches!(r.kind, MapRelocKind::Value { .. }) && !direct_maps.contains(&r.map_index) {
                direct_maps.push(r.map_index);
            }
        }
        let direct: Vec<DirectValue> = direct_maps
            .into_iter()
            .filter_map(|i| {
                let m = &arcs[i];
                let p = m.ops().lookup_ptr(&0u32.to_ne_bytes(), &guard)?;
                Some(DirectValue {
                    addr: p.expose_provenance(),
                    len: m.def().value_size as usize,
                    writable: m.def().map_flags & BPF_F_RDONLY_PROG == 0,
                })
            })
            .collect();
        drop(guard);

        #[cfg(target_arch = "x86_64")]
        let jit = if self.config().engine == EngineKind::Jit {
            use bpfvfs_ebpf::jit::{ArrayLayout, JitProgram, Mode};
            // Array maps the program looks up in: unchecked code computes those lookups
            // inline (Linux's map_gen_lookup).
            let arrays = |h: u64| {
                let map = (h as usize).checked_sub(1).and_then(|i| arcs.get(i))?;
                let a = map
                    .ops()
                    .as_any()
                    .downcast_ref::<bpfvfs_bpf::maps::array::ArrayMap>()?;
                let (base, n, stride) = a.layout();
                // SAFETY: an array map's values are allocated with it, at a fixed address; the
                // LoadedProg holds the map (`maps`) as long as it holds this code, and the
                // runs' RunMaps give the same values for handle `h` (`lookup_ptr`).
                unsafe { ArrayLayout::new(base, n, stride) }
            };
            let c = |mode| {
                JitProgram::compile_with_arrays(&program, self.helpers(), mode, &arrays)
                    .map(Arc::new)
                    .map_err(|e| RuntimeError::Jit {
                        prog: name.clone(),
                        error: e.to_string(),
                    })
            };
            Some((c(Mode::Checked)?, c(Mode::Unchecked)?))
        } else {
            None
        };

        let mut map_ids = Vec::new();
        for r in &spec.map_relocs {
            let id = arcs[r.map_index].id();
            if !map_ids.contains(&id) {
                map_ids.push(id);
            }
        }
        let info = ProgInfo {
            prog_type: entry.prog_type.as_u32(),
            name: obj_name(&name),
            tag: prog_tag(&insns),
            insn_count: insns.len() as u32,
            license: spec.license.clone(),
            map_ids,
            loaded_at: now_secs(),
            uid: opts.cred.uid,
            attach_to: spec.attach_target.clone().unwrap_or_default(),
            jited_len: {
                #[cfg(target_arch = "x86_64")]
                {
                    jit.as_ref().map_or(0, |(_, u)| u.code_size() as u32)
                }
                #[cfg(not(target_arch = "x86_64"))]
                {
                    0
                }
            },
        };
        let lp = LoadedProg {
            pool: Default::default(),
            program,
            helpers: self.helpers().clone(),
            #[cfg(target_arch = "x86_64")]
            jit,
            maps: arcs,
            direct,
            type_entry: entry,
            section_kind: kind,
            view_needs: crate::kobj::Needs::of_program(
                &verified.struct_reads,
                &verified.helpers_used,
            ),
            uses_current: crate::cgroup_helpers::uses_current(&verified.helpers_used),
            uses_task: verified
                .helpers_used
                .iter()
                .any(|h| [14, 15, 16].contains(h)),
            verified,
            checked: self.config().checked,
        };
        self.bpf()
            .prog_add(info, Some(Box::new(lp)))
            .map_err(|errno| RuntimeError::Os {
                context: format!("register program {name}"),
                errno,
            })
    }
}

/// An existing map may stand in for an object's map only if it has the same shape.
fn check_compatible(spec: &MapSpec, h: &Handle) -> Result<(), RuntimeError> {
    let m = h.map().map_err(|errno| RuntimeError::Map {
        map: spec.name.clone(),
        context: "reuse: not a map".into(),
        errno,
    })?;
    let d = m.def();
    if d.map_type != spec.map_type
        || d.key_size != spec.key_size
        || d.value_size != spec.value_size
        || d.max_entries != spec.max_entries
    {
        return Err(RuntimeError::Map {
            map: spec.name.clone(),
            context: format!(
                "reuse: existing map (type {} key {} value {} entries {}) does not match the \
                 object's (type {} key {} value {} entries {})",
                d.map_type,
                d.key_size,
                d.value_size,
                d.max_entries,
                spec.map_type,
                spec.key_size,
                spec.value_size,
                spec.max_entries
            ),
            errno: Errno::EINVAL,
        });
    }
    Ok(())
}
