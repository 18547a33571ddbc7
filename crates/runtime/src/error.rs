//! Errors of loading and running programs, each with the errno bpf(2) would return.

use bpfvfs_ebpf::verifier::VerifierError;
use bpfvfs_vfs::Errno;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The ELF object is malformed or uses something the loader does not support.
    #[error("{0}")]
    Object(#[from] bpfvfs_ebpf_obj::ObjError),
    #[error("object has no programs")]
    NoPrograms,
    #[error("program {prog}: {reason}")]
    ProgType { prog: String, reason: String },
    #[error("{what}: not supported: {why}")]
    NotSupported { what: String, why: String },
    #[error("map {map}: {context}: {errno}")]
    Map {
        map: String,
        context: String,
        errno: Errno,
    },
    /// The verifier rejected a program; `error.log` is the kernel-style log.
    #[error("program {prog}: verifier rejected it: {error}")]
    Verifier { prog: String, error: VerifierError },
    #[error("program {prog}: {error}")]
    Prepare {
        prog: String,
        error: bpfvfs_ebpf::LoadError,
    },
    #[error("program {prog}: JIT: {error}")]
    Jit { prog: String, error: String },
    #[error("{context}: {errno}")]
    Os { context: String, errno: Errno },
    /// BPF_PROG_TEST_RUN refused its arguments.
    #[error("test run: {reason}")]
    TestRun { errno: Errno, reason: String },
    /// A program faulted at run time (possible only in checked mode, or from a verifier bug).
    #[error("program run failed: {0}")]
    Exec(#[from] bpfvfs_ebpf::ExecError),
}

impl RuntimeError {
    /// The errno bpf(2) returns for this failure.
    pub fn errno(&self) -> Errno {
        match self {
            RuntimeError::Object(_) | RuntimeError::NoPrograms => Errno::EINVAL,
            RuntimeError::ProgType { .. } => Errno::EINVAL,
            RuntimeError::NotSupported { .. } => Errno::EOPNOTSUPP,
            RuntimeError::Map { errno, .. } => *errno,
            // The kernel's verifier fails most rejections with EACCES, structural ones with
            // EINVAL; callers that care read the log.
            RuntimeError::Verifier { .. } => Errno::EACCES,
            RuntimeError::Prepare { .. } => Errno::EINVAL,
            RuntimeError::Jit { .. } => Errno::ENOTSUP_,
            RuntimeError::Os { errno, .. } => *errno,
            RuntimeError::TestRun { errno, .. } => *errno,
            RuntimeError::Exec(_) => Errno::EFAULT,
        }
    }

    /// The verifier log, when the verifier rejected the program.
    pub fn verifier_log(&self) -> Option<&str> {
        match self {
            RuntimeError::Verifier { error, .. } => Some(&error.log),
            _ => None,
        }
    }

    pub(crate) fn test_run(errno: Errno, reason: impl Into<String>) -> RuntimeError {
        RuntimeError::TestRun {
            errno,
            reason: reason.into(),
        }
    }
}
