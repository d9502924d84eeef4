//! The sandboxed process tree, built between `fork` and `exec`.
//!
//! [`spawn`] forks a supervisor from the host process. The supervisor never
//! executes another program. It restricts itself with Landlock (so everything
//! it forks inherits the ruleset), keeps only its pipes, and enters fresh user,
//! pid, network, IPC and UTS namespaces; its own pid stays in the host's
//! namespace, its children land in the new one. Once the host has written its
//! uid and gid maps, it forks the interpreter, which becomes pid 1 of the new
//! pid namespace, drops its identity and capabilities, sets its rlimits,
//! installs the seccomp filter and executes Python.
//!
//! The supervisor then serves the host over two pipes: on request it kills
//! every process in the namespace except the interpreter (a process forked
//! into the namespace calls `kill(-1, SIGKILL)`, which spares only the
//! namespace's pid 1 and the caller), and it reports how the interpreter
//! ended. When the interpreter dies, the kernel kills everything left in its
//! pid namespace. When the supervisor dies, the interpreter gets `SIGKILL`
//! (parent-death signal), and when the host dies, the supervisor sees its
//! control pipe close and kills the interpreter.
//!
//! Code between `fork` and `exec` only makes system calls: no allocation, no
//! locks; everything it needs is prepared by the host before the fork.

use std::ffi::{CString, c_char, c_int};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::process::Stdio;
use std::sync::Arc;

use landlock::{ABI, LandlockStatus, RulesetCreated, RulesetStatus};
use rustix::event::{PollFd, PollFlags, poll};
use rustix::io::Errno;
use rustix::process::{
    Pid, PidfdFlags, Resource, Rlimit, Signal, WaitId, WaitIdOptions, WaitIdStatus, WaitOptions,
};
use rustix::thread::{CapabilitySet, CapabilitySets, UnshareFlags};
use seccompiler::BpfProgram;

/// The uid and gid the code runs as inside its user namespace.
pub(crate) const SANDBOX_ID: u32 = 1000;
/// The host uid and gid the sandbox maps to when the host runs as root.
pub(crate) const HOST_NOBODY: u32 = 65534;
/// The host name inside the sandbox's UTS namespace.
const HOSTNAME: &[u8] = b"sandbox";
/// Where the interpreter finds the setup pipe until `exec` closes it.
const SETUP_FD: c_int = 5;
/// Temporary descriptors are moved at or above this number while the
/// interpreter's descriptors are put in place.
const SCRATCH_FD: c_int = 64;

/// A fixed-size message from the supervisor or the interpreter to the host:
/// `[tag, a, b, 0, value as i32 little-endian]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// What the record says, one of the [`tag`] constants.
    pub tag: u8,
    /// First small field.
    pub a: u8,
    /// Second small field.
    pub b: u8,
    /// A number: an errno, an exit code or a signal.
    pub value: i32,
}

impl Record {
    /// Encoded size in bytes.
    pub(crate) const LEN: usize = 8;

    /// The record's bytes.
    pub(crate) fn encode(self) -> [u8; Self::LEN] {
        let v = self.value.to_le_bytes();
        [self.tag, self.a, self.b, 0, v[0], v[1], v[2], v[3]]
    }

    /// Decodes a record written by [`Record::encode`].
    pub(crate) fn decode(bytes: [u8; Self::LEN]) -> Self {
        Record {
            tag: bytes[0],
            a: bytes[1],
            b: bytes[2],
            value: i32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        }
    }
}

/// Record tags.
pub(crate) mod tag {
    /// Supervisor: Landlock applied; `a` = effective ABI (0: none), `b` = 2
    /// fully enforced, 1 partially, 0 not.
    pub(crate) const LANDLOCK: u8 = b'L';
    /// Supervisor: namespaces created when `a` = 1, else `value` = errno.
    pub(crate) const NAMESPACES: u8 = b'U';
    /// Supervisor: the interpreter's pid in the host's pid namespace.
    pub(crate) const PID: u8 = b'P';
    /// Supervisor: every process but the interpreter has been killed.
    pub(crate) const CLEANED: u8 = b'K';
    /// Supervisor: the interpreter ended; `a` = 0 exited with code `value`,
    /// 1 killed by signal `value`, 2 unknown.
    pub(crate) const ENDED: u8 = b'X';
    /// Supervisor or interpreter: setup step `a` (a [`Stage`](super::Stage))
    /// failed with errno `value`.
    pub(crate) const FAILED: u8 = b'E';
    /// Interpreter: about to execute Python; `a` = 1 when the seccomp filter
    /// is installed.
    pub(crate) const READY: u8 = b'R';
}

