//! The open guard's directory tracking: every directory below the open guard's roots carries the open mark
//! (FAN_OPEN_PERM with FAN_EVENT_ON_CHILD in the permission group) and a watch mark (FAN_CREATE,
//! FAN_MOVED_TO, FAN_DELETE_SELF with FAN_ONDIR in a notification group, [`DirWatch`]). A directory that
//! appears in a tracked directory is reported by its parent's file handle and its name; the tracker opens
//! the parent by handle, opens the new directory by name, marks it (both groups) and only then lists it, so
//! a subdirectory made before the marks were in place (`mkdir -p`, a tree moved in) is found by the listing,
//! and one made after raises its own event.
//!
//! A btrfs subvolume inside a tracked directory (any user may create one) has another `st_dev` but is no
//! mount root: it is walked and tracked like a directory. Its directories report an fsid of their own, which
//! the watch's group refuses (EXDEV): those are watched through [`SubvolWatch`] (inotify) instead.
//!
//! Full walks only where events cannot tell: at start, after a policy or mount change (the one flush of the
//! group's inode marks), after the watch's queue overflowed, and when the directories fell back
//! below the cap after reaching it. Idle, the tracker sleeps in `poll(2)`.
//!
//! Bounded: at most `max_directories` are marked; past it one `SystemEvent` alert (through `on_cap`), the
//! STATUS line says so, and the exec guard (filesystem marks) is untouched. The set of tracked directories
//! holds one file-handle key each and loses them with `FAN_DELETE_SELF`, so it does not grow with churn.
//!
//! A root may not exist yet where it has an anchor ([`OpenRoot`]): a container's `/tmp` in its overlay's upper
//! layer appears only when the container first writes there (a copy-up renames it into the layer). The
//! deepest directory that exists from the anchor down is watched (never marked for opens), and the root is
//! walked as soon as the directory it waits for appears.
//!
//! A root on an overlay without `nfs_export` (a container's `/tmp` through `/proc/PID/root`) has handles that
//! name a directory but cannot open it again: its tracked directories are kept open, by key, and a new
//! subdirectory's parent is taken from them.
//!
//! It runs in its own thread: the decision thread never waits for it, and a storm of mkdirs does not hold
//! up the tokio side either. Where the kernel has no `FAN_REPORT_DFID_NAME` (before 5.9) it walks every
//! [`FALLBACK_RESCAN`] instead.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::dir::{Dir, Type};
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::stat::{Mode, fstat};

use super::subvol_watch::SubvolWatch;
use crate::error::{Error, Result};
pub use crate::guard::marks::OpenRoot;
use crate::guard::marks::{MarkFailure, MarkFailures, Marker, OpenDirs};
use crate::stats::Counters;
use crate::sys::{DirEvent, DirKey, DirWatch, Mask, dir_key, open_dir_by_key};

/// FAN_OPEN_PERM on the files inside a directory (and on the directory itself, which we allow at once).
pub const DIR_MASK: Mask = Mask::FAN_OPEN_PERM.union(Mask::FAN_EVENT_ON_CHILD);

/// What a refused open mark was for, in the log.
const OPEN_MARK: &str = "a protected directory for the open guard";

/// How often the trees are walked where the kernel cannot report new directories.
pub const FALLBACK_RESCAN: Duration = Duration::from_secs(1);

/// Reads of the watch per wake-up before commands are looked at again (a storm must not starve a resync).
const READS_PER_ROUND: usize = 64;
/// During a full walk, the watch is read after every this many directories (a few milliseconds)...
const PUMP_EVERY: usize = 128;
/// ...this many batches at most.
const PUMP_READS: usize = 4;
/// Full walks in a row when the queue keeps overflowing during them (a storm); the next overflow starts
/// another.
const MAX_WALK_ROUNDS: usize = 3;
const READ_BUF: usize = 64 * 1024;

/// Called once when the cap is reached (with the cap), from the tracker's thread.
pub type OnCap = Box<dyn Fn(usize) + Send>;

