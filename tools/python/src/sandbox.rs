//! The sandbox, its builder, and persistent sessions.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::process::{self, Limits, Mechanisms, Report, Running, Setup, Use};
use crate::{Error, Execution, Protection, ProtectionState, interpreter, policy};

/// Largest piece of code accepted in one run.
pub const MAX_CODE_BYTES: usize = 4 << 20;

/// Options for a [`Sandbox`]; start from [`Sandbox::builder`].
#[derive(Debug, Clone)]
pub struct SandboxBuilder {
    interpreter: Option<PathBuf>,
    limits: Limits,
    work_root: Option<PathBuf>,
    read_only: Vec<PathBuf>,
    allowed_missing: BTreeSet<Protection>,
}

impl Default for SandboxBuilder {
    fn default() -> Self {
        SandboxBuilder {
            interpreter: None,
            limits: Limits {
                wall: Duration::from_secs(30),
                cpu: Duration::from_secs(20),
                memory: 1 << 30,
                processes: 64,
                output: 64 << 10,
                file_size: 64 << 20,
            },
            work_root: None,
            read_only: Vec::new(),
            allowed_missing: BTreeSet::new(),
        }
    }
}

impl SandboxBuilder {
    /// The interpreter: a path, or a command name looked up on `PATH`.
    /// Default: `python3` from `PATH`.
    pub fn interpreter(mut self, path: impl Into<PathBuf>) -> Self {
        self.interpreter = Some(path.into());
        self
    }

    /// Wall-clock limit of one run; the interpreter is killed when it passes.
    /// Default: 30 s.
    pub fn wall_time_limit(mut self, limit: Duration) -> Self {
        self.limits.wall = limit;
        self
    }

    /// CPU time one run may use. The host checks the interpreter every
    /// 100 ms and kills it past the limit; every other process the code
    /// starts gets the limit as `RLIMIT_CPU`, rounded up to whole seconds.
    /// Default: 20 s.
    pub fn cpu_time_limit(mut self, limit: Duration) -> Self {
        self.limits.cpu = limit;
        self
    }

    /// Address-space limit of each process, in bytes. Default: 1 GiB.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.limits.memory = bytes;
        self
    }

    /// How many processes (threads count too) the code may have at once,
    /// the interpreter included. Default: 64.
    pub fn max_processes(mut self, count: u64) -> Self {
        self.limits.processes = count.max(1);
        self
    }

    /// How much of stdout, and of stderr, is kept per run, in bytes; also the
    /// longest value representation returned. Code that goes on writing well
    /// past this is killed. Default: 64 KiB.
    pub fn max_output_bytes(mut self, bytes: usize) -> Self {
        self.limits.output = bytes;
        self
    }

    /// Largest file the code may write, in bytes. Default: 64 MiB.
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.limits.file_size = bytes;
        self
    }

    /// Directory under which working directories are created. Default: the
    /// system temporary directory.
    pub fn work_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_root = Some(dir.into());
        self
    }

    /// Lets the code read (and execute) a path it could not otherwise see,
    /// such as a data directory.
    pub fn read_only_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.read_only.push(path.into());
        self
    }

    /// Runs even when `protection` is unavailable on this machine, instead of
    /// failing to build.
    pub fn allow_missing_protection(mut self, protection: Protection) -> Self {
        self.allowed_missing.insert(protection);
        self
    }

    /// Finds the interpreter, detects which protections this machine
    /// provides, and starts one sandboxed interpreter to check that it works.
    ///
    /// Fails with [`Error::InterpreterNotFound`] or [`Error::NotPython3`]
    /// when there is no usable interpreter, and with
    /// [`Error::ProtectionUnavailable`] when a protection is missing that was
    /// not allowed to be.
    pub async fn build(self) -> Result<Sandbox, Error> {
        let found = interpreter::inspect(self.interpreter.as_deref()).await?;
        let work_root = match self.work_root {
            Some(root) => root,
            None => std::env::temp_dir(),
        };
        let mut interpreter_paths = found.prefixes.clone();
        if let Some(bin) = found.executable.parent() {
            interpreter_paths.push(bin.to_path_buf());
        }
        let mut search = interpreter_paths.clone();
        search.push(work_root.clone());
        search.extend(self.read_only.iter().cloned());
        interpreter_paths.extend(self.read_only.iter().cloned());
        let seccomp = match policy::seccomp_programs() {
            Ok(programs) => Some(Arc::new(programs)),
            Err(error) => {
                debug!(%error, "no seccomp filter for this architecture");
                None
            }
        };
        let mut setup = Setup {
            executable: found.executable.clone(),
            read_only: policy::read_only_paths(&interpreter_paths),
            limits: self.limits,
            mechanisms: Mechanisms {
                namespaces: Use::Try,
                landlock: Use::Try,
                seccomp: Use::Try,
            },
            seccomp,
            dac_read_search: search.iter().any(|p| !reachable_by_others(p)),
        };

        let workdir = Workdir::create(&work_root)?;
        let (mut running, report) = process::start(&setup, workdir.path(), false).await?;
        let probe = running.call("6 * 7", &setup.limits).await;
        running.shutdown().await;
        drop(workdir);
        let probe = probe?;
        if probe.value.as_deref() != Some("42") {
            return Err(Error::Startup {
                detail: format!(
                    "the interpreter did not run a test expression ({}): {}",
                    probe.outcome,
                    probe.stderr.trim()
                ),
            });
        }

        let protections = checked_protections(&report, &self.allowed_missing)?;
        let require = |available: bool| if available { Use::Require } else { Use::Skip };
        setup.mechanisms = Mechanisms {
            namespaces: require(report.namespaces.is_ok()),
            landlock: require(report.landlock_enforced),
            seccomp: require(report.seccomp),
        };
        let (major, minor, micro) = found.version;
        info!(
            interpreter = %found.executable.display(),
            version = %format!("{major}.{minor}.{micro}"),
            ?protections,
            "Python sandbox ready"
        );
        Ok(Sandbox {
            inner: Arc::new(Inner {
                setup,
                work_root,
                protections,
                version: found.version,
            }),
        })
    }
}

