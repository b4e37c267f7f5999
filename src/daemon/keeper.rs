//! Who keeps a duplicate of the fanotify group while the daemon is down (`fail_mode = "closed"`): systemd's
//! FD store ([`fdstore`]) under the unit, `noexecd hold` ([`hold`]) in a Kubernetes pod. Either way the
//! start is the same: take the group back, deny what the dead daemon had read and not answered, exempt the
//! restart's own chain, hand a duplicate over; a start that cannot load its policy releases the group.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{fdstore, hold::HoldClient};
use crate::host::restart_chain::{self, OwnMappings};
use crate::sys::{self, FanotifyGroup};

/// How often a starting daemon asks a holder that is not listening yet.
const HOLDER_RETRY: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub(crate) enum Keeper {
    /// systemd's FD store (`$NOTIFY_SOCKET` is set).
    Systemd,
    /// `noexecd hold`, listening on this socket (`run --hold-socket`); our own executable mappings as named
    /// before we joined the host's mount namespace, and a process of our container (the supervisor).
    Holder { holder: HoldClient, own: OwnMappings, container: Option<i32> },
    /// Nobody: a crash lets waiting execs through.
    Nobody,
}

impl Keeper {
    /// The holder when a socket is given, else systemd when we run under it.
    pub(crate) fn choose(hold_socket: Option<PathBuf>, own: OwnMappings, container: Option<i32>) -> Self {
        match hold_socket {
            Some(path) => Keeper::Holder { holder: HoldClient::new(path), own, container },
            None if fdstore::will_store() => Keeper::Systemd,
            None => Keeper::Nobody,
        }
    }

    /// The group kept across the previous daemon's end, if this start is a restart.
    pub(crate) fn take_back(&self) -> Option<FanotifyGroup> {
        match self {
            Keeper::Systemd => fdstore::take_stored_group(),
            Keeper::Holder { holder, .. } => match holder.take() {
                // The old group's FAN_ENABLE_AUDIT state is unknown: answer without FAN_AUDIT.
                Ok(Some(fd)) if sys::is_fanotify(fd.as_fd()) => Some(FanotifyGroup::adopt(fd, false)),
                Ok(_) => None,
                Err(e) => {
                    // The pod's containers start together: a holder not listening yet holds nothing.
                    tracing::info!(error = %e, "no fanotify group to take back from noexecd hold");
                    None
                }
            },
            Keeper::Nobody => None,
        }
    }

    /// For the log.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Keeper::Systemd => "systemd",
            Keeper::Holder { .. } => "noexecd hold",
            Keeper::Nobody => "nobody",
        }
    }

    /// Whether [`store`](Self::store) hands the group to anyone.
    pub(crate) fn will_store(&self) -> bool {
        !matches!(self, Keeper::Nobody)
    }

    /// The files our own restart exec-opens, to exempt (`Marks::exempt`) before the group is handed over.
    pub(crate) fn restart_chain(&self) -> Vec<PathBuf> {
        match self {
            Keeper::Systemd => fdstore::restart_path_executables(),
            Keeper::Holder { own, container, .. } => restart_chain::container_restart_chain(own, *container),
            Keeper::Nobody => Vec::new(),
        }
    }

    /// Hands a duplicate of the group over; the caller has exempted the restart chain. Returns whether the
    /// keeper holds it now. The holder is given it again on every call (it keeps one copy): a holder that
    /// restarted on its own gets the group back within one call.
    pub(crate) fn store(&self, group: &FanotifyGroup, resumed: bool) -> bool {
        match self {
            Keeper::Systemd => {
                fdstore::store(group, resumed);
                true
            }
            Keeper::Holder { holder, .. } => match holder.store(group.as_fd()) {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!(error = %e, "noexecd hold does not keep the group");
                    false
                }
            },
            Keeper::Nobody => false,
        }
    }

    /// [`store`](Self::store) at the start, before the first mark: `noexecd hold` is asked until it keeps
    /// the group, at most `within` (the pod's containers start together, the holder may not listen yet).
    /// Returns whether the keeper holds it; past `within` the daemon guards without it (a crash then lets
    /// waiting execs through until the holder appears and is handed the group, every status period).
    pub(crate) fn store_before_marking(&self, group: &FanotifyGroup, resumed: bool, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.store(group, resumed) {
                return true;
            }
            if !matches!(self, Keeper::Holder { .. }) || Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(HOLDER_RETRY);
        }
    }

    /// Takes the group back from the keeper, so that closing our fd releases every waiting exec.
    pub(crate) fn release(&self) {
        match self {
            Keeper::Systemd => fdstore::release(),
            Keeper::Holder { holder, .. } => {
                if let Err(e) = holder.release() {
                    tracing::warn!(error = %e, "cannot release the group held by noexecd hold");
                }
            }
            Keeper::Nobody => {}
        }
    }

    /// Whether a clean stop (SIGTERM, SIGINT) leaves the group held. Under systemd a stop is a stop
    /// (`systemctl stop`, an upgrade): released. In a pod the daemon's container alone is stopped only to be
    /// restarted (a failed liveness probe); deleting the pod stops the holder too, whose exit releases it.
    pub(crate) fn keeps_across_stop(&self) -> bool {
        matches!(self, Keeper::Holder { .. })
    }
}
