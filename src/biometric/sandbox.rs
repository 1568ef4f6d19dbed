//! Confinement of a worker process: resource limits, then the kernel's unprivileged sandboxes.
//!
//! A worker parses hostile images with code that contains `unsafe`. Should an image take over
//! the worker, it runs as the server's user and could otherwise read the keyring, open
//! connections, start programs or attach to the server with `ptrace`. After start-up, before
//! the first image, [`confine`] applies:
//!
//! - rlimits: bounded address space, no file writes, few descriptors, no core dumps;
//! - `no_new_privs`, so no exec can gain privileges (and so the two below may be installed
//!   without `CAP_SYS_ADMIN`);
//! - Landlock with every filesystem right handled and no rule granting any: no file or
//!   directory can be opened, created, removed or executed. Its scopes also stop signals to,
//!   and abstract-socket connections with, processes outside the worker;
//! - a seccomp filter that answers `EPERM` to networking, new processes, program execution,
//!   access to other processes' memory, io_uring and new namespaces.
//!
//! Everything else stays allowed: the worker needs only memory and its inherited pipes. Where
//! the kernel lacks Landlock or seccomp the worker runs on with what it has and says so in its
//! [`IsolationStatus`]; rlimits are always available on Unix, so failing to set them is fatal.

use serde::{Deserialize, Serialize};
use std::io;

/// Address-space ceiling: twice the default decoder budget, with room for the binary itself.
const ADDRESS_SPACE_BYTES: u64 = 1024 * 1024 * 1024;

/// Enough for stdin, stdout and stderr; the worker opens nothing else.
const MAX_OPEN_FILES: u64 = 8;

/// How far a worker process confined itself, as it reports to the server in its hello frame.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct IsolationStatus {
    /// The resource limits in force, in words.
    pub rlimits: String,
    /// `PR_SET_NO_NEW_PRIVS` is set.
    pub no_new_privs: bool,
    /// Whether Landlock keeps the worker away from every file.
    pub landlock: LandlockState,
    /// The kernel's Landlock ABI version, when it has Landlock.
    pub landlock_abi: Option<i32>,
    /// Whether the syscall filter is installed.
    pub seccomp: SeccompState,
    /// Why any part is weaker than intended, one sentence each, for the server log.
    pub notes: Vec<String>,
}

/// How much of the Landlock ruleset the kernel enforces.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LandlockState {
    /// Every requested right is enforced.
    Enforced,
    /// The kernel's Landlock is older than the ruleset: the rights it knows are enforced,
    /// newer ones (say, connecting to named Unix sockets) are not.
    Partial,
    /// Not enforced: no Landlock in this kernel (before Linux 5.13, or not enabled at boot).
    Unavailable,
}

/// Whether the syscall filter is in force.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SeccompState {
    Enforced,
    /// Not installed: kernel without `CONFIG_SECCOMP_FILTER`, or an unsupported architecture.
    Unavailable,
}

impl IsolationStatus {
    /// Files, sockets, processes and other processes are out of the worker's reach: every
    /// mechanism is in force, Landlock at least for the rights the kernel knows (the rights
    /// newer kernels add concern sockets, which seccomp already refuses).
    pub fn is_confined(&self) -> bool {
        self.no_new_privs
            && self.landlock != LandlockState::Unavailable
            && self.seccomp == SeccompState::Enforced
    }
}

/// Confines the calling process for good; see the module documentation for what it applies.
///
/// Call it once, after start-up work that needs files (none today: the face model is embedded)
/// and while the process has a single thread, since Landlock confines only the calling thread
/// and the threads it starts later.
///
/// Fails only when the resource limits cannot be set; a worker must then refuse to run. A
/// missing kernel sandbox is reported in the status instead.
pub(crate) fn confine() -> io::Result<IsolationStatus> {
    let mut status = IsolationStatus {
        rlimits: apply_rlimits()?,
        no_new_privs: false,
        landlock: LandlockState::Unavailable,
        landlock_abi: None,
        seccomp: SeccompState::Unavailable,
        notes: Vec::new(),
    };
    kernel::confine(&mut status);
    Ok(status)
}

