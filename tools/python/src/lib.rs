//! Sandboxed Python execution for agents: runs model-written code in a contained child process.
//!
//! A [`Sandbox`] is built once (it finds the interpreter and checks which
//! kernel protections this machine offers), then runs code one-shot with
//! [`Sandbox::run`] or in persistent [`Session`]s whose variables survive
//! between runs. Every run reports its output, the value of a final
//! expression, and how it ended ([`Execution`], [`Outcome`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), taper_python::Error> {
//! let sandbox = taper_python::Sandbox::builder().build().await?;
//! let run = sandbox.run("print('hi')\n6 * 7").await?;
//! assert_eq!(run.stdout, "hi\n");
//! assert_eq!(run.value.as_deref(), Some("42"));
//! # Ok(())
//! # }
//! ```
//!
//! # Containment
//!
//! The code runs as an unprivileged user in its own user, pid, network, IPC
//! and UTS namespaces; a Landlock ruleset lets it read only the Python
//! installation and system libraries and write only its working directory;
//! a seccomp filter refuses sockets and system calls it has no use for;
//! rlimits cap memory, CPU time, processes and file size; the host enforces
//! the wall-clock and output limits. At the end of each run every process
//! the code started is killed. [`Sandbox::protections`] says what provides
//! each [`Protection`] on this machine; a sandbox refuses to build when one
//! is missing unless the caller allowed it.
//!
//! # Limits of the guarantees
//!
//! - The memory limit is per process (address space), so the code's total is
//!   bounded by the memory limit times the process limit.
//! - Disk use is bounded per file (`RLIMIT_FSIZE`), not in total.
//! - Landlock governs opening, creating, renaming, linking and executing
//!   files, not everything: any path's metadata (`stat`) can still be read,
//!   and `chdir` works anywhere.
//! - The seccomp filter is a deny list: the rest of the kernel's interface is
//!   reachable, so a kernel bug can still be an escape.
//! - The interpreter is pid 1 of its namespace, and so ignores signals it
//!   has no handler for (`os.kill(os.getpid(), SIGTERM)` does nothing).
//! - `multiprocessing` pools and semaphores do not work (they need
//!   `/dev/shm`, which is not writable).
//! - The host checks the interpreter's CPU time every 100 ms; other
//!   processes get `RLIMIT_CPU`, whose soft limit they may raise in a
//!   session. The wall-clock limit holds regardless.
//! - When the host runs as root and the interpreter lives under a directory
//!   closed to others (such as pyenv under `/root`), the code keeps
//!   `CAP_DAC_READ_SEARCH` inside its user namespace: it can read root-owned
//!   files that Landlock lets it reach, whatever their mode bits.
//! - Starting an interpreter forks the host process; a host holding much
//!   anonymous memory pays for copying its page tables.

mod error;
mod execution;
mod interpreter;
mod launch;
mod output;
mod policy;
mod process;
mod sandbox;
mod tool;

pub use error::Error;
pub use execution::{Execution, Outcome};
pub use policy::{Protection, ProtectionState};
pub use sandbox::{MAX_CODE_BYTES, Sandbox, SandboxBuilder, Session};
pub use tool::PythonTool;

use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments of the Python tool, as the model writes them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PythonArgs {
    /// Python 3 source code to run, as a complete program (not a shell
    /// command). Use print() to show results; if the last line is an
    /// expression, its value is shown too, as in a notebook. Only the
    /// standard library and already-installed packages are available; there
    /// is no network and no pip install.
    pub code: String,
}

/// The Python tool's description, for the model.
pub const DESCRIPTION: &str = "\
Run Python 3 code in a sandbox and get back its stdout, its stderr (with the \
traceback if it raised) and the value of the last line if that line is an \
expression, as in a notebook.

Examples:
- {\"code\": \"print(sum(range(101)))\"} shows 5050.
- {\"code\": \"import math\\nmath.factorial(20)\"} shows 2432902008176640000.
- {\"code\": \"with open('data.csv', 'w') as f:\\n    f.write('a,b\\\\n1,2\\\\n')\\nopen('data.csv').read()\"}

Rules of the sandbox: there is no network access (no downloads, no pip \
install); only the standard library and installed packages can be imported; \
files can be written only in the current working directory; each run has a \
wall-clock timeout and limits on CPU time, memory, processes and output size \
(long output is truncated), and any process the code starts is stopped when \
the run ends. Within one conversation, variables, functions and files may \
persist between runs; if the interpreter had to be restarted, the result \
says so.";
