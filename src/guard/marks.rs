//! Every mark this daemon's fanotify group holds, with one owner and one flush:
//! - filesystem marks (`FAN_OPEN_EXEC_PERM`, plus `FAN_OPEN_PERM` where the open guard covers the whole
//!   filesystem) on the filesystems that hold protected paths;
//! - the open guard's FAN_OPEN_PERM inode marks on protected directories of filesystems shared with the rest
//!   of the system (/tmp as a directory on `/`): a filesystem mark there would send every open on the host to
//!   the daemon, while inode marks with FAN_EVENT_ON_CHILD cover exactly the files directly inside each marked
//!   directory, through every mount and namespace. Subdirectories are marked too: at start, on reload, on
//!   mount changes and on every rescan ([`RESCAN`]); a subdirectory created in between has no mark until the
//!   next rescan (SECURITY.md documents that window and the mitigation: /tmp as its own mount);
//! - ignore marks: the exec cache's (allowed files) and the exemptions of the daemon's own restart path.
//!
//! Inode marks placed under one policy or mount table are stale under the next: [`Marks::flush_inode_marks`]
//! drops them all in one call and at once puts back what must stay (the exemptions, the directory marks).

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::guard::{Guard, MarkTarget};
use crate::sys::{FanotifyGroup, Mask};

/// How often the protected trees are walked again to mark new subdirectories.
pub const RESCAN: Duration = Duration::from_secs(1);

/// Directories marked per root at most: a protected tree larger than this is marked partly, with a warning.
pub const MAX_DIRS: usize = 20_000;

/// FAN_OPEN_PERM on the files inside a directory (and on the directory itself, which we allow at once).
const DIR_MASK: Mask = Mask::FAN_OPEN_PERM.union(Mask::FAN_EVENT_ON_CHILD);

/// The marks of one fanotify group.
#[derive(Debug)]
pub struct Marks {
    group: Arc<FanotifyGroup>,
    /// The filesystems marked, by device, with the path the mark was placed through and its mask.
    filesystems: HashMap<u64, (PathBuf, Mask)>,
    /// The roots whose trees carry the open guard's inode marks.
    open_roots: Vec<PathBuf>,
    /// Files whose exec-opens this group ignores for good: renewed after every flush.
    exempt: Vec<PathBuf>,
    /// Ignore marks placed for the exec cache since the last flush.
    cached: u64,
}

impl Marks {
    pub fn new(group: Arc<FanotifyGroup>) -> Self {
        Self { group, filesystems: HashMap::new(), open_roots: Vec::new(), exempt: Vec::new(), cached: 0 }
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
        Ok(())
    }

    /// The group, for the marks of containers' own mounts, which `ctr_marks` keeps the books of.
    pub fn group(&self) -> &Arc<FanotifyGroup> {
        &self.group
    }

    /// The mask [`add_filesystems`](Self::add_filesystems) put on filesystem `dev` (empty: not marked here).
    pub fn filesystem_mask(&self, dev: u64) -> Mask {
        self.filesystems.get(&dev).map_or(Mask::empty(), |(_, m)| *m)
    }

    /// Removes the marks of filesystems no target needs any more.
    pub fn remove_stale_filesystems(&mut self, targets: &[MarkTarget]) {
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

    /// Marks every directory below `roots` for the open guard (FAN_MARK_ADD of a mark that exists changes
    /// nothing, and a mark dies with its inode, so marking all again is both cheap and right after inode
    /// reuse). Marks of roots no longer protected go with the next [`flush_inode_marks`](Self::flush_inode_marks),
    /// which every policy or mount change makes. Returns how many were marked.
    pub fn sync_open_dirs(&mut self, roots: &[PathBuf]) -> usize {
        if self.open_roots != roots {
            self.open_roots = roots.to_vec();
        }
        self.walk_open_roots()
    }

    /// The open guard's roots from now on; their directories are marked by the flush that follows.
    pub fn set_open_roots(&mut self, roots: Vec<PathBuf>) {
        self.open_roots = roots;
    }

    fn walk_open_roots(&self) -> usize {
        let roots = &self.open_roots;
        let mut added = 0;
        for root in roots {
            let mut seen = 0usize;
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                seen += 1;
                if seen > MAX_DIRS {
                    tracing::warn!(root = %root.display(), max = MAX_DIRS, "protected tree too large; some subdirectories have no open-guard mark");
                    break;
                }
                let Ok(meta) = std::fs::symlink_metadata(&dir) else { continue };
                if !meta.is_dir() {
                    // A match_paths rule names a file: mark the file itself.
                    if meta.is_file() && self.mark_inode(&dir, Mask::FAN_OPEN_PERM) {
                        added += 1;
                    }
                    continue;
                }
                if self.mark_inode(&dir, DIR_MASK) {
                    added += 1;
                }
                if let Ok(entries) = std::fs::read_dir(&dir) {
                    // Stay on the directory's filesystem: a mount below is a target of its own.
                    stack.extend(
                        entries
                            .flatten()
                            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                            .filter(|e| e.metadata().is_ok_and(|m| m.dev() == meta.dev()))
                            .map(|e| e.path()),
                    );
                }
            }
        }
        added
    }

    fn mark_inode(&self, path: &Path, mask: Mask) -> bool {
        match self.group.mark_inode(path, mask) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot put the open-guard mark");
                false
            }
        }
    }

    /// Exempts `paths` from the group's exec events for as long as it lives (kept across flushes): the files
    /// the daemon's own restart exec-opens while the group waits in systemd's FD store.
    pub fn exempt(&mut self, paths: Vec<PathBuf>) {
        self.exempt = paths;
        self.place_exemptions();
    }

    fn place_exemptions(&self) {
        for path in &self.exempt {
            if let Err(e) = self.group.ignore_inode(path, Mask::FAN_OPEN_EXEC_PERM) {
                tracing::warn!(path = %path.display(), error = %e, "cannot exempt a file of the daemon's own start from the stored group");
            }
        }
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
        if let Err(e) = self.group.flush_inode_marks() {
            tracing::error!(error = %e, "cannot remove the inode marks of the old policy");
        }
        self.cached = 0;
        self.place_exemptions();
        self.walk_open_roots();
    }

    /// At stop: every mark goes, so the kernel queues no new event.
    pub fn remove_all(&mut self) -> std::result::Result<(), Errno> {
        self.filesystems.clear();
        self.open_roots.clear();
        self.group.flush_filesystem_marks().and_then(|()| self.group.flush_inode_marks())
    }
}
