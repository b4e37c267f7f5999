//! The hand-over protocol between `noexecd run --hold-socket` and `noexecd hold`, a second process (in
//! Kubernetes, a second container of the pod) that keeps a duplicate of the fanotify group so that exec
//! attempts wait, rather than run, while the daemon's container restarts.
//!
//! One request per connection on a Unix stream socket, each message [`MSG_LEN`] bytes, an fd attached by
//! `SCM_RIGHTS` where it says so:
//! - `take`: the holder answers `group` with its fd, or `none`;
//! - `store` + fd: the holder checks the fd is a fanotify group, keeps it and only then closes the one it
//!   held before (`kept`), or keeps what it had (`refused`);
//! - `release`: the holder closes its copy (`released`), so that once the daemon closes its own the kernel
//!   answers every waiting event.
//!
//! The group lets whoever holds it answer permission events: only a peer with uid 0 is served.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{getsockopt, sockopt};

use crate::error::{Error, Result};
use crate::sys;

/// Every message is this long, zero-padded.
pub const MSG_LEN: usize = 8;
/// How long either side waits for the other's message: a stuck peer must not hold up a daemon's start or
/// the holder's loop.
pub const PEER_WAIT: Duration = Duration::from_secs(2);

const TAKE: &[u8; MSG_LEN] = b"take\0\0\0\0";
const STORE: &[u8; MSG_LEN] = b"store\0\0\0";
const RELEASE: &[u8; MSG_LEN] = b"release\0";
const GROUP: &[u8; MSG_LEN] = b"group\0\0\0";
const NONE: &[u8; MSG_LEN] = b"none\0\0\0\0";
const KEPT: &[u8; MSG_LEN] = b"kept\0\0\0\0";
const REFUSED: &[u8; MSG_LEN] = b"refused\0";
const RELEASED: &[u8; MSG_LEN] = b"released";

/// What one request did to the holder's state (for its log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Handed out the group it holds (`true`) or said it holds none.
    Took(bool),
    Kept,
    /// Not kept: no fd, or not a fanotify group.
    Refused,
    Released,
    /// Not a peer with uid 0, or not a request: answered with nothing.
    Ignored,
}

/// The holder's state: the group, if a daemon stored one.
#[derive(Debug)]
pub struct Held {
    group: Option<OwnedFd>,
    is_group: fn(BorrowedFd<'_>) -> bool,
}

impl Default for Held {
    fn default() -> Self {
        Self { group: None, is_group: sys::is_fanotify }
    }
}

impl Held {
    /// A holder that accepts whatever fd `is_group` accepts (tests stand a pipe in for the group).
    pub fn with_check(is_group: fn(BorrowedFd<'_>) -> bool) -> Self {
        Self { group: None, is_group }
    }

    pub fn holds(&self) -> bool {
        self.group.is_some()
    }

    /// Closes the copy held: at the holder's exit.
    pub fn drop_group(&mut self) {
        self.group = None;
    }

    /// Reads one request from `peer` and answers it. `trusted`: the peer may touch the group.
    pub fn serve(&mut self, peer: &UnixStream, trusted: bool) -> io::Result<Served> {
        let mut buf = [0u8; MSG_LEN];
        let (n, fd) = sys::recv_with_fd(peer.as_fd(), &mut buf)?;
        if !trusted || n != MSG_LEN {
            return Ok(Served::Ignored);
        }
        let reply = |msg: &[u8; MSG_LEN], fd: Option<BorrowedFd<'_>>| sys::send_with_fd(peer.as_fd(), msg, fd);
        match &buf {
            TAKE => match &self.group {
                Some(group) => reply(GROUP, Some(group.as_fd())).map(|()| Served::Took(true)),
                None => reply(NONE, None).map(|()| Served::Took(false)),
            },
            STORE => match fd {
                Some(fd) if (self.is_group)(fd.as_fd()) => {
                    // The new copy is held before the old one closes: the group never has one fd fewer.
                    let old = self.group.replace(fd);
                    drop(old);
                    reply(KEPT, None).map(|()| Served::Kept)
                }
                _ => reply(REFUSED, None).map(|()| Served::Refused),
            },
            RELEASE => {
                self.group = None;
                reply(RELEASED, None).map(|()| Served::Released)
            }
            _ => Ok(Served::Ignored),
        }
    }
}

/// Whether the process at the other end of `peer` runs as root (the daemon does).
pub fn peer_is_root(peer: &UnixStream) -> bool {
    getsockopt(peer, sockopt::PeerCredentials).is_ok_and(|c| c.uid() == 0)
}

/// The daemon's end: one connection per request.
#[derive(Debug, Clone)]
pub struct HoldClient {
    path: PathBuf,
}

impl HoldClient {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn request(&self, what: &'static str, msg: &[u8; MSG_LEN], fd: Option<BorrowedFd<'_>>) -> Result<Reply> {
        let err = |source| Error::Hold { path: self.path.clone(), what, source };
        let peer = UnixStream::connect(&self.path).map_err(err)?;
        request_on(&peer, msg, fd).map_err(err)
    }

