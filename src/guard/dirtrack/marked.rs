//! The directories the tracker has marked: their open marks (through the `Marker`) and their watch marks,
//! by file-handle key, within the cap; and taking the marks off a tree no longer protected.
#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::dirs::{Opened, open_subdir, subdirectories};
use crate::guard::marks::{DirMask, MarkFailure, MarkFailures, Marker};
use crate::guard::subvol_watch::SubvolWatch;
use crate::stats::Counters;
use crate::sys::{DirKey, DirWatch, Mask, dir_key};

/// What comes off a directory no longer protected: every bit either kind of its marks has (see [`DirMask`]).
pub const UNMARK_MASK: Mask = DirMask::OPEN_AND_EXEC;

/// What a refused open mark was for, in the log.
const OPEN_MARK: &str = "a protected directory for the open guard";

/// Called once when the cap is reached (with the cap), from the tracker's thread.
pub type OnCap = Box<dyn Fn(usize) + Send>;

/// What [`MarkedDirs::track`] did with a directory.
pub(super) enum Tracked {
    New,
    Known,
    Full,
    Failed,
}

/// The directories marked (at most `cap`), with what marks and watches them.
pub(super) struct MarkedDirs {
    pub(super) marker: Arc<dyn Marker>,
    pub(super) failures: MarkFailures,
    pub(super) watch: Option<DirWatch>,
    /// Directories in btrfs subvolumes of another fsid than the one [`DirWatch`] took for their superblock,
    /// made at the first such directory, dropped (with its watches) before each full walk.
    pub(super) subvols: Option<SubvolWatch>,
    /// The directories marked, by key; a key goes with its directory's `FAN_DELETE_SELF`.
    pub(super) tracked: HashSet<DirKey>,
    /// Those of them marked for execs too (below a container's protected directory on its overlay,
    /// [`DirMask::OPEN_AND_EXEC`]): a directory made in one is marked as its parent is.
    pub(super) exec: HashSet<DirKey>,
    /// Directories marked whose filesystem gives no file handle (counted against the cap all the same).
    pub(super) unkeyed: usize,
    /// Filesystems (by fsid) of roots whose file handles name a directory but cannot open one again: an
    /// overlay without `nfs_export` (Linux 6.6+ encodes its handles for fanotify, never decodes them).
    pub(super) undecodable: Vec<[u8; 8]>,
    /// The tracked directories of those filesystems, kept open by key: a new subdirectory's event names its
    /// parent by handle, and this is how the parent is opened. Dropped with each full walk and with the
    /// directory's `FAN_DELETE_SELF`.
    pub(super) held: HashMap<DirKey, OwnedFd>,
    pub(super) cap: usize,
    /// Directories were left unmarked for the cap since the last full walk.
    pub(super) capped: bool,
    /// The cap's alert was raised; again only after a full walk found the directories below the cap.
    pub(super) alerted: bool,
    pub(super) counters: Arc<Counters>,
    pub(super) on_cap: OnCap,
}

impl MarkedDirs {
    /// Nothing marked; `watch` is the notification group new directories are reported by, if any.
    pub(super) fn new(
        marker: Arc<dyn Marker>,
        counters: Arc<Counters>,
        on_cap: OnCap,
        watch: Option<DirWatch>,
    ) -> Self {
        Self {
            marker,
            failures: MarkFailures::logged_here(counters.clone()),
            watch,
            subvols: None,
            tracked: HashSet::new(),
            exec: HashSet::new(),
            unkeyed: 0,
            undecodable: Vec::new(),
            held: HashMap::new(),
            cap: usize::MAX,
            capped: false,
            alerted: false,
            counters,
            on_cap,
        }
    }

