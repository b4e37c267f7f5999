//! The directory tracker's thread: the roots it was given, the directories it marked (by file-handle key),
//! the full walks, and the watch's events of new and deleted directories, within the cap.
#![forbid(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::EventFd;
use nix::sys::stat::{Mode, fstat};

use super::dirs::{Opened, open_subdir, same_inode, subdirectories};
use super::marked::{MarkedDirs, OnCap, Tracked, UNMARK_MASK};
use crate::guard::marks::{MarkFailure, Marker, OpenRoot};
use crate::stats::Counters;
use crate::sys::{DirEvent, DirKey, DirWatch, Mask, dir_key, open_dir_by_key};

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

pub(super) enum Command {
    /// Forget everything, track `roots` from a full walk, answer with how many directories are marked.
    Resync {
        roots: Vec<OpenRoot>,
        cap: usize,
        forgotten: Vec<Arc<OwnedFd>>,
        done: mpsc::Sender<usize>,
    },
    Stop,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Resync { .. } => "Resync",
            Command::Stop => "Stop",
        })
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

pub(super) struct Tracker {
    /// The directories marked, and the marks and watches on them.
    marked: MarkedDirs,
    roots: Vec<Root>,
    root_paths: Vec<OpenRoot>,
    /// Roots that do not exist yet: the directory watched for them (by key) and the root's index.
    pending: Vec<(DirKey, usize)>,
    /// The parent of the last event, open, with its device: a storm in one directory opens it once.
    parent: Option<(DirKey, OwnedFd, u64)>,
    buf: Vec<u8>,
    events: Vec<DirEvent>,
    /// A full walk is under way (it reads the watch between directories).
    walking: bool,
    /// The queue overflowed while a full walk was under way.
    overflowed_in_walk: bool,
}

impl Tracker {
    /// A tracker with nothing tracked; `watch` reports new directories (`None`: walks every
    /// [`FALLBACK_RESCAN`]).
    pub(super) fn new(
        marker: Arc<dyn Marker>,
        counters: Arc<Counters>,
        on_cap: OnCap,
        watch: Option<DirWatch>,
    ) -> Self {
        Tracker {
            marked: MarkedDirs::new(marker, counters, on_cap, watch),
            roots: Vec::new(),
            root_paths: Vec::new(),
            pending: Vec::new(),
            parent: None,
            buf: vec![0u8; READ_BUF],
            events: Vec::new(),
            walking: false,
            overflowed_in_walk: false,
        }
    }

    pub(super) fn run(&mut self, commands: &mpsc::Receiver<Command>, wake: &EventFd) {
        let mut last_walk = Instant::now();
        loop {
            let timeout = match &self.marked.watch {
                None if !self.root_paths.is_empty() => {
                    PollTimeout::try_from(FALLBACK_RESCAN.saturating_sub(last_walk.elapsed()))
                        .unwrap_or(PollTimeout::ZERO)
                }
                _ => PollTimeout::NONE,
            };
            let (woken, readable) = {
                let mut fds = vec![PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
                if let Some(w) = &self.marked.watch {
                    fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
                }
                if let Some(w) = &self.marked.subvols {
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
                        self.marked.cap = cap;
                        // The watches of roots no longer tracked go (those of the same roots stay: they will
                        // be walked again at once anyway).
                        if let Some(w) = &self.marked.watch
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
                            self.marked.unmark_tree_at(root.fd.as_fd());
                        }
                        // Roots held by no fd (a file, or a directory that could not be opened): by path.
                        for old in old_paths {
                            let held = gone.iter().any(|g| g.path == old.path);
                            if !held && !self.root_paths.iter().any(|r| r.path == old.path) {
                                self.marked.unmark_tree(&old.path);
                            }
                        }
                        let n = self.full_walk();
                        // Roots the decision thread marked at a container's first exec, which no walk may have
                        // tracked: their own mark goes unless a walk marked the directory again.
                        for fd in &forgotten {
                            let key = crate::sys::fsid(fd.as_fd()).ok().and_then(|f| dir_key(fd.as_fd(), &f).ok());
                            let tracked = key.is_some_and(|k| self.marked.tracked.contains(&k))
                                || self.roots.iter().any(|r| same_inode(r.fd.as_fd(), fd.as_fd()));
                            if !tracked {
                                let _ = self.marked.marker.unmark_fd(fd.as_fd(), UNMARK_MASK);
                            }
                        }
                        drop(gone);
                        last_walk = Instant::now();
                        let _ = done.send(n);
                    }
                    Command::Stop => {
                        if let Some(w) = &self.marked.watch {
                            let _ = w.flush();
                        }
                        return;
                    }
                }
            }
            if readable {
                self.drain();
            }
            if self.marked.watch.is_none() && !self.root_paths.is_empty() && last_walk.elapsed() >= FALLBACK_RESCAN {
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
        self.marked.undecodable = self
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
        if !self.marked.capped {
            self.marked.alerted = false;
            self.marked.counters.open_dirs_capped_at.store(0, Ordering::Relaxed);
        }
        self.marked.publish();
        tracing::debug!(directories = marked, rounds, took = ?started.elapsed(), "open guard: walked the protected trees");
        marked
    }

    /// One walk from scratch: every key forgotten, every directory below the roots marked (marks that exist
    /// stay as they are). Between directories it keeps reading the watch, so that a directory made during a
    /// long walk is marked as soon as it would be without one.
    fn walk_roots(&mut self) -> usize {
        self.marked.tracked.clear();
        self.marked.exec.clear();
        self.marked.held.clear();
        self.marked.subvols = None;
        self.marked.unkeyed = 0;
        self.marked.capped = false;
        self.pending.clear();
        let mut marked = 0;
        for (i, root) in self.root_paths.clone().into_iter().enumerate() {
            let exec = root.exec;
            let path = root.path;
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                marked += self.await_root(i);
                continue;
            };
            if meta.is_file() {
                // A match_paths rule names a file: mark the file itself.
                match self.marked.marker.mark_inode(&path, Mask::FAN_OPEN_PERM) {
                    Ok(()) => marked += 1,
                    Err(error) => self.marked.failures.report(MarkFailure {
                        what: "a protected file for the open guard",
                        path,
                        error,
                    }),
                }
                continue;
            }
            if !meta.is_dir() {
                continue;
            }
            let Some(dir) = open_subdir(nix::fcntl::AT_FDCWD, path.as_path(), meta.dev(), None) else { continue };
            self.walking = true;
            marked += self.walk(dir, exec);
            self.walking = false;
        }
        marked
    }

