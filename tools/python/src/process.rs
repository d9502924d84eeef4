//! The host side of one sandboxed interpreter: starting it, running one call
//! on it, cleaning up after the call, and stopping it.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustix::process::{Resource, Rlimit, Signal};
use seccompiler::BpfProgram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe::{Receiver, Sender};
use tokio::process::Child;
use tokio::time::{Instant, sleep_until};
use tracing::debug;

use crate::execution::Outcome;
use crate::launch::{self, CStringArray, HOST_NOBODY, Identity, Pipes, Plan, Record, SANDBOX_ID};
use crate::output::Capture;
use crate::{Error, policy};

/// The Python side of the protocol.
const DRIVER: &str = include_str!("driver.py");
/// How long the interpreter may take to start.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long killing leftover processes or stopping the interpreter may take
/// before the supervisor itself is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long output may keep arriving after every writer is gone.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest reply frame accepted from the driver.
const MAX_REPLY: usize = 16 << 20;
/// Descriptor limit inside the sandbox.
const MAX_OPEN_FILES: u64 = 1024;
/// How often the host checks the interpreter's CPU time during a call.
const CPU_POLL: Duration = Duration::from_millis(100);

/// Whether a mechanism is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Use {
    /// Must work, or the interpreter does not start.
    Require,
    /// Used when it works (the probe at build time).
    Try,
    /// Not used (unavailable, and the caller allowed that).
    Skip,
}

/// Which mechanisms a start uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mechanisms {
    pub namespaces: Use,
    pub landlock: Use,
    pub seccomp: Use,
}

/// Limits of one sandbox.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub wall: Duration,
    pub cpu: Duration,
    pub memory: u64,
    pub processes: u64,
    pub output: usize,
    pub file_size: u64,
}

/// What a start needs besides the working directory.
#[derive(Clone)]
pub(crate) struct Setup {
    pub executable: PathBuf,
    pub read_only: Vec<PathBuf>,
    pub limits: Limits,
    pub mechanisms: Mechanisms,
    pub seccomp: Option<Arc<Vec<BpfProgram>>>,
    pub dac_read_search: bool,
}

/// What a start found out about the machine.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Report {
    pub landlock_abi: u8,
    pub landlock_full: bool,
    pub landlock_enforced: bool,
    pub namespaces: Result<(), i32>,
    pub seccomp: bool,
}

/// How the interpreter ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    Code(i32),
    Signal(i32),
    Unknown,
}

/// What one call produced.
pub(crate) struct Call {
    pub outcome: Outcome,
    pub value: Option<String>,
    pub stdout: String,
    pub stderr: String,
    /// The interpreter survived the call.
    pub alive: bool,
}

/// A reply from the driver (see `driver.py` for the layout).
struct Reply {
    kind: u8,
    code: i32,
    error: Option<String>,
    value: Option<String>,
}

impl Reply {
    fn parse(bytes: &[u8]) -> Option<Reply> {
        let (&kind, rest) = bytes.split_first()?;
        let code = i32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
        let mut rest = &rest[4..];
        let error = take_field(&mut rest)?;
        let value = take_field(&mut rest)?;
        rest.is_empty().then_some(Reply {
            kind,
            code,
            error,
            value,
        })
    }
}

/// Takes `[present: u8]([len: u32][utf-8])` off the front of `bytes`.
fn take_field(bytes: &mut &[u8]) -> Option<Option<String>> {
    let (&present, rest) = bytes.split_first()?;
    if present == 0 {
        *bytes = rest;
        return Some(None);
    }
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let text = rest.get(4..4usize.checked_add(len)?)?;
    *bytes = &rest[4 + len..];
    Some(Some(String::from_utf8_lossy(text).into_owned()))
}

enum End {
    Replied(Reply),
    Killed(Outcome),
    Ended(Exit),
}

/// A running sandboxed interpreter.
pub(crate) struct Running {
    child: Child,
    /// The interpreter itself, to kill it should the supervisor be gone.
    interpreter: OwnedFd,
    /// The interpreter's CPU-time clock.
    cpu_clock: libc::clockid_t,
    control: Sender,
    status: Records,
    requests: Sender,
    replies: Receiver,
    stdout: Receiver,
    stderr: Receiver,
    seq: u32,
}