    /// Marks one directory in both groups (for execs too with `exec`); the marks go on before its entries are
    /// listed.
    pub(super) fn track(&mut self, dir: BorrowedFd<'_>, fsid: &[u8; 8], exec: bool) -> Tracked {
        let key = dir_key(dir, fsid).ok();
        if key.as_ref().is_some_and(|k| self.tracked.contains(k)) {
            return Tracked::Known;
        }
        if self.count() >= self.cap {
            self.reach_cap();
            return Tracked::Full;
        }
        if let Err(error) = self.marker.mark_fd(dir, DirMask::of(exec)) {
            // Named for the log only now, off the path of every directory marked.
            let path = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd()))
                .unwrap_or_else(|_| PathBuf::from(format!("fd {}", dir.as_raw_fd())));
            self.failures.report(MarkFailure { what: OPEN_MARK, path, error });
            return Tracked::Failed;
        }
        match self.watch.as_ref().map(|w| w.watch(dir)) {
            None | Some(Ok(())) => {}
            // A btrfs subvolume, whose fsid is not the one the group took for the superblock.
            Some(Err(nix::errno::Errno::EXDEV)) => self.watch_subvolume_dir(dir, key.clone()),
            Some(Err(e)) => tracing::warn!(error = %e, "cannot watch a directory for new subdirectories"),
        }
        match key {
            Some(k) => {
                if self.undecodable.contains(fsid)
                    && let Ok(fd) = dir.try_clone_to_owned()
                {
                    self.held.insert(k.clone(), fd);
                }
                if exec {
                    self.exec.insert(k.clone());
                }
                self.tracked.insert(k);
            }
            None => self.unkeyed += 1,
        }
        Tracked::New
    }

    pub(super) fn watch_subvolume_dir(&mut self, dir: BorrowedFd<'_>, key: Option<DirKey>) {
        let Some(key) = key else {
            tracing::warn!(
                "a directory in a btrfs subvolume gives no file handle; its new subdirectories get no open mark"
            );
            return;
        };
        if self.subvols.is_none() {
            match SubvolWatch::new() {
                Ok(w) => self.subvols = Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch directories in btrfs subvolumes (inotify); their new subdirectories get no open mark until the next full walk");
                    return;
                }
            }
        }
        if let Some(w) = self.subvols.as_mut()
            && let Err(e) = w.watch(dir, key)
        {
            tracing::warn!(error = %e, "cannot watch a directory in a btrfs subvolume for new subdirectories (fs.inotify.max_user_watches?)");
        }
    }

    pub(super) fn count(&self) -> usize {
        self.tracked.len() + self.unkeyed
    }

    pub(super) fn publish(&self) {
        self.counters.open_dirs.store(self.count() as u64, Ordering::Relaxed);
    }

    pub(super) fn reach_cap(&mut self) {
        if !self.capped {
            self.capped = true;
            self.counters.open_dirs_capped_at.store(self.cap as u64, Ordering::Relaxed);
        }
        if !self.alerted {
            self.alerted = true;
            tracing::error!(
                max_directories = self.cap,
                "open guard: directory cap reached; newer directories below the protected roots get no open mark (the exec guard is whole)"
            );
            (self.on_cap)(self.cap);
        }
    }

    /// Takes the open mark off every directory below the directory open at `root` (a root no longer
    /// protected).
    pub(super) fn unmark_tree_at(&self, root: BorrowedFd<'_>) {
        let Ok(st) = crate::sys::file_facts(root) else { return };
        let Some(first) = open_subdir(root, c".", st.dev, None) else { return };
        self.unmark_below(first);
    }

    /// Takes the open mark off every directory below `path` (a root no longer protected).
    pub(super) fn unmark_tree(&self, path: &Path) {
        let Ok(meta) = std::fs::symlink_metadata(path) else { return };
        if !meta.is_dir() {
            let _ = nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
                .map(|fd| self.marker.unmark_fd(fd.as_fd(), Mask::FAN_OPEN_PERM));
            return;
        }
        let Some(first) = open_subdir(nix::fcntl::AT_FDCWD, path, meta.dev(), None) else { return };
        self.unmark_below(first);
    }

    /// Takes the open mark off `first` and every directory below it on its mount.
    pub(super) fn unmark_below(&self, first: Opened) {
        let mut stack: Vec<Opened> = vec![first];
        let mut seen = 0usize;
        while let Some(dir) = stack.pop() {
            // A directory gone meanwhile took its mark with it.
            let _ = self.marker.unmark_fd(dir.fd.as_fd(), UNMARK_MASK);
            seen += 1;
            if seen > self.cap {
                break;
            }
            for name in subdirectories(&dir.fd) {
                if let Some(d) = open_subdir(dir.fd.as_fd(), name.as_c_str(), dir.dev, Some(dir.fsid)) {
                    stack.push(d);
                }
            }
        }
    }
}
