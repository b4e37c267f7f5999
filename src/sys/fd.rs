//! The process's own fds: the ones systemd hands over through `LISTEN_FDS`, what kind an fd is, and how
//! many the process may hold.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;

use super::file::{PATH_BUF_LEN, fd_path};

/// Takes ownership of the fds systemd passed to this process through `LISTEN_FDS`, with their names from
/// `LISTEN_FDNAMES` (in order). Only the first call in a process claims them; every later call returns an
/// empty list. Fails when the variables are malformed or name an fd that is not open.
///
/// Why this is a safe function: the one invariant of the protocol is kept here, in one place.
/// - `sd_notify::listen_fds_with_names` names fds only when `LISTEN_PID` is this process's pid: systemd
///   installed them, at 3, 4, ... before it executed us, for this process alone. Nothing in the process
///   opened them, and while they stay open the kernel gives their numbers to nothing else, so they have no
///   owner yet. It also fails unless every one of them is open (it sets FD_CLOEXEC on each).
/// - It leaves the variables set (the variant that unsets them is `unsafe`: `remove_var` while other
///   threads may read the environment), so the same numbers would be named again on a second call. The
///   `TAKEN` flag makes this call the only one that turns them into owners, once per process.
/// - [`inherited_fd`], which does the conversion, is private to this file and called only from here.
pub fn take_listen_fds() -> io::Result<Vec<(OwnedFd, String)>> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::AcqRel) {
        return Ok(Vec::new());
    }
    let named = sd_notify::listen_fds_with_names()?;
    Ok(named
        .filter_map(|(raw, name)| {
            // SAFETY: `raw` is one of the numbers LISTEN_FDS handed to this process, and this is the first and
            // only time they are taken (`TAKEN`): nothing else in the process owns it or will.
            let fd = unsafe { inherited_fd(raw) };
            fd.map(|fd| (fd, name))
        })
        .collect())
}

/// Takes ownership of an fd inherited through systemd's `LISTEN_FDS` protocol, if it is open.
///
/// # Safety
///
/// `raw` must be an fd number that `LISTEN_FDS` handed to this process alone, and nothing else in the
/// process may own it, now or later: the returned `OwnedFd` closes it on drop.
unsafe fn inherited_fd(raw: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_GETFD only queries the fd table; an fd that is not open yields EBADF and no side effect.
    let open = unsafe { libc::fcntl(raw, libc::F_GETFD) } >= 0;
    // SAFETY: `raw` is open (checked just above) and, by this function's contract, handed to this process
    // alone with no other owner, so taking ownership (and closing it on drop) is sound.
    open.then(|| unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Whether `fd` is a fanotify group (its /proc/self/fd link reads `anon_inode:[fanotify]`).
pub fn is_fanotify(fd: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; PATH_BUF_LEN];
    fd_path(fd, &mut buf).is_ok_and(|p| p == b"anon_inode:[fanotify]")
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit: every queued event carries an fd.
pub fn raise_nofile_limit() -> Result<u64, Errno> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(hard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn an_ordinary_file_is_not_a_fanotify_group() {
        let file = tempfile::tempfile().unwrap();
        assert!(!is_fanotify(file.as_fd()));
    }
}