/// Starts an interpreter in `workdir`.
pub(crate) async fn start(
    setup: &Setup,
    workdir: &Path,
    session: bool,
) -> Result<(Running, Report), Error> {
    let (control_rx, control_tx) = std::io::pipe()?;
    let (status_rx, status_tx) = std::io::pipe()?;
    let (stdout_rx, stdout_tx) = std::io::pipe()?;
    let (stderr_rx, stderr_tx) = std::io::pipe()?;
    let (requests_rx, requests_tx) = std::io::pipe()?;
    let (replies_rx, replies_tx) = std::io::pipe()?;
    let (setup_rx, setup_tx) = std::io::pipe()?;
    let null = fs::File::open("/dev/null")?;
    let pipes = Pipes {
        control: control_rx.as_raw_fd(),
        status: status_tx.as_raw_fd(),
        stdin: null.as_raw_fd(),
        stdout: stdout_tx.as_raw_fd(),
        stderr: stderr_tx.as_raw_fd(),
        requests: requests_rx.as_raw_fd(),
        replies: replies_tx.as_raw_fd(),
        setup: setup_tx.as_raw_fd(),
    };
    let plan = plan(setup, workdir, session, pipes)?;
    let child = launch::spawn(plan)?;
    let pid = child.id();
    // The child has its copies; the host keeps only its own ends, so that
    // end-of-file means the other side is gone.
    drop((control_rx, status_tx, stdout_tx, stderr_tx, requests_rx));
    drop((replies_tx, setup_tx, null));

    let mut running = Starting {
        child,
        control: Sender::from_owned_fd(OwnedFd::from(control_tx))?,
        status: Records::new(Receiver::from_owned_fd(OwnedFd::from(status_rx))?),
        requests: Sender::from_owned_fd(OwnedFd::from(requests_tx))?,
        replies: Receiver::from_owned_fd(OwnedFd::from(replies_rx))?,
        stdout: Receiver::from_owned_fd(OwnedFd::from(stdout_rx))?,
        stderr: Receiver::from_owned_fd(OwnedFd::from(stderr_rx))?,
    };
    let mut setup_pipe = Receiver::from_owned_fd(OwnedFd::from(setup_rx))?;
    let deadline = Instant::now() + STARTUP_TIMEOUT;

    let landlock = running.expect(launch::tag::LANDLOCK, deadline).await?;
    let namespaces = running.expect(launch::tag::NAMESPACES, deadline).await?;
    let namespaces = if namespaces.a == 1 {
        Ok(())
    } else {
        Err(namespaces.value)
    };
    match (namespaces, setup.mechanisms.namespaces) {
        (Ok(()), _) => {
            let pid = pid.ok_or_else(|| startup("the supervisor exited early"))?;
            map_ids(pid, workdir).map_err(|e| startup(format!("writing the id maps: {e}")))?;
        }
        (Err(errno), Use::Require) => {
            return Err(startup(format!(
                "creating namespaces failed: {}",
                std::io::Error::from_raw_os_error(errno)
            )));
        }
        (Err(_), _) => {}
    }
    running.control.write_all(&[launch::command::GO]).await?;
    let interpreter = running.expect(launch::tag::PID, deadline).await?.value;

    let mut records = Vec::new();
    let read = tokio::time::timeout_at(deadline, setup_pipe.read_to_end(&mut records)).await;
    if read.is_err() {
        return Err(startup("timed out"));
    }
    let mut seccomp = false;
    for chunk in records.chunks(Record::LEN) {
        let Ok(bytes) = <[u8; Record::LEN]>::try_from(chunk) else {
            return Err(startup("malformed setup record"));
        };
        let record = Record::decode(bytes);
        match record.tag {
            launch::tag::READY => seccomp = record.a == 1,
            launch::tag::FAILED => return Err(failed(record)),
            _ => return Err(startup("unexpected setup record")),
        }
    }
    if records.is_empty() {
        // The interpreter died before it reported; the supervisor knows why.
        let detail = match running.status.next().await {
            Some(record) if record.tag == launch::tag::FAILED => return Err(failed(record)),
            Some(record) => format!("the interpreter ended during setup ({record:?})"),
            None => "the supervisor ended during setup".to_owned(),
        };
        return Err(startup(detail));
    }
    let pidfd = rustix::process::Pid::from_raw(interpreter)
        .ok_or_else(|| startup("the supervisor reported no interpreter"))
        .and_then(|pid| {
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
                .map_err(|e| startup(format!("watching the interpreter: {e}")))
        })?;
    let mut cpu_clock: libc::clockid_t = 0;
    // SAFETY: plain library call writing into a live local.
    if unsafe { libc::clock_getcpuclockid(interpreter, &raw mut cpu_clock) } != 0 {
        return Err(startup("the interpreter has no CPU clock"));
    }
    let Starting {
        child,
        control,
        status,
        requests,
        replies,
        stdout,
        stderr,
    } = running;
    let running = Running {
        child,
        interpreter: pidfd,
        cpu_clock,
        control,
        status,
        requests,
        replies,
        stdout,
        stderr,
        seq: 0,
    };
    let report = Report {
        landlock_abi: landlock.a,
        landlock_full: landlock.b == 2,
        landlock_enforced: landlock.b > 0,
        namespaces,
        seccomp,
    };
    debug!(?pid, ?report, "sandboxed interpreter started");
    Ok((running, report))
}