    /// The group the holder keeps, if it keeps one.
    pub fn take(&self) -> Result<Option<OwnedFd>> {
        match self.request("take the group back", TAKE, None)? {
            Reply { msg, fd: Some(fd) } if &msg == GROUP => Ok(Some(fd)),
            Reply { msg, .. } if &msg == NONE => Ok(None),
            _ => Err(self.unexpected("take the group back")),
        }
    }

    /// Hands the holder a duplicate of `group` (SCM_RIGHTS duplicates it).
    pub fn store(&self, group: BorrowedFd<'_>) -> Result<()> {
        match self.request("store the group", STORE, Some(group))? {
            Reply { msg, .. } if &msg == KEPT => Ok(()),
            _ => Err(self.unexpected("store the group")),
        }
    }

    /// Asks the holder to close its copy.
    pub fn release(&self) -> Result<()> {
        match self.request("release the group", RELEASE, None)? {
            Reply { msg, .. } if &msg == RELEASED => Ok(()),
            _ => Err(self.unexpected("release the group")),
        }
    }

    fn unexpected(&self, what: &'static str) -> Error {
        let source = io::Error::new(io::ErrorKind::InvalidData, "the holder refused or gave no known answer");
        Error::Hold { path: self.path.clone(), what, source }
    }
}

struct Reply {
    msg: [u8; MSG_LEN],
    fd: Option<OwnedFd>,
}

fn request_on(peer: &UnixStream, msg: &[u8; MSG_LEN], fd: Option<BorrowedFd<'_>>) -> io::Result<Reply> {
    peer.set_read_timeout(Some(PEER_WAIT))?;
    peer.set_write_timeout(Some(PEER_WAIT))?;
    sys::send_with_fd(peer.as_fd(), msg, fd)?;
    let mut buf = [0u8; MSG_LEN];
    let (n, fd) = sys::recv_with_fd(peer.as_fd(), &mut buf)?;
    if n != MSG_LEN {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the holder closed the connection"));
    }
    Ok(Reply { msg: buf, fd })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn any_fd(_: BorrowedFd<'_>) -> bool {
        true
    }

    fn ino(fd: BorrowedFd<'_>) -> u64 {
        nix::sys::stat::fstat(fd).unwrap().st_ino
    }

    /// One request from the daemon's side, answered by `held` on the other end of a socket pair.
    fn exchange(held: &mut Held, msg: &[u8; MSG_LEN], fd: Option<BorrowedFd<'_>>) -> (Served, Reply) {
        let (daemon, holder) = UnixStream::pair().unwrap();
        sys::send_with_fd(daemon.as_fd(), msg, fd).unwrap();
        let served = held.serve(&holder, true).unwrap();
        let mut buf = [0u8; MSG_LEN];
        let (n, fd) = sys::recv_with_fd(daemon.as_fd(), &mut buf).unwrap();
        assert_eq!(n, MSG_LEN);
        (served, Reply { msg: buf, fd })
    }

    #[test]
    fn store_take_release() {
        let mut held = Held::with_check(any_fd);
        let (served, reply) = exchange(&mut held, TAKE, None);
        assert_eq!((served, &reply.msg, reply.fd.is_none()), (Served::Took(false), NONE, true));

        let (r, _w) = nix::unistd::pipe().unwrap();
        let (served, reply) = exchange(&mut held, STORE, Some(r.as_fd()));
        assert_eq!((served, &reply.msg), (Served::Kept, KEPT));
        assert!(held.holds());
        // The holder's copy is a duplicate: closing ours leaves it open.
        let want = ino(r.as_fd());
        drop(r);
        let (served, reply) = exchange(&mut held, TAKE, None);
        assert_eq!((served, &reply.msg), (Served::Took(true), GROUP));
        assert_eq!(ino(reply.fd.unwrap().as_fd()), want, "the fd handed back is the one stored");

        let (served, reply) = exchange(&mut held, RELEASE, None);
        assert_eq!((served, &reply.msg), (Served::Released, RELEASED));
        assert!(!held.holds());
        let (_, reply) = exchange(&mut held, TAKE, None);
        assert_eq!(&reply.msg, NONE);
    }

    #[test]
    fn a_second_store_replaces_the_first() {
        let mut held = Held::with_check(any_fd);
        let (a, _wa) = nix::unistd::pipe().unwrap();
        let (b, _wb) = nix::unistd::pipe().unwrap();
        exchange(&mut held, STORE, Some(a.as_fd()));
        exchange(&mut held, STORE, Some(b.as_fd()));
        let (_, reply) = exchange(&mut held, TAKE, None);
        assert_eq!(ino(reply.fd.unwrap().as_fd()), ino(b.as_fd()));
    }

    #[test]
    fn only_a_fanotify_group_is_kept() {
        let mut held = Held::default();
        let (r, _w) = nix::unistd::pipe().unwrap();
        let (served, reply) = exchange(&mut held, STORE, Some(r.as_fd()));
        assert_eq!((served, &reply.msg), (Served::Refused, REFUSED));
        let (served, _) = exchange(&mut held, STORE, None);
        assert_eq!(served, Served::Refused);
        assert!(!held.holds());
    }

    #[test]
    fn an_untrusted_peer_gets_nothing() {
        let mut held = Held::with_check(any_fd);
        let (r, _w) = nix::unistd::pipe().unwrap();
        exchange(&mut held, STORE, Some(r.as_fd()));
        let (daemon, holder) = UnixStream::pair().unwrap();
        sys::send_with_fd(daemon.as_fd(), TAKE, None).unwrap();
        assert_eq!(held.serve(&holder, false).unwrap(), Served::Ignored);
        sys::send_with_fd(daemon.as_fd(), RELEASE, None).unwrap();
        assert_eq!(held.serve(&holder, false).unwrap(), Served::Ignored);
        assert!(held.holds());
        // Garbage is no request either.
        sys::send_with_fd(daemon.as_fd(), b"rm -rf /", None).unwrap();
        assert_eq!(held.serve(&holder, true).unwrap(), Served::Ignored);
    }

    #[test]
    fn the_peer_is_root_when_we_are() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(peer_is_root(&a), nix::unistd::getuid().is_root());
    }

    #[test]
    fn the_client_talks_to_a_holder_over_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hold.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let mut held = Held::with_check(any_fd);
            for _ in 0..4 {
                let (peer, _) = listener.accept().unwrap();
                held.serve(&peer, true).unwrap();
            }
        });
        let client = HoldClient::new(path);
        assert!(client.take().unwrap().is_none());
        let (r, _w) = nix::unistd::pipe().unwrap();
        client.store(r.as_fd()).unwrap();
        let back = client.take().unwrap().expect("the stored fd");
        assert_ne!(back.as_raw_fd(), r.as_raw_fd());
        assert_eq!(ino(back.as_fd()), ino(r.as_fd()));
        client.release().unwrap();
        server.join().unwrap();
        let gone = HoldClient::new(dir.path().join("nobody.sock"));
        assert!(matches!(gone.take(), Err(Error::Hold { .. })));
    }
}
