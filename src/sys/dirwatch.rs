//! The directory watch: a second fanotify group, notification class, reporting directory events by file
//! handle (`FAN_REPORT_DFID_NAME`), so that a directory created or moved into a tracked directory is known
//! within a read and can get the open guard's mark; and the file-handle calls that name a directory
//! without a path (`name_to_handle_at`, `open_by_handle_at`).
//!
//! A notification group never holds anybody up: its events are queued (a bounded queue; past it the kernel
//! drops events and queues one `FAN_Q_OVERFLOW`) and read when we get to them.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags};

use super::event::Mask;

/// The events of a tracked directory: a directory created or moved into it, and its own deletion (which
/// says its key can be forgotten). `FAN_ONDIR` lets directory events through.
const WATCH_MASK: Mask = Mask::FAN_CREATE.union(Mask::FAN_MOVED_TO).union(Mask::FAN_DELETE_SELF).union(Mask::FAN_ONDIR);

/// The entry events of files (no `FAN_ONDIR`: a `FAN_MARK_IGNORE` mask without it applies to files only):
/// a storm of files created in /tmp then costs the daemon nothing.
const FILE_ENTRY_EVENTS: Mask = Mask::FAN_CREATE.union(Mask::FAN_MOVED_TO);

const METADATA_LEN: usize = std::mem::size_of::<libc::fanotify_event_metadata>();
/// `struct fanotify_event_info_header` then `__kernel_fsid_t`.
const INFO_FSID_END: usize = 12;
/// `struct file_handle`'s header: `handle_bytes`, `handle_type`.
const HANDLE_HEADER: usize = 8;
/// MAX_HANDLE_SZ of the kernel.
const MAX_HANDLE: usize = 128;

/// A directory named the kernel's way: its filesystem's id and its file handle (type and bytes). The same
/// directory has the same key whether it comes from an event or from [`dir_key`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DirKey(Box<[u8]>);

impl DirKey {
    fn new(fsid: &[u8], handle_type: &[u8], handle: &[u8]) -> Self {
        Self([fsid, handle_type, handle].concat().into_boxed_slice())
    }

    /// The id of the filesystem this directory is on (as `statfs` reports it).
    pub fn fsid(&self) -> &[u8] {
        self.0.get(..8).unwrap_or_default()
    }

    fn handle_type(&self) -> i32 {
        self.0.get(8..12).and_then(|b| b.try_into().ok()).map_or(0, i32::from_ne_bytes)
    }

    fn handle(&self) -> &[u8] {
        self.0.get(12..).unwrap_or_default()
    }
}

/// What one event of the watch says.
#[derive(Debug, PartialEq, Eq)]
pub enum DirEvent {
    /// A directory named `name` appeared in the directory `parent` (created, or moved in with what it holds).
    Appeared { parent: DirKey, name: Box<[u8]> },
    /// The tracked directory `dir` was deleted: its marks went with its inode.
    Deleted { dir: DirKey },
    /// The queue overflowed: events were lost.
    Overflow,
}

/// The notification group that watches tracked directories.
#[derive(Debug)]
pub struct DirWatch {
    inner: Fanotify,
    /// Whether the kernel takes `FAN_MARK_IGNORE` (6.0): without it, file entry events are queued too and
    /// dropped when read.
    ignore_files: std::sync::atomic::AtomicBool,
}

impl DirWatch {
    /// A notification group reporting the parent directory's handle and the entry's name, non-blocking,
    /// with the default (bounded) queue and unlimited marks (the caller bounds how many it places).
    pub fn new() -> Result<Self, Errno> {
        let flags = InitFlags::FAN_CLASS_NOTIF
            | InitFlags::FAN_CLOEXEC
            | InitFlags::FAN_NONBLOCK
            | InitFlags::FAN_UNLIMITED_MARKS
            | InitFlags::from_bits_retain(libc::FAN_REPORT_DFID_NAME);
        let inner = Fanotify::init(flags, EventFFlags::O_RDONLY | EventFFlags::O_CLOEXEC)?;
        Ok(Self { inner, ignore_files: std::sync::atomic::AtomicBool::new(true) })
    }

