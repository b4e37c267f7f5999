//! A file to decide, in a fresh directory, and a guard over a mount table that shows its filesystem: what the
//! decision path's unit tests start from.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::guard::{Decides, Guard};
use crate::host::mounts::MountTable;
use crate::sys::{self, FileFacts};

/// A file in a fresh directory, and what statx says of it.
pub struct Scene {
    _dir: tempfile::TempDir,
    /// The directory's canonical name (what /proc/self/fd shows).
    pub dir: PathBuf,
    pub file: PathBuf,
    pub facts: FileFacts,
}

pub fn scene() -> Scene {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let file = dir.join("x");
    std::fs::write(&file, b"#!/bin/sh\necho hi\n").unwrap();
    let facts = sys::file_facts(std::fs::File::open(&file).unwrap().as_fd()).unwrap();
    assert!(facts.mnt_id.is_some(), "the kernel reports STATX_MNT_ID");
    Scene { _dir: tmp, dir, file, facts }
}

/// A Guard for `policy` (`{dir}` replaced by the scene's directory) whose mount table holds one
/// mount: the scene file's filesystem at `/`, as mount `mount_id`. The filesystem is path-decided.
pub fn guard(scene: &Scene, policy: &str, mount_id: u64) -> Guard {
    let policy = policy.replace("{dir}", scene.dir.to_str().unwrap());
    let config = crate::policy::load_str(Path::new("t.toml"), &policy).unwrap();
    let dev = scene.facts.dev;
    let line = format!("{mount_id} 0 {}:{} / / rw - ext4 /dev/test rw\n", libc::major(dev), libc::minor(dev));
    let guard = Guard::build(config, MountTable::parse(line.as_bytes())).unwrap();
    assert_eq!(guard.target_for(dev).map(|t| &t.decides), Some(&Decides::Path));
    guard
}

pub fn known_mount(scene: &Scene) -> u64 {
    scene.facts.mnt_id.unwrap()
}

/// [`guard`] through the mount the scene's file really is on.
pub fn guard_for(scene: &Scene, policy: &str) -> Guard {
    guard(scene, policy, known_mount(scene))
}
