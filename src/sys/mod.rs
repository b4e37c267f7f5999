//! The only module with `unsafe` and raw libc calls: the fanotify group, its events and responses, and the
//! two fd queries the decision path needs (statx, readlink of /proc/self/fd/N). Everything above this layer
//! works with owned and borrowed fds and plain byte slices.
//!
//! Model: nix's `sys::fanotify`. An [`Event`] owns its fd (closed on drop); a response borrows it. We read
//! into a caller-owned buffer (nix's `read_events` reads 4096 bytes and allocates a Vec per call) so the
//! decision path allocates nothing per batch.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags};

/// Event bits, typed: `Mask::FAN_OPEN_EXEC_PERM` (the exec-path open of a file: execve, the `#!`
/// interpreter, ld.so), `Mask::FAN_OPEN_PERM` (any open: the open guard), `Mask::FAN_EVENT_ON_CHILD`.
pub use nix::sys::fanotify::MaskFlags as Mask;

/// Every permission event bit we may subscribe to.
const PERMISSION_EVENTS: Mask = Mask::FAN_OPEN_PERM.union(Mask::FAN_OPEN_EXEC_PERM).union(Mask::FAN_ACCESS_PERM);

/// The answer to a permission event. `Audit` variants ask the kernel for an audit record too (where the
/// group was created with FAN_ENABLE_AUDIT; elsewhere they answer the same without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    Allow,
    AllowAudited,
    Deny,
    DenyAudited,
}

impl Response {
    /// The response for a decision: `allow` or not, with an audit record when `audit`.
    pub fn new(allow: bool, audit: bool) -> Self {
        match (allow, audit) {
            (true, false) => Response::Allow,
            (true, true) => Response::AllowAudited,
            (false, false) => Response::Deny,
            (false, true) => Response::DenyAudited,
        }
    }

    pub fn allows(self) -> bool {
        matches!(self, Response::Allow | Response::AllowAudited)
    }

    fn audited(self) -> bool {
        matches!(self, Response::AllowAudited | Response::DenyAudited)
    }
}
const METADATA_LEN: usize = std::mem::size_of::<libc::fanotify_event_metadata>();

/// A fanotify group created for permission events only.
#[derive(Debug)]
pub struct FanotifyGroup {
    inner: Fanotify,
    audit: bool,
}

impl FanotifyGroup {
    /// Creates the group: FAN_CLASS_CONTENT, unlimited queue and marks, close-on-exec, and FAN_ENABLE_AUDIT
    /// where the kernel takes it (it refuses it without CONFIG_AUDITSYSCALL).
    pub fn new() -> Result<Self, Errno> {
        let base = InitFlags::FAN_CLASS_CONTENT
            | InitFlags::FAN_CLOEXEC
            | InitFlags::FAN_UNLIMITED_QUEUE
            | InitFlags::FAN_UNLIMITED_MARKS;
        let event_flags = EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC;
        let with_audit = base | InitFlags::from_bits_retain(libc::FAN_ENABLE_AUDIT);
        match Fanotify::init(with_audit, event_flags) {
            Ok(inner) => Ok(Self { inner, audit: true }),
            Err(Errno::EINVAL | Errno::EPERM) => {
                Fanotify::init(base, event_flags).map(|inner| Self { inner, audit: false })
            }
            Err(e) => Err(e),
        }
    }

    /// Adopts a group fd handed back by systemd's FD store.
    ///
    /// The caller names the fd it was given through `LISTEN_FDS`; it must be a fanotify group this daemon
    /// created earlier. Ownership passes to the returned group.
    pub fn adopt(fd: OwnedFd, audit: bool) -> Self {
        // SAFETY: `fd` is owned (so open and ours alone) and was stored by this daemon as its fanotify group,
        // which is the invariant `from_owned_fd` asks for; a wrong fd would only make later calls fail.
        let inner = unsafe { Fanotify::from_owned_fd(fd) };
        Self { inner, audit }
    }

