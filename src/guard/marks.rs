//! Every mark this daemon's fanotify group holds, with one owner and one flush:
//! - filesystem marks (`FAN_OPEN_EXEC_PERM`, plus `FAN_OPEN_PERM` where the open guard covers the whole
//!   filesystem) on the filesystems that hold protected paths;
//! - the open guard's FAN_OPEN_PERM inode marks on protected directories of filesystems shared with the rest
//!   of the system (/tmp as a directory on `/`): a filesystem mark there would send every open on the host to
//!   the daemon, while inode marks with FAN_EVENT_ON_CHILD cover exactly the files directly inside each marked
//!   directory, through every mount and namespace. Subdirectories are marked too, by the directory tracker
//!   ([`OpenDirs`]) in its own thread: a full walk at start, on reload and on mount changes, then as each
//!   directory appears (SECURITY.md documents the window left and the mitigation: /tmp as its own mount);
//! - the open guard's FAN_OPEN_PERM mount marks on those of its roots that are the root of a mount (/tmp bound
//!   onto itself, a btrfs subvolume at /tmp): they see the open of a file in a directory made a moment ago,
//!   which the tracker has not marked yet, through that mount (the directory marks stay for other views);
//! - ignore marks: the exec cache's (allowed files) and the exemptions of the daemon's own restart path;
//! - the marks on containers' own mounts (`ctr_marks`), placed by the tokio side and, at a container's first
//!   exec, by the decision thread.
//!
//! Only this file calls the group's mark API. Those that mark without keeping these books (the decision thread,
//! the directory tracker, the container marks) do it through [`Marker`], which a test can fake, and report a
//! refused mark to [`MarkFailures`]: counted at once, logged with its path by a thread that may log.
//!
//! Inode marks placed under one policy are stale under the next: on a reload [`Marks::flush_inode_marks`]
//! drops them all in one call and at once puts back what must stay (the exemptions, the directory marks). A
//! mount change flushes nothing: the tracker's resync ([`Marks::follow_open_roots`]) marks the new roots and
//! unmarks the gone ones, so no protected directory is ever without its mark.

use std::collections::HashMap;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::guard::{Guard, MarkTarget, OpenMount};
use crate::policy::open_guard::DEFAULT_MAX_DIRECTORIES;
use crate::stats::Counters;
use crate::sys::{FanotifyGroup, Mask};

