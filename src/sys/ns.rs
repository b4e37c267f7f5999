//! Joining the host's mount namespace from a container: noexecd in a Kubernetes pod (hostPID) must see the
//! node's mount table and paths, not its container's, while still reading its ConfigMap through an fd to the
//! container's root opened before the switch.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, setns};
use nix::sys::stat::Mode;

/// The container's root directory, held open across the switch: `/proc/self/fd/N/...` then reaches files
/// of the container (its ConfigMap mounts included) from the host's namespace.
#[derive(Debug)]
pub struct ContainerRoot {
    fd: OwnedFd,
}

impl ContainerRoot {
    /// `path` inside the container (absolute), as a path that reaches it from any mount namespace.
    pub fn path_of(&self, path: &Path) -> PathBuf {
        use std::os::fd::AsRawFd;
        let rel = path.strip_prefix("/").unwrap_or(path);
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_fd().as_raw_fd())).join(rel)
    }
}

/// Opens our own root, then joins the mount namespace of `pid` (1: the host's init, seen through hostPID).
/// setns(CLONE_NEWNS) needs CAP_SYS_ADMIN and CAP_SYS_CHROOT, and a process whose threads share no
/// filesystem attributes: call it before any thread starts.
pub fn enter_mount_namespace_of(pid: i32) -> io::Result<ContainerRoot> {
    let root = open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let ns = File::open(format!("/proc/{pid}/ns/mnt"))?;
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNS)?;
    Ok(ContainerRoot { fd: root })
}

/// Which side of [`fork_daemon`] this process is on.
#[derive(Debug)]
pub enum Forked {
    /// The original process, which stays in its container; the daemon's pid.
    Supervisor(nix::unistd::Pid),
    /// The new process, which goes on to join the host's namespace and guard.
    Daemon,
}

/// Splits the process in two before any thread starts. The container must keep a process in its own mount
/// namespace: with none left the kernel tears its mounts down (the ConfigMap volumes would vanish from
/// under the root fd), and the runtime's `exec` (a liveness probe) joins the namespaces of the container's
/// first process, which must not be the host's.
pub fn fork_daemon() -> io::Result<Forked> {
    if std::fs::read_dir("/proc/self/task")?.count() != 1 {
        return Err(io::Error::other("cannot fork: the process already runs more than one thread"));
    }
    // SAFETY: the process has exactly one thread (checked above, and `run` starts none before this), so the
    // child is a complete copy: no lock can be held by a thread that does not exist in it.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Supervisor(child)),
        nix::unistd::ForkResult::Child => {
            // The daemon must not outlive its supervisor (the container's first process): SIGTERM stops it
            // as a stop of the container would.
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)?;
            Ok(Forked::Daemon)
        }
    }
}
