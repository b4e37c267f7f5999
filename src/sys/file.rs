//! What the decision path asks of the file behind an event fd: its facts from one statx(2), its first
//! bytes, and its name as the kernel prints it; and the links of a caller's /proc directory. Nothing here
//! allocates.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// What the decision needs to know about the file behind an event fd, from one statx(2) call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFacts {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub uid: u32,
    pub nlink: u32,
    /// Size in bytes.
    pub size: u64,
    /// Status change time (ctime) in nanoseconds: moves on every write, chmod, chown and link change.
    pub changed_ns: i64,
    /// The mount the file was opened through (`STATX_MNT_ID`), when the kernel reports it.
    pub mnt_id: Option<u64>,
    /// The btrfs (or bcachefs) subvolume holding the file (`STATX_SUBVOL`, Linux 6.10), where reported.
    pub subvol: Option<u64>,
    /// Whether it is the root of a mount (`STATX_ATTR_MOUNT_ROOT`, Linux 5.8), where reported.
    pub mount_root: Option<bool>,
}

impl FileFacts {
    pub fn is_regular(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }

    /// Whether this directory, found in a directory on device `parent_dev`, is on the parent's mount (and so its
    /// superblock): the same device, or another one at a place no mount is rooted (a btrfs subvolume).
    pub fn on_mount_of_parent(&self, parent_dev: u64) -> bool {
        self.dev == parent_dev || self.mount_root == Some(false)
    }
}

/// statx(fd, "", AT_EMPTY_PATH): device, inode, owner, link count and mount id of an open file.
pub fn file_facts(fd: BorrowedFd<'_>) -> io::Result<FileFacts> {
    statx_at(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH)
}

/// [`file_facts`] of the file a path names, not following a last symlink (allocates: not for the decision path).
pub fn path_facts(path: &std::path::Path) -> io::Result<FileFacts> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(Errno::EINVAL))?;
    statx_at(libc::AT_FDCWD, &path, libc::AT_SYMLINK_NOFOLLOW)
}