    /// Puts a filesystem (superblock) mark for `mask` on the filesystem that holds `path`.
    pub fn mark_filesystem(&self, path: &Path, mask: Mask) -> Result<(), Errno> {
        self.inner.mark(
            MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_FILESYSTEM,
            mask,
            nix::fcntl::AT_FDCWD,
            Some(path),
        )
    }

    /// Removes the filesystem mark for `mask` from the filesystem that holds `path`.
    pub fn unmark_filesystem(&self, path: &Path, mask: Mask) -> Result<(), Errno> {
        self.inner.mark(
            MarkFlags::FAN_MARK_REMOVE | MarkFlags::FAN_MARK_FILESYSTEM,
            mask,
            nix::fcntl::AT_FDCWD,
            Some(path),
        )
    }

    /// Puts an inode mark for `mask` on the file or directory at `path`; on a directory, `FAN_EVENT_ON_CHILD`
    /// extends it to the files directly inside. An inode mark sees every mount and namespace.
    pub fn mark_inode(&self, path: &Path, mask: Mask) -> Result<(), Errno> {
        self.inner.mark(
            MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_DONT_FOLLOW,
            mask,
            nix::fcntl::AT_FDCWD,
            Some(path),
        )
    }

    /// Adds an ignore mask for `mask` to the inode at `path`: the kernel raises no such event for that file
    /// from any mark of this group, until the file is modified.
    pub fn ignore_inode(&self, path: &Path, mask: Mask) -> Result<(), Errno> {
        self.inner.mark(
            MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_IGNORED_MASK,
            mask,
            nix::fcntl::AT_FDCWD,
            Some(path),
        )
    }

    /// Adds an ignore mask for `mask` to the inode behind the open file `fd` (fanotify_mark with dirfd = the
    /// fd and a NULL path marks that very inode). No `FAN_MARK_IGNORED_SURV_MODIFY`: the kernel drops the
    /// ignore mask the first time the file is modified, so a rewritten file is decided again.
    pub fn ignore_fd(&self, fd: BorrowedFd<'_>, mask: Mask) -> Result<(), Errno> {
        self.inner.mark::<_, Path>(MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_IGNORED_MASK, mask, fd, None)
    }

    /// Removes every inode mark of this group (the open guard's directory marks, the ignore marks of the exec
    /// cache and of the FD store); filesystem marks stay.
    pub fn flush_inode_marks(&self) -> Result<(), Errno> {
        self.inner.mark::<_, Path>(MarkFlags::FAN_MARK_FLUSH, Mask::empty(), nix::fcntl::AT_FDCWD, None)
    }

    /// Removes every filesystem mark of this group.
    pub fn flush_filesystem_marks(&self) -> Result<(), Errno> {
        self.inner.mark::<_, Path>(
            MarkFlags::FAN_MARK_FLUSH | MarkFlags::FAN_MARK_FILESYSTEM,
            Mask::empty(),
            nix::fcntl::AT_FDCWD,
            None,
        )
    }

    /// Reads one batch of events into `buf` and appends them to `out`. Returns the number read.
    /// Blocks until at least one event is queued unless the group fd was set non-blocking.
    pub fn read_events(&self, buf: &mut [u8], out: &mut Vec<Event>) -> io::Result<usize> {
        let n = match nix::unistd::read(self.inner.as_fd(), buf) {
            Ok(n) => n,
            Err(e) => return Err(io::Error::from(e)),
        };
        let mut count = 0;
        let mut rest = buf.get(..n).unwrap_or_default();
        while rest.len() >= METADATA_LEN {
            let Some(header) = EventHeader::parse(rest) else {
                break;
            };
            let event_len = header.event_len as usize;
            if header.vers != libc::FANOTIFY_METADATA_VERSION || event_len < METADATA_LEN {
                // A format we do not understand: close the fd so it does not leak; the kernel answers an
                // event that is never answered when the group closes.
                if header.fd >= 0 {
                    close_event_fd(header.fd);
                }
                break;
            }
            let fd = (header.fd >= 0).then(|| adopt_event_fd(header.fd));
            out.push(Event { fd, pid: header.pid, mask: Mask::from_bits_retain(header.mask) });
            count += 1;
            rest = rest.get(event_len..).unwrap_or_default();
        }
        Ok(count)
    }

