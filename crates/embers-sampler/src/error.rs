//! Why sampling could not start or go on.

/// A sampling failure, with a hint for the ones a user can fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// There is no process with that pid.
    #[error("no such process: pid {0}")]
    NoSuchProcess(u32),
    /// The kernel refused to let us read the target.
    #[error("permission denied reading pid {pid}: {detail}")]
    PermissionDenied {
        /// The target.
        pid: u32,
        /// What the backend said.
        detail: String,
    },
    /// The target is neither CPython nor CRuby.
    #[error("pid {pid} ({exe}) is not a Python or Ruby process")]
    NotPythonOrRuby {
        /// The target.
        pid: u32,
        /// Its executable.
        exe: String,
    },
    /// The interpreter was found, but its version is not one the backend can read.
    #[error("unsupported interpreter in pid {pid}: {detail}")]
    Unsupported {
        /// The target.
        pid: u32,
        /// What the backend said.
        detail: String,
    },
    /// The target ended before anything could be sampled.
    #[error("pid {0} exited before it could be sampled")]
    Exited(u32),
    /// The backend failed in another way.
    #[error("sampling pid {pid} failed: {detail}")]
    Backend {
        /// The target.
        pid: u32,
        /// What the backend said.
        detail: String,
    },
}

impl Error {
    /// A one-line suggestion for errors a user can fix.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Error::NoSuchProcess(_) => "check the pid with `ps`; the process may have exited".into(),
            Error::PermissionDenied { .. } => "run as root (sudo), or give embers CAP_SYS_PTRACE, or \
                 set kernel.yama.ptrace_scope=0; in Docker add --cap-add SYS_PTRACE"
                .into(),
            Error::NotPythonOrRuby { .. } => {
                "embers samples CPython and CRuby; pass --lang python|ruby if detection is wrong".into()
            }
            Error::Unsupported { .. } => {
                "supported: CPython 2.3-2.7 and 3.3-3.14 (not PyPy or free-threaded builds), CRuby 1.9.1-4.0"
                    .into()
            }
            _ => return None,
        })
    }

    /// Classifies a backend error message.
    pub(crate) fn from_backend(pid: u32, err: &dyn std::fmt::Display) -> Error {
        // The backends return `anyhow` chains; the alternate form prints the whole chain.
        let detail = format!("{err:#}");
        let lower = detail.to_ascii_lowercase();
        if !crate::detect::is_alive(pid) {
            Error::Exited(pid)
        } else if lower.contains("permission denied") || lower.contains("operation not permitted") {
            Error::PermissionDenied { pid, detail }
        } else if lower.contains("unsupported") || lower.contains("not supported") {
            Error::Unsupported { pid, detail }
        } else {
            Error::Backend { pid, detail }
        }
    }
}