fn statx_at(dirfd: RawFd, path: &std::ffi::CStr, flags: libc::c_int) -> io::Result<FileFacts> {
    let mut stx = std::mem::MaybeUninit::<libc::statx>::uninit();
    let mask = libc::STATX_BASIC_STATS | libc::STATX_MNT_ID | libc::STATX_SUBVOL;
    // SAFETY: `path` is a valid NUL-terminated string, `dirfd` is AT_FDCWD or a live fd the caller borrowed
    // for the call, and `stx` points to writable memory of the size statx expects.
    let rc = unsafe { libc::statx(dirfd, path.as_ptr(), flags | libc::AT_STATX_SYNC_AS_STAT, mask, stx.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statx returned 0, so the kernel filled the whole struct.
    let stx = unsafe { stx.assume_init() };
    let mount_root = libc::STATX_ATTR_MOUNT_ROOT as u64;
    Ok(FileFacts {
        dev: libc::makedev(stx.stx_dev_major, stx.stx_dev_minor),
        ino: stx.stx_ino,
        mode: u32::from(stx.stx_mode),
        uid: stx.stx_uid,
        nlink: stx.stx_nlink,
        size: stx.stx_size,
        changed_ns: stx.stx_ctime.tv_sec.saturating_mul(1_000_000_000).saturating_add(i64::from(stx.stx_ctime.tv_nsec)),
        mnt_id: (stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id),
        subvol: (stx.stx_mask & libc::STATX_SUBVOL != 0).then_some(stx.stx_subvol),
        mount_root: (stx.stx_attributes_mask & mount_root != 0).then_some(stx.stx_attributes & mount_root != 0),
    })
}

/// The mount the file behind `fd` was opened through, by its unique id (`STATX_MNT_ID_UNIQUE`, Linux 6.8):
/// unlike the id mountinfo shows, it is never given to another mount, so what was learnt about the mount
/// stays true of it. `None` on older kernels.
pub fn mount_unique_id(fd: BorrowedFd<'_>) -> Option<u64> {
    let mut stx = std::mem::MaybeUninit::<libc::statx>::uninit();
    // SAFETY: as in `file_facts`: an empty NUL-terminated path, a live borrowed fd, and writable memory of
    // the size statx expects.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_STATX_SYNC_AS_STAT,
            libc::STATX_MNT_ID_UNIQUE,
            stx.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: statx returned 0, so the kernel filled the whole struct.
    let stx = unsafe { stx.assume_init() };
    (stx.stx_mask & libc::STATX_MNT_ID_UNIQUE != 0).then_some(stx.stx_mnt_id)
}

/// Reads the first bytes of the file behind an event fd (pread at offset 0: the fd's offset is left alone,
/// and reads through a fanotify event fd raise no events). Returns how many bytes were read.
pub fn read_head(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    read_at(fd, buf, 0)
}

/// Reads bytes of the file behind an event fd from `offset` on (pread, as [`read_head`]). Returns how many
/// bytes were read.
pub fn read_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let offset = libc::off_t::try_from(offset).map_err(|_| io::Error::from(Errno::EINVAL))?;
    loop {
        match nix::sys::uio::pread(fd, buf, offset) {
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
    let mut name = Name::default();
    name.push(b"/proc/self/fd/")?;
    name.push_number(u64::from(fd.as_raw_fd().unsigned_abs()))?;
    readlink_at(libc::AT_FDCWD, &name, buf)
}

/// `/proc` and `/proc/self/fd`, opened once (O_PATH): names under them are then read relative to these, a
/// lookup of one or two components instead of walking `/proc`, `self` and the pid's directory every time.
/// Either may be missing (no /proc at start): then the absolute names are used, as before.
#[derive(Debug)]
pub struct ProcDirs {
    proc: Option<OwnedFd>,
    self_fd: Option<OwnedFd>,
}

impl ProcDirs {
    pub fn open() -> Self {
        Self { proc: open_dir(c"/proc"), self_fd: open_dir(c"/proc/self/fd") }
    }

    /// [`fd_path`], through `/proc/self/fd` opened once.
    pub fn fd_path<'b>(&self, fd: BorrowedFd<'_>, buf: &'b mut [u8; PATH_BUF_LEN]) -> io::Result<&'b [u8]> {
        let Some(dir) = self.self_fd.as_ref() else {
            return fd_path(fd, buf);
        };
        let mut name = Name::default();
        name.push_number(u64::from(fd.as_raw_fd().unsigned_abs()))?;
        readlink_at(dir.as_raw_fd(), &name, buf)
    }

    /// The whole of `/proc/PID/FILE` (`cgroup`, `mountinfo`) into `buf`, replacing what it held: opened
    /// relative to `/proc` and read in large chunks, so that a buffer kept by the caller makes it one open,
    /// a read or two and a close (`std::fs::read` grows its buffer from 32 bytes, a read per doubling).
    pub fn read_pid_file(&self, pid: i32, file: &[u8], buf: &mut Vec<u8>) -> io::Result<()> {
        const CHUNK: usize = 16 * 1024;
        buf.clear();
        let (dir, name) = self.pid_entry(pid, file)?;
        // SAFETY: `name.bytes` is NUL-terminated within its bounds (see `readlink_at`); `dir` is AT_FDCWD or an
        // fd `ProcDirs` owns for its whole life. open returns a new fd or -1.
        let raw = unsafe { libc::openat(dir, name.bytes.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a non-negative return of openat is a fresh fd owned by nobody else.
        let file = unsafe { OwnedFd::from_raw_fd(raw) };
        loop {
            // Into the buffer's spare room, not zero-filled first: the buffer is kept by the caller and
            // reused, so after the first read this is a read with no allocation and no 16 KiB memset.
            buf.reserve(CHUNK);
            let spare = buf.spare_capacity_mut();
            // SAFETY: `spare` is the vector's allocated, unused tail; read writes at most `spare.len()` bytes
            // there and returns how many (or -1). `file` is open for the whole call.
            let got = unsafe { libc::read(file.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
            let Ok(n) = usize::try_from(got) else {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(e);
            };
            if n == 0 {
                return Ok(());
            }
            // SAFETY: read initialized the first `n` bytes of the spare room, and `n <= spare.len()`.
            unsafe { buf.set_len(buf.len().saturating_add(n)) };
        }
    }

    /// readlink of `/proc/PID/LINK` (`exe`, `cwd`, `root`) into `buf`, without allocating.
    pub fn pid_link<'b>(&self, pid: i32, link: &[u8], buf: &'b mut [u8; PATH_BUF_LEN]) -> io::Result<&'b [u8]> {
        let (dir, name) = self.pid_entry(pid, link)?;
        readlink_at(dir, &name, buf)
    }

    /// statx of `path` as process `pid` would find it: below its root (`/proc/PID/root`) when absolute, below
    /// its working directory (`/proc/PID/cwd`) when relative, symlinks followed as exec follows them. A path
    /// lookup opens nothing, so it raises no fanotify event. Nothing is allocated.
    pub fn pid_path_facts(&self, pid: i32, path: &[u8]) -> io::Result<FileFacts> {
        if path.contains(&0) {
            return Err(Errno::EINVAL.into());
        }
        let (dir, name) = self.pid_entry(pid, if path.starts_with(b"/") { b"root" } else { b"cwd/" })?;
        let mut full = [0u8; PATH_BUF_LEN];
        let head = name.bytes.get(..name.len).ok_or_else(enametoolong)?;
        let end = head.len().checked_add(path.len()).filter(|&e| e < full.len()).ok_or_else(enametoolong)?;
        full.get_mut(..head.len()).ok_or_else(enametoolong)?.copy_from_slice(head);
        full.get_mut(head.len()..end).ok_or_else(enametoolong)?.copy_from_slice(path);
        let full = std::ffi::CStr::from_bytes_until_nul(&full).map_err(|_| io::Error::from(Errno::EINVAL))?;
        statx_at(dir, full, 0)
    }

    /// `PID/ENTRY` relative to our `/proc` fd, or `/proc/PID/ENTRY` where `/proc` could not be opened.
    fn pid_entry(&self, pid: i32, entry: &[u8]) -> io::Result<(RawFd, Name)> {
        let mut name = Name::default();
        if self.proc.is_none() {
            name.push(b"/proc/")?;
        }
        name.push_number(u64::from(pid.unsigned_abs()))?;
        name.push(b"/")?;
        name.push(entry)?;
        Ok((self.proc.as_ref().map_or(libc::AT_FDCWD, AsRawFd::as_raw_fd), name))
    }
}

fn open_dir(path: &std::ffi::CStr) -> Option<OwnedFd> {
    // SAFETY: `path` is NUL-terminated; open returns a new fd we own, or -1.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    // SAFETY: a non-negative return of open is a fresh fd owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A short NUL-terminated name built on the stack.
struct Name {
    bytes: [u8; 64],
    len: usize,
}

impl Default for Name {
    fn default() -> Self {
        Self { bytes: [0u8; 64], len: 0 }
    }
}

impl Name {
    /// Appends `part`, keeping room for the terminating NUL.
    fn push(&mut self, part: &[u8]) -> io::Result<()> {
        let end = self.len.checked_add(part.len()).filter(|&e| e < self.bytes.len()).ok_or_else(enametoolong)?;
        self.bytes.get_mut(self.len..end).ok_or_else(enametoolong)?.copy_from_slice(part);
        self.len = end;
        Ok(())
    }

    fn push_number(&mut self, mut n: u64) -> io::Result<()> {
        let mut digits = [0u8; 20];
        let mut d = digits.len();
        loop {
            d -= 1;
            *digits.get_mut(d).ok_or_else(enametoolong)? = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(digits.get(d..).ok_or_else(enametoolong)?)
    }
}

fn readlink_at<'b>(dir: RawFd, name: &Name, buf: &'b mut [u8; PATH_BUF_LEN]) -> io::Result<&'b [u8]> {
    // SAFETY: `name.bytes` is zero-initialised and `push` keeps len < its size, so it is NUL-terminated within
    // its bounds; `dir` is AT_FDCWD or an fd `ProcDirs` owns for its whole life; `buf` is writable for its full
    // length, which is the size passed to readlinkat.
    let n = unsafe { libc::readlinkat(dir, name.bytes.as_ptr().cast(), buf.as_mut_ptr().cast(), buf.len()) };
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn names_read_through_the_proc_dirs_are_those_of_the_absolute_paths() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let fd = file.as_file().as_fd();
        let (mut a, mut b) = (Box::new([0u8; PATH_BUF_LEN]), Box::new([0u8; PATH_BUF_LEN]));
        let dirs = ProcDirs::open();
        assert!(dirs.proc.is_some() && dirs.self_fd.is_some());
        let want = fd_path(fd, &mut a).unwrap().to_vec();
        assert_eq!(dirs.fd_path(fd, &mut b).unwrap(), want.as_slice());
        assert_eq!(want, std::os::unix::ffi::OsStrExt::as_bytes(file.path().canonicalize().unwrap().as_os_str()));
        let me = std::process::id() as i32;
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        assert_eq!(dirs.pid_link(me, b"exe", &mut b).unwrap(), std::os::unix::ffi::OsStrExt::as_bytes(exe.as_os_str()));
        let none = ProcDirs { proc: None, self_fd: None };
        assert_eq!(none.fd_path(fd, &mut b).unwrap(), want.as_slice());
        assert_eq!(none.pid_link(me, b"exe", &mut b).unwrap(), std::os::unix::ffi::OsStrExt::as_bytes(exe.as_os_str()));
        assert!(dirs.pid_link(i32::MAX, b"exe", &mut b).is_err(), "no such process");
        assert!(dirs.pid_link(me, &[b'x'; 60], &mut b).is_err(), "too long for the name buffer");
    }

    #[test]
    fn a_pid_file_is_read_whole_into_the_callers_buffer() {
        let me = std::process::id() as i32;
        let dirs = ProcDirs::open();
        let mut buf = b"left over".to_vec();
        dirs.read_pid_file(me, b"cgroup", &mut buf).unwrap();
        assert_eq!(buf, std::fs::read("/proc/self/cgroup").unwrap());
        // Longer than one chunk: mountinfo of a busy host, or the environment made long here.
        dirs.read_pid_file(me, b"mountinfo", &mut buf).unwrap();
        assert!(
            buf.ends_with(b"\n") && buf.starts_with(std::fs::read("/proc/self/mountinfo").unwrap().get(..20).unwrap())
        );
        let none = ProcDirs { proc: None, self_fd: None };
        none.read_pid_file(me, b"cgroup", &mut buf).unwrap();
        assert_eq!(buf, std::fs::read("/proc/self/cgroup").unwrap());
        assert!(dirs.read_pid_file(i32::MAX, b"cgroup", &mut buf).is_err(), "no such process");
        assert!(buf.is_empty());
    }

    #[test]
    fn the_unique_mount_id_is_not_the_mountinfo_id() {
        let file = tempfile::tempfile().unwrap();
        let facts = file_facts(file.as_fd()).unwrap();
        // Linux 6.8 and later: unique ids start above 2^31, where no reused id lives.
        if let Some(unique) = mount_unique_id(file.as_fd()) {
            assert_ne!(Some(unique), facts.mnt_id);
            assert_eq!(mount_unique_id(file.as_fd()), Some(unique), "stable");
        }
    }

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