    /// Watches the directory open at `dir` (an inode mark: every mount and namespace).
    pub fn watch(&self, dir: BorrowedFd<'_>) -> Result<(), Errno> {
        self.inner.mark::<_, Path>(MarkFlags::FAN_MARK_ADD, WATCH_MASK, dir, None)?;
        use std::sync::atomic::Ordering::Relaxed;
        if self.ignore_files.load(Relaxed) {
            let ignore = MarkFlags::FAN_MARK_ADD | MarkFlags::from_bits_retain(libc::FAN_MARK_IGNORE_SURV);
            if self.inner.mark::<_, Path>(ignore, FILE_ENTRY_EVENTS, dir, None).is_err() {
                self.ignore_files.store(false, Relaxed);
            }
        }
        Ok(())
    }

    /// Removes every mark of the watch.
    pub fn flush(&self) -> Result<(), Errno> {
        self.inner.mark::<_, Path>(MarkFlags::FAN_MARK_FLUSH, Mask::empty(), nix::fcntl::AT_FDCWD, None)
    }

    /// Reads what is queued (at most `buf.len()` bytes) and appends the directory events to `out`; events
    /// about files (a kernel without `FAN_MARK_IGNORE`) and records we do not understand are skipped.
    /// `Ok(0)` when nothing is queued.
    pub fn read(&self, buf: &mut [u8], out: &mut Vec<DirEvent>) -> io::Result<usize> {
        let n = match nix::unistd::read(self.inner.as_fd(), buf) {
            Ok(n) => n,
            Err(Errno::EAGAIN) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        parse_events(buf.get(..n).unwrap_or_default(), out);
        Ok(n)
    }
}

impl AsFd for DirWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2)?.try_into().ok().map(u16::from_ne_bytes)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)?.try_into().ok().map(u32::from_ne_bytes)
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)?.try_into().ok().map(u64::from_ne_bytes)
}

/// Parses a batch of a `FAN_REPORT_DFID_NAME` group (no fds: FID groups report none). Pure: the bytes are
/// copied out, so any input is safe; a malformed record ends the batch.
pub fn parse_events(batch: &[u8], out: &mut Vec<DirEvent>) {
    let mut rest = batch;
    while rest.len() >= METADATA_LEN {
        let (Some(event_len), Some(metadata_len), Some(mask)) = (u32_at(rest, 0), u16_at(rest, 6), u64_at(rest, 8))
        else {
            return;
        };
        let (event_len, metadata_len) = (event_len as usize, metadata_len as usize);
        if rest.get(4) != Some(&libc::FANOTIFY_METADATA_VERSION)
            || event_len < metadata_len
            || metadata_len < METADATA_LEN
        {
            return;
        }
        let Some(event) = rest.get(..event_len) else { return };
        rest = rest.get(event_len..).unwrap_or_default();
        if mask & libc::FAN_Q_OVERFLOW != 0 {
            out.push(DirEvent::Overflow);
            continue;
        }
        let ondir = mask & libc::FAN_ONDIR != 0;
        let Some((info_type, key, name)) = first_fid(event.get(metadata_len..).unwrap_or_default()) else {
            continue;
        };
        if mask & libc::FAN_DELETE_SELF != 0 && ondir {
            out.push(DirEvent::Deleted { dir: key });
        } else if mask & (libc::FAN_CREATE | libc::FAN_MOVED_TO) != 0
            && ondir
            && info_type == libc::FAN_EVENT_INFO_TYPE_DFID_NAME
            && let Some(name) = name.filter(|n| !n.is_empty() && *n != b"." && *n != b"..")
        {
            out.push(DirEvent::Appeared { parent: key, name: name.into() });
        }
    }
}