enum Command {
    /// Forget everything, track `roots` from a full walk, answer with how many directories are marked.
    Resync {
        roots: Vec<OpenRoot>,
        cap: usize,
        forgotten: Vec<Arc<OwnedFd>>,
        done: mpsc::Sender<usize>,
    },
    Stop,
}

/// The handle of the tracker's thread.
#[derive(Debug)]
pub struct DirTracker {
    commands: mpsc::Sender<Command>,
    wake: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
    /// Whether directories are tracked by events (else walked every [`FALLBACK_RESCAN`]).
    pub event_driven: bool,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Resync { .. } => "Resync",
            Command::Stop => "Stop",
        })
    }
}

impl DirTracker {
    /// Starts the thread; it tracks nothing until the first [`resync`](Self::resync).
    /// `marker` places the open marks; a refused one is counted in `counters` and logged.
    pub fn start(marker: Arc<dyn Marker>, counters: Arc<Counters>, on_cap: OnCap) -> Result<Self> {
        let watch = match DirWatch::new() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, every = ?FALLBACK_RESCAN, "no fanotify directory events (FAN_REPORT_DFID_NAME needs Linux 5.9); the open guard walks its directories instead");
                None
            }
        };
        let event_driven = watch.is_some();
        let wake = Arc::new(
            EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .map_err(|e| Error::Runtime { what: "directory tracker eventfd", source: e.into() })?,
        );
        let (commands, rx) = mpsc::channel();
        let mut tracker = Tracker {
            marker,
            failures: MarkFailures::logged_here(counters.clone()),
            watch,
            subvols: None,
            roots: Vec::new(),
            root_paths: Vec::new(),
            pending: Vec::new(),
            tracked: HashSet::new(),
            unkeyed: 0,
            undecodable: Vec::new(),
            held: std::collections::HashMap::new(),
            cap: usize::MAX,
            capped: false,
            alerted: false,
            counters,
            on_cap,
            parent: None,
            buf: vec![0u8; READ_BUF],
            events: Vec::new(),
            walking: false,
            overflowed_in_walk: false,
        };
        let thread_wake = wake.clone();
        let thread = std::thread::Builder::new()
            .name("noexecd-dirs".into())
            .spawn(move || tracker.run(&rx, &thread_wake))
            .map_err(|source| Error::SpawnThread { what: "directory tracker", source })?;
        Ok(Self { commands, wake, thread: Some(thread), event_driven })
    }

    /// Marks every directory below `roots` (at most `cap`) from a fresh walk, unmarks the trees of roots gone
    /// since the last one and the `forgotten` first-exec roots no walk covers, and tracks them from now on.
    /// Waits for the walk.
    pub fn resync(&self, roots: Vec<OpenRoot>, cap: usize, forgotten: Vec<Arc<OwnedFd>>) -> usize {
        let (done, answer) = mpsc::channel();
        if self.commands.send(Command::Resync { roots, cap, forgotten, done }).is_err() {
            return 0;
        }
        let _ = self.wake.write(1);
        answer.recv().unwrap_or(0)
    }

    /// Ends the thread (it places no mark afterwards) and removes the watch.
    pub fn stop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        let _ = self.wake.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl OpenDirs for DirTracker {
    fn resync(&self, roots: Vec<OpenRoot>, cap: usize, forgotten: Vec<Arc<OwnedFd>>) -> usize {
        DirTracker::resync(self, roots, cap, forgotten)
    }

    fn stop(&mut self) {
        DirTracker::stop(self);
    }

    fn event_driven(&self) -> bool {
        self.event_driven
    }
}