/// Bytes the host sends the supervisor on the control pipe.
pub(crate) mod command {
    /// The uid and gid maps are written: start the interpreter.
    pub(crate) const GO: u8 = b'G';
    /// Kill every process except the interpreter.
    pub(crate) const CLEAN: u8 = b'K';
    /// Kill the interpreter and everything it started, then exit.
    pub(crate) const QUIT: u8 = b'Q';
}

/// A setup step, reported when it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Stage {
    Landlock = 1,
    Descriptors,
    Fork,
    Supervise,
    Session,
    Hostname,
    Identity,
    Workdir,
    Limits,
    Seccomp,
    Exec,
}

impl Stage {
    /// Names a step reported as a number.
    pub(crate) fn describe(code: u8) -> &'static str {
        const STAGES: [Stage; 11] = [
            Stage::Landlock,
            Stage::Descriptors,
            Stage::Fork,
            Stage::Supervise,
            Stage::Session,
            Stage::Hostname,
            Stage::Identity,
            Stage::Workdir,
            Stage::Limits,
            Stage::Seccomp,
            Stage::Exec,
        ];
        match STAGES.iter().find(|s| **s as u8 == code) {
            Some(Stage::Landlock) => "applying Landlock",
            Some(Stage::Descriptors) => "arranging file descriptors",
            Some(Stage::Fork) => "forking the interpreter",
            Some(Stage::Supervise) => "watching the interpreter",
            Some(Stage::Session) => "starting a session",
            Some(Stage::Hostname) => "setting the host name",
            Some(Stage::Identity) => "dropping identity and capabilities",
            Some(Stage::Workdir) => "entering the working directory",
            Some(Stage::Limits) => "setting resource limits",
            Some(Stage::Seccomp) => "installing the seccomp filter",
            Some(Stage::Exec) => "executing the interpreter",
            None => "an unknown step",
        }
    }
}

/// Descriptor numbers, valid in the host and, after `fork`, in the child.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pipes {
    /// Supervisor reads host commands.
    pub control: RawFd,
    /// Supervisor writes records.
    pub status: RawFd,
    /// The interpreter's stdin (`/dev/null`).
    pub stdin: RawFd,
    /// The interpreter's stdout.
    pub stdout: RawFd,
    /// The interpreter's stderr.
    pub stderr: RawFd,
    /// The interpreter reads requests (fd 3).
    pub requests: RawFd,
    /// The interpreter writes replies (fd 4).
    pub replies: RawFd,
    /// The interpreter writes its setup record; closed by `exec`.
    pub setup: RawFd,
}

/// Who the interpreter runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Identity {
    /// The host is root: inside its namespaces the interpreter switches to
    /// [`SANDBOX_ID`] (the host's `nobody`). With `dac_read_search` it keeps
    /// that one capability, effective only on files owned by host root (the
    /// only other mapped id), so that an interpreter installed under a
    /// directory closed to others (such as `/root`) can still be read; the
    /// Landlock ruleset decides what is readable at all.
    Nobody { dac_read_search: bool },
    /// Keep the uid; drop every capability.
    Unchanged,
}

/// Null-terminated array of C strings, for `execve`.
pub(crate) struct CStringArray {
    _strings: Vec<CString>,
    pointers: Vec<*const c_char>,
}

// SAFETY: `pointers` points into the heap buffers of `_strings`, which are
// owned by the same value, never modified and never moved (moving a `CString`
// does not move its buffer). The array is only read.
unsafe impl Send for CStringArray {}
// SAFETY: as above; shared access is read-only.
unsafe impl Sync for CStringArray {}

impl CStringArray {
    /// Builds the array; fails on an interior NUL byte.
    pub(crate) fn new<I, S>(items: I) -> Result<Self, std::ffi::NulError>
    where
        I: IntoIterator<Item = S>,
        S: Into<Vec<u8>>,
    {
        let strings = items
            .into_iter()
            .map(CString::new)
            .collect::<Result<Vec<_>, _>>()?;
        let mut pointers: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        pointers.push(std::ptr::null());
        Ok(CStringArray {
            _strings: strings,
            pointers,
        })
    }