/// The first fid record of an event's info: its type, the key it names, and the name after the handle
/// (for `DFID_NAME`).
fn first_fid(mut info: &[u8]) -> Option<(u8, DirKey, Option<&[u8]>)> {
    while info.len() >= 4 {
        let info_type = *info.first()?;
        let len = u16_at(info, 2)? as usize;
        if len < 4 {
            return None;
        }
        let record = info.get(..len)?;
        info = info.get(len..).unwrap_or_default();
        if !matches!(
            info_type,
            libc::FAN_EVENT_INFO_TYPE_FID | libc::FAN_EVENT_INFO_TYPE_DFID | libc::FAN_EVENT_INFO_TYPE_DFID_NAME
        ) {
            continue;
        }
        let fsid = record.get(4..INFO_FSID_END)?;
        let handle_bytes = u32_at(record, INFO_FSID_END)? as usize;
        let handle_type = record.get(INFO_FSID_END + 4..INFO_FSID_END + HANDLE_HEADER)?;
        let handle_start = INFO_FSID_END + HANDLE_HEADER;
        let handle = record.get(handle_start..handle_start.checked_add(handle_bytes)?)?;
        let after = record.get(handle_start + handle_bytes..).unwrap_or_default();
        let name = (info_type == libc::FAN_EVENT_INFO_TYPE_DFID_NAME)
            .then(|| after.split(|&b| b == 0).next().unwrap_or_default());
        return Some((info_type, DirKey::new(fsid, handle_type, handle), name));
    }
    None
}

/// The filesystem id of the file open at `fd`, as fanotify reports it in events (`statfs`'s `f_fsid`).
pub fn fsid(fd: BorrowedFd<'_>) -> Result<[u8; 8], Errno> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `fd` is an open fd borrowed for this call and `st` points to writable memory of the size
    // fstatfs fills.
    let rc = unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) };
    Errno::result(rc)?;
    // SAFETY: fstatfs returned 0, so it filled the whole struct.
    let st = unsafe { st.assume_init() };
    // SAFETY: `fsid_t` is `#[repr(C)] struct { __val: [c_int; 2] }` (private fields), so it has the size,
    // alignment and every bit pattern of `[i32; 2]`.
    let val: [i32; 2] = unsafe { std::mem::transmute::<libc::fsid_t, [i32; 2]>(st.f_fsid) };
    let mut out = [0u8; 8];
    let (a, b) = out.split_at_mut(4);
    a.copy_from_slice(&val[0].to_ne_bytes());
    b.copy_from_slice(&val[1].to_ne_bytes());
    Ok(out)
}

/// A `struct file_handle` with room for the largest handle, aligned as the kernel's struct is.
#[repr(C, align(8))]
struct HandleBuf([u8; HANDLE_HEADER + MAX_HANDLE]);

/// The key of the directory open at `fd` on the filesystem whose id is `fsid` ([`fsid`]): what fanotify
/// events name it by.
pub fn dir_key(fd: BorrowedFd<'_>, fsid: &[u8; 8]) -> Result<DirKey, Errno> {
    match handle_key(fd, fsid, 0) {
        // An overlay without `nfs_export` encodes a handle only as an identifier (as fanotify reports it,
        // Linux 6.5+), which cannot be opened again.
        Err(Errno::EOPNOTSUPP) => handle_key(fd, fsid, AT_HANDLE_FID),
        other => other,
    }
}

/// `name_to_handle_at` flag: a handle that identifies the file and need not open it again (Linux 6.5).
const AT_HANDLE_FID: libc::c_int = 0x200;

