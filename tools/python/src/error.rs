//! Errors of the sandbox itself (as opposed to errors of the code it runs,
//! which are an [`Outcome`](crate::Outcome)).

use std::path::PathBuf;

use crate::Protection;

/// Why the sandbox could not be built or could not run code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No interpreter at the configured path, or no `python3` on `PATH`.
    #[error("no Python interpreter found at {}", path.display())]
    InterpreterNotFound {
        /// The path or command name that was looked for.
        path: PathBuf,
    },
    /// The interpreter exists but is not a usable Python 3 (3.8 or newer).
    #[error("{} is not a usable Python 3 interpreter: {detail}", path.display())]
    NotPython3 {
        /// The interpreter that was tried.
        path: PathBuf,
        /// What went wrong when it was asked for its version.
        detail: String,
    },
    /// A protection is not available on this machine and the caller did not
    /// allow running without it (see
    /// [`SandboxBuilder::allow_missing_protection`](crate::SandboxBuilder::allow_missing_protection)).
    #[error("protections unavailable on this machine: {}; {detail}", list(missing))]
    ProtectionUnavailable {
        /// The protections that are missing.
        missing: Vec<Protection>,
        /// What failed when they were tried.
        detail: String,
    },
    /// The sandboxed interpreter could not be started.
    #[error("the sandboxed interpreter could not start: {detail}")]
    Startup {
        /// The step that failed and why, or what the interpreter printed.
        detail: String,
    },
    /// The code is larger than the sandbox accepts.
    #[error("the code is {len} bytes, more than the {max} bytes accepted")]
    CodeTooLarge {
        /// Size of the code in bytes.
        len: usize,
        /// The largest accepted size in bytes.
        max: usize,
    },
    /// An operating-system call on the host side failed.
    #[error("sandbox I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

fn list(missing: &[Protection]) -> String {
    missing
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