/// Runs Python 3 code in a contained child process.
///
/// Each run gets a fresh working directory, no network, no access to host
/// files outside its working directory (the Python installation and system
/// libraries are readable), and limits on memory, CPU time, wall-clock time,
/// processes, file size and output. Every process the code starts is killed
/// when the run ends. Cheap to clone; clones share the configuration.
#[derive(Debug, Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    setup: Setup,
    work_root: PathBuf,
    protections: Vec<ProtectionState>,
    version: (u32, u32, u32),
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("executable", &self.executable)
            .field("limits", &self.limits)
            .field("mechanisms", &self.mechanisms)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Starts configuring a sandbox.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::default()
    }

    /// Runs `code` once in a fresh interpreter and working directory, both
    /// gone when this returns.
    pub async fn run(&self, code: &str) -> Result<Execution, Error> {
        let mut session = self.session()?;
        let result = session.run(code).await;
        session.close().await;
        result
    }

    /// Opens a persistent session: one working directory, and an interpreter
    /// whose variables survive from one run to the next.
    pub fn session(&self) -> Result<Session, Error> {
        let workdir = Workdir::create(&self.inner.work_root)?;
        Ok(Session {
            sandbox: Arc::clone(&self.inner),
            path: workdir.path().to_path_buf(),
            workdir: Some(workdir),
            running: None,
        })
    }

    /// Each protection, and what provides it on this machine.
    pub fn protections(&self) -> &[ProtectionState] {
        &self.inner.protections
    }

    /// The interpreter's executable.
    pub fn interpreter(&self) -> &Path {
        &self.inner.setup.executable
    }

    /// The interpreter's version: major, minor, micro.
    pub fn python_version(&self) -> (u32, u32, u32) {
        self.inner.version
    }
}

/// A persistent Python session: variables, imports and functions survive
/// from one [`run`](Session::run) to the next, and files stay in the
/// session's working directory until the session is dropped.
///
/// When the interpreter dies (a timeout, a crash, a limit), the run that
/// killed it says so in [`Execution::state_lost`], and the next run starts a
/// fresh interpreter in the same directory. Dropping the session kills its
/// processes and removes its directory; [`close`](Session::close) does the
/// same and waits for it.
#[derive(Debug)]
pub struct Session {
    sandbox: Arc<Inner>,
    path: PathBuf,
    /// Taken only by `close` and `drop`, which end the session.
    workdir: Option<Workdir>,
    running: Option<Running>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Running")
    }
}

impl Session {
    /// Runs `code` in the session's interpreter, starting one when needed.
    ///
    /// If the last statement is an expression, its `repr` is returned in
    /// [`Execution::value`]. Errors are for failures of the sandbox itself;
    /// whatever the code does is reported in the [`Execution`].
    pub async fn run(&mut self, code: &str) -> Result<Execution, Error> {
        if code.len() > MAX_CODE_BYTES {
            return Err(Error::CodeTooLarge {
                len: code.len(),
                max: MAX_CODE_BYTES,
            });
        }
        let started = Instant::now();
        let setup = &self.sandbox.setup;
        let mut running = match self.running.take() {
            Some(running) => running,
            None => process::start(setup, &self.path, true).await?.0,
        };
        let call = running.call(code, &setup.limits).await?;
        if call.alive {
            self.running = Some(running);
        }
        debug!(outcome = %call.outcome, "python run finished");
        Ok(Execution {
            outcome: call.outcome,
            stdout: call.stdout,
            stderr: call.stderr,
            value: call.value,
            state_lost: !call.alive,
            duration: started.elapsed(),
        })
    }