    /// Root `i`, which did not exist a moment ago: walked if it exists now, else the deepest directory that
    /// exists from its anchor down is watched for the next component (and looked at again once watched, for
    /// one that appeared meanwhile). Returns how many directories were marked.
    fn await_root(&mut self, i: usize) -> usize {
        let Some(OpenRoot { path, anchor: Some(anchor), exec }) = self.root_paths.get(i).cloned() else { return 0 };
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
                None if depth >= names.len() => return self.walk(dir, exec),
                // Watched and looked at again: the component is not there yet; its creation is an event.
                None if watched => return 0,
                None => {
                    let Some(w) = &self.marked.watch else { return 0 };
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

    /// Tracks `first` and every directory below it on its mount (the btrfs subvolumes inside included), for
    /// execs too with `exec`; returns how many were new.
    fn walk(&mut self, first: Opened, exec: bool) -> usize {
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
            match self.marked.track(dir.fd.as_fd(), &dir.fsid, exec) {
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

    /// Reads and handles what the watch queued, a bounded number of reads at a time.
    /// Reads up to `reads` batches of the watch and handles them; returns whether the queue overflowed.
    fn pump(&mut self, reads: usize) -> bool {
        let mut overflow = false;
        let mut events = std::mem::take(&mut self.events);
        for _ in 0..reads {
            events.clear();
            let mut any = false;
            if let Some(watch) = &self.marked.watch {
                match watch.read(&mut self.buf, &mut events) {
                    Ok(0) => {}
                    Ok(_) => any = true,
                    Err(e) => tracing::warn!(error = %e, "cannot read the directory watch"),
                }
            }
            if let Some(watch) = self.marked.subvols.as_mut() {
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
                        self.marked.tracked.remove(&dir);
                        self.marked.exec.remove(&dir);
                        self.marked.held.remove(&dir);
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
        let below_again = self.marked.capped && self.marked.count() < self.marked.cap / 10 * 9;
        if overflow || below_again {
            if overflow {
                tracing::warn!("directory watch overflowed: walking the protected trees again");
            }
            self.full_walk();
        }
        self.marked.publish();
    }

    fn appeared(&mut self, parent: &DirKey, name: &[u8]) {
        let waiting: Vec<usize> = self.pending.iter().filter(|(k, _)| k == parent).map(|(_, i)| *i).collect();
        if !waiting.is_empty() {
            // A directory watched for a root to appear below it; it is no protected directory itself.
            self.pending.retain(|(k, _)| k != parent);
            for i in waiting {
                self.await_root(i);
            }
            if !self.marked.tracked.contains(parent) {
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
        let exec = self.marked.exec.contains(parent);
        self.walk(dir, exec);
    }

    /// A tracked directory of a filesystem whose handles cannot be opened, from the ones kept open.
    fn held_parent(&self, parent: &DirKey) -> Option<(OwnedFd, u64)> {
        let fd = self.marked.held.get(parent)?.try_clone().ok()?;
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