/// Applies the resource limits, lowering hard limits too so that compromised code cannot raise
/// them again; returns them in words.
#[cfg(unix)]
fn apply_rlimits() -> io::Result<String> {
    use rlimit::Resource;

    let limits = [
        (Resource::AS, ADDRESS_SPACE_BYTES),
        (Resource::FSIZE, 0),
        (Resource::NOFILE, MAX_OPEN_FILES),
        (Resource::CORE, 0),
    ];
    for (resource, wanted) in limits {
        if !resource.is_supported() {
            continue;
        }
        let (soft, hard) = resource.get()?;
        let hard = hard.min(wanted);
        let soft = soft.min(hard);
        resource
            .set(soft, hard)
            .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", resource.as_name())))?;
    }
    Ok(format!(
        "{} MiB address space, no file writes, {MAX_OPEN_FILES} file descriptors, no core dumps",
        ADDRESS_SPACE_BYTES / (1024 * 1024)
    ))
}

/// Resource limits are a Unix facility; elsewhere the worker runs without them.
#[cfg(not(unix))]
fn apply_rlimits() -> io::Result<String> {
    Ok("none (not Unix)".to_owned())
}

#[cfg(target_os = "linux")]
mod kernel {
    use super::{IsolationStatus, LandlockState, SeccompState};
    use landlock::{
        ABI, Access, AccessFs, LandlockStatus, Ruleset, RulesetAttr, RulesetStatus, Scope,
    };
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    use std::collections::BTreeMap;

    /// The newest Landlock ABI this code was written and tested against. Rights of later ABIs
    /// are not requested until someone reviews them; on older kernels the crate enforces what
    /// the kernel knows and reports [`LandlockState::Partial`].
    const LANDLOCK_ABI: ABI = ABI::V10;

    /// Sets `no_new_privs`, Landlock and the seccomp filter, recording in `status` what holds.
    pub(super) fn confine(status: &mut IsolationStatus) {
        // Landlock and seccomp set it too, but only as a side effect; ask for it explicitly
        // and read the kernel's answer back at the end rather than trust either.
        if let Err(err) = rustix::thread::set_no_new_privs(true) {
            status.notes.push(format!("cannot set no_new_privs: {err}"));
        }
        (status.landlock, status.landlock_abi) = restrict_filesystem(&mut status.notes);
        status.seccomp = match filter_syscalls() {
            Ok(()) => SeccompState::Enforced,
            Err(err) => {
                status
                    .notes
                    .push(format!("seccomp filter not installed: {err}"));
                SeccompState::Unavailable
            }
        };
        status.no_new_privs = rustix::thread::no_new_privs().unwrap_or(false);
    }

    /// Handles every filesystem right and scope of [`LANDLOCK_ABI`] and grants none, so the
    /// process can open no path at all; descriptors it already holds keep working.
    fn restrict_filesystem(notes: &mut Vec<String>) -> (LandlockState, Option<i32>) {
        // Counted before restricting, while /proc is still readable.
        let threads = std::fs::read_dir("/proc/self/task").map(Iterator::count);
        let restricted = Ruleset::default()
            .handle_access(AccessFs::from_all(LANDLOCK_ABI))
            .and_then(|ruleset| ruleset.scope(Scope::from_all(LANDLOCK_ABI)))
            .and_then(Ruleset::create)
            .and_then(|ruleset| ruleset.restrict_self());
        let status = match restricted {
            Ok(status) => status,
            Err(err) => {
                notes.push(format!("Landlock not applied: {err}"));
                return (LandlockState::Unavailable, None);
            }
        };
        let abi = match status.landlock {
            LandlockStatus::Available {
                effective_abi,
                kernel_abi,
            } => kernel_abi.or(Some(effective_abi as i32)),
            _ => None,
        };
        let mut state = match status.ruleset {
            RulesetStatus::FullyEnforced => LandlockState::Enforced,
            RulesetStatus::PartiallyEnforced => {
                notes.push(format!(
                    "Landlock is partially enforced: the kernel's Landlock ABI {} predates ABI \
                     {}, whose newer rights are not enforced",
                    abi.map_or_else(|| "(unknown)".to_owned(), |abi| abi.to_string()),
                    LANDLOCK_ABI as i32
                ));
                LandlockState::Partial
            }
            RulesetStatus::NotEnforced => {
                notes.push(match status.landlock {
                    LandlockStatus::NotEnabled => {
                        "Landlock is built into the kernel but not enabled at boot (see the lsm= \
                         kernel parameter)"
                            .to_owned()
                    }
                    _ => "the kernel has no Landlock (built without it, or older than Linux 5.13)"
                        .to_owned(),
                });
                LandlockState::Unavailable
            }
        };
        if let Ok(count @ 2..) = threads
            && state != LandlockState::Unavailable
        {
            notes.push(format!(
                "{count} threads were running when Landlock was applied; it confines only the \
                 calling thread and the threads it starts"
            ));
            state = LandlockState::Partial;
        }
        (state, abi)
    }