/// The marks those without books of their own may place and remove: the operations the decision thread,
/// the directory tracker and the container marks need. The group implements it; a unit test fakes it.
pub trait Marker: Send + Sync {
    /// `mask` on the whole filesystem `path` is on (a superblock mark).
    fn mark_filesystem(&self, path: &Path, mask: Mask) -> std::result::Result<(), Errno>;
    fn unmark_filesystem(&self, path: &Path, mask: Mask) -> std::result::Result<(), Errno>;
    /// `mask` on the inode at `path` (a directory with FAN_EVENT_ON_CHILD covers the files in it).
    fn mark_inode(&self, path: &Path, mask: Mask) -> std::result::Result<(), Errno>;
    /// `mask` on the inode open at `fd`.
    fn mark_fd(&self, fd: BorrowedFd<'_>, mask: Mask) -> std::result::Result<(), Errno>;
    fn unmark_fd(&self, fd: BorrowedFd<'_>, mask: Mask) -> std::result::Result<(), Errno>;
    /// `mask` on the mount `path` is on (a mount mark: the opens through that mount only).
    fn mark_mount(&self, path: &Path, mask: Mask) -> std::result::Result<(), Errno>;
    fn unmark_mount(&self, path: &Path, mask: Mask) -> std::result::Result<(), Errno>;
}

impl Marker for FanotifyGroup {
    fn mark_filesystem(&self, path: &Path, mask: Mask) -> std::result::Result<(), Errno> {
        FanotifyGroup::mark_filesystem(self, path, mask)
    }

    fn unmark_filesystem(&self, path: &Path, mask: Mask) -> std::result::Result<(), Errno> {
        FanotifyGroup::unmark_filesystem(self, path, mask)
    }

    fn mark_inode(&self, path: &Path, mask: Mask) -> std::result::Result<(), Errno> {
        FanotifyGroup::mark_inode(self, path, mask)
    }

    fn mark_fd(&self, fd: BorrowedFd<'_>, mask: Mask) -> std::result::Result<(), Errno> {
        FanotifyGroup::mark_fd(self, fd, mask)
    }

    fn unmark_fd(&self, fd: BorrowedFd<'_>, mask: Mask) -> std::result::Result<(), Errno> {
        FanotifyGroup::unmark_fd(self, fd, mask)
    }

    fn mark_mount(&self, path: &Path, mask: Mask) -> std::result::Result<(), Errno> {
        FanotifyGroup::mark_mount(self, path, mask)
    }

    fn unmark_mount(&self, path: &Path, mask: Mask) -> std::result::Result<(), Errno> {
        FanotifyGroup::unmark_mount(self, path, mask)
    }
}

/// A mark the kernel refused: what it was for, the path it was placed through, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkFailure {
    pub what: &'static str,
    pub path: PathBuf,
    pub error: Errno,
}

impl MarkFailure {
    pub fn log(&self) {
        tracing::warn!(path = %self.path.display(), error = %self.error, "cannot mark {}", self.what);
    }
}

/// Where a refused mark goes: counted at once (`marks_failed`, in the status line), and logged with its path,
/// here or, for the decision thread (which never logs), by the tokio side, which drains the hand-over.
#[derive(Debug, Clone)]
pub struct MarkFailures {
    counters: Arc<Counters>,
    handover: Option<mpsc::Sender<MarkFailure>>,
}

impl MarkFailures {
    /// For a thread that may log: each failure is logged where it happens.
    pub fn logged_here(counters: Arc<Counters>) -> Self {
        Self { counters, handover: None }
    }

    /// For the decision thread: each failure is handed, without waiting, to the receiver's owner, which logs it.
    /// Past `capacity` failures not yet taken, the log of one is lost; its count never is.
    pub fn handed_over(counters: Arc<Counters>, capacity: usize) -> (Self, mpsc::Receiver<MarkFailure>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { counters, handover: Some(tx) }, rx)
    }

    pub fn report(&self, failure: MarkFailure) {
        self.counters.marks_failed.fetch_add(1, Ordering::Relaxed);
        match &self.handover {
            Some(tx) => {
                let _ = tx.try_send(failure);
            }
            None => failure.log(),
        }
    }
}

/// A tree whose directories carry the open marks: `path` and every directory below it on its filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRoot {
    pub path: PathBuf,
    /// A directory above `path` that exists while `path` may not yet (a container's overlay upper layer):
    /// `path` is waited for there.
    pub anchor: Option<PathBuf>,
    /// A container's protected directory on its overlay: its directories carry `FAN_OPEN_EXEC_PERM` too, so
    /// that an exec there is decided by the exec guard on the overlay's own event, which comes before the
    /// overlay's `FAN_OPEN_PERM` (one event per refusal; see [`DirMask`]).
    pub exec: bool,
}

impl From<PathBuf> for OpenRoot {
    fn from(path: PathBuf) -> Self {
        Self { path, anchor: None, exec: false }
    }
}

impl OpenRoot {
    /// The mask of the inode marks on this root's directories.
    pub fn dir_mask(&self) -> Mask {
        DirMask::of(self.exec)
    }
}

