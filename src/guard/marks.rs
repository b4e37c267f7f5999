//! FAN_OPEN_PERM inode marks on protected directories of filesystems shared with the rest of the system
//! (/tmp as a directory on `/`). A filesystem mark there would send every open on the host to the daemon;
//! inode marks with FAN_EVENT_ON_CHILD cover exactly the files directly inside each marked directory, through
//! every mount and namespace. Subdirectories are marked too: at start, on reload, on mount changes and on
//! every rescan ([`RESCAN`]); a subdirectory created in between has no mark until the next rescan (SECURITY.md
//! documents that window and the mitigation: /tmp as its own mount, covered by a filesystem mark).
#![forbid(unsafe_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::sys::{FanotifyGroup, MASK_OPEN_PERM};

/// How often the protected trees are walked again to mark new subdirectories.
pub const RESCAN: Duration = Duration::from_secs(1);

/// Directories marked per root at most: a protected tree larger than this is marked partly, with a warning.
pub const MAX_DIRS: usize = 20_000;

/// FAN_OPEN_PERM on the files inside a directory (and on the directory itself, which we allow at once).
const DIR_MASK: u64 = MASK_OPEN_PERM | libc::FAN_EVENT_ON_CHILD;

/// The roots whose trees carry this group's inode marks.
#[derive(Debug, Default)]
pub struct OpenMarks {
    roots: Vec<PathBuf>,
}

impl OpenMarks {
    /// Marks every directory below `roots` (FAN_MARK_ADD of a mark that exists changes nothing, and a mark
    /// dies with its inode, so marking all again is both cheap and right after inode reuse). The marks of
    /// roots that are no longer protected are removed by the caller, which flushes every inode mark of the
    /// group when the policy or the mount table changes (and renews the FD store's exemptions; see
    /// `Controller::install`). Returns how many were marked.
    pub fn sync(&mut self, group: &FanotifyGroup, roots: &[PathBuf]) -> usize {
        if self.roots != roots {
            self.roots = roots.to_vec();
        }
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
                    if meta.is_file() && self.mark(group, &dir, MASK_OPEN_PERM) {
                        added += 1;
                    }
                    continue;
                }
                if self.mark(group, &dir, DIR_MASK) {
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

    fn mark(&mut self, group: &FanotifyGroup, path: &Path, mask: u64) -> bool {
        match group.mark_inode(path, mask) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot put the open-guard mark");
                false
            }
        }
    }
}
