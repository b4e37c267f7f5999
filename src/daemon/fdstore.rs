//! Failing closed across a crash (`fail_mode = "closed"`): the fanotify group outlives the daemon in systemd's
//! FD store. While the daemon is down, exec attempts on marked filesystems wait in the group's queue; the
//! restarted daemon gets the group back through `LISTEN_FDS` and decides them by policy.
//!
//! What keeps this from hanging the host:
//! - The restart itself is an exec on a marked filesystem. Before storing the group, the daemon puts inode
//!   ignore marks on its own executable, every executable mapping it has (ld.so for a dynamic build) and
//!   systemd's executor helper, so the stored group raises no event for them. An ignore mark is cleared when
//!   the file is modified, and an upgrade installs a new inode, which is why:
//! - the control loop looks at those paths' inodes with every mount check and exempts a new file at once
//!   (a package unpacked a new binary or library: a crash before the hand-over restarts into it);
//! - a hand-over (`noexecd handover`, what the packages' scripts run on upgrade) exempts them again by
//!   path before the daemon exits for the new binary (see [`handover`](super::handover));
//! - an explicit `systemctl stop`/`restart` makes systemd close the stored fd, so the new binary starts
//!   with a fresh group;
//! - a restarted daemon that cannot load its policy removes the group from the store and closes it before
//!   exiting, so the kernel lets the waiting execs through instead of holding them until the start limit;
//! - the daemon only marks for exec: it reads its configuration and writes its logs with plain opens,
//!   which the group never holds.

use std::os::fd::AsFd;
use std::path::PathBuf;

use crate::host::restart_chain::{executable_mappings, interpreter_of};
use crate::sys::{self, FanotifyGroup};

/// The name the group is stored under (`FDNAME=`), and found by in `LISTEN_FDNAMES`.
pub const FD_NAME: &str = "fanotify";

/// systemd ≥ 255 execs this helper, which then execs the service binary.
const SYSTEMD_EXECUTORS: &[&str] = &["/usr/lib/systemd/systemd-executor", "/lib/systemd/systemd-executor"];

/// The group systemd handed back, if this start is a restart after a crash.
pub fn take_stored_group() -> Option<FanotifyGroup> {
    let fds = sys::take_listen_fds().ok()?;
    let mut found = None;
    for (fd, name) in fds {
        if name == FD_NAME && found.is_none() && sys::is_fanotify(fd.as_fd()) {
            // The old group's FAN_ENABLE_AUDIT state is unknown: answer without FAN_AUDIT.
            found = Some(FanotifyGroup::adopt(fd, false));
        }
        // Any other fd handed to us is not ours to keep open.
    }
    found
}

/// Gives systemd a duplicate of the group to hold while we run; the caller has exempted our own restart
/// ([`restart_path_executables`]) so that it cannot
/// wait on it. A group taken back from the store (`resumed`) is still held there: it only gets its
/// exemptions renewed. Without `$NOTIFY_SOCKET` (not under systemd) this does nothing.
pub fn store(group: &FanotifyGroup, resumed: bool) {
    if !will_store() {
        return;
    }
    if resumed {
        // systemd keeps a stored fd across restarts until it is removed; a second FDSTORE=1 would exceed
        // FileDescriptorStoreMax=1.
        tracing::info!("the fanotify group stays stored with systemd (fail_mode = \"closed\")");
        return;
    }
    let states = [sd_notify::NotifyState::FdStore, sd_notify::NotifyState::FdName(FD_NAME)];
    match sd_notify::notify_with_fds(&states, &[group.as_fd()]) {
        Ok(()) => tracing::info!(
            "fanotify group stored with systemd: exec attempts wait across a crash (fail_mode = \"closed\")"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot store the fanotify group with systemd; a crash would let execs through")
        }
    }
}

/// Whether [`store`] hands the group to systemd (we run under it).
pub fn will_store() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Takes the group back out of systemd's store, so closing our fd releases every waiting exec.
pub fn release() {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        // Bounded: a notify queue nobody reads must not hold up the shutdown.
        crate::daemon::notify::send_within(
            &[sd_notify::NotifyState::FdStoreRemove, sd_notify::NotifyState::FdName(FD_NAME)],
            crate::daemon::notify::IMPORTANT_WAIT,
        );
    }
}

/// The files the kernel exec-opens when systemd starts this daemon again: exempt them (`Marks::exempt`)
/// before the group is stored, or the restart would wait on the group it is meant to take back.
pub fn restart_path_executables() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    // By the path started from: once a package manager has replaced the binary (or a library), the path
    // holds the file the next start exec-opens.
    if let Some(exe) = super::handover::start_path() {
        paths.extend(interpreter_of(&exe));
        paths.push(exe);
    }
    if let Ok(maps) = std::fs::read_to_string("/proc/self/maps") {
        paths.extend(executable_mappings(&maps).map(|(name, _)| PathBuf::from(name)));
    }
    paths.extend(SYSTEMD_EXECUTORS.iter().map(PathBuf::from).filter(|p| p.exists()));
    for p in &mut paths {
        if let Some(name) = p.as_os_str().as_encoded_bytes().strip_suffix(b" (deleted)") {
            *p = PathBuf::from(String::from_utf8_lossy(name).into_owned());
        }
    }
    paths.retain(|p| p.is_file());
    paths.sort();
    paths.dedup();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_restart_path_includes_this_executable() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        assert!(restart_path_executables().contains(&exe));
    }
}