    fn as_ptr(&self) -> *const *const c_char {
        self.pointers.as_ptr()
    }
}

/// Everything the child side needs, prepared by the host before the fork.
pub(crate) struct Plan {
    /// The pipes.
    pub pipes: Pipes,
    /// Whether to try creating namespaces.
    pub namespaces: bool,
    /// Who the interpreter runs as when the namespaces exist.
    pub identity: Identity,
    /// The interpreter executable.
    pub program: CString,
    /// Its arguments, `argv[0]` first.
    pub argv: CStringArray,
    /// Its whole environment.
    pub envp: CStringArray,
    /// The working directory.
    pub workdir: CString,
    /// Resource limits for the interpreter.
    pub limits: Vec<(Resource, Rlimit)>,
    /// The Landlock ruleset, applied by the supervisor to itself.
    pub landlock: Option<RulesetCreated>,
    /// Fail unless Landlock is enforced.
    pub landlock_required: bool,
    /// Seccomp programs, installed in order.
    pub seccomp: Option<Arc<Vec<BpfProgram>>>,
    /// Fail unless the seccomp programs are installed.
    pub seccomp_required: bool,
}

/// Forks the supervisor. The returned child is the supervisor; it is killed
/// when the handle is dropped.
pub(crate) fn spawn(mut plan: Plan) -> io::Result<tokio::process::Child> {
    // The program is never executed: the supervisor ends inside the closure.
    let mut command = tokio::process::Command::new("/proc/self/exe");
    command
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: the closure runs in the child between fork and exec. It only
    // makes system calls on data prepared before the fork (no allocation, no
    // locks, no access to state other threads of the host may have held), and
    // it never returns: it ends the child with `_exit`.
    unsafe {
        command.pre_exec(move || supervisor(&mut plan));
    }
    command.spawn()
}

fn supervisor(plan: &mut Plan) -> ! {
    let status = plan.pipes.status;
    reset_signal_handlers();

    let (abi, enforcement) = match plan.landlock.take() {
        Some(ruleset) => match ruleset.restrict_self() {
            Ok(done) => (abi_number(done.landlock), enforcement(done.ruleset)),
            Err(_) if plan.landlock_required => fail(status, Stage::Landlock, last_errno()),
            Err(_) => (0, 0),
        },
        None => (0, 0),
    };
    if plan.landlock_required && enforcement == 0 {
        fail(status, Stage::Landlock, libc::ENOSYS);
    }

    let p = plan.pipes;
    let mut keep = [
        p.control, p.status, p.stdin, p.stdout, p.stderr, p.requests, p.replies, p.setup,
    ];
    if let Err(errno) = close_all_except(&mut keep) {
        fail(status, Stage::Descriptors, errno);
    }
    send(
        status,
        Record {
            tag: tag::LANDLOCK,
            a: abi,
            b: enforcement,
            value: 0,
        },
    );

    let namespaces = if plan.namespaces {
        let flags = UnshareFlags::NEWUSER
            | UnshareFlags::NEWPID
            | UnshareFlags::NEWNET
            | UnshareFlags::NEWIPC
            | UnshareFlags::NEWUTS;
        // SAFETY: the process is single-threaded and the flags do not include
        // `FILES`, so no descriptor table is split between threads.
        unsafe { rustix::thread::unshare_unsafe(flags) }
    } else {
        Err(Errno::NOSYS)
    };
    send(
        status,
        Record {
            tag: tag::NAMESPACES,
            a: u8::from(namespaces.is_ok()),
            b: 0,
            value: namespaces.err().map_or(0, |e| e.raw_os_error()),
        },
    );
    if read_command(p.control) != Some(command::GO) {
        exit(0);
    }
    let namespaces = namespaces.is_ok();

    // SAFETY: the supervisor is single-threaded; the child only makes system
    // calls before it executes the interpreter or exits.
    let child = unsafe { libc::fork() };
    if child == 0 {
        interpreter(plan, namespaces);
    }
    if child < 0 {
        fail(status, Stage::Fork, last_errno());
    }
    send(
        status,
        Record {
            tag: tag::PID,
            a: 0,
            b: 0,
            value: child,
        },
    );
    let mut keep = [p.control, p.status];
    if let Err(errno) = close_all_except(&mut keep) {
        kill_tree(child, namespaces);
        fail(status, Stage::Descriptors, errno);
    }
    supervise(p.control, p.status, child, namespaces)
}

