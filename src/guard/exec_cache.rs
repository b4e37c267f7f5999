//! Kernel-side cache of allowed execs: an inode ignore mark (`FAN_OPEN_EXEC_PERM`) on a file the policy
//! allowed, so its later execs raise no event at all and cost what they cost without a guard.
//!
//! Where /tmp is a directory on `/`, the filesystem mark covers every exec on the host and the path decides.
//! An ignore mark is kept by the inode, not by its name: it must only go on files that can never get a name
//! in protected scope, or a file allowed at `/usr/local/bin/x` and then moved to `/tmp/x` would run from
//! there unseen. **The rule** (all of it must hold, else no mark):
//!
//! 1. The decision did not depend on the file's name inside a rule, nor on the caller: no Allow rule is loaded
//!    (no default posture), and the file's canonical path lies outside the scope of every rule (so no
//!    `from_source`, `owner_only`, Block, Audit or Allow rule could ever apply to it), and it raised no alert.
//! 2. Nobody but root can give the inode a new name. It is a regular file owned by uid 0, not writable by
//!    group or others; it has exactly one link (no second name elsewhere that a user could move); and
//!    `fs.protected_hardlinks = 1` (read at start: with 0, any user may hard-link any file they can read
//!    into /tmp, and there is no cache at all).
//! 3. Nobody but root can move it or a directory holding it: every directory from its parent up to the root
//!    of its filesystem (along its name with symlinks resolved) is owned by uid 0 and not writable by group or
//!    others (renaming a directory to a new parent needs write access to the directory itself, and renaming
//!    the file needs write access to its parent). Only the filesystem's own directories matter: a rename
//!    cannot cross filesystems. The mount the path was resolved through must show the whole filesystem
//!    (mount root `/`).
//! 4. A write clears it: the mark is added without `FAN_MARK_IGNORED_SURV_MODIFY`, so the kernel drops it the
//!    first time the file is modified, and the next exec is decided again.
//!    A file reached through a container's overlay is named by its layer's host path here; with container
//!    policies loaded the decision thread offers it only from a lower layer (no container writes or renames
//!    there) and when no container policy's rule reaches its path inside the container (`Decider`).
//! 5. A policy change clears it: every reload flushes all inode marks (and puts back the FD store's own ignore
//!    marks) before any new mark is placed; candidates decided under an older policy or mount table are
//!    dropped. More than [`MAX_CACHED`] marks also flush, so the kernel's memory stays bounded. A mount change
//!    does not flush: a flush takes the open guard's directory marks away too for a moment (every container
//!    start is a mount change, and its `/tmp` would be unguarded then), and a new mount gives a cached file a
//!    name in protected scope only by root's hand (a bind of its directory: as root's `mv` below), or inside a
//!    user's own mount namespace, which the daemon's mount table never shows, flush or not.
//!
//! What stays open, by design: root can move or hard-link a cached file into /tmp, and it then runs until
//! the next reload (`systemctl reload noexecd`) flushes the cache. Likewise root handing a cached file to a
//! user (chown, chmod g+w/o+w: attribute changes do not clear an ignore mark) lets that user hard-link it
//! into /tmp until the next reload. Root is outside the threat model (root can stop the daemon); the
//! integration test `root_moving_a_cached_file_into_protected_scope_runs_it_until_reload` pins this down.
//! Watching protected directories for FAN_MOVED_TO/FAN_CREATE to drop marks was considered and left out:
//! it needs a second group with a filesystem mark on `/` reporting every create and rename on the host (the
//! cost this cache removes) or recursive inotify over /tmp (racy), to close a hole only root can open.
//!
//! Split of work: the decision thread only filters (rules 1 and 2, from facts it already has, no allocation
//! for a file already offered) and hands a duplicate of the event fd and the canonical path to the tokio side
//! after it has answered the kernel. The tokio side walks the directories (rule 3), checks the name still
//! leads to the same inode, and places the mark by fd.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::guard::Guard;
use crate::guard::marks::Marks;
use crate::policy::matcher::Matcher;
use crate::sys::{self, FileFacts};

/// Inode marks placed before the cache is flushed and starts again (each costs the kernel a few hundred bytes).
pub const MAX_CACHED: u64 = 65_536;
/// Candidates waiting for the tokio side; more are dropped (the file is simply decided again next time).
pub const QUEUE: usize = 1024;
/// Slots of the decision thread's "already offered" table.
const RECENT: usize = 1024;

const S_IFMT: u32 = libc::S_IFMT;
const S_IFREG: u32 = libc::S_IFREG;
/// Group- or other-writable.
const WRITABLE_BY_OTHERS: u32 = 0o022;