    /// Forgets all variables: stops the interpreter; the next run starts a
    /// fresh one. Files in the working directory stay.
    pub async fn reset(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }

    /// The session's working directory on the host.
    pub fn workdir(&self) -> &Path {
        &self.path
    }

    /// Kills the session's processes, waits for them, and removes its
    /// working directory.
    pub async fn close(mut self) {
        self.reset().await;
        if let Some(workdir) = self.workdir.take() {
            // Removing a large tree is blocking work.
            let _ = tokio::task::spawn_blocking(move || drop(workdir)).await;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let running = self.running.take();
        let workdir = self.workdir.take();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Dropping the interpreter kills it; the directory goes next.
            drop((running, workdir));
            return;
        };
        runtime.spawn(async move {
            if let Some(running) = running {
                running.shutdown().await;
            }
            let _ = tokio::task::spawn_blocking(move || drop(workdir)).await;
        });
    }
}

/// A working directory, removed on drop.
#[derive(Debug)]
struct Workdir {
    path: PathBuf,
}

impl Workdir {
    fn create(root: &Path) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("taper-python-")
            .tempdir_in(root)?;
        Ok(Workdir { path: dir.keep() })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if std::fs::remove_dir_all(&self.path).is_ok() {
            return;
        }
        // The code may have left directories it cannot be entered or
        // emptied without write and search permission: restore them, retry.
        open_up(&self.path);
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            warn!(path = %self.path.display(), %error, "working directory not removed");
        }
    }
}

fn open_up(dir: &Path) {
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                open_up(&entry.path());
            }
        }
    }
}

/// Whether an unprivileged user can search every directory down to `path`.
fn reachable_by_others(path: &Path) -> bool {
    path.ancestors().all(|dir| {
        std::fs::metadata(dir).is_ok_and(|m| !m.is_dir() || m.permissions().mode() & 0o001 != 0)
    })
}

/// What provides each protection, or the error naming those missing that
/// were not allowed to be.
fn checked_protections(
    report: &Report,
    allowed_missing: &BTreeSet<Protection>,
) -> Result<Vec<ProtectionState>, Error> {
    let protections = protections(report);
    let missing: Vec<Protection> = protections
        .iter()
        .filter(|p| p.provided_by.is_none())
        .map(|p| p.protection)
        .collect();
    let refused: Vec<Protection> = missing
        .iter()
        .copied()
        .filter(|p| !allowed_missing.contains(p))
        .collect();
    if !refused.is_empty() {
        return Err(Error::ProtectionUnavailable {
            missing: refused,
            detail: missing_detail(report),
        });
    }
    if !missing.is_empty() {
        warn!(?missing, "running Python without some protections");
    }
    Ok(protections)
}

fn protections(report: &Report) -> Vec<ProtectionState> {
    let namespaces = report.namespaces.is_ok();
    Protection::ALL
        .iter()
        .map(|&protection| {
            let provided_by = match protection {
                Protection::Filesystem => report
                    .landlock_enforced
                    .then(|| policy::landlock_name(report.landlock_abi, report.landlock_full)),
                Protection::Network => {
                    let mut by = Vec::new();
                    if namespaces {
                        by.push("empty network namespace");
                    }
                    if report.seccomp {
                        by.push("seccomp socket filter");
                    }
                    (!by.is_empty()).then(|| by.join(" + "))
                }
                Protection::Processes => {
                    namespaces.then(|| "user, pid, IPC and UTS namespaces; RLIMIT_NPROC".to_owned())
                }
                Protection::SyscallFilter => report.seccomp.then(|| "seccomp".to_owned()),
            };
            ProtectionState {
                protection,
                provided_by,
            }
        })
        .collect()
}