fn supervise(control: RawFd, status: RawFd, child: c_int, namespaces: bool) -> ! {
    let pidfd = match Pid::from_raw(child)
        .map(|pid| rustix::process::pidfd_open(pid, PidfdFlags::empty()))
    {
        Some(Ok(fd)) => fd,
        Some(Err(errno)) => {
            kill_tree(child, namespaces);
            fail(status, Stage::Supervise, errno.raw_os_error());
        }
        None => fail(status, Stage::Supervise, libc::ESRCH),
    };
    // SAFETY: `control` stays open for the rest of this process's life.
    let control_fd = unsafe { BorrowedFd::borrow_raw(control) };
    loop {
        let mut fds = [
            PollFd::new(&control_fd, PollFlags::IN),
            PollFd::new(&pidfd, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(_) => {
                kill_tree(child, namespaces);
                finish(status, &pidfd, child, namespaces);
            }
        }
        let ended = !fds[1].revents().is_empty();
        let commanded = !fds[0].revents().is_empty();
        if ended {
            finish(status, &pidfd, child, namespaces);
        }
        if commanded {
            match read_command(control) {
                Some(command::CLEAN) => {
                    if namespaces {
                        kill_all_but_pid1();
                    }
                    send(
                        status,
                        Record {
                            tag: tag::CLEANED,
                            a: 0,
                            b: 0,
                            value: 0,
                        },
                    );
                }
                _ => {
                    kill_tree(child, namespaces);
                    finish(status, &pidfd, child, namespaces);
                }
            }
        }
    }
}

/// Reaps the interpreter, reports how it ended, and exits. Without
/// namespaces, whatever is left of its process group is killed first.
fn finish(status: RawFd, pidfd: &OwnedFd, child: c_int, namespaces: bool) -> ! {
    if !namespaces {
        // SAFETY: plain system call; the group id is the interpreter's pid,
        // still reserved because the interpreter has not been reaped yet.
        unsafe { libc::kill(-child, libc::SIGKILL) };
    }
    let record = loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED) {
            Ok(Some(state)) => break ended_record(&state),
            Ok(None) | Err(Errno::INTR) => continue,
            Err(_) => {
                break Record {
                    tag: tag::ENDED,
                    a: 2,
                    b: 0,
                    value: 0,
                };
            }
        }
    };
    send(status, record);
    exit(0)
}

fn ended_record(state: &WaitIdStatus) -> Record {
    let (a, value) = if let Some(code) = state.exit_status() {
        (0, code)
    } else if let Some(signal) = state.terminating_signal() {
        (1, signal)
    } else {
        (2, 0)
    };
    Record {
        tag: tag::ENDED,
        a,
        b: 0,
        value,
    }
}

/// Kills the interpreter: with namespaces, the kernel then kills the rest of
/// its pid namespace; without, its process group is killed.
fn kill_tree(child: c_int, namespaces: bool) {
    let target = if namespaces { child } else { -child };
    // SAFETY: plain system call on a process this process created.
    unsafe { libc::kill(target, libc::SIGKILL) };
}

/// Forks a process into the sandbox's pid namespace that kills every process
/// there except pid 1 (the interpreter) and itself, and waits for it.
fn kill_all_but_pid1() {
    // SAFETY: the supervisor is single-threaded; the child only makes system
    // calls and exits.
    let killer = unsafe { libc::fork() };
    if killer == 0 {
        // SAFETY: plain system calls. Two passes: a process that was forking
        // during the first one cannot complete the fork (its parent has a
        // fatal signal pending), but a second pass costs nothing.
        unsafe {
            libc::kill(-1, libc::SIGKILL);
            libc::kill(-1, libc::SIGKILL);
            libc::_exit(0);
        }
    }
    if let Some(pid) = Pid::from_raw(killer) {
        while let Err(Errno::INTR) = rustix::process::waitpid(Some(pid), WaitOptions::empty()) {}
    }
}