/// The masks of the open guard's directory marks: `FAN_OPEN_PERM` on the files inside (and the directory
/// itself, allowed at once), and on a container's protected directories on its overlay `FAN_OPEN_EXEC_PERM` as
/// well. The kernel checks an exec's `FAN_OPEN_EXEC_PERM` before its `FAN_OPEN_PERM`, on the overlay's file
/// before the layer's real file: refused there, an exec raises one event, which the exec guard decides (and
/// remembers), instead of the open guard's look at the overlay's file followed by the layer's exec event.
/// Never on a host directory (the host's filesystems carry their exec marks whole) or a file rule's (an exec
/// under it is no file rule's business, and each would cost an event).
pub struct DirMask;

impl DirMask {
    pub const OPEN: Mask = Mask::FAN_OPEN_PERM.union(Mask::FAN_EVENT_ON_CHILD);
    pub const OPEN_AND_EXEC: Mask = Self::OPEN.union(Mask::FAN_OPEN_EXEC_PERM);

    pub const fn of(exec: bool) -> Mask {
        if exec { Self::OPEN_AND_EXEC } else { Self::OPEN }
    }
}

/// At most this many roots marked at containers' first execs are kept for the walks (the oldest go first).
const FIRST_EXEC_ROOTS_MAX: usize = 256;
/// How long a root marked at a container's first exec is kept for the walks: by then the tokio side's look at
/// the containers (every 500 ms) has the container in its list, whose roots it walks itself (or has found it
/// no longer selected after a reload).
const FIRST_EXEC_ROOTS_FOR: std::time::Duration = std::time::Duration::from_secs(3);

/// Open-guard roots the decision thread marked at a container's first exec, each with the container's process
/// and its directory held open: the container may not be in the tokio side's list yet when a resync or a
/// reload's flush comes, and its directories are walked (and, after a flush, marked again) all the same. A
/// root goes with its process, or after [`FIRST_EXEC_ROOTS_FOR`]; the resync then unmarks it through the held
/// directory unless a walk marked it again. Lock-free: the decision thread adds to it.
type FirstExecRoot = (i32, std::time::Instant, OpenRoot, Option<Arc<OwnedFd>>);
static FIRST_EXEC_ROOTS: std::sync::LazyLock<arc_swap::ArcSwap<Vec<FirstExecRoot>>> =
    std::sync::LazyLock::new(|| arc_swap::ArcSwap::from_pointee(Vec::new()));

