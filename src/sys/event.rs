//! Permission events and their answers: the bytes read(2) returns from a fanotify group, parsed without
//! pointer casts into [`Event`]s that own their fds, and the [`Response`] a [`Responder`] writes back.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

/// Event bits, typed: `Mask::FAN_OPEN_EXEC_PERM` (the exec-path open of a file: execve, the `#!`
/// interpreter, ld.so), `Mask::FAN_OPEN_PERM` (any open: the open guard), `Mask::FAN_EVENT_ON_CHILD`.
pub use nix::sys::fanotify::MaskFlags as Mask;

/// Every permission event bit we may subscribe to.
const PERMISSION_EVENTS: Mask = Mask::FAN_OPEN_PERM.union(Mask::FAN_OPEN_EXEC_PERM).union(Mask::FAN_ACCESS_PERM);

const METADATA_LEN: usize = std::mem::size_of::<libc::fanotify_event_metadata>();

/// The answer to a permission event. `DenyAudited` asks the kernel for an audit record too (where the
/// group was created with FAN_ENABLE_AUDIT; elsewhere it answers the same as `Deny`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    Allow,
    Deny,
    DenyAudited,
}

impl Response {
    pub fn allows(self) -> bool {
        self == Response::Allow
    }

    pub(super) fn audited(self) -> bool {
        self == Response::DenyAudited
    }
}

/// What answers permission events. The fanotify group answers the kernel; the decision path takes any
/// `Responder`, so that it can be driven without root by events built from ordinary files, its answers
/// recorded.
pub trait Responder {
    /// Answers the permission event whose file is `fd` (the event's own fd: the kernel matches the
    /// response to the event by that fd number).
    fn respond(&self, fd: BorrowedFd<'_>, answer: Response) -> io::Result<()>;
}

/// A permission event. It owns the fd of the file being opened; answer it with a [`Responder`].
#[derive(Debug)]
pub struct Event {
    pub fd: Option<OwnedFd>,
    /// The thread group id of the process that triggered the event.
    pub pid: i32,
    pub mask: Mask,
}

impl Event {
    pub fn is_permission(&self) -> bool {
        self.mask.intersects(PERMISSION_EVENTS)
    }
}

/// Turns one batch returned by read(2) on a fanotify group into events, appended to `out`; each event
/// owns its fd. Returns how many were parsed. A record in a format we do not understand ends the batch;
/// its fd is closed so that it does not leak (the kernel answers an event that is never answered when the
/// group closes).
///
/// # Safety
///
/// `batch` must be bytes that one read(2) on a fanotify group has just returned to this process, and they
/// must be passed here once. The kernel installed an fd for each event record in that read; nothing in the
/// process owns those fds yet, and the events created here take ownership of them (and close them on drop).
pub(super) unsafe fn take_events(batch: &[u8], out: &mut Vec<Event>) -> usize {
    let mut count = 0;
    let mut rest = batch;
    while rest.len() >= METADATA_LEN {
        let Some(header) = EventHeader::parse(rest) else {
            break;
        };
        let event_len = header.event_len as usize;
        // SAFETY: a non-negative `fd` of a record in `batch` is an fd the kernel installed for this very read
        // and that nobody owns yet (this function's contract: fresh bytes, parsed once), so it is open and
        // ours alone; ownership passes to the `OwnedFd`, which closes it on drop.
        let fd = (header.fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(header.fd) });
        if header.vers != libc::FANOTIFY_METADATA_VERSION || event_len < METADATA_LEN {
            drop(fd);
            break;
        }
        out.push(Event { fd, pid: header.pid, mask: Mask::from_bits_retain(header.mask) });
        count += 1;
        rest = rest.get(event_len..).unwrap_or_default();
    }
    count
}

/// The fixed part of `struct fanotify_event_metadata`, parsed from bytes without pointer casts.
struct EventHeader {
    event_len: u32,
    vers: u8,
    mask: u64,
    fd: i32,
    pid: i32,
}

impl EventHeader {
    fn parse(b: &[u8]) -> Option<Self> {
        let u32_at = |o: usize| b.get(o..o + 4)?.try_into().ok().map(u32::from_ne_bytes);
        let i32_at = |o: usize| b.get(o..o + 4)?.try_into().ok().map(i32::from_ne_bytes);
        let u64_at = |o: usize| b.get(o..o + 8)?.try_into().ok().map(u64::from_ne_bytes);
        // The kernel's layout of `struct fanotify_event_metadata`: u32 event_len, u8 vers, u8 reserved,
        // u16 metadata_len, u64 mask (aligned at 8), s32 fd, s32 pid.
        Some(Self { event_len: u32_at(0)?, vers: *b.get(4)?, mask: u64_at(8)?, fd: i32_at(16)?, pid: i32_at(20)? })
    }
}

/// Header parsing, exposed for the property test over arbitrary bytes.
#[cfg(test)]
pub fn parse_header_for_tests(b: &[u8]) -> Option<(u32, u64, i32, i32)> {
    EventHeader::parse(b).map(|h| (h.event_len, h.mask, h.fd, h.pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parses_native_layout() {
        let mut b = [0u8; METADATA_LEN];
        b[0..4].copy_from_slice(&24u32.to_ne_bytes());
        b[4] = 3;
        b[8..16].copy_from_slice(&libc::FAN_OPEN_EXEC_PERM.to_ne_bytes());
        b[16..20].copy_from_slice(&7i32.to_ne_bytes());
        b[20..24].copy_from_slice(&1234i32.to_ne_bytes());
        let h = EventHeader::parse(&b).unwrap();
        assert_eq!((h.event_len, h.vers, h.mask, h.fd, h.pid), (24, 3, libc::FAN_OPEN_EXEC_PERM, 7, 1234));
        assert!(EventHeader::parse(&b[..20]).is_none());
    }
}
