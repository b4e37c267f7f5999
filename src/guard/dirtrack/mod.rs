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
//! the watch's group refuses (EXDEV): those are watched through `guard::subvol_watch` (inotify) instead.
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
//!
//! Files: `mod.rs` the handle (the thread, its commands), `tracker.rs` the thread (roots, walks, the watch's
//! events), `marked.rs` the directories marked (the marks, the watches, the cap, unmarking a tree),
//! `dirs.rs` opening and listing a directory on its parent's mount.
#![forbid(unsafe_code)]

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::error::{Error, Result};
pub use crate::guard::marks::OpenRoot;
use crate::guard::marks::{Marker, OpenDirs};
use crate::stats::Counters;
use crate::sys::DirWatch;
pub use marked::OnCap;
pub use tracker::FALLBACK_RESCAN;
use tracker::{Command, Tracker};

mod dirs;
mod marked;
#[cfg(test)]
mod tests;
mod tracker;

/// The handle of the tracker's thread.
#[derive(Debug)]
pub struct DirTracker {
    commands: mpsc::Sender<Command>,
    wake: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
    /// Whether directories are tracked by events (else walked every [`FALLBACK_RESCAN`]).
    pub event_driven: bool,
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
        let mut tracker = Tracker::new(marker, counters, on_cap, watch);
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
