//! The tracker against a marker that refuses every mark.

use super::*;
use crate::guard::marks::DirMask;
use crate::sys::Mask;
use nix::errno::Errno;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

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
        assert_eq!(mask, DirMask::OPEN);
        *self.asked.lock().unwrap() += 1;
        Err(Errno::EPERM)
    }

    fn unmark_fd(&self, _: BorrowedFd<'_>, _: Mask) -> std::result::Result<(), Errno> {
        Ok(())
    }

    fn mark_mount(&self, _: &Path, _: Mask) -> std::result::Result<(), Errno> {
        Err(Errno::EPERM)
    }

    fn unmark_mount(&self, _: &Path, _: Mask) -> std::result::Result<(), Errno> {
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