fn interpreter(plan: &Plan, namespaces: bool) -> ! {
    let setup = plan.pipes.setup;
    check(setup, Stage::Session, rustix::process::setsid().map(drop));
    if namespaces {
        // SAFETY: the pointer and length describe a live static byte string.
        if unsafe { libc::sethostname(HOSTNAME.as_ptr().cast(), HOSTNAME.len()) } != 0 {
            fail(setup, Stage::Hostname, last_errno());
        }
    }
    if let Err(errno) = arrange_descriptors(&plan.pipes) {
        fail(setup, Stage::Descriptors, errno);
    }
    let setup = SETUP_FD;
    check(
        setup,
        Stage::Identity,
        drop_identity(plan.identity, namespaces),
    );
    // SAFETY: the pointer is a live NUL-terminated string.
    if unsafe { libc::chdir(plan.workdir.as_ptr()) } != 0 {
        fail(setup, Stage::Workdir, last_errno());
    }
    for (resource, limit) in &plan.limits {
        check(
            setup,
            Stage::Limits,
            rustix::process::setrlimit(*resource, *limit),
        );
    }
    let mut filtered = false;
    if let Some(programs) = &plan.seccomp {
        filtered = true;
        for program in programs.iter() {
            if seccompiler::apply_filter(program).is_err() {
                if plan.seccomp_required {
                    fail(setup, Stage::Seccomp, last_errno());
                }
                filtered = false;
                break;
            }
        }
    }
    // Set last: changing credentials clears it. Should the supervisor die
    // before this, the host kills the interpreter through its pidfd.
    check(
        setup,
        Stage::Session,
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL)),
    );
    send(
        setup,
        Record {
            tag: tag::READY,
            a: u8::from(filtered),
            b: 0,
            value: 0,
        },
    );
    // SAFETY: all three pointers come from live `CString`/`CStringArray`
    // values owned by `plan`, and both arrays are null-terminated.
    unsafe {
        libc::execve(
            plan.program.as_ptr(),
            plan.argv.as_ptr(),
            plan.envp.as_ptr(),
        )
    };
    fail(setup, Stage::Exec, last_errno())
}

/// Puts the interpreter's descriptors at 0-5 and closes every other one.
fn arrange_descriptors(p: &Pipes) -> Result<(), c_int> {
    let sources = [p.stdin, p.stdout, p.stderr, p.requests, p.replies, p.setup];
    let mut moved = [0; 6];
    for (slot, &fd) in moved.iter_mut().zip(&sources) {
        // SAFETY: plain system call on a descriptor number.
        let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, SCRATCH_FD) };
        if copy < 0 {
            return Err(last_errno());
        }
        *slot = copy;
    }
    for (target, &fd) in (0..).zip(&moved) {
        // SAFETY: plain system call; `fd` is open, `target` is overwritten.
        if unsafe { libc::dup2(fd, target) } < 0 {
            return Err(last_errno());
        }
    }
    // SAFETY: plain system call on a descriptor just created.
    if unsafe { libc::fcntl(SETUP_FD, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(last_errno());
    }
    close_all_except(&mut [0, 1, 2, 3, 4, SETUP_FD])
}

fn drop_identity(identity: Identity, namespaces: bool) -> Result<(), Errno> {
    use rustix::process::{Gid, Uid};
    use rustix::thread as t;
    match identity {
        Identity::Nobody { dac_read_search } if namespaces => {
            let keep = if dac_read_search {
                CapabilitySet::DAC_READ_SEARCH
            } else {
                CapabilitySet::empty()
            };
            drop_bounding_set(keep)?;
            t::set_thread_groups(&[])?;
            let gid = Gid::from_raw(SANDBOX_ID);
            t::set_thread_res_gid(gid, gid, gid)?;
            t::set_keep_capabilities(dac_read_search)?;
            let uid = Uid::from_raw(SANDBOX_ID);
            t::set_thread_res_uid(uid, uid, uid)?;
            t::set_capabilities(
                None,
                CapabilitySets {
                    effective: keep,
                    permitted: keep,
                    inheritable: keep,
                },
            )?;
            if dac_read_search {
                t::configure_capability_in_ambient_set(CapabilitySet::DAC_READ_SEARCH, true)?;
                t::set_keep_capabilities(false)?;
            }
            Ok(())
        }
        _ => {
            // Without `CAP_SETPCAP` the bounding set cannot shrink; then there
            // is nothing in it to fear either, since no capability is held.
            match drop_bounding_set(CapabilitySet::empty()) {
                Ok(()) | Err(Errno::PERM) => {}
                Err(errno) => return Err(errno),
            }
            t::set_capabilities(
                None,
                CapabilitySets {
                    effective: CapabilitySet::empty(),
                    permitted: CapabilitySet::empty(),
                    inheritable: CapabilitySet::empty(),
                },
            )?;
            t::clear_ambient_capability_set()
        }
    }
}

