//! Passing one fd over a Unix stream socket (`SCM_RIGHTS`): how `noexecd hold` and the daemon hand the
//! fanotify group to each other. Messages are short and fixed-size; each carries at most one fd.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// Sends `msg` on `sock`, with `fd` attached when given.
pub fn send_with_fd(sock: BorrowedFd<'_>, msg: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let iov = [IoSlice::new(msg)];
    let fds: [RawFd; 1] = [fd.map_or(-1, |f| f.as_raw_fd())];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let cmsgs: &[ControlMessage<'_>] = if fd.is_some() { &cmsg } else { &[] };
    let sent = sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
    if sent != msg.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
    }
    Ok(())
}

/// Receives one message into `buf` (its length in bytes) and the fd it carried, if any. Every fd the
/// message carried beyond the first is closed; `MSG_CMSG_CLOEXEC` keeps them out of any child.
pub fn recv_with_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 2]);
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let len = msg.bytes;
    let mut received: Vec<RawFd> = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            received.extend(fds);
        }
    }
    let mut owned = received.into_iter().map(|raw| {
        // SAFETY: the kernel installed `raw` in our fd table for this message just now (SCM_RIGHTS); no
        // other code in the process knows the number, so this is its only owner and closes it once.
        unsafe { OwnedFd::from_raw_fd(raw) }
    });
    let first = owned.next();
    // Extra fds are dropped (closed) here.
    owned.for_each(drop);
    Ok((len, first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn an_fd_crosses_the_socket() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        send_with_fd(a.as_fd(), b"abcd", Some(file.as_fd())).unwrap();
        let mut buf = [0u8; 8];
        let (n, fd) = recv_with_fd(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"abcd");
        let fd = fd.expect("an fd");
        let st = |f: BorrowedFd<'_>| nix::sys::stat::fstat(f).map(|s| (s.st_dev, s.st_ino)).unwrap();
        assert_eq!(st(fd.as_fd()), st(file.as_fd()));
        send_with_fd(a.as_fd(), b"none", None).unwrap();
        let (n, fd) = recv_with_fd(b.as_fd(), &mut buf).unwrap();
        assert_eq!((&buf[..n], fd.is_none()), (b"none".as_slice(), true));
    }
}
