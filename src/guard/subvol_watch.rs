//! New directories inside btrfs subvolumes, for the directory tracker. A fanotify group that reports file
//! handles takes marks of one fsid per superblock (Linux 6.18 refuses another with EXDEV), and every btrfs
//! subvolume reports an fsid of its own: a subvolume made inside a protected directory cannot be watched by
//! the tracker's [`DirWatch`](crate::sys::DirWatch). inotify has no such limit; its events are turned into the
//! same [`DirEvent`]s, naming the watched directory by the key the tracker knows it by.
//!
//! One watch per directory (bounded by the tracker's cap and by `fs.inotify.max_user_watches`); dropping the
//! watch removes them all, which the tracker does before each full walk.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use crate::sys::{DirEvent, DirKey};

const MASK: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_ONLYDIR);

/// The inotify instance and which tracked directory each of its watches is.
#[derive(Debug)]
pub struct SubvolWatch {
    inotify: Inotify,
    dirs: HashMap<WatchDescriptor, DirKey>,
}

impl SubvolWatch {
    pub fn new() -> Result<Self, Errno> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        Ok(Self { inotify, dirs: HashMap::new() })
    }

    /// Watches the directory open at `dir` (known to the tracker as `key`) for new subdirectories.
    pub fn watch(&mut self, dir: BorrowedFd<'_>, key: DirKey) -> Result<(), Errno> {
        // inotify takes a path: the fd's own, so the directory watched is the one opened.
        let wd = self.inotify.add_watch(format!("/proc/self/fd/{}", dir.as_raw_fd()).as_str(), MASK)?;
        self.dirs.insert(wd, key);
        Ok(())
    }

    /// Reads what is queued (nothing waits: the fd is non-blocking) into `out`; returns whether anything was.
    pub fn read(&mut self, out: &mut Vec<DirEvent>) -> Result<bool, Errno> {
        let events = match self.inotify.read_events() {
            Ok(e) => e,
            Err(Errno::EAGAIN) => return Ok(false),
            Err(e) => return Err(e),
        };
        for e in &events {
            if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                out.push(DirEvent::Overflow);
                continue;
            }
            if e.mask.contains(AddWatchFlags::IN_IGNORED) {
                self.dirs.remove(&e.wd);
                continue;
            }
            let Some(key) = self.dirs.get(&e.wd) else { continue };
            if e.mask.contains(AddWatchFlags::IN_DELETE_SELF) {
                out.push(DirEvent::Deleted { dir: key.clone() });
            } else if e.mask.contains(AddWatchFlags::IN_ISDIR)
                && let Some(name) = &e.name
            {
                use std::os::unix::ffi::OsStrExt;
                out.push(DirEvent::Appeared { parent: key.clone(), name: name.as_bytes().into() });
            }
        }
        Ok(!events.is_empty())
    }
}

impl AsFd for SubvolWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }
}
