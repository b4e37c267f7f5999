//! `run --host-namespace`: the container's first process stays in the container as a supervisor of the
//! daemon, which joins the host's mount namespace. The supervisor forwards the signals a container runtime
//! sends (SIGTERM, SIGINT, SIGHUP) and exits with the daemon's status, so the container stops when the guard
//! does and the kubelet sees its exit.

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::sys::{Forked, fork_daemon};

fn forwarded() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGCHLD] {
        set.add(s);
    }
    set
}

/// Forks. In the daemon: returns `Ok(None)` (go on guarding). In the supervisor: waits for the daemon and
/// returns its exit status.
pub fn split() -> Result<Option<i32>> {
    let err = |source: std::io::Error| Error::Runtime { what: "supervisor for the host namespace", source };
    let set = forwarded();
    // Blocked before the fork: a signal that comes between the fork and the wait is kept pending, not lost.
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(|e| err(e.into()))?;
    match fork_daemon().map_err(err)? {
        Forked::Daemon => {
            sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None).map_err(|e| err(e.into()))?;
            Ok(None)
        }
        Forked::Supervisor(daemon) => Ok(Some(supervise(daemon, &set))),
    }
}

fn supervise(daemon: Pid, set: &SigSet) -> i32 {
    tracing::info!(daemon = daemon.as_raw(), "supervising the guard, which joins the host's mount namespace");
    loop {
        if let Some(code) = reap(daemon) {
            return code;
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(sig) => {
                let _ = kill(daemon, sig);
            }
        }
    }
}

/// The daemon's exit status once it has ended; shells' 128+N for a signal.
fn reap(daemon: Pid) -> Option<i32> {
    match waitpid(daemon, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some(code),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(128 + sig as i32),
        Ok(_) => None,
        // Nothing to wait for: it is gone.
        Err(_) => Some(1),
    }
}