fn plan(setup: &Setup, workdir: &Path, session: bool, pipes: Pipes) -> Result<Plan, Error> {
    let landlock = match setup.mechanisms.landlock {
        Use::Skip => None,
        mode => match policy::landlock_ruleset(&setup.read_only, workdir) {
            Ok(ruleset) => Some(ruleset),
            Err(error) if mode == Use::Try => {
                debug!(%error, "no Landlock ruleset");
                None
            }
            Err(error) => return Err(startup(format!("building the Landlock ruleset: {error}"))),
        },
    };
    let exe = setup.executable.as_os_str().as_bytes().to_vec();
    let cpu = setup.limits.cpu.as_secs_f64().ceil().max(1.0) as u64;
    let argv = CStringArray::new([
        exe.clone(),
        b"-I".to_vec(),
        b"-B".to_vec(),
        b"-u".to_vec(),
        b"-c".to_vec(),
        DRIVER.as_bytes().to_vec(),
        setup.limits.output.to_string().into_bytes(),
        if setup.mechanisms.namespaces == Use::Skip {
            b"0".to_vec()
        } else {
            b"1".to_vec()
        },
    ])
    .map_err(|_| startup("the interpreter path contains a NUL byte"))?;
    let workdir_bytes = workdir.as_os_str().as_bytes();
    let mut path = b"PATH=".to_vec();
    if let Some(bin) = setup.executable.parent() {
        path.extend_from_slice(bin.as_os_str().as_bytes());
        path.push(b':');
    }
    path.extend_from_slice(b"/usr/local/bin:/usr/bin:/bin");
    let envp = CStringArray::new([
        path,
        [b"HOME=", workdir_bytes].concat(),
        [b"TMPDIR=", workdir_bytes].concat(),
        b"LANG=C.UTF-8".to_vec(),
    ])
    .map_err(|_| startup("the working directory path contains a NUL byte"))?;
    let identity = if rustix::process::geteuid().is_root() {
        Identity::Nobody {
            dac_read_search: setup.dac_read_search,
        }
    } else {
        Identity::Unchanged
    };
    let limits = &setup.limits;
    let cpu_hard = if session {
        None
    } else {
        Some(cpu.saturating_add(1))
    };
    Ok(Plan {
        pipes,
        namespaces: setup.mechanisms.namespaces != Use::Skip,
        identity,
        program: std::ffi::CString::new(exe)
            .map_err(|_| startup("the interpreter path contains a NUL byte"))?,
        argv,
        envp,
        workdir: std::ffi::CString::new(workdir_bytes)
            .map_err(|_| startup("the working directory path contains a NUL byte"))?,
        limits: vec![
            rlimit(Resource::As, Some(limits.memory), Some(limits.memory)),
            rlimit(Resource::Cpu, Some(cpu), cpu_hard),
            rlimit(
                Resource::Nproc,
                Some(limits.processes),
                Some(limits.processes),
            ),
            rlimit(
                Resource::Fsize,
                Some(limits.file_size),
                Some(limits.file_size),
            ),
            rlimit(Resource::Nofile, Some(MAX_OPEN_FILES), Some(MAX_OPEN_FILES)),
            rlimit(Resource::Core, Some(0), Some(0)),
        ],
        landlock,
        landlock_required: setup.mechanisms.landlock == Use::Require,
        seccomp: match setup.mechanisms.seccomp {
            Use::Skip => None,
            _ => setup.seccomp.clone(),
        },
        seccomp_required: setup.mechanisms.seccomp == Use::Require,
    })
}

