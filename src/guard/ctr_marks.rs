//! The marks on selected containers' own mounts ([`ctr_mounts`](super::ctr_mounts)), kept up to date by the
//! tokio side each time it reads the containers: a private mount is marked through the container's root
//! (`/proc/PID/root/<mount point>`), a bind of a host filesystem through our own mount of that filesystem.
//! A private mark goes with its superblock when the container ends; a host filesystem's mark is removed when
//! no running container binds it any more (unless the host's own targets mark it).

use std::collections::HashMap;
use std::path::PathBuf;

use crate::guard::Guard;
use crate::guard::ctr_mounts::through_root;
use crate::guard::marks::Marks;
use crate::guard::scopes::Scopes;
use crate::sys::Mask;

/// What this daemon marked for containers, by superblock.
#[derive(Debug, Default)]
pub struct ContainerMarks {
    /// Private mounts: device → (the path it was marked through, mask, the container's id).
    private: HashMap<u64, (PathBuf, Mask, String)>,
    /// Host filesystems bound into containers and not marked for the host: device → our mount of it.
    host: HashMap<u64, PathBuf>,
}

impl ContainerMarks {
    /// Marks what the selected containers of `scopes` need and removes what none needs any more. Marking
    /// again what is marked changes nothing, and a mark the decision thread placed at a container's first
    /// exec is taken into the books here.
    pub fn sync(&mut self, marks: &Marks, guard: &Guard, scopes: &Scopes) {
        let group = marks.group();
        let open = guard.config.open_guard.enabled;
        let mut private: HashMap<u64, (PathBuf, Mask, String)> = HashMap::new();
        let mut host: HashMap<u64, PathBuf> = HashMap::new();
        for s in scopes.all() {
            let (id, pid) = (&s.container.id, s.container.init_pid);
            for m in &s.mounts {
                if m.private {
                    let extra = if open && m.whole { Mask::FAN_OPEN_PERM } else { Mask::empty() };
                    let mask = Mask::FAN_OPEN_EXEC_PERM | extra;
                    let path = through_root(pid, &m.mount_point);
                    match group.mark_filesystem(&path, mask) {
                        Ok(()) => {
                            if !self.private.contains_key(&m.dev) {
                                tracing::info!(id = %id, mount = %m.describe(), "marked a container's own mount");
                            }
                            private.insert(m.dev, (path, mask, id.clone()));
                        }
                        // The container is going away, or its namespace changed since it was read.
                        Err(e) => {
                            tracing::debug!(id = %id, mount = %m.describe(), error = %e, "cannot mark a container's mount")
                        }
                    }
                    continue;
                }
                if marks.filesystem_mask(m.dev).contains(Mask::FAN_OPEN_EXEC_PERM) || host.contains_key(&m.dev) {
                    continue;
                }
                let Some(ours) = guard.mounts.primary(m.dev) else { continue };
                let path = ours.mount_point_path();
                match group.mark_filesystem(&path, Mask::FAN_OPEN_EXEC_PERM) {
                    Ok(()) => {
                        if !self.host.contains_key(&m.dev) {
                            tracing::info!(id = %id, mount = %m.describe(), via = %path.display(), "marked the filesystem of a container's bind mount");
                        }
                        host.insert(m.dev, path);
                    }
                    Err(e) => {
                        tracing::warn!(id = %id, mount = %m.describe(), error = %e, "cannot mark the filesystem of a container's bind mount")
                    }
                }
            }
        }
        for (dev, (path, mask, id)) in self.private.drain() {
            if !private.contains_key(&dev) {
                // Gone with its container, mostly; a container no policy selects any more keeps running.
                if group.unmark_filesystem(&path, mask).is_ok() {
                    tracing::info!(id = %id, via = %path.display(), "removed the mark of a container's mount");
                }
            }
        }
        for (dev, path) in self.host.drain() {
            if !host.contains_key(&dev)
                && marks.filesystem_mask(dev).is_empty()
                && group.unmark_filesystem(&path, Mask::FAN_OPEN_EXEC_PERM).is_ok()
            {
                tracing::info!(via = %path.display(), "removed the mark of a filesystem no container binds any more");
            }
        }
        self.private = private;
        self.host = host;
    }
}