/// Whether `fs.protected_hardlinks` is 1: without it the cache is not safe (rule 2).
pub fn hardlinks_protected() -> bool {
    std::fs::read("/proc/sys/fs/protected_hardlinks").is_ok_and(|v| v.trim_ascii() == b"1")
}

/// A file the decision thread allowed and found worth caching.
#[derive(Debug)]
pub struct Candidate {
    fd: OwnedFd,
    path: Vec<u8>,
    generation: u64,
}

/// Shared by both sides: bumped (after the new policy is in place) each time the cache is flushed.
#[derive(Debug, Default)]
pub struct Generation(AtomicU64);

impl Generation {
    pub fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
    fn bump(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// The decision thread's end: filters and offers, never waits.
#[derive(Debug)]
pub struct Feed {
    tx: mpsc::Sender<Candidate>,
    generation: Arc<Generation>,
    /// The generation read at the start of the current batch, before the policy snapshot was loaded.
    batch_generation: u64,
    /// (dev, ino, ctime) offered since the last flush, direct-mapped by inode number: each file is offered
    /// once, and again after it changed (a write drops its mark).
    recent: Box<[(u64, u64, i64); RECENT]>,
    recent_generation: u64,
}

impl Feed {
    /// Call before loading the policy snapshot for a batch (the order makes a stale candidate detectable).
    pub fn begin_batch(&mut self) {
        self.batch_generation = self.generation.current();
        if self.batch_generation != self.recent_generation {
            self.recent.fill((0, 0, 0));
            self.recent_generation = self.batch_generation;
        }
    }

    /// Offers an allowed file after the answer. `path` is its canonical path, `facts` its statx.
    pub fn offer(&mut self, matcher: &Matcher, fd: std::os::fd::BorrowedFd<'_>, facts: &FileFacts, path: &[u8]) {
        if !owner_only_root(facts) || !matcher.untouched_by_rules(path) {
            return;
        }
        let slot = (facts.ino as usize) % RECENT;
        let Some(entry) = self.recent.get_mut(slot) else {
            return;
        };
        let key = (facts.dev, facts.ino, facts.changed_ns);
        if *entry == key {
            return;
        }
        *entry = key;
        // First sight of this file since the last flush: one fd dup and one copy of its path.
        if let Ok(fd) = fd.try_clone_to_owned() {
            let _ = self.tx.try_send(Candidate { fd, path: path.to_vec(), generation: self.batch_generation });
        }
    }
}

/// Rule 2 on the file itself.
fn owner_only_root(f: &FileFacts) -> bool {
    f.mode & S_IFMT == S_IFREG && f.uid == 0 && f.mode & WRITABLE_BY_OTHERS == 0 && f.nlink == 1
}

/// Why a candidate got no mark (for tests and debug logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    StalePolicy,
    FileFacts,
    NameMoved,
    NotWholeFilesystem,
    DirectoryNotRootOnly,
    Mark,
}

/// The tokio side: checks the directories and places marks; flushes on policy change.
#[derive(Debug)]
pub struct ExecCache {
    generation: Arc<Generation>,
}

impl ExecCache {
    /// The cache and the decision thread's feed, or `None` when it must stay off (disabled, or
    /// `fs.protected_hardlinks` is not 1).
    pub fn new(enabled: bool) -> Option<(Self, Feed, mpsc::Receiver<Candidate>)> {
        if !enabled {
            return None;
        }
        if !hardlinks_protected() {
            tracing::warn!(
                "fs.protected_hardlinks is not 1: any user could hard-link a file into /tmp, so allowed execs are not cached"
            );
            return None;
        }
        let generation = Arc::new(Generation::default());
        let (tx, rx) = mpsc::channel(QUEUE);
        let feed = Feed {
            tx,
            generation: generation.clone(),
            batch_generation: 0,
            recent: Box::new([(0, 0, 0); RECENT]),
            recent_generation: 0,
        };
        Some((Self { generation }, feed, rx))
    }