    /// Installs the two filters, on every thread: `clone3` first, so that a failure of the
    /// second never leaves a way to create processes that the first would have closed.
    fn filter_syscalls() -> Result<(), seccompiler::Error> {
        let arch = TargetArch::try_from(std::env::consts::ARCH)?;
        // seccomp cannot read `clone3`'s flags (they are in memory), so it is refused as if the
        // kernel lacked it: the C library then falls back to `clone`, whose flags the main
        // filter does check. `EPERM` would break thread creation instead.
        let clone3: BpfProgram = SeccompFilter::new(
            BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch,
        )?
        .try_into()?;
        let denied: BpfProgram = SeccompFilter::new(
            denied_syscalls()?,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            arch,
        )?
        .try_into()?;
        seccompiler::apply_filter_all_threads(&clone3)?;
        seccompiler::apply_filter_all_threads(&denied)?;
        Ok(())
    }

    /// The calls a confined worker may not make (`c_long` is `i64` on every architecture
    /// seccompiler supports).
    const DENIED_SYSCALLS: &[i64] = &[
        // Networking: a worker talks only to its parent, over inherited pipes.
        libc::SYS_socket,
        libc::SYS_socketpair,
        libc::SYS_connect,
        libc::SYS_bind,
        libc::SYS_listen,
        libc::SYS_accept,
        libc::SYS_accept4,
        libc::SYS_sendto,
        libc::SYS_sendmsg,
        libc::SYS_sendmmsg,
        libc::SYS_recvfrom,
        libc::SYS_recvmsg,
        libc::SYS_recvmmsg,
        // Running programs.
        libc::SYS_execve,
        libc::SYS_execveat,
        // Reaching into other processes of the same user, the server included.
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_pidfd_getfd,
        // io_uring performs socket and file operations without the calls above.
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        // A new user namespace would open kernel interfaces otherwise reserved to root.
        libc::SYS_unshare,
    ];

    /// Process creation by dedicated calls; aarch64 has none, its C library forks with `clone`.
    #[cfg(target_arch = "x86_64")]
    const FORK_SYSCALLS: &[i64] = &[libc::SYS_fork, libc::SYS_vfork];
    #[cfg(not(target_arch = "x86_64"))]
    const FORK_SYSCALLS: &[i64] = &[];

    /// The filter's rules. Refusing with `EPERM` rather than killing lets a decoder that tries
    /// one of these calls fail cleanly, and lets tests observe the refusal.
    fn denied_syscalls() -> Result<BTreeMap<i64, Vec<SeccompRule>>, seccompiler::Error> {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED_SYSCALLS
            .iter()
            .chain(FORK_SYSCALLS)
            .map(|&syscall| (syscall, Vec::new()))
            .collect();
        // `clone` without CLONE_THREAD makes a process; with it, a thread, which decoders may
        // legitimately start. The flags are the first argument on both architectures.
        let creates_process = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
            0,
        )?;
        rules.insert(
            libc::SYS_clone,
            vec![SeccompRule::new(vec![creates_process])?],
        );
        Ok(rules)
    }
}

/// Landlock and seccomp are Linux facilities; elsewhere only the rlimits apply.
#[cfg(not(target_os = "linux"))]
mod kernel {
    use super::IsolationStatus;

    pub(super) fn confine(status: &mut IsolationStatus) {
        status
            .notes
            .push("Landlock and seccomp need Linux".to_owned());
    }
}