impl Drop for DirTracker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A root directory: its filesystem's id, and an fd its filesystem's handles are opened through (those of
/// every btrfs subvolume of the superblock too).
struct Root {
    fsid: [u8; 8],
    fd: OwnedFd,
    /// The path it was opened through: once that leads nowhere (a container gone), `fd` still reaches it.
    path: PathBuf,
}

struct Tracker {
    marker: Arc<dyn Marker>,
    failures: MarkFailures,
    watch: Option<DirWatch>,
    /// Directories in btrfs subvolumes of another fsid than the one [`DirWatch`] took for their superblock,
    /// made at the first such directory, dropped (with its watches) before each full walk.
    subvols: Option<SubvolWatch>,
    roots: Vec<Root>,
    root_paths: Vec<OpenRoot>,
    /// Roots that do not exist yet: the directory watched for them (by key) and the root's index.
    pending: Vec<(DirKey, usize)>,
    /// The directories marked, by key; a key goes with its directory's `FAN_DELETE_SELF`.
    tracked: HashSet<DirKey>,
    /// Directories marked whose filesystem gives no file handle (counted against the cap all the same).
    unkeyed: usize,
    /// Filesystems (by fsid) of roots whose file handles name a directory but cannot open one again: an
    /// overlay without `nfs_export` (Linux 6.6+ encodes its handles for fanotify, never decodes them).
    undecodable: Vec<[u8; 8]>,
    /// The tracked directories of those filesystems, kept open by key: a new subdirectory's event names its
    /// parent by handle, and this is how the parent is opened. Dropped with each full walk and with the
    /// directory's `FAN_DELETE_SELF`.
    held: std::collections::HashMap<DirKey, OwnedFd>,
    cap: usize,
    /// Directories were left unmarked for the cap since the last full walk.
    capped: bool,
    /// The cap's alert was raised; again only after a full walk found the directories below the cap.
    alerted: bool,
    counters: Arc<Counters>,
    on_cap: OnCap,
    /// The parent of the last event, open, with its device: a storm in one directory opens it once.
    parent: Option<(DirKey, OwnedFd, u64)>,
    buf: Vec<u8>,
    events: Vec<DirEvent>,
    /// A full walk is under way (it reads the watch between directories).
    walking: bool,
    /// The queue overflowed while a full walk was under way.
    overflowed_in_walk: bool,
}

enum Tracked {
    New,
    Known,
    Full,
    Failed,
}

impl Tracker {
    fn run(&mut self, commands: &mpsc::Receiver<Command>, wake: &EventFd) {
        let mut last_walk = Instant::now();
        loop {
            let timeout = match &self.watch {
                None if !self.root_paths.is_empty() => {
                    PollTimeout::try_from(FALLBACK_RESCAN.saturating_sub(last_walk.elapsed()))
                        .unwrap_or(PollTimeout::ZERO)
                }
                _ => PollTimeout::NONE,
            };
            let (woken, readable) = {
                let mut fds = vec![PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
                if let Some(w) = &self.watch {
                    fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
                }
                if let Some(w) = &self.subvols {
                    fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        tracing::error!(error = %e, "directory tracker cannot poll; new directories get no open-guard mark");
                        std::thread::sleep(FALLBACK_RESCAN);
                    }
                }
                let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
                (fds.first().is_some_and(ready), fds.iter().skip(1).any(ready))
            };
            if woken {
                let _ = wake.read();
            }
            while let Ok(c) = commands.try_recv() {
                match c {
                    Command::Resync { roots, cap, forgotten, done } => {
                        self.cap = cap;
                        // The watches of roots no longer tracked go (those of the same roots stay: they will
                        // be walked again at once anyway).
                        if let Some(w) = &self.watch
                            && roots != self.root_paths
                        {
                            let _ = w.flush();
                        }
                        // Trees no longer protected (a container gone or no longer selected) lose their open
                        // marks now: no flush of the group comes when its lower layers, shared with the image,
                        // stay behind.
                        // Through the directory held open, compared by inode: a container's root path leads
                        // nowhere once its process is gone (or, reused, elsewhere), while a bind of a host
                        // directory outlives it.
                        let old_roots = std::mem::take(&mut self.roots);
                        let old_paths = std::mem::take(&mut self.root_paths);
                        self.set_roots(roots);
                        let gone: Vec<Root> = old_roots
                            .into_iter()
                            .filter(|old| !self.roots.iter().any(|r| same_inode(r.fd.as_fd(), old.fd.as_fd())))
                            .collect();
                        for root in &gone {
                            self.unmark_tree_at(root.fd.as_fd());
                        }
                        // Roots held by no fd (a file, or a directory that could not be opened): by path.
                        for old in old_paths {
                            let held = gone.iter().any(|g| g.path == old.path);
                            if !held && !self.root_paths.iter().any(|r| r.path == old.path) {
                                self.unmark_tree(&old.path);
                            }
                        }
                        let n = self.full_walk();
                        // Roots the decision thread marked at a container's first exec, which no walk may have
                        // tracked: their own mark goes unless a walk marked the directory again.
                        for fd in &forgotten {
                            let key = crate::sys::fsid(fd.as_fd()).ok().and_then(|f| dir_key(fd.as_fd(), &f).ok());
                            let tracked = key.is_some_and(|k| self.tracked.contains(&k))
                                || self.roots.iter().any(|r| same_inode(r.fd.as_fd(), fd.as_fd()));
                            if !tracked {
                                let _ = self.marker.unmark_fd(fd.as_fd(), DIR_MASK);
                            }
                        }
                        drop(gone);
                        last_walk = Instant::now();
                        let _ = done.send(n);
                    }
                    Command::Stop => {
                        if let Some(w) = &self.watch {
                            let _ = w.flush();
                        }
                        return;
                    }
                }
            }
            if readable {
                self.drain();
            }
            if self.watch.is_none() && !self.root_paths.is_empty() && last_walk.elapsed() >= FALLBACK_RESCAN {
                // Without events the set cannot learn of deletions: walk from scratch (marks already there
                // are kept: adding a mark that exists changes nothing).
                self.full_walk();
                last_walk = Instant::now();
            }
        }
    }

    fn set_roots(&mut self, roots: Vec<OpenRoot>) {
        self.parent = None;
        self.pending.clear();
        self.roots = roots
            .iter()
            .filter_map(|root| {
                // Not O_PATH: open_by_handle_at takes no O_PATH fd as its mount fd (EBADF).
                let open = |path: &Path| {
                    nix::fcntl::open(
                        path,
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .ok()
                };
                let fd = open(&root.path).or_else(|| root.anchor.as_deref().and_then(open))?;
                let fsid = crate::sys::fsid(fd.as_fd()).ok()?;
                Some(Root { fsid, fd, path: root.path.clone() })
            })
            .collect();
        self.undecodable = self
            .roots
            .iter()
            .filter(|r| dir_key(r.fd.as_fd(), &r.fsid).is_ok_and(|k| open_dir_by_key(r.fd.as_fd(), &k).is_err()))
            .map(|r| r.fsid)
            .collect();
        self.root_paths = roots;
    }

    /// Forgets every key and marks everything below the roots again (marks that exist stay as they are).
    fn full_walk(&mut self) -> usize {
        let started = Instant::now();
        let mut rounds = 0;
        let marked = loop {
            rounds += 1;
            self.overflowed_in_walk = false;
            let n = self.walk_roots();
            // Events lost during the walk may name directories it had passed already: once more.
            if !self.overflowed_in_walk || rounds >= MAX_WALK_ROUNDS {
                break n;
            }
            tracing::warn!("directory watch overflowed during the walk: walking the protected trees again");
        };
        if !self.capped {
            self.alerted = false;
            self.counters.open_dirs_capped_at.store(0, Ordering::Relaxed);
        }
        self.publish();
        tracing::debug!(directories = marked, rounds, took = ?started.elapsed(), "open guard: walked the protected trees");
        marked
    }

    /// One walk from scratch: every key forgotten, every directory below the roots marked (marks that exist
    /// stay as they are). Between directories it keeps reading the watch, so that a directory made during a
    /// long walk is marked as soon as it would be without one.
    fn walk_roots(&mut self) -> usize {
        self.tracked.clear();
        self.held.clear();
        self.subvols = None;
        self.unkeyed = 0;
        self.capped = false;
        self.pending.clear();
        let mut marked = 0;
        for (i, root) in self.root_paths.clone().into_iter().enumerate() {
            let path = root.path;
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                marked += self.await_root(i);
                continue;
            };
            if meta.is_file() {
                // A match_paths rule names a file: mark the file itself.
                match self.marker.mark_inode(&path, Mask::FAN_OPEN_PERM) {
                    Ok(()) => marked += 1,
                    Err(error) => {
                        self.failures.report(MarkFailure { what: "a protected file for the open guard", path, error })
                    }
                }
                continue;
            }
            if !meta.is_dir() {
                continue;
            }
            let Some(dir) = open_subdir(nix::fcntl::AT_FDCWD, path.as_path(), meta.dev(), None) else { continue };
            self.walking = true;
            marked += self.walk(dir);
            self.walking = false;
        }
        marked
    }

    /// Root `i`, which did not exist a moment ago: walked if it exists now, else the deepest directory that
    /// exists from its anchor down is watched for the next component (and looked at again once watched, for
    /// one that appeared meanwhile). Returns how many directories were marked.
    fn await_root(&mut self, i: usize) -> usize {
        let Some(OpenRoot { path, anchor: Some(anchor) }) = self.root_paths.get(i).cloned() else { return 0 };
        let Ok(rest) = path.strip_prefix(&anchor) else { return 0 };
        let names: Vec<&std::ffi::OsStr> = rest
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        let Ok(meta) = std::fs::symlink_metadata(&anchor) else { return 0 };
        let dev = meta.dev();
        let Some(top) = open_subdir(nix::fcntl::AT_FDCWD, anchor.as_path(), dev, None) else { return 0 };
        let mut dir = top;
        let mut depth = 0;
        let mut watched = false;
        loop {
            let next = names.get(depth).and_then(|n| open_subdir(dir.fd.as_fd(), *n, dir.dev, Some(dir.fsid)));
            match next {
                Some(d) => {
                    dir = d;
                    depth += 1;
                    watched = false;
                }
                None if depth >= names.len() => return self.walk(dir),
                // Watched and looked at again: the component is not there yet; its creation is an event.
                None if watched => return 0,
                None => {
                    let Some(w) = &self.watch else { return 0 };
                    let Ok(key) = dir_key(dir.fd.as_fd(), &dir.fsid) else { return 0 };
                    if let Err(e) = w.watch(dir.fd.as_fd()) {
                        tracing::warn!(root = %path.display(), error = %e, "cannot watch for a protected directory to appear");
                        return 0;
                    }
                    if !self.pending.iter().any(|(k, j)| *k == key && *j == i) {
                        self.pending.push((key, i));
                    }
                    watched = true;
                }
            }
        }
    }

    /// Takes the open mark off every directory below the directory open at `root` (a root no longer
    /// protected).
    fn unmark_tree_at(&self, root: BorrowedFd<'_>) {
        let Ok(st) = crate::sys::file_facts(root) else { return };
        let Some(first) = open_subdir(root, c".", st.dev, None) else { return };
        self.unmark_below(first);
    }

    /// Takes the open mark off every directory below `path` (a root no longer protected).
    fn unmark_tree(&self, path: &Path) {
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
    fn unmark_below(&self, first: Opened) {
        let mut stack: Vec<Opened> = vec![first];
        let mut seen = 0usize;
        while let Some(dir) = stack.pop() {
            // A directory gone meanwhile took its mark with it.
            let _ = self.marker.unmark_fd(dir.fd.as_fd(), DIR_MASK);
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

    /// Tracks `first` and every directory below it on its mount (the btrfs subvolumes inside included);
    /// returns how many were new.
    fn walk(&mut self, first: Opened) -> usize {
        let mut added = 0;
        let mut next = Some(first);
        let mut stack: Vec<(Rc<Opened>, CString)> = Vec::new();
        loop {
            let dir = match next.take() {
                Some(d) => d,
                None => {
                    let Some((parent, name)) = stack.pop() else { break };
                    match open_subdir(parent.fd.as_fd(), name.as_c_str(), parent.dev, Some(parent.fsid)) {
                        Some(d) => d,
                        None => continue,
                    }
                }
            };
            match self.track(dir.fd.as_fd(), &dir.fsid) {
                Tracked::New => {
                    added += 1;
                    if self.walking && added % PUMP_EVERY == 0 {
                        // Not re-entered: directories found by these events are walked on their own.
                        self.walking = false;
                        if self.pump(PUMP_READS) {
                            self.overflowed_in_walk = true;
                        }
                        self.walking = true;
                    }
                }
                Tracked::Known | Tracked::Failed => continue,
                Tracked::Full => break,
            }
            // The link count again, now that the marks are on: a subdirectory made since the open (`mkdir -p a/b`
            // racing the tracker) is then either counted here or raises its own event on the new mark.
            if !dir.may_have_subdirs && fstat(&dir.fd).is_ok_and(|st| st.st_nlink == 2) {
                continue;
            }
            let names = subdirectories(&dir.fd);
            let parent = Rc::new(dir);
            stack.extend(names.into_iter().map(|n| (parent.clone(), n)));
        }
        added
    }

    /// Marks one directory in both groups; the marks go on before its entries are listed.
    fn track(&mut self, dir: BorrowedFd<'_>, fsid: &[u8; 8]) -> Tracked {
        let key = dir_key(dir, fsid).ok();
        if key.as_ref().is_some_and(|k| self.tracked.contains(k)) {
            return Tracked::Known;
        }
        if self.count() >= self.cap {
            self.reach_cap();
            return Tracked::Full;
        }
        if let Err(error) = self.marker.mark_fd(dir, DIR_MASK) {
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
                self.tracked.insert(k);
            }
            None => self.unkeyed += 1,
        }
        Tracked::New
    }

    fn watch_subvolume_dir(&mut self, dir: BorrowedFd<'_>, key: Option<DirKey>) {
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

    fn count(&self) -> usize {
        self.tracked.len() + self.unkeyed
    }

    fn publish(&self) {
        self.counters.open_dirs.store(self.count() as u64, Ordering::Relaxed);
    }

    fn reach_cap(&mut self) {
        if !self.capped {
            self.capped = true;
            self.counters.open_dirs_capped_at.store(self.cap as u64, Ordering::Relaxed);
        }
        if !self.alerted {
            self.alerted = true;
            tracing::error!(max_directories = self.cap, roots = ?self.root_paths, "open guard: directory cap reached; newer directories below the protected roots get no open mark (the exec guard is whole)");
            (self.on_cap)(self.cap);
        }
    }

    /// Reads and handles what the watch queued, a bounded number of reads at a time.
    /// Reads up to `reads` batches of the watch and handles them; returns whether the queue overflowed.
    fn pump(&mut self, reads: usize) -> bool {
        let mut overflow = false;
        let mut events = std::mem::take(&mut self.events);
        for _ in 0..reads {
            events.clear();
            let mut any = false;
            if let Some(watch) = &self.watch {
                match watch.read(&mut self.buf, &mut events) {
                    Ok(0) => {}
                    Ok(_) => any = true,
                    Err(e) => tracing::warn!(error = %e, "cannot read the directory watch"),
                }
            }
            if let Some(watch) = self.subvols.as_mut() {
                match watch.read(&mut events) {
                    Ok(read) => any |= read,
                    Err(e) => tracing::warn!(error = %e, "cannot read the btrfs subvolumes' directory watch"),
                }
            }
            if !any {
                break;
            }
            for event in events.drain(..) {
                match event {
                    DirEvent::Overflow => overflow = true,
                    DirEvent::Deleted { dir } => {
                        self.tracked.remove(&dir);
                        self.held.remove(&dir);
                        self.pending.retain(|(k, _)| *k != dir);
                        if self.parent.as_ref().is_some_and(|(k, _, _)| *k == dir) {
                            self.parent = None;
                        }
                    }
                    // Still handled after an overflow: the walk that follows finds what was lost, and these
                    // are marked at once meanwhile.
                    DirEvent::Appeared { parent, name } => self.appeared(&parent, &name),
                }
            }
        }
        self.events = events;
        overflow
    }

    /// Handles what the watch queued, a bounded number of reads at a time.
    fn drain(&mut self) {
        let overflow = self.pump(READS_PER_ROUND);
        let below_again = self.capped && self.count() < self.cap / 10 * 9;
        if overflow || below_again {
            if overflow {
                tracing::warn!("directory watch overflowed: walking the protected trees again");
            }
            self.full_walk();
        }
        self.publish();
    }

    fn appeared(&mut self, parent: &DirKey, name: &[u8]) {
        let waiting: Vec<usize> = self.pending.iter().filter(|(k, _)| k == parent).map(|(_, i)| *i).collect();
        if !waiting.is_empty() {
            // A directory watched for a root to appear below it; it is no protected directory itself.
            self.pending.retain(|(k, _)| k != parent);
            for i in waiting {
                self.await_root(i);
            }
            if !self.tracked.contains(parent) {
                return;
            }
        }
        let Ok(fsid) = <[u8; 8]>::try_from(parent.fsid()) else { return };
        if self.parent.as_ref().is_none_or(|(k, _, _)| k != parent) {
            let Some((fd, dev)) = self.held_parent(parent).or_else(|| self.open_parent(parent, &fsid)) else { return };
            self.parent = Some((parent.clone(), fd, dev));
        }
        let Ok(name) = CString::new(name) else { return };
        let Some(dir) =
            self.parent.as_ref().and_then(|(_, p, dev)| open_subdir(p.as_fd(), name.as_c_str(), *dev, Some(fsid)))
        else {
            return;
        };
        self.walk(dir);
    }

    /// A tracked directory of a filesystem whose handles cannot be opened, from the ones kept open.
    fn held_parent(&self, parent: &DirKey) -> Option<(OwnedFd, u64)> {
        let fd = self.held.get(parent)?.try_clone().ok()?;
        let dev = crate::sys::file_facts(fd.as_fd()).ok()?.dev;
        Some((fd, dev))
    }

    /// Opens a tracked directory by its key, with its device. A btrfs subvolume reports an fsid of its own,
    /// which no root has: its handle is opened through the roots in turn, and what opens must report that
    /// fsid (a handle of one btrfs may name some other directory of another).
    fn open_parent(&self, parent: &DirKey, fsid: &[u8; 8]) -> Option<(OwnedFd, u64)> {
        let exact = self.roots.iter().filter(|r| r.fsid == *fsid);
        let others = self.roots.iter().filter(|r| r.fsid != *fsid);
        for (i, root) in exact.chain(others).enumerate() {
            match open_dir_by_key(root.fd.as_fd(), parent) {
                Ok(fd) if root.fsid == *fsid || crate::sys::fsid(fd.as_fd()).is_ok_and(|f| f == *fsid) => {
                    let dev = crate::sys::file_facts(fd.as_fd()).ok()?.dev;
                    return Some((fd, dev));
                }
                Ok(_) => {}
                // The parent is gone already (and what it held), or the handle is not this filesystem's.
                Err(nix::errno::Errno::ESTALE | nix::errno::Errno::ENOENT) => {}
                Err(e) if i == 0 => {
                    tracing::warn!(error = %e, "cannot open the parent of a new directory by its handle; it gets no open mark");
                    return None;
                }
                Err(_) => {}
            }
        }
        None
    }
}

fn subdir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK
}

/// A directory opened for tracking.
struct Opened {
    fd: OwnedFd,
    dev: u64,
    /// Its filesystem's id as events report it (one per btrfs subvolume).
    fsid: [u8; 8],
    /// False where its link count says it holds no directory (2: itself and `.`; filesystems that do not
    /// count subdirectories, btrfs, say 1): a new, empty directory is then not listed.
    may_have_subdirs: bool,
}

/// Opens the directory `name` in `parent` (on device `parent_dev`, filesystem id `parent_fsid` where known)
/// if it is one on the parent's mount: the same device, or a btrfs subvolume (another device where no mount
/// is rooted, on the same superblock). A mount below is a target of its own, never walked from here.
fn open_subdir<P: ?Sized + nix::NixPath>(
    parent: impl AsFd,
    name: &P,
    parent_dev: u64,
    parent_fsid: Option<[u8; 8]>,
) -> Option<Opened> {
    let fd = nix::fcntl::openat(parent, name, subdir_flags(), Mode::empty()).ok()?;
    let st = crate::sys::file_facts(fd.as_fd()).ok()?;
    if !st.on_mount_of_parent(parent_dev) {
        return None;
    }
    let fsid = match parent_fsid {
        Some(f) if st.dev == parent_dev => f,
        _ => crate::sys::fsid(fd.as_fd()).ok()?,
    };
    Some(Opened { fd, dev: st.dev, fsid, may_have_subdirs: st.nlink != 2 })
}

/// Whether two fds are open on the same inode.
fn same_inode(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    match (crate::sys::file_facts(a), crate::sys::file_facts(b)) {
        (Ok(a), Ok(b)) => a.dev == b.dev && a.ino == b.ino,
        _ => false,
    }
}

/// The names of the directories in `dir` (entries of unknown type too: opening them says), read through a
/// duplicate (the listing's buffer lives only as long as this call).
fn subdirectories(dir: &OwnedFd) -> Vec<CString> {
    let Ok(mut dir) = dir.try_clone().map_err(drop).and_then(|fd| Dir::from_fd(fd).map_err(drop)) else {
        return Vec::new();
    };
    dir.iter()
        .flatten()
        .filter(|e| matches!(e.file_type(), Some(Type::Directory) | None))
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;
    use std::sync::Mutex;

    /// Counts the directories it is asked to mark; refuses every mark.
    #[derive(Default)]
    struct Refusing {
        asked: Mutex<usize>,
    }

    impl Marker for Refusing {
        fn mark_filesystem(&self, _: &Path, _: Mask) -> std::result::Result<(), Errno> {
            Err(Errno::EPERM)
        }

        fn unmark_filesystem(&self, _: &Path, _: Mask) -> std::result::Result<(), Errno> {
            Ok(())
        }

        fn mark_inode(&self, _: &Path, _: Mask) -> std::result::Result<(), Errno> {
            *self.asked.lock().unwrap() += 1;
            Err(Errno::EPERM)
        }

        fn mark_fd(&self, _: BorrowedFd<'_>, mask: Mask) -> std::result::Result<(), Errno> {
            assert_eq!(mask, DIR_MASK);
            *self.asked.lock().unwrap() += 1;
            Err(Errno::EPERM)
        }

        fn unmark_fd(&self, _: BorrowedFd<'_>, _: Mask) -> std::result::Result<(), Errno> {
            Ok(())
        }
    }

    #[test]
    fn a_directory_the_kernel_refuses_to_mark_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let marker = Arc::new(Refusing::default());
        let counters = Arc::new(Counters::default());
        let mut tracker = DirTracker::start(marker.clone(), counters.clone(), Box::new(|_| {})).unwrap();
        let roots = vec![OpenRoot::from(dir.path().to_path_buf()), OpenRoot::from(dir.path().join("file"))];
        assert_eq!(tracker.resync(roots, 100, Vec::new()), 0, "nothing marked");
        // The root directory and the file: a refused directory is not listed, so `sub` is never reached.
        assert_eq!(*marker.asked.lock().unwrap(), 2);
        assert_eq!(counters.marks_failed.load(Ordering::Relaxed), 2);
        tracker.stop();
    }
}
