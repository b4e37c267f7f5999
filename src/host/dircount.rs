//! How many directories a protected tree holds, counted up to a limit and staying on the tree's mount (a
//! mount below is a tree of its own; a btrfs subvolume inside is not, as the directory tracker walks it too):
//! what `check` compares with the open guard's directory cap.

use std::path::{Path, PathBuf};

/// The directories at and below `root` on its filesystem, counting stops past `limit` (so at most
/// `limit + 1`). A root that is no directory counts 0.
pub fn count_dirs(root: &Path, limit: usize) -> usize {
    let Ok(meta) = std::fs::symlink_metadata(root) else { return 0 };
    if !meta.is_dir() {
        return 0;
    }
    let Ok(facts) = crate::sys::path_facts(root) else { return 0 };
    let mut count = 0;
    let mut stack: Vec<(PathBuf, u64)> = vec![(root.to_path_buf(), facts.dev)];
    while let Some((dir, dev)) = stack.pop() {
        count += 1;
        if count > limit {
            break;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        stack.extend(
            entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).filter_map(|p| {
                crate::sys::path_facts(&p).ok().filter(|f| f.on_mount_of_parent(dev)).map(|f| (p, f.dev))
            }),
        );
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_directories_up_to_the_limit() {
        let t = tempfile::tempdir().unwrap();
        for d in ["a/b/c", "d", "e/f"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        std::fs::write(t.path().join("a/file"), b"").unwrap();
        assert_eq!(count_dirs(t.path(), 100), 7);
        assert_eq!(count_dirs(t.path(), 3), 4);
        assert_eq!(count_dirs(&t.path().join("a/file"), 100), 0);
    }
}