    /// Answers a permission event.
    pub fn respond(&self, fd: BorrowedFd<'_>, answer: Response) -> io::Result<()> {
        let mut response = if answer.allows() { libc::FAN_ALLOW } else { libc::FAN_DENY };
        if answer.audited() && self.audit {
            response |= libc::FAN_AUDIT;
        }
        match self.write_response(fd.as_raw_fd(), response) {
            // An event must never stay unanswered for want of an audit record.
            Err(Errno::EINVAL) if response & libc::FAN_AUDIT != 0 => {
                self.write_response(fd.as_raw_fd(), response & !libc::FAN_AUDIT)
            }
            other => other,
        }
        .map_err(io::Error::from)
    }

    /// Denies every event that an earlier holder of this group read but never answered.
    ///
    /// A daemon killed between reading events and answering them leaves those events in the group's
    /// "awaiting response" list under fd numbers of the dead process: nobody else can ever answer them and
    /// their processes would wait forever while the group lives on in systemd's FD store. The kernel
    /// matches a response by fd number alone, so answering each number below `max_fd` reaches all of them.
    /// Call it right after adopting the group, before reading from it, so that every match is stale.
    pub fn deny_stale_events(&self, max_fd: i32) -> usize {
        (0..max_fd).filter(|&n| self.write_response(n, libc::FAN_DENY).is_ok()).count()
    }

    fn write_response(&self, fd: RawFd, response: u32) -> Result<(), Errno> {
        let mut bytes = [0u8; 8];
        let (fd_bytes, response_bytes) = bytes.split_at_mut(4);
        fd_bytes.copy_from_slice(&fd.to_ne_bytes());
        response_bytes.copy_from_slice(&response.to_ne_bytes());
        nix::unistd::write(self.inner.as_fd(), &bytes).map(|_| ())
    }
}

impl AsFd for FanotifyGroup {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
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
        // Layout (include/uapi/linux/fanotify.h): u32 event_len, u8 vers, u8 reserved, u16 metadata_len,
        // u64 mask (aligned at 8), s32 fd, s32 pid.
        Some(Self { event_len: u32_at(0)?, vers: *b.get(4)?, mask: u64_at(8)?, fd: i32_at(16)?, pid: i32_at(20)? })
    }
}

/// Header parsing, exposed for the property test over arbitrary bytes.
#[cfg(test)]
pub fn parse_header_for_tests(b: &[u8]) -> Option<(u32, u64, i32, i32)> {
    EventHeader::parse(b).map(|h| (h.event_len, h.mask, h.fd, h.pid))
}

fn adopt_event_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: callers pass an fd that is open and theirs alone: one the kernel has just installed for an event
    // and handed over through read(2), or one systemd passed through LISTEN_FDS (checked open by fcntl).
    // Nothing else owns it, so taking ownership (and closing it on drop) is sound.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn close_event_fd(fd: RawFd) {
    drop(adopt_event_fd(fd));
}

/// A permission event. It owns the fd of the file being opened; answer it with [`FanotifyGroup::respond`].
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

/// What the decision needs to know about the file behind an event fd, from one statx(2) call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFacts {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub uid: u32,
    pub nlink: u32,
    /// Status change time (ctime) in nanoseconds: moves on every write, chmod, chown and link change.
    pub changed_ns: i64,
    /// The mount the file was opened through (`STATX_MNT_ID`), when the kernel reports it.
    pub mnt_id: Option<u64>,
}

