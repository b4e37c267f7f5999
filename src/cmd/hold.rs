//! `noexecd hold --socket PATH`: keeps a duplicate of a daemon's fanotify group so that exec attempts on
//! guarded filesystems wait while the daemon restarts, and hands it back to the restarted daemon (the
//! protocol: `daemon::hold`). In a Kubernetes pod it is a second container sharing an emptyDir with the
//! daemon's. It loads no policy, marks nothing, execs nothing, and serves one request at a time, each
//! bounded by `PEER_WAIT`; on SIGTERM or SIGINT it closes the group (the kernel then answers every waiting
//! event once the daemon's copy is closed too) and exits.

use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::daemon::hold::{Held, PEER_WAIT, Served, peer_is_root};
use crate::error::{Error, Result};

/// Serves the socket until SIGTERM or SIGINT.
pub fn hold(socket: &Path) -> Result<()> {
    let err = |what: &'static str| move |source| Error::Hold { path: socket.to_owned(), what, source };
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.thread_block().map_err(|e| err("block SIGTERM to")(e.into()))?;
    let stop = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC).map_err(|e| err("watch signals for")(e.into()))?;
    // A socket left by a holder that was killed: nobody listens on it any more.
    if std::fs::symlink_metadata(socket).is_ok_and(|m| m.file_type().is_socket()) {
        std::fs::remove_file(socket).map_err(err("remove the stale socket"))?;
    }
    let listener = UnixListener::bind(socket).map_err(err("listen on"))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(err("restrict"))?;
    listener.set_nonblocking(true).map_err(err("listen on"))?;
    tracing::info!(socket = %socket.display(), "noexecd hold: keeping the fanotify group a daemon stores here");
    let mut held = Held::default();
    loop {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN), PollFd::new(stop.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(err("wait on")(e.into())),
        }
        let signalled = fds.get(1).and_then(|f| f.revents()).is_some_and(|r| r.contains(PollFlags::POLLIN));
        if signalled {
            break;
        }
        let peer = match listener.accept() {
            Ok((peer, _)) => peer,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept a connection");
                continue;
            }
        };
        let ready = peer
            .set_nonblocking(false)
            .and_then(|()| peer.set_read_timeout(Some(PEER_WAIT)))
            .and_then(|()| peer.set_write_timeout(Some(PEER_WAIT)));
        if let Err(e) = ready {
            tracing::warn!(error = %e, "cannot set up a connection");
            continue;
        }
        let had = held.holds();
        match held.serve(&peer, peer_is_root(&peer)) {
            Ok(Served::Kept) if !had => tracing::info!("holding the daemon's fanotify group"),
            Ok(Served::Kept) => tracing::debug!("the daemon renewed the group it stored"),
            Ok(Served::Took(true)) => tracing::info!("handed the fanotify group to a starting daemon"),
            Ok(Served::Took(false)) => tracing::info!("a starting daemon asked for a group: none held"),
            Ok(Served::Released) => tracing::info!("released the fanotify group at the daemon's request"),
            Ok(Served::Refused) => tracing::warn!("refused to keep an fd that is not a fanotify group"),
            Ok(Served::Ignored) => tracing::warn!("ignored a request (not from uid 0, or not a request)"),
            Err(e) => tracing::warn!(error = %e, "a request failed"),
        }
    }
    let had = held.holds();
    held.drop_group();
    let _ = std::fs::remove_file(socket);
    tracing::info!(held = had, "noexecd hold: stopping; the group's waiting execs proceed once no daemon holds it");
    Ok(())
}