fn missing_detail(report: &Report) -> String {
    let mut detail = Vec::new();
    if let Err(errno) = report.namespaces {
        detail.push(format!(
            "namespaces: {}",
            std::io::Error::from_raw_os_error(errno)
        ));
    }
    if !report.landlock_enforced {
        detail.push("Landlock: not supported or not enabled by this kernel".to_owned());
    }
    if !report.seccomp {
        detail.push("seccomp: not available".to_owned());
    }
    detail.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outcome;

    fn report(namespaces: bool, landlock: bool, seccomp: bool) -> Report {
        Report {
            landlock_abi: if landlock { 6 } else { 0 },
            landlock_full: landlock,
            landlock_enforced: landlock,
            namespaces: if namespaces { Ok(()) } else { Err(libc::EPERM) },
            seccomp,
        }
    }

    #[test]
    fn handles_and_runs_can_move_between_tasks() {
        fn send<T: Send>(_: T) {}
        fn shared<T: Send + Sync>() {}
        shared::<Sandbox>();
        // Type-checked only: the futures of a run can be spawned.
        let _ = |sandbox: Sandbox, mut session: Session| {
            send(async move { sandbox.run("1").await });
            send(async move { session.run("1").await });
        };
    }

    #[test]
    fn a_missing_protection_is_refused_unless_allowed() {
        let none = BTreeSet::new();
        assert_eq!(
            checked_protections(&report(true, true, true), &none)
                .unwrap()
                .len(),
            4
        );

        let error = checked_protections(&report(false, true, true), &none).unwrap_err();
        let Error::ProtectionUnavailable { missing, detail } = &error else {
            panic!("{error}");
        };
        // The seccomp socket filter still provides network isolation.
        assert_eq!(missing, &[Protection::Processes]);
        assert!(detail.contains("namespaces"), "{detail}");
        assert!(error.to_string().contains("process isolation"));

        let allowed = BTreeSet::from([Protection::Processes]);
        let states = checked_protections(&report(false, true, true), &allowed).unwrap();
        assert!(
            states
                .iter()
                .any(|s| s.protection == Protection::Processes && s.provided_by.is_none())
        );

        let error = checked_protections(&report(false, false, false), &allowed).unwrap_err();
        let Error::ProtectionUnavailable { missing, .. } = error else {
            panic!("{error}");
        };
        assert_eq!(
            missing,
            [
                Protection::Filesystem,
                Protection::Network,
                Protection::SyscallFilter
            ]
        );
    }

    /// The path taken where namespaces are unavailable and the caller
    /// allowed that: Landlock and seccomp still contain the code.
    #[tokio::test]
    async fn without_namespaces_the_code_is_still_contained() {
        let sandbox = Sandbox::builder().build().await.unwrap();
        let mut setup = sandbox.inner.setup.clone();
        setup.mechanisms.namespaces = Use::Skip;
        let sandbox = Sandbox {
            inner: Arc::new(Inner {
                setup,
                work_root: sandbox.inner.work_root.clone(),
                protections: Vec::new(),
                version: sandbox.inner.version,
            }),
        };
        let run = sandbox
            .run("import os\n(os.getuid() == os.geteuid(), os.getpid() > 1)")
            .await
            .unwrap();
        assert_eq!(run.value.as_deref(), Some("(True, True)"), "{run:?}");
        let code = "import os, socket\nout = []\n\
                    for attempt in (lambda: open('/etc/shadow'), lambda: open('/tmp/taper-x', 'w'), \
                    lambda: socket.socket(), lambda: os.kill(-1, 9)):\n    try:\n        \
                    attempt()\n        out.append('ALLOWED')\n    except OSError:\n        \
                    out.append('DENIED')\nout";
        let run = sandbox.run(code).await.unwrap();
        assert_eq!(
            run.value.as_deref(),
            Some("['DENIED', 'DENIED', 'DENIED', 'DENIED']"),
            "{run:?}"
        );
    }

    #[tokio::test]
    async fn without_namespaces_the_process_group_is_killed() {
        let sandbox = Sandbox::builder()
            .wall_time_limit(Duration::from_millis(500))
            .build()
            .await
            .unwrap();
        let mut setup = sandbox.inner.setup.clone();
        setup.mechanisms.namespaces = Use::Skip;
        let sandbox = Sandbox {
            inner: Arc::new(Inner {
                setup,
                work_root: sandbox.inner.work_root.clone(),
                protections: Vec::new(),
                version: sandbox.inner.version,
            }),
        };
        let run = sandbox
            .run(
                "import subprocess, time\n\
                 print(subprocess.Popen(['sleep', '30']).pid, flush=True)\n\
                 time.sleep(10)",
            )
            .await
            .unwrap();
        assert!(matches!(run.outcome, Outcome::Timeout { .. }), "{run:?}");
        // Without a pid namespace the pid is the host's.
        let pid = run.stdout.trim();
        let gone = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |stat| stat.contains(") Z "))
        };
        for _ in 0..50 {
            if gone() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("sleep (pid {pid}) survived the run");
    }
}
