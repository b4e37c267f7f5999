//! The fanotify group: created or adopted, its marks, reading a batch of events, answering them.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags};

use super::event::{self, Event, Mask, Responder, Response};

/// A fanotify group created for permission events only.
#[derive(Debug)]
pub struct FanotifyGroup {
    inner: Fanotify,
    audit: bool,
}

impl FanotifyGroup {
    /// Creates the group: FAN_CLASS_CONTENT, unlimited queue and marks, close-on-exec, and FAN_ENABLE_AUDIT
    /// where the kernel takes it (it refuses it without CONFIG_AUDITSYSCALL).
    ///
    /// The event fds are opened O_NOATIME where the kernel takes it: the open guard's read of a file's first
    /// bytes then leaves its access time alone (an open for writing, or one that reads nothing, is not made
    /// to look like a read), and costs no inode update and journal write on the decision path. The kernel
    /// opens event fds itself, without the owner-or-CAP_FOWNER check of open(2).
    pub fn new() -> Result<Self, Errno> {
        let base = InitFlags::FAN_CLASS_CONTENT
            | InitFlags::FAN_CLOEXEC
            | InitFlags::FAN_UNLIMITED_QUEUE
            | InitFlags::FAN_UNLIMITED_MARKS;
        let plain = EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC;
        let with_audit = base | InitFlags::from_bits_retain(libc::FAN_ENABLE_AUDIT);
        let mut last = Errno::EINVAL;
        for (flags, audit) in [(with_audit, true), (base, false)] {
            for event_flags in [plain | EventFFlags::O_NOATIME, plain] {
                match Fanotify::init(flags, event_flags) {
                    Ok(inner) => return Ok(Self { inner, audit }),
                    Err(e @ (Errno::EINVAL | Errno::EPERM)) => last = e,
                    Err(e) => return Err(e),
                }
            }
        }
        Err(last)
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

    /// Puts a mount mark for `mask` on the mount `path` is reached through (its mount point): it sees every
    /// file opened through that mount, whatever directory below it the file lies in, and nothing reached
    /// through another mount of the same filesystem (another namespace's copy, another bind).
    pub fn mark_mount(&self, path: &Path, mask: Mask) -> Result<(), Errno> {
        self.inner.mark(MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_MOUNT, mask, nix::fcntl::AT_FDCWD, Some(path))
    }

    /// Removes `mask` from the mount mark of the mount `path` is reached through.
    pub fn unmark_mount(&self, path: &Path, mask: Mask) -> Result<(), Errno> {
        self.inner.mark(MarkFlags::FAN_MARK_REMOVE | MarkFlags::FAN_MARK_MOUNT, mask, nix::fcntl::AT_FDCWD, Some(path))
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

    /// Puts an inode mark for `mask` on the file or directory open at `fd` (no path: no name can be swapped
    /// under us between the check and the mark).
    pub fn mark_fd(&self, fd: BorrowedFd<'_>, mask: Mask) -> Result<(), Errno> {
        self.inner.mark::<_, Path>(MarkFlags::FAN_MARK_ADD, mask, fd, None)
    }

    /// Removes `mask` from the inode mark of the file or directory open at `fd`.
    pub fn unmark_fd(&self, fd: BorrowedFd<'_>, mask: Mask) -> Result<(), Errno> {
        self.inner.mark::<_, Path>(MarkFlags::FAN_MARK_REMOVE, mask, fd, None)
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
    /// cache and of the FD store); filesystem and mount marks stay.
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

    /// Removes every mount mark of this group.
    pub fn flush_mount_marks(&self) -> Result<(), Errno> {
        self.inner.mark::<_, Path>(
            MarkFlags::FAN_MARK_FLUSH | MarkFlags::FAN_MARK_MOUNT,
            Mask::empty(),
            nix::fcntl::AT_FDCWD,
            None,
        )
    }

    /// Reads one batch of events into `buf` and appends them to `out`. Returns the number read.
    /// Blocks until at least one event is queued unless the group fd was set non-blocking.
    ///
    /// The batch is parsed from the caller's buffer, so the decision path allocates nothing per batch
    /// (nix's own `read_events` allocates a Vec per call).
    pub fn read_events(&self, buf: &mut [u8], out: &mut Vec<Event>) -> io::Result<usize> {
        let n = nix::unistd::read(self.inner.as_fd(), buf).map_err(io::Error::from)?;
        let batch = buf.get(..n).unwrap_or_default();
        // SAFETY: `batch` is exactly what this read(2) on our fanotify group has just returned, and it is
        // parsed here once: the event fds in it were installed for this read and nobody owns them yet.
        Ok(unsafe { event::take_events(batch, out) })
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

impl Responder for FanotifyGroup {
    /// Writes the answer to the kernel, with FAN_AUDIT when the answer asks for a record and the group
    /// was created with FAN_ENABLE_AUDIT.
    fn respond(&self, fd: BorrowedFd<'_>, answer: Response) -> io::Result<()> {
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
}

impl AsFd for FanotifyGroup {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}