/// A limit no higher than what the host itself may set (`None` = infinity).
fn rlimit(resource: Resource, soft: Option<u64>, hard: Option<u64>) -> (Resource, Rlimit) {
    let host = rustix::process::getrlimit(resource).maximum;
    let cap = |v: Option<u64>| match (v, host) {
        (Some(v), Some(h)) => Some(v.min(h)),
        (None, h) => h,
        (v, None) => v,
    };
    let maximum = cap(hard);
    let current = match (cap(soft), maximum) {
        (Some(s), Some(m)) => Some(s.min(m)),
        (s, _) => s,
    };
    (resource, Rlimit { current, maximum })
}

/// Writes the supervisor's uid and gid maps. As root: host root stays root
/// (so root-owned files keep their owner) and [`SANDBOX_ID`] is the host's
/// `nobody`, which then owns the working directory. Otherwise
/// [`SANDBOX_ID`] is the caller's own uid and gid.
fn map_ids(pid: u32, workdir: &Path) -> std::io::Result<()> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    if rustix::process::geteuid().is_root() {
        let map = format!("0 0 1\n{SANDBOX_ID} {HOST_NOBODY} 1\n");
        fs::write(proc.join("uid_map"), &map)?;
        fs::write(proc.join("gid_map"), &map)?;
        std::os::unix::fs::chown(workdir, Some(HOST_NOBODY), Some(HOST_NOBODY))
    } else {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        fs::write(proc.join("setgroups"), "deny")?;
        fs::write(proc.join("uid_map"), format!("{SANDBOX_ID} {uid} 1\n"))?;
        fs::write(proc.join("gid_map"), format!("{SANDBOX_ID} {gid} 1\n"))
    }
}

fn startup(detail: impl Into<String>) -> Error {
    Error::Startup {
        detail: detail.into(),
    }
}

fn failed(record: Record) -> Error {
    startup(format!(
        "{} failed: {}",
        launch::Stage::describe(record.a),
        std::io::Error::from_raw_os_error(record.value)
    ))
}

/// A supervisor whose interpreter is being set up.
struct Starting {
    child: Child,
    control: Sender,
    status: Records,
    requests: Sender,
    replies: Receiver,
    stdout: Receiver,
    stderr: Receiver,
}

impl Starting {
    async fn expect(&mut self, tag: u8, deadline: Instant) -> Result<Record, Error> {
        match tokio::time::timeout_at(deadline, self.status.next()).await {
            Err(_) => Err(startup("timed out")),
            Ok(None) => Err(startup("the supervisor ended during setup")),
            Ok(Some(record)) if record.tag == tag => Ok(record),
            Ok(Some(record)) if record.tag == launch::tag::FAILED => Err(failed(record)),
            Ok(Some(record)) => Err(startup(format!("unexpected record {record:?}"))),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Dropping `child` kills the supervisor, whose death kills the
        // interpreter; this covers the moment before the interpreter has
        // asked for that. Fails harmlessly when it is already gone.
        let _ = rustix::process::pidfd_send_signal(&self.interpreter, Signal::KILL);
    }
}

/// The instant `limit` from now, or a century from now if that overflows.
fn deadline_after(limit: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(limit)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// CPU time used so far by the process behind `clock`.
fn cpu_time(clock: libc::clockid_t) -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: plain library call writing into a live local.
    if unsafe { libc::clock_gettime(clock, &raw mut now) } != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(now.tv_sec).ok()?,
        u32::try_from(now.tv_nsec).ok()?,
    ))
}

impl Running {
    /// Runs `code` and collects what it did. When the interpreter replies,
    /// every process it left running is killed before this returns.
    pub(crate) async fn call(&mut self, code: &str, limits: &Limits) -> Result<Call, Error> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let len = u32::try_from(code.len()).map_err(|_| Error::CodeTooLarge {
            len: code.len(),
            max: u32::MAX as usize,
        })?;
        let mut frame = Vec::with_capacity(8 + code.len());
        frame.extend_from_slice(&seq.to_le_bytes());
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(code.as_bytes());