/// Keeps `roots`, marked at the first exec of process `pid`'s container, in every walk of the open roots
/// while the process lives.
pub fn remember_first_exec_roots(pid: i32, roots: &[OpenRoot]) {
    if roots.is_empty() {
        return;
    }
    let now = std::time::Instant::now();
    // Held while the root is kept: once the container's process is gone its path leads nowhere, and a root on
    // a filesystem that outlives the container (a bind of a host directory) is unmarked through this.
    let held: Vec<Option<Arc<OwnedFd>>> = roots
        .iter()
        .map(|r| {
            // Not O_PATH: fanotify_mark takes no O_PATH fd. Opening a directory raises no permission event
            // (the group's masks have no FAN_ONDIR), so this thread never waits on itself.
            nix::fcntl::open(&r.path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                .ok()
                .map(Arc::new)
        })
        .collect();
    FIRST_EXEC_ROOTS.rcu(|kept| {
        let mut next: Vec<FirstExecRoot> = Vec::with_capacity((kept.len() + roots.len()).min(FIRST_EXEC_ROOTS_MAX));
        let room = FIRST_EXEC_ROOTS_MAX.saturating_sub(roots.len());
        next.extend(kept.iter().skip(kept.len().saturating_sub(room)).cloned());
        next.extend(roots.iter().zip(&held).map(|(r, fd)| (pid, now, r.clone(), fd.clone())));
        next
    });
}

/// The (device, inode) `path` leads to, following symlinks as an exec does.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The roots marked at first execs lately whose process still runs, and the held directories of those
/// forgotten now (their marks are taken off unless a root still covers them).
fn first_exec_roots() -> (Vec<OpenRoot>, Vec<Arc<OwnedFd>>) {
    let before =
        FIRST_EXEC_ROOTS.rcu(|kept| kept.iter().filter(|r| first_exec_root_kept(r)).cloned().collect::<Vec<_>>());
    let kept = FIRST_EXEC_ROOTS.load();
    let live = kept.iter().map(|(_, _, r, _)| r.clone()).collect();
    let forgotten = before
        .iter()
        .filter(|(pid, at, _, _)| !kept.iter().any(|(p, a, _, _)| p == pid && a == at))
        .filter_map(|(_, _, _, fd)| fd.clone())
        .collect();
    (live, forgotten)
}

/// Whether a remembered root is still kept: recent, and its process still there (a zombie's root cannot be
/// read: gone, for this).
fn first_exec_root_kept((pid, at, _, _): &FirstExecRoot) -> bool {
    at.elapsed() < FIRST_EXEC_ROOTS_FOR && std::fs::read_link(format!("/proc/{pid}/root")).is_ok()
}

/// What keeps the open guard's directory marks on every directory below its roots, new ones included (the
/// directory tracker's thread). It marks through a [`Marker`] of its own.
pub trait OpenDirs: Send + std::fmt::Debug {
    /// Marks every directory below `roots` (at most `cap`) from a fresh walk, forgetting what was tracked
    /// before, and tracks them from now on; returns how many are marked.
    /// `forgotten`: directories marked as roots of containers gone since, whose marks go unless a root
    /// still covers them.
    fn resync(&self, roots: Vec<OpenRoot>, cap: usize, forgotten: Vec<Arc<OwnedFd>>) -> usize;
    /// Ends the tracking: no mark is placed afterwards.
    fn stop(&mut self);
    /// Whether new directories are marked as they appear (else walked for every second).
    fn event_driven(&self) -> bool;
}

/// The marks of one fanotify group.
#[derive(Debug)]
pub struct Marks {
    group: Arc<FanotifyGroup>,
    /// The filesystems marked, by device, with the path the mark was placed through and its mask.
    filesystems: HashMap<u64, (PathBuf, Mask)>,
    /// The roots whose trees carry the open guard's inode marks.
    open_roots: Vec<OpenRoot>,
    /// Files whose exec-opens this group ignores for good: renewed after every flush. With each, the file
    /// (device, inode) its path led to when it was exempted.
    exempt: Vec<(PathBuf, Option<(u64, u64)>)>,
    /// Ignore marks placed for the exec cache since the last flush.
    cached: u64,
    /// Keeps the open guard's directory marks on every directory below `open_roots`, new ones included.
    tracker: Box<dyn OpenDirs>,
    counters: Arc<Counters>,
    max_dirs: usize,
    /// Whether `open_roots` were walked since they were set.
    walked: bool,
    /// The mounts carrying the open guard's mount mark.
    open_mounts: Vec<OpenMount>,
    /// Mounts still mounted that no longer need their mark: unmarked once the new guard is in place.
    stale_mounts: Vec<PathBuf>,
    /// Roots already logged as guarded by directory marks only (said once, not at every mount change).
    said_unmounted: Vec<PathBuf>,
}

impl Marks {
    pub fn new(group: Arc<FanotifyGroup>, tracker: Box<dyn OpenDirs>, counters: Arc<Counters>) -> Self {
        Self {
            group,
            filesystems: HashMap::new(),
            open_roots: Vec::new(),
            exempt: Vec::new(),
            cached: 0,
            tracker,
            counters,
            max_dirs: DEFAULT_MAX_DIRECTORIES,
            walked: false,
            open_mounts: Vec::new(),
            stale_mounts: Vec::new(),
            said_unmounted: Vec::new(),
        }
    }

    /// Marks every filesystem target not yet marked (or marked with another mask: the open guard was switched
    /// on or off). On failure, removes what this call added and returns the error.
    pub fn add_filesystems(&mut self, guard: &Guard) -> Result<()> {
        let group = &self.group;
        let mut added: Vec<(u64, PathBuf, Mask)> = Vec::new();
        for t in &guard.targets {
            let open = if guard.open_perm_on_filesystem(t) { Mask::FAN_OPEN_PERM } else { Mask::empty() };
            let mask = Mask::FAN_OPEN_EXEC_PERM | open;
            let had = self.filesystems.get(&t.dev).map_or(Mask::empty(), |(_, m)| *m);
            if had == mask {
                continue;
            }
            if let Err(source) = group.mark_filesystem(&t.mount_point, mask) {
                for (dev, path, bits) in added {
                    let _ = group.unmark_filesystem(&path, bits);
                    self.filesystems.remove(&dev);
                }
                self.counters.marks_failed.fetch_add(1, Ordering::Relaxed);
                return Err(Error::Mark { path: t.mount_point.clone(), source });
            }
            // Marking ORs bits in; take away what the new mask no longer holds.
            if !(had - mask).is_empty() {
                let _ = group.unmark_filesystem(&t.mount_point, had - mask);
            }
            tracing::info!(mount = %t.mount_point.display(), fstype = %t.fstype, protects = %t.protects.join(","), decides = %t.decides, open_guard = !open.is_empty(), "marked filesystem");
            self.filesystems.insert(t.dev, (t.mount_point.clone(), mask));
            if had.is_empty() {
                added.push((t.dev, t.mount_point.clone(), mask));
            }
        }
        self.add_open_mounts(guard);
        Ok(())
    }

    /// Puts the open guard's mount mark on each of its roots that is a mount's root and not marked yet, and
    /// notes the marked mounts the guard no longer needs (unmarked by
    /// [`remove_stale_filesystems`](Self::remove_stale_filesystems), after the swap). A refused mount mark is
    /// counted and logged: the directory marks still guard that root, with the window of a new directory.
    fn add_open_mounts(&mut self, guard: &Guard) {
        let wanted = guard.open_mounts();
        for m in wanted.iter().filter(|m| !self.open_mounts.contains(m)) {
            match self.group.mark_mount(&m.path, Mask::FAN_OPEN_PERM) {
                Ok(()) => {
                    tracing::info!(mount = %m.path.display(), "open guard: marked the mount of a protected directory (a file in a directory made there a moment ago is seen)")
                }
                Err(error) => {
                    self.counters.marks_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(mount = %m.path.display(), %error, "open guard: cannot mark the mount of a protected directory; its directory marks guard it, leaving a directory made a moment ago unguarded until marked");
                }
            }
        }
        // A mount gone from the table took its mark with it; one still there at the same place is unmarked.
        self.stale_mounts = self
            .open_mounts
            .iter()
            .filter(|m| !wanted.contains(m))
            .filter(|m| guard.mounts.containing(m.path.as_os_str().as_bytes()).is_some_and(|now| now.id == m.id))
            .map(|m| m.path.clone())
            .collect();
        // A protected file is no directory a new one can be made in.
        for root in guard.open_roots_without_mount().into_iter().filter(|r| r.is_dir()) {
            if !self.said_unmounted.contains(&root) {
                tracing::warn!("{}", unmounted_root_remedy(&root));
                self.said_unmounted.push(root);
            }
        }
        self.open_mounts = wanted;
    }

    /// The group, to be handed to whoever keeps it across a restart.
    pub fn group(&self) -> &Arc<FanotifyGroup> {
        &self.group
    }

    /// The group as a [`Marker`], for the marks of containers' own mounts, which `ctr_marks` keeps the books of.
    pub fn marker(&self) -> &dyn Marker {
        self.group.as_ref()
    }

    /// The mask [`add_filesystems`](Self::add_filesystems) put on filesystem `dev` (empty: not marked here).
    pub fn filesystem_mask(&self, dev: u64) -> Mask {
        self.filesystems.get(&dev).map_or(Mask::empty(), |(_, m)| *m)
    }

    /// Removes the marks of filesystems no target needs any more, and the open guard's mount marks the guard
    /// last given to [`add_filesystems`](Self::add_filesystems) no longer needs.
    pub fn remove_stale_filesystems(&mut self, targets: &[MarkTarget]) {
        for path in std::mem::take(&mut self.stale_mounts) {
            if self.group.unmark_mount(&path, Mask::FAN_OPEN_PERM).is_ok() {
                tracing::info!(mount = %path.display(), "open guard: removed the mark of a mount no longer protected");
            }
        }
        let stale: Vec<u64> =
            self.filesystems.keys().filter(|d| !targets.iter().any(|t| t.dev == **d)).copied().collect();
        for dev in stale {
            if let Some((path, mask)) = self.filesystems.remove(&dev) {
                // The filesystem may be gone already, and its mark with it.
                if self.group.unmark_filesystem(&path, mask).is_ok() {
                    tracing::info!(mount = %path.display(), "removed mark");
                }
            }
        }
    }

    /// Makes the open guard's directory marks follow `roots`: a full walk when they differ from the roots
    /// tracked (or nothing was walked yet); otherwise the tracker keeps up by itself and nothing is walked.
    /// Marks of roots no longer protected go with the next [`flush_inode_marks`](Self::flush_inode_marks),
    /// which every policy or mount change makes. Returns how many directories were marked by this call.
    pub fn sync_open_dirs(&mut self, roots: &[OpenRoot]) -> usize {
        if self.walked && self.open_roots == roots {
            return 0;
        }
        self.open_roots = roots.to_vec();
        self.walk_open_roots()
    }

    /// The open guard's roots from now on; their directories are marked by the flush that follows.
    pub fn set_open_roots(&mut self, roots: Vec<OpenRoot>) {
        self.open_roots = roots;
    }

    /// At most this many directories carry open marks (`[open_guard] max_directories`), from the next walk.
    pub fn set_max_directories(&mut self, max: usize) {
        self.max_dirs = max;
    }

    /// Whether new directories are marked as they appear (else walked for every second).
    pub fn open_dirs_event_driven(&self) -> bool {
        self.tracker.event_driven()
    }

    fn walk_open_roots(&mut self) -> usize {
        self.walked = true;
        let mut roots = self.open_roots.clone();
        let (recent, forgotten) = first_exec_roots();
        for root in recent {
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
        self.tracker.resync(roots, self.max_dirs, forgotten)
    }

    /// Exempts `paths` from the group's exec events for as long as it lives (kept across flushes): the files
    /// the daemon's own restart exec-opens while the group waits in systemd's FD store.
    pub fn exempt(&mut self, paths: Vec<PathBuf>) {
        self.exempt = paths.into_iter().map(|p| (p, None)).collect();
        self.place_exemptions();
    }

    fn place_exemptions(&mut self) {
        for (path, placed) in &mut self.exempt {
            // The ignore mark goes on the inode the path leads to when it is placed: looked at after it, a file
            // replaced in between is seen as new by the next `renew_exemptions`.
            if let Err(e) = self.group.ignore_inode(path, Mask::FAN_OPEN_EXEC_PERM) {
                tracing::warn!(path = %path.display(), error = %e, "cannot exempt a file of the daemon's own start from the stored group");
            }
            *placed = file_id(path);
        }
    }

    /// Exempts again the exempted paths that lead to another file now (a package manager replaced the binary
    /// or a library: the next start exec-opens the new one). Returns the paths exempted again.
    pub fn renew_exemptions(&mut self) -> Vec<PathBuf> {
        let mut renewed = Vec::new();
        for (path, placed) in &mut self.exempt {
            let now = file_id(path);
            if now.is_none() || now == *placed {
                continue;
            }
            if let Err(e) = self.group.ignore_inode(path, Mask::FAN_OPEN_EXEC_PERM) {
                tracing::warn!(path = %path.display(), error = %e, "cannot exempt the new file of the daemon's own start from the stored group");
            }
            *placed = now;
            renewed.push(path.clone());
        }
        renewed
    }

    /// The exec cache's mark: the kernel raises no exec event for this file until it is modified.
    pub fn ignore_exec(&mut self, fd: BorrowedFd<'_>) -> std::result::Result<(), Errno> {
        self.group.ignore_fd(fd, Mask::FAN_OPEN_EXEC_PERM)?;
        self.cached += 1;
        Ok(())
    }

    /// Ignore marks placed for the exec cache since the last flush.
    pub fn cached(&self) -> u64 {
        self.cached
    }

    /// The one flush: drops every inode mark of the group (the exec cache's, the open guard's directory marks,
    /// the exemptions), then puts back the exemptions and the directory marks at once.
    pub fn flush_inode_marks(&mut self) {
        // A container just started may have nothing but these marks on its protected directories, and is
        // running already: marked again right after the flush (looked up before it), before the walk of every
        // root. The decision thread remembers a root before it marks it, so a root it adds while the flush
        // runs is in the second look, or marked by the decision thread after the flush.
        let (recent, _) = first_exec_roots();
        if let Err(e) = self.group.flush_inode_marks() {
            tracing::error!(error = %e, "cannot remove the inode marks of the old policy");
        }
        let later = first_exec_roots().0.into_iter().filter(|r| !recent.contains(r));
        for root in recent.iter().cloned().chain(later.collect::<Vec<_>>()) {
            if let Err(error) = self.group.mark_inode(&root.path, root.dir_mask()) {
                // Mostly a container that has just ended.
                self.counters.marks_failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(path = %root.path.display(), %error, "cannot mark a container's protected directory again after the flush");
            }
        }
        self.cached = 0;
        self.place_exemptions();
        self.walk_open_roots();
    }

    /// After a mount change: the open guard's directories follow the new roots through the tracker's resync
    /// (which marks the new and unmarks the stale), with no flush, so that no protected directory is ever
    /// without its mark meanwhile. The exec cache's ignore marks stay (`exec_cache`, rule 5).
    pub fn follow_open_roots(&mut self) {
        self.walk_open_roots();
    }

    /// Walks the open roots again when a root remembered from a container's first exec is due to go (its
    /// process ended, or it was kept long enough): its mark goes unless a root still covers it, and the
    /// directory held for it is let go (a container's own tmpfs lives while it is held).
    pub fn forget_due_first_exec_roots(&mut self) {
        if FIRST_EXEC_ROOTS.load().iter().any(|r| !first_exec_root_kept(r)) {
            self.walk_open_roots();
        }
    }

    /// At stop: every mark goes, so the kernel queues no new event.
    pub fn remove_all(&mut self) -> std::result::Result<(), Errno> {
        // First the tracker, so that no directory is marked after the flush.
        self.tracker.stop();
        self.filesystems.clear();
        self.open_roots.clear();
        self.open_mounts.clear();
        self.stale_mounts.clear();
        self.group
            .flush_filesystem_marks()
            .and_then(|()| self.group.flush_mount_marks())
            .and_then(|()| self.group.flush_inode_marks())
    }
}

/// What the daemon's log and `check` say of an open-guard root that is only a directory of a shared filesystem:
/// the window, and the bind that closes it, on one line.
pub fn unmounted_root_remedy(root: &Path) -> String {
    let r = root.display();
    format!(
        "open guard: {r} is a directory of a filesystem shared with the rest of the system, not a mount of its own: a file in a directory made there a moment ago can be run by sh, ld.so or LD_PRELOAD before the directory's mark lands; to close that, bind it onto itself: `mount --bind {r} {r}` now and `{r} {r} none bind 0 0` in /etc/fstab (what that changes: docs/open-guard.md#a-directory-made-a-moment-ago)"
    )
}