    /// Rule 3, then the mark. `guard` is the policy in force now.
    pub fn consider(&mut self, c: Candidate, guard: &Guard, marks: &mut Marks) -> Result<(), Refusal> {
        if c.generation != self.generation.current() {
            return Err(Refusal::StalePolicy);
        }
        let facts = sys::file_facts(c.fd.as_fd()).map_err(|_| Refusal::FileFacts)?;
        if !owner_only_root(&facts) {
            return Err(Refusal::FileFacts);
        }
        let path = Path::new(std::ffi::OsStr::from_bytes(&c.path));
        let named = std::fs::symlink_metadata(path).map_err(|_| Refusal::NameMoved)?;
        if named.ino() != facts.ino || named.dev() != facts.dev {
            return Err(Refusal::NameMoved);
        }
        let whole =
            guard.target_for(facts.dev).and_then(|t| guard.mounts.primary(t.dev)).is_some_and(|m| m.root == b"/");
        if !whole {
            return Err(Refusal::NotWholeFilesystem);
        }
        // The directories that really hold it: a name built from an overlay's mount options goes through the
        // runtime's short links (podman's `overlay/l/XXXX`), whose own mode says nothing about who can rename
        // the file. Resolving them is a lookup of each component, never an open (no event).
        let real = std::fs::canonicalize(path).map_err(|_| Refusal::NameMoved)?;
        for dir in real.ancestors().skip(1) {
            let Ok(meta) = std::fs::symlink_metadata(dir) else {
                return Err(Refusal::DirectoryNotRootOnly);
            };
            if meta.dev() != facts.dev {
                break; // above the filesystem's root: a rename cannot come from there
            }
            if meta.uid() != 0 || meta.mode() & WRITABLE_BY_OTHERS != 0 {
                return Err(Refusal::DirectoryNotRootOnly);
            }
        }
        if marks.cached() >= MAX_CACHED {
            self.flush(marks);
        }
        marks.ignore_exec(c.fd.as_fd()).map_err(|_| Refusal::Mark)
    }

    /// Drops every cached mark (with every other inode mark, which [`Marks`] puts back). Call after a new
    /// policy is in place.
    pub fn flush(&mut self, marks: &mut Marks) {
        // Bump first: candidates decided before this point are stale from now on.
        self.generation.bump();
        marks.flush_inode_marks();
    }

    /// After a mount change: candidates decided before it are dropped; the ignore marks stay (rule 5).
    pub fn drop_candidates(&mut self) {
        self.generation.bump();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(uid: u32, mode: u32, nlink: u32) -> FileFacts {
        FileFacts {
            dev: 1,
            ino: 2,
            mode,
            uid,
            nlink,
            size: 1,
            changed_ns: 7,
            mnt_id: None,
            subvol: None,
            mount_root: None,
        }
    }

    #[test]
    fn only_root_owned_single_link_files_not_writable_by_others_are_offered() {
        assert!(owner_only_root(&facts(0, S_IFREG | 0o755, 1)));
        assert!(!owner_only_root(&facts(1000, S_IFREG | 0o755, 1)), "a user's own file");
        assert!(!owner_only_root(&facts(0, S_IFREG | 0o775, 1)), "group-writable");
        assert!(!owner_only_root(&facts(0, S_IFREG | 0o757, 1)), "world-writable");
        assert!(!owner_only_root(&facts(0, S_IFREG | 0o755, 2)), "a second name elsewhere");
        assert!(!owner_only_root(&facts(0, libc::S_IFDIR | 0o755, 1)), "not a regular file");
    }

    #[test]
    fn a_file_is_offered_once_per_generation() {
        let config = crate::policy::load_str(
            Path::new("t.toml"),
            "[[policy]]\nname = \"t\"\n[[policy.process.match_directories]]\ndir = \"/tmp/\"\nrecursive = true\n",
        )
        .unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        let generation = Arc::new(Generation::default());
        let mut feed = Feed {
            tx,
            generation: generation.clone(),
            batch_generation: 0,
            recent: Box::new([(0, 0, 0); RECENT]),
            recent_generation: 0,
        };
        let file = tempfile::tempfile().unwrap();
        let f = facts(0, S_IFREG | 0o755, 1);
        feed.begin_batch();
        feed.offer(&config.matcher, file.as_fd(), &f, b"/usr/bin/x");
        feed.offer(&config.matcher, file.as_fd(), &f, b"/usr/bin/x");
        feed.offer(&config.matcher, file.as_fd(), &f, b"/tmp/x");
        assert_eq!(rx.try_recv().unwrap().path, b"/usr/bin/x");
        assert!(rx.try_recv().is_err(), "offered twice, or a protected path offered");
        let rewritten = FileFacts { changed_ns: 8, ..f };
        feed.offer(&config.matcher, file.as_fd(), &rewritten, b"/usr/bin/x");
        assert!(rx.try_recv().is_ok(), "a changed file is offered again");
        generation.bump();
        feed.begin_batch();
        feed.offer(&config.matcher, file.as_fd(), &f, b"/usr/bin/x");
        assert_eq!(rx.try_recv().unwrap().generation, 1);
    }
}
