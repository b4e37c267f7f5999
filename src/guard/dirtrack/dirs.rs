//! Directories opened for tracking: on the parent's mount only, with their filesystem id, and listed for
//! their subdirectories.
#![forbid(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::dir::{Dir, Type};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

pub(super) fn subdir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK
}

/// A directory opened for tracking.
pub(super) struct Opened {
    pub(super) fd: OwnedFd,
    pub(super) dev: u64,
    /// Its filesystem's id as events report it (one per btrfs subvolume).
    pub(super) fsid: [u8; 8],
    /// False where its link count says it holds no directory (2: itself and `.`; filesystems that do not
    /// count subdirectories, btrfs, say 1): a new, empty directory is then not listed.
    pub(super) may_have_subdirs: bool,
}

/// Opens the directory `name` in `parent` (on device `parent_dev`, filesystem id `parent_fsid` where known)
/// if it is one on the parent's mount: the same device, or a btrfs subvolume (another device where no mount
/// is rooted, on the same superblock). A mount below is a target of its own, never walked from here.
pub(super) fn open_subdir<P: ?Sized + nix::NixPath>(
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
pub(super) fn same_inode(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    match (crate::sys::file_facts(a), crate::sys::file_facts(b)) {
        (Ok(a), Ok(b)) => a.dev == b.dev && a.ino == b.ino,
        _ => false,
    }
}

/// The names of the directories in `dir` (entries of unknown type too: opening them says), read through a
/// duplicate (the listing's buffer lives only as long as this call).
pub(super) fn subdirectories(dir: &OwnedFd) -> Vec<CString> {
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
