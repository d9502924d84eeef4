//! What the sandboxed code may touch: the Landlock ruleset, the seccomp
//! filter, and the protections they add up to.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreated, RulesetCreatedAttr, Scope,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// A guarantee the sandbox gives about the code it runs.
///
/// Each is provided by one or more kernel mechanisms, detected when the
/// sandbox is built. A sandbox refuses to build when one is unavailable,
/// unless the caller allowed running without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Protection {
    /// The code can read only the Python installation, system libraries and
    /// its working directory, and write only its working directory
    /// (Landlock).
    Filesystem,
    /// The code has no network access (an empty network namespace, and a
    /// seccomp filter that refuses to create sockets).
    Network,
    /// The code runs in its own user and pid namespaces: it cannot see or
    /// signal host processes, its process count is capped per sandbox, and
    /// every process it starts is killed at the end of each call. Without
    /// this, only the interpreter's process group is killed, and only when a
    /// one-shot run or a session ends.
    Processes,
    /// A seccomp filter refuses system calls the code has no use for
    /// (namespaces, mounts, tracing, kernel keyrings, BPF, io_uring, ...).
    SyscallFilter,
}

impl Protection {
    /// Every protection, in a fixed order.
    pub const ALL: [Protection; 4] = [
        Protection::Filesystem,
        Protection::Network,
        Protection::Processes,
        Protection::SyscallFilter,
    ];
}

impl fmt::Display for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protection::Filesystem => "filesystem isolation",
            Protection::Network => "network isolation",
            Protection::Processes => "process isolation",
            Protection::SyscallFilter => "system-call filter",
        })
    }
}

/// Whether a protection is in force, and what provides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectionState {
    /// The protection.
    pub protection: Protection,
    /// The mechanisms that provide it on this machine, or `None` when it is
    /// missing (which the caller then allowed).
    pub provided_by: Option<String>,
}

/// The Landlock ABI whose access rights the ruleset asks for. Newer kernels
/// enforce all of them; older ones enforce the subset they know.
const LANDLOCK_ABI: ABI = ABI::V6;

/// System paths the interpreter may read and execute, besides its own
/// installation. Missing ones are skipped.
const SYSTEM_READ_PATHS: &[&str] = &[
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/libx32",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
    "/sys/devices/system/cpu",
];

/// Paths the sandbox may read: the system list, Debian's `/etc/python3.*`
/// (where its `sitecustomize` lives), and the given interpreter paths.
pub(crate) fn read_only_paths(extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = SYSTEM_READ_PATHS.iter().map(PathBuf::from).collect();
    if let Ok(entries) = std::fs::read_dir("/etc") {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("python3") {
                paths.push(entry.path());
            }
        }
    }
    paths.extend(extra.iter().cloned());
    paths.retain(|p| p.exists() && p != Path::new("/"));
    paths.sort();
    paths.dedup();
    paths
}

/// Builds the Landlock ruleset: read and execute `read_only`, everything in
/// `workdir`, read and write `/dev/null`; no TCP; no signals or abstract
/// unix sockets across the sandbox boundary.
pub(crate) fn landlock_ruleset(
    read_only: &[PathBuf],
    workdir: &Path,
) -> Result<RulesetCreated, String> {
    build_ruleset(read_only, workdir).map_err(|e| e.to_string())
}

fn build_ruleset(
    read_only: &[PathBuf],
    workdir: &Path,
) -> Result<RulesetCreated, Box<dyn std::error::Error>> {
    let abi = LANDLOCK_ABI;
    let file_read: BitFlags<AccessFs> = AccessFs::ReadFile | AccessFs::Execute;
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .handle_access(AccessNet::from_all(abi))?
        .scope(Scope::from_all(abi))?
        .create()?;
    for path in read_only {
        // A path that vanished since the list was made is simply not granted.
        let Ok(fd) = PathFd::new(path) else { continue };
        let access = if path.is_dir() {
            AccessFs::from_read(abi)
        } else {
            file_read
        };
        ruleset = ruleset.add_rule(PathBeneath::new(fd, access))?;
    }
    ruleset = ruleset.add_rule(PathBeneath::new(
        PathFd::new(workdir)?,
        AccessFs::from_all(abi),
    ))?;
    if let Ok(null) = PathFd::new("/dev/null") {
        ruleset = ruleset.add_rule(PathBeneath::new(
            null,
            AccessFs::ReadFile | AccessFs::WriteFile,
        ))?;
    }
    Ok(ruleset)
}

/// Describes the Landlock ABI a run reported, for [`ProtectionState`].
pub(crate) fn landlock_name(abi: u8, fully: bool) -> String {
    let mut name = format!("Landlock ABI {abi}");
    if !fully {
        name.push_str(" (partially enforced)");
    }
    if abi >= 4 {
        name.push_str(", TCP denied");
    }
    if abi >= 6 {
        name.push_str(", signals scoped");
    }
    name
}

/// System calls refused with `EPERM` whatever their arguments.
const DENIED_SYSCALLS: &[libc::c_long] = &[
    libc::SYS_socket,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_mount_setattr,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_syslog,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_vhangup,
];

/// `clone` flags that would create namespaces.
const NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWNS,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWCGROUP,
];

/// The x32 variants of the denied calls that do not follow the plain
/// `nr | X32_BIT` numbering (x86-64 kernels built with x32 support).
#[cfg(target_arch = "x86_64")]
const X32_EXTRA: &[i64] = &[
    0x4000_0000 + 521, // ptrace
    0x4000_0000 + 528, // kexec_load
    0x4000_0000 + 539, // process_vm_readv
    0x4000_0000 + 540, // process_vm_writev
];

/// Builds the seccomp programs, installed in order: a deny list answering
/// `EPERM`, and `clone3` answering `ENOSYS` (its flags live in memory a filter
/// cannot read, and C libraries fall back to `clone` on `ENOSYS`).
pub(crate) fn seccomp_programs() -> Result<Vec<BpfProgram>, seccompiler::Error> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED_SYSCALLS.iter().map(|&nr| (nr, Vec::new())).collect();
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            let flag = u64::from(flag.unsigned_abs());
            SeccompRule::new(vec![SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )?])
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_clone, clone_rules);
    // kill(-1, sig) signals every process the caller may signal.
    rules.insert(
        libc::SYS_kill,
        vec![SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            u64::from(u32::MAX),
        )?])?],
    );
    #[cfg(target_arch = "x86_64")]
    {
        let x32: Vec<(i64, Vec<SeccompRule>)> = rules
            .iter()
            .map(|(nr, chain)| (nr | 0x4000_0000, chain.clone()))
            .chain(X32_EXTRA.iter().map(|&nr| (nr, Vec::new())))
            .collect();
        rules.extend(x32);
    }
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM.unsigned_abs()),
        arch,
    )?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS.unsigned_abs()),
        arch,
    )?;
    Ok(vec![deny.try_into()?, clone3.try_into()?])
}