impl FileFacts {
    pub fn is_regular(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
}

/// statx(fd, "", AT_EMPTY_PATH): device, inode, owner, link count and mount id of an open file.
pub fn file_facts(fd: BorrowedFd<'_>) -> io::Result<FileFacts> {
    let mut stx = std::mem::MaybeUninit::<libc::statx>::uninit();
    let mask = libc::STATX_BASIC_STATS | libc::STATX_MNT_ID;
    // SAFETY: the path is a valid NUL-terminated empty string, `fd` is a live fd borrowed for the call, and
    // `stx` points to writable memory of the size statx expects.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_STATX_SYNC_AS_STAT,
            mask,
            stx.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statx returned 0, so the kernel filled the whole struct.
    let stx = unsafe { stx.assume_init() };
    Ok(FileFacts {
        dev: libc::makedev(stx.stx_dev_major, stx.stx_dev_minor),
        ino: stx.stx_ino,
        mode: u32::from(stx.stx_mode),
        uid: stx.stx_uid,
        nlink: stx.stx_nlink,
        changed_ns: stx.stx_ctime.tv_sec.saturating_mul(1_000_000_000).saturating_add(i64::from(stx.stx_ctime.tv_nsec)),
        mnt_id: (stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id),
    })
}

/// Reads the first bytes of the file behind an event fd (pread at offset 0: the fd's offset is left alone,
/// and reads through a fanotify event fd raise no events). Returns how many bytes were read.
pub fn read_head(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::sys::uio::pread(fd, buf, 0) {
            Err(Errno::EINTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// Size of the buffer [`fd_path`] needs: PATH_MAX plus one byte to detect truncation.
pub const PATH_BUF_LEN: usize = libc::PATH_MAX as usize + 1;

/// The path of an open file as the kernel prints it (readlink of /proc/self/fd/N), written into `buf`
/// without allocating. Fails with ENAMETOOLONG when the name does not fit in PATH_MAX.
pub fn fd_path<'b>(fd: BorrowedFd<'_>, buf: &'b mut [u8; PATH_BUF_LEN]) -> io::Result<&'b [u8]> {
    let mut link = [0u8; 32];
    let prefix = b"/proc/self/fd/";
    let mut len = prefix.len();
    link.get_mut(..len).ok_or_else(enametoolong)?.copy_from_slice(prefix);
    let mut digits = [0u8; 12];
    let mut n = fd.as_raw_fd().unsigned_abs();
    let mut d = digits.len();
    loop {
        d -= 1;
        *digits.get_mut(d).ok_or_else(enametoolong)? = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let digits = digits.get(d..).ok_or_else(enametoolong)?;
    link.get_mut(len..len + digits.len()).ok_or_else(enametoolong)?.copy_from_slice(digits);
    len += digits.len();
    // `link` is zero-initialised and len < 32, so link[len] is the terminating NUL.
    if len >= link.len() {
        return Err(enametoolong());
    }
    // SAFETY: `link` is NUL-terminated within its bounds (checked above) and `buf` is writable for its full
    // length, which is the size passed to readlink.
    let n = unsafe { libc::readlink(link.as_ptr().cast(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    if n >= buf.len() {
        return Err(enametoolong());
    }
    buf.get(..n).ok_or_else(enametoolong)
}

fn enametoolong() -> io::Error {
    io::Error::from_raw_os_error(libc::ENAMETOOLONG)
}

/// Takes ownership of an fd inherited through systemd's `LISTEN_FDS` protocol, if it is open.
///
/// Call it once per fd number that `LISTEN_FDS` names: the protocol hands those fds to this process alone.
pub fn inherited_fd(raw: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_GETFD only queries the fd table; an fd that is not open yields EBADF and no side effect.
    let open = unsafe { libc::fcntl(raw, libc::F_GETFD) } >= 0;
    open.then(|| adopt_event_fd(raw))
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

    #[test]
    fn read_head_reads_from_offset_zero() {
        use std::io::{Read, Write};
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"#!/bin/sh\necho hi\n").unwrap();
        let mut head = [0u8; 4];
        assert_eq!(read_head(file.as_fd(), &mut head).unwrap(), 4);
        assert_eq!(&head, b"#!/b");
        let mut rest = Vec::new();
        file.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "the offset stays where the writer left it");
    }

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

    #[test]
    fn fd_path_reads_an_open_file() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut buf = [0u8; PATH_BUF_LEN];
        let path = fd_path(file.as_file().as_fd(), &mut buf).unwrap();
        assert_eq!(path, file.path().as_os_str().as_encoded_bytes());
        let facts = file_facts(file.as_file().as_fd()).unwrap();
        assert_eq!(facts.nlink, 1);
        assert!(facts.mnt_id.is_some());
    }
}