fn drop_bounding_set(keep: CapabilitySet) -> Result<(), Errno> {
    for bit in 0..64 {
        let capability = CapabilitySet::from_bits_retain(1 << bit);
        if keep.contains(capability) {
            continue;
        }
        match rustix::thread::remove_capability_from_bounding_set(capability) {
            Ok(()) => {}
            // Past the last capability this kernel knows.
            Err(Errno::INVAL) => return Ok(()),
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}

/// Closes every descriptor not in `keep` (which gets sorted).
fn close_all_except(keep: &mut [RawFd]) -> Result<(), c_int> {
    keep.sort_unstable();
    let mut first: u32 = 0;
    for &fd in keep.iter() {
        let Ok(fd) = u32::try_from(fd) else { continue };
        if fd > first {
            close_range(first, fd - 1)?;
        }
        first = first.max(fd.saturating_add(1));
    }
    close_range(first, u32::MAX)
}

fn close_range(first: u32, last: u32) -> Result<(), c_int> {
    // SAFETY: plain system call; only descriptors nobody else uses in this
    // single-threaded child are closed.
    if unsafe { libc::close_range(first, last, 0) } == 0 {
        return Ok(());
    }
    let errno = last_errno();
    if errno != libc::ENOSYS {
        return Err(errno);
    }
    // Kernels before 5.9: close one by one up to the descriptor limit.
    let limit = rustix::process::getrlimit(Resource::Nofile)
        .current
        .unwrap_or(1 << 20);
    let end = u64::from(last).min(limit);
    for fd in u64::from(first)..=end {
        if let Ok(fd) = c_int::try_from(fd) {
            // SAFETY: as above; errors (not open) are expected and ignored.
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

fn reset_signal_handlers() {
    for signal in 1..=libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: plain system call; the host's handlers refer to host state
        // (such as the async runtime's signal pipe) that means nothing here.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
}

fn read_command(fd: RawFd) -> Option<u8> {
    let mut byte = 0u8;
    loop {
        // SAFETY: reads one byte into a live local.
        let n = unsafe { libc::read(fd, (&raw mut byte).cast(), 1) };
        if n == 1 {
            return Some(byte);
        }
        if n < 0 && last_errno() == libc::EINTR {
            continue;
        }
        return None;
    }
}

fn send(fd: RawFd, record: Record) {
    let bytes = record.encode();
    loop {
        // SAFETY: writes a live local buffer; 8 bytes to a pipe are atomic.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 && last_errno() == libc::EINTR {
            continue;
        }
        return;
    }
}

fn check<T>(fd: RawFd, stage: Stage, result: Result<T, Errno>) {
    if let Err(errno) = result {
        fail(fd, stage, errno.raw_os_error());
    }
}

fn fail(fd: RawFd, stage: Stage, errno: c_int) -> ! {
    send(
        fd,
        Record {
            tag: tag::FAILED,
            a: stage as u8,
            b: 0,
            value: errno,
        },
    );
    exit(127)
}

fn exit(code: c_int) -> ! {
    // SAFETY: ends the child without running the host's exit handlers.
    unsafe { libc::_exit(code) }
}

fn last_errno() -> c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn abi_number(status: LandlockStatus) -> u8 {
    match status {
        LandlockStatus::Available { effective_abi, .. } => match effective_abi {
            ABI::Unsupported => 0,
            ABI::V1 => 1,
            ABI::V2 => 2,
            ABI::V3 => 3,
            ABI::V4 => 4,
            ABI::V5 => 5,
            ABI::V6 => 6,
            ABI::V7 => 7,
            ABI::V8 => 8,
            ABI::V9 => 9,
            _ => 10,
        },
        _ => 0,
    }
}

fn enforcement(status: RulesetStatus) -> u8 {
    match status {
        RulesetStatus::FullyEnforced => 2,
        RulesetStatus::PartiallyEnforced => 1,
        _ => 0,
    }
}
