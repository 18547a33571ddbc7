//! # bpfvfs-runtime
//!
//! Where the eBPF engine meets the BPF objects. The engine (`bpfvfs-ebpf`) knows programs as
//! bytes and maps as opaque handles; the object layer (`bpfvfs-bpf`) knows maps, programs and
//! links as refcounted objects with ids and pins but nothing of instructions. This crate joins
//! them, the way the kernel's `bpf_prog_load` joins the verifier to the map fds:
//!
//! - [`load`]: an ELF object built by `clang -O2 -g -target bpf` goes in; its maps are created
//!   in the [`Bpf`] instance (global data sections as single-element arrays with their initial
//!   contents, `.rodata` frozen), its map references are patched, each program is verified
//!   against its type's rules ([`progtypes`]), prepared for the interpreter and compiled by the
//!   JIT, and registered as a [`bpfvfs_bpf::Prog`] whose opaque executable is a
//!   [`exec::LoadedProg`].
//! - [`exec`]: running a loaded program — the [`bpfvfs_ebpf::MapAccess`] implementation that
//!   gives map helpers the objects' memory under an epoch guard, and a reusable runner.
//! - [`test_run`]: `BPF_PROG_TEST_RUN` with the kernel's argument rules per program type.
//! - [`trace`]: where `bpf_trace_printk` output goes (the trace_pipe of this instance).
//!
//! Dependencies point one way: this crate uses vfs, bpf, ebpf and ebpf-obj; none of them
//! knows it exists.

pub mod attach;
pub mod btf_show;
pub mod cgroup_helpers;
pub mod error;
pub mod exec;
pub mod hook_run;
pub mod hooks;
pub mod iter;
pub mod kobj;
pub mod load;
pub mod progtypes;
pub mod seq;
mod sha1;
pub mod test_run;
pub mod trace;
pub mod view;
pub mod view_attach;

pub use error::RuntimeError;
pub use exec::{EngineKind, LoadedProg};
pub use hook_run::HookArg;
pub use load::{LoadOpts, LoadedObj};
pub use test_run::{TestRunInput, TestRunOutput};
pub use trace::TraceLog;

use bpfvfs_bpf::Bpf;
use bpfvfs_ebpf::verifier::HelperProtos;
use bpfvfs_ebpf::Helpers;
use std::sync::Arc;

/// The BTF of `include/bpfvfs/vmlinux.h`: the kernel types as bpfvfs lays them out, the target
/// of CO-RE relocations (regenerate with scripts/gen-vmlinux-btf.sh).
pub fn kernel_btf() -> &'static bpfvfs_ebpf_obj::Btf {
    static BTF: std::sync::OnceLock<bpfvfs_ebpf_obj::Btf> = std::sync::OnceLock::new();
    BTF.get_or_init(|| {
        bpfvfs_ebpf_obj::Btf::parse(include_bytes!("vmlinux.btf"))
            .expect("the committed vmlinux.btf parses")
    })
}

/// How programs are executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// JIT (the default on x86-64) or interpreter.
    pub engine: EngineKind,
    /// Run with every memory access checked even though the verifier accepted the program:
    /// slower, and a guard against verifier bugs while developing programs.
    pub checked: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            engine: if cfg!(target_arch = "x86_64") {
                EngineKind::Jit
            } else {
                EngineKind::Interp
            },
            checked: false,
        }
    }
}

/// One instance's program side: the helper table and prototypes every program of this
/// instance is verified and run against, and its trace log.
pub struct Runtime {
    bpf: Arc<Bpf>,
    /// Programs attached to the VFS hooks (shared with the hooks object the VFS calls).
    attachments: Arc<attach::Attachments>,
    /// 1 when this runtime's hooks are installed on the VFS (a VFS takes one set of hooks).
    hooks_installed: std::sync::atomic::AtomicUsize,
    me: std::sync::Weak<Runtime>,
    helpers: Arc<Helpers>,
    protos: Arc<HelperProtos>,
    trace: Arc<TraceLog>,
    config: RuntimeConfig,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // The VFS keeps the hooks object (and through it the attachment lists) past the
        // runtime: nothing runs from it once the runtime is gone.
        self.attachments.close();
    }
}

impl Runtime {
    pub fn new(bpf: Arc<Bpf>) -> Arc<Runtime> {
        Self::with_config(bpf, RuntimeConfig::default())
    }

    pub fn with_config(bpf: Arc<Bpf>, config: RuntimeConfig) -> Arc<Runtime> {
        let config = RuntimeConfig {
            engine: if cfg!(target_arch = "x86_64") {
                config.engine
            } else {
                EngineKind::Interp
            },
            ..config
        };
        let mut helpers = Helpers::standard();
        let mut protos = HelperProtos::standard();
        hook_run::register(&mut helpers, &mut protos);
        seq::register(&mut helpers, &mut protos);
        cgroup_helpers::register(&mut helpers, &mut protos);
        let rt = Arc::new_cyclic(|me| Runtime {
            bpf,
            attachments: Arc::default(),
            hooks_installed: std::sync::atomic::AtomicUsize::new(0),
            me: me.clone(),
            helpers: Arc::new(helpers),
            protos: Arc::new(protos),
            trace: Arc::new(TraceLog::new(trace::DEFAULT_CAPACITY)),
            config,
        });
        // The VFS takes one set of hooks; a second runtime on the same tree cannot attach.
        if rt
            .bpf
            .vfs()
            .set_hooks(Arc::new(attach::BpfHooks::new(
                Arc::downgrade(&rt),
                rt.attachments.clone(),
                rt.trace.clone(),
            )))
            .is_ok()
        {
            rt.hooks_installed
                .store(1, std::sync::atomic::Ordering::Relaxed);
        }
        view_attach::install_view_factory(&rt);
        rt
    }

    pub fn bpf(&self) -> &Arc<Bpf> {
        &self.bpf
    }
    pub fn helpers(&self) -> &Arc<Helpers> {
        &self.helpers
    }
    pub fn protos(&self) -> &Arc<HelperProtos> {
        &self.protos
    }
    pub fn trace(&self) -> &Arc<TraceLog> {
        &self.trace
    }
    pub fn config(&self) -> RuntimeConfig {
        self.config
    }
}