        let mut out = Streams::new(limits.output);
        let mut replies = Frames::default();
        let mut reply_buf = vec![0u8; 16 << 10];
        let clock = self.cpu_clock;
        let cpu_start = cpu_time(clock);
        let mut cpu_check = tokio::time::interval(CPU_POLL);
        let end = {
            let wall = sleep_until(deadline_after(limits.wall));
            tokio::pin!(wall);
            let Running {
                status,
                requests,
                replies: reply_pipe,
                stdout,
                stderr,
                ..
            } = self;
            let write = requests.write_all(&frame);
            tokio::pin!(write);
            let mut written = false;
            let mut replies_open = true;

            loop {
                if out.flooded() {
                    break End::Killed(Outcome::OutputLimit);
                }
                tokio::select! {
                    result = &mut write, if !written => {
                        // A failed write means the interpreter is gone; its end
                        // is reported on the status pipe.
                        written = true;
                        if let Err(error) = result {
                            debug!(%error, "request not delivered");
                        }
                    }
                    () = out.read(stdout, stderr) => {}
                    result = reply_pipe.read(&mut reply_buf), if replies_open => match result {
                        Ok(0) | Err(_) => replies_open = false,
                        Ok(n) => match replies.push(&reply_buf[..n], seq) {
                            Ok(Some(reply)) => break End::Replied(reply),
                            Ok(None) => {}
                            Err(()) => break End::Killed(Outcome::ProtocolViolation),
                        },
                    },
                    record = status.next() => match record {
                        Some(record) if record.tag == launch::tag::ENDED => break End::Ended(exit_of(record)),
                        Some(_) => {}
                        None => break End::Ended(Exit::Unknown),
                    },
                    () = &mut wall => break End::Killed(Outcome::Timeout { after: limits.wall }),
                    _ = cpu_check.tick() => {
                        let used = cpu_start.zip(cpu_time(clock)).map(|(start, now)| now.saturating_sub(start));
                        if used.is_some_and(|used| used > limits.cpu) {
                            break End::Killed(Outcome::CpuTimeLimit);
                        }
                    }
                }
            }
        };

        let (outcome, value, alive) = match end {
            End::Replied(reply) => match self.clean(&mut out).await {
                Ok(()) => {
                    let (outcome, value) = reply_outcome(reply);
                    (outcome, value, true)
                }
                Err(exit) => (ended_outcome(exit, &out), None, false),
            },
            End::Killed(outcome) => {
                self.stop(&mut out).await;
                (outcome, None, false)
            }
            End::Ended(exit) => {
                self.reap(&mut out).await;
                (ended_outcome(exit, &out), None, false)
            }
        };
        let (stdout, stderr) = out.finish();
        Ok(Call {
            outcome,
            value,
            stdout,
            stderr,
            alive,
        })
    }

    /// Has the supervisor kill every process but the interpreter, then takes
    /// the output they left. `Err` when the interpreter ended meanwhile.
    async fn clean(&mut self, out: &mut Streams) -> Result<(), Exit> {
        if self
            .control
            .write_all(&[launch::command::CLEAN])
            .await
            .is_err()
        {
            self.reap(out).await;
            return Err(Exit::Unknown);
        }
        let deadline = sleep_until(Instant::now() + STOP_TIMEOUT);
        tokio::pin!(deadline);
        let Running {
            status,
            stdout,
            stderr,
            ..
        } = self;
        let result = loop {
            tokio::select! {
                record = status.next() => match record {
                    Some(record) if record.tag == launch::tag::CLEANED => break Ok(()),
                    Some(record) if record.tag == launch::tag::ENDED => break Err(exit_of(record)),
                    Some(_) => {}
                    None => break Err(Exit::Unknown),
                },
                () = out.read(stdout, stderr) => {}
                () = &mut deadline => break Err(Exit::Unknown),
            }
        };
        match result {
            Ok(()) => {
                // Every writer but the idle interpreter is dead, and the
                // interpreter flushed before replying: what is left in the
                // pipes is all there is.
                out.drain_now(&self.stdout, &self.stderr);
                Ok(())
            }
            Err(exit) => {
                self.stop(out).await;
                Err(exit)
            }
        }
    }

    /// Waits for the supervisor to report the interpreter's end (killing it
    /// if that takes too long), then reads the remaining output.
    async fn reap(&mut self, out: &mut Streams) {
        let deadline = sleep_until(Instant::now() + STOP_TIMEOUT);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                record = self.status.next() => match record {
                    Some(record) if record.tag == launch::tag::ENDED => break,
                    Some(_) => {}
                    None => break,
                },
                () = &mut deadline => {
                    let _ = self.child.start_kill();
                    break;
                }
            }
        }
        out.drain_to_end(&mut self.stdout, &mut self.stderr).await;
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
        }
    }

    /// Kills the interpreter and everything it started, and collects the
    /// output written until then.
    async fn stop(&mut self, out: &mut Streams) {
        // Fails only when the supervisor is already gone.
        let _ = self.control.try_write(&[launch::command::QUIT]);
        self.reap(out).await;
    }

    /// Stops the interpreter, discarding any output.
    pub(crate) async fn shutdown(mut self) {
        let mut out = Streams::new(0);
        self.stop(&mut out).await;
    }
}