fn handle_key(fd: BorrowedFd<'_>, fsid: &[u8; 8], flags: libc::c_int) -> Result<DirKey, Errno> {
    let mut buf = HandleBuf([0; HANDLE_HEADER + MAX_HANDLE]);
    buf.0[..4].copy_from_slice(&(MAX_HANDLE as u32).to_ne_bytes());
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `buf` is a file_handle header whose `handle_bytes` says how much room follows it (MAX_HANDLE
    // bytes, which it has), the path is an empty C string with AT_EMPTY_PATH so `fd` itself is named, and
    // `mount_id` is a writable int; the kernel writes only within those.
    let rc = unsafe {
        libc::name_to_handle_at(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.0.as_mut_ptr().cast::<libc::file_handle>(),
            &mut mount_id,
            libc::AT_EMPTY_PATH | flags,
        )
    };
    Errno::result(rc)?;
    let len = (u32_at(&buf.0, 0).unwrap_or(0) as usize).min(MAX_HANDLE);
    let handle_type = buf.0.get(4..8).unwrap_or_default();
    Ok(DirKey::new(fsid, handle_type, buf.0.get(HANDLE_HEADER..HANDLE_HEADER + len).unwrap_or_default()))
}

/// Opens the directory `key` names (`O_PATH`), through `mount` (any fd on its filesystem). Needs
/// CAP_DAC_READ_SEARCH.
pub fn open_dir_by_key(mount: BorrowedFd<'_>, key: &DirKey) -> Result<OwnedFd, Errno> {
    let handle = key.handle();
    if handle.len() > MAX_HANDLE {
        return Err(Errno::EINVAL);
    }
    let mut buf = HandleBuf([0; HANDLE_HEADER + MAX_HANDLE]);
    buf.0[..4].copy_from_slice(&(handle.len() as u32).to_ne_bytes());
    buf.0[4..8].copy_from_slice(&key.handle_type().to_ne_bytes());
    let Some(room) = buf.0.get_mut(HANDLE_HEADER..HANDLE_HEADER + handle.len()) else {
        return Err(Errno::EINVAL);
    };
    room.copy_from_slice(handle);
    // SAFETY: `buf` is a complete file_handle (header, then `handle_bytes` bytes of handle) that the kernel
    // only reads; `mount` is an open fd borrowed for the call.
    let fd = unsafe {
        libc::open_by_handle_at(
            mount.as_raw_fd(),
            buf.0.as_mut_ptr().cast::<libc::file_handle>(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    let fd = Errno::result(fd)?;
    // SAFETY: open_by_handle_at returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(info_type: u8, fsid: [u8; 8], handle_type: i32, handle: &[u8], name: &[u8]) -> Vec<u8> {
        let mut r = vec![info_type, 0, 0, 0];
        r.extend_from_slice(&fsid);
        r.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
        r.extend_from_slice(&handle_type.to_ne_bytes());
        r.extend_from_slice(handle);
        if info_type == libc::FAN_EVENT_INFO_TYPE_DFID_NAME {
            r.extend_from_slice(name);
            r.push(0);
        }
        while r.len() % 4 != 0 {
            r.push(0);
        }
        let len = r.len() as u16;
        r[2..4].copy_from_slice(&len.to_ne_bytes());
        r
    }

    fn event(mask: u64, info: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend_from_slice(&((METADATA_LEN + info.len()) as u32).to_ne_bytes());
        e.push(libc::FANOTIFY_METADATA_VERSION);
        e.push(0);
        e.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
        e.extend_from_slice(&mask.to_ne_bytes());
        e.extend_from_slice(&(-1i32).to_ne_bytes());
        e.extend_from_slice(&1i32.to_ne_bytes());
        e.extend_from_slice(info);
        e
    }

    #[test]
    fn directory_events_are_parsed_and_file_events_skipped() {
        let fsid = [1, 2, 3, 4, 5, 6, 7, 8];
        let mut batch = event(libc::FAN_CREATE | libc::FAN_ONDIR, &record(2, fsid, 1, &[9; 8], b"new"));
        batch.extend(event(libc::FAN_CREATE, &record(2, fsid, 1, &[9; 8], b"file")));
        batch.extend(event(libc::FAN_DELETE_SELF | libc::FAN_ONDIR, &record(3, fsid, 1, &[7; 8], b"")));
        batch.extend(event(libc::FAN_Q_OVERFLOW, &[]));
        let mut out = Vec::new();
        parse_events(&batch, &mut out);
        let parent = DirKey::new(&fsid, &1i32.to_ne_bytes(), &[9; 8]);
        assert_eq!(parent.fsid(), &fsid);
        assert_eq!(
            out,
            vec![
                DirEvent::Appeared { parent, name: (*b"new").into() },
                DirEvent::Deleted { dir: DirKey::new(&fsid, &1i32.to_ne_bytes(), &[7; 8]) },
                DirEvent::Overflow,
            ]
        );
    }

    #[test]
    fn truncated_and_arbitrary_bytes_never_panic() {
        let full = event(libc::FAN_CREATE | libc::FAN_ONDIR, &record(2, [0; 8], 1, &[9; 8], b"new"));
        for cut in 0..full.len() {
            parse_events(&full[..cut], &mut Vec::new());
        }
        let mut seed = 0x1234_5678u32;
        for _ in 0..2000 {
            let mut b = full.clone();
            for byte in b.iter_mut().skip(4) {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if seed % 7 == 0 {
                    *byte = (seed >> 16) as u8;
                }
            }
            parse_events(&b, &mut Vec::new());
        }
    }
}