/// Reads the status pipe record by record.
struct Records {
    pipe: Receiver,
    buf: Vec<u8>,
}

impl Records {
    fn new(pipe: Receiver) -> Self {
        Records {
            pipe,
            buf: Vec::with_capacity(Record::LEN),
        }
    }

    /// The next record, or `None` at end of file. Cancel-safe: bytes read
    /// are kept in `buf` until a whole record is there.
    async fn next(&mut self) -> Option<Record> {
        loop {
            if self.buf.len() >= Record::LEN {
                let mut bytes = [0u8; Record::LEN];
                bytes.copy_from_slice(&self.buf[..Record::LEN]);
                self.buf.drain(..Record::LEN);
                return Some(Record::decode(bytes));
            }
            let mut chunk = [0u8; Record::LEN];
            let need = Record::LEN - self.buf.len();
            match self.pipe.read(&mut chunk[..need]).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// Reassembles reply frames: `[seq: u32][len: u32][JSON]`.
#[derive(Default)]
struct Frames {
    buf: Vec<u8>,
}

impl Frames {
    /// Adds bytes; returns the reply to `seq` once complete. Replies to other
    /// requests are skipped. `Err` on a frame no driver would write.
    fn push(&mut self, bytes: &[u8], seq: u32) -> Result<Option<Reply>, ()> {
        self.buf.extend_from_slice(bytes);
        loop {
            let Some(header) = self.buf.get(..8) else {
                return Ok(None);
            };
            let frame_seq = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
            if len > MAX_REPLY {
                return Err(());
            }
            let Some(body) = self.buf.get(8..8 + len) else {
                return Ok(None);
            };
            let reply = Reply::parse(body).ok_or(())?;
            self.buf.drain(..8 + len);
            if frame_seq == seq {
                return Ok(Some(reply));
            }
        }
    }
}

/// The interpreter's stdout and stderr while a call runs.
struct Streams {
    stdout: Capture,
    stderr: Capture,
    stdout_open: bool,
    stderr_open: bool,
    buf: Vec<u8>,
}

impl Streams {
    fn new(limit: usize) -> Self {
        Streams {
            stdout: Capture::new(limit),
            stderr: Capture::new(limit),
            stdout_open: true,
            stderr_open: true,
            buf: vec![0u8; 64 << 10],
        }
    }

    fn flooded(&self) -> bool {
        self.stdout.flooded() || self.stderr.flooded()
    }

    /// Reads one chunk from whichever stream has data; never completes when
    /// both are closed. Cancel-safe.
    async fn read(&mut self, stdout: &mut Receiver, stderr: &mut Receiver) {
        let Streams {
            stdout: out,
            stderr: err,
            stdout_open,
            stderr_open,
            buf,
        } = self;
        let (first, second) = buf.split_at_mut(32 << 10);
        tokio::select! {
            result = stdout.read(first), if *stdout_open => match result {
                Ok(0) | Err(_) => *stdout_open = false,
                Ok(n) => out.push(&first[..n]),
            },
            result = stderr.read(second), if *stderr_open => match result {
                Ok(0) | Err(_) => *stderr_open = false,
                Ok(n) => err.push(&second[..n]),
            },
            else => std::future::pending().await,
        }
    }

    /// Reads whatever is in the pipes right now, without waiting.
    fn drain_now(&mut self, stdout: &Receiver, stderr: &Receiver) {
        for (pipe, capture) in [(stdout, &mut self.stdout), (stderr, &mut self.stderr)] {
            while let Ok(n) = rustix::io::read(pipe.as_fd(), &mut self.buf[..]) {
                if n == 0 {
                    break;
                }
                capture.push(&self.buf[..n]);
            }
        }
    }

    /// Reads until both pipes are closed, for at most [`DRAIN_TIMEOUT`].
    async fn drain_to_end(&mut self, stdout: &mut Receiver, stderr: &mut Receiver) {
        let deadline = sleep_until(Instant::now() + DRAIN_TIMEOUT);
        tokio::pin!(deadline);
        while self.stdout_open || self.stderr_open {
            tokio::select! {
                () = self.read(stdout, stderr) => {}
                () = &mut deadline => break,
            }
        }
    }

    fn finish(self) -> (String, String) {
        (self.stdout.finish(), self.stderr.finish())
    }
}

fn exit_of(record: Record) -> Exit {
    match record.a {
        0 => Exit::Code(record.value),
        1 => Exit::Signal(record.value),
        _ => Exit::Unknown,
    }
}

fn reply_outcome(reply: Reply) -> (Outcome, Option<String>) {
    let outcome = match reply.kind {
        0 => Outcome::Ok,
        2 => Outcome::MemoryLimit,
        3 => Outcome::Exit { code: reply.code },
        _ => Outcome::Exception {
            name: reply.error.unwrap_or_default(),
        },
    };
    (outcome, reply.value)
}

fn ended_outcome(exit: Exit, out: &Streams) -> Outcome {
    match exit {
        Exit::Signal(libc::SIGXCPU) => Outcome::CpuTimeLimit,
        Exit::Signal(_) if out.stderr.contains(b"MemoryError") => Outcome::MemoryLimit,
        Exit::Signal(signal) => Outcome::Signal { signal },
        Exit::Code(code) => Outcome::Exit { code },
        // The supervisor vanished: the interpreter got its death signal.
        Exit::Unknown => Outcome::Signal {
            signal: libc::SIGKILL,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut bytes = seq.to_le_bytes().to_vec();
        bytes.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    fn payload(kind: u8, code: i32, error: Option<&str>, value: Option<&str>) -> Vec<u8> {
        let mut bytes = vec![kind];
        bytes.extend_from_slice(&code.to_le_bytes());
        for field in [error, value] {
            match field {
                None => bytes.push(0),
                Some(text) => {
                    bytes.push(1);
                    bytes.extend_from_slice(&u32::try_from(text.len()).unwrap().to_le_bytes());
                    bytes.extend_from_slice(text.as_bytes());
                }
            }
        }
        bytes
    }

    #[test]
    fn replies_are_reassembled_and_stale_ones_skipped() {
        let mut frames = Frames::default();
        let mut bytes = frame(1, &payload(1, 0, Some("KeyError"), None));
        bytes.extend(frame(2, &payload(0, 0, None, Some("42"))));
        let (head, tail) = bytes.split_at(13);
        assert!(frames.push(head, 2).unwrap().is_none());
        let reply = frames.push(tail, 2).unwrap().unwrap();
        assert_eq!((reply.kind, reply.value.as_deref()), (0, Some("42")));
        let (outcome, _) = reply_outcome(Reply::parse(&payload(3, 7, None, None)).unwrap());
        assert_eq!(outcome, Outcome::Exit { code: 7 });
    }

    #[test]
    fn malformed_replies_are_rejected_without_panicking() {
        assert!(Reply::parse(&[]).is_none());
        assert!(Reply::parse(&[0, 1, 2]).is_none());
        let mut truncated = payload(0, 0, None, Some("abc"));
        truncated.pop();
        assert!(Reply::parse(&truncated).is_none());
        let mut long = payload(0, 0, None, None);
        long.push(9);
        assert!(Reply::parse(&long).is_none());
        assert!(Frames::default().push(&frame(1, &[0xff; 3]), 1).is_err());
        let mut huge = 1u32.to_le_bytes().to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(Frames::default().push(&huge, 1).is_err());

        // Arbitrary bytes never panic.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..40)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            let _ = Reply::parse(&bytes);
            let _ = Frames::default().push(&bytes, 0);
        }
    }

    #[test]
    fn status_records_round_trip() {
        let record = Record {
            tag: launch::tag::ENDED,
            a: 1,
            b: 0,
            value: -9,
        };
        assert_eq!(Record::decode(record.encode()), record);
        assert_eq!(exit_of(record), Exit::Signal(-9));
    }
}
