//! The marks on selected containers' own mounts ([`ctr_mounts`](super::ctr_mounts)), kept up to date by the
//! tokio side each time it reads the containers: a private mount is marked through the container's root
//! (`/proc/PID/root/<mount point>`), a bind of a host filesystem through our own mount of that filesystem.
//! A private mark goes with its superblock when the container ends; a host filesystem's mark is removed when
//! no running container binds it any more (unless the host's own targets mark it).
//!
//! At the first exec the decision thread sees of a container, it places what that container needs itself
//! ([`FirstExecMarks`]), so that a `--tmpfs /tmp` is guarded from the container's first instruction; the
//! tokio side's next look takes those marks into its books.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use crate::guard::Guard;
use crate::guard::ctr_mounts::{self, through_root};
use crate::guard::marks::{MarkFailure, MarkFailures, Marker, Marks, OpenRoot, remember_first_exec_roots};
use crate::guard::scopes::{ContainerScope, Scopes};
use crate::stats::Counters;
use crate::sys::Mask;

/// Containers whose own mounts the decision thread has marked at its first sight of them; past this, started
/// over (marking again changes nothing).
const MARKED_MAX: usize = 256;

/// The mark on each mount of a container whose file rules turn the default file posture on: every open there.
const POSTURE_MASK: Mask = Mask::FAN_OPEN_PERM;

/// What a refused mark was for, in the log.
const POSTURE_MOUNT: &str = "a container's mount under its default file posture";
const PRIVATE_MOUNT: &str = "a container's own mount";
const HOST_FILESYSTEM: &str = "the filesystem of a container's bind mount";
const CONTAINER_DIR: &str = "a container's protected directory for the open guard";

/// What this daemon marked for containers, by superblock.
#[derive(Debug)]
pub struct ContainerMarks {
    /// Private mounts: device → (the path it was marked through, mask, the container's id).
    private: HashMap<u64, (PathBuf, Mask, String)>,
    /// Host filesystems bound into containers and not marked for the host: device → our mount of it.
    host: HashMap<u64, PathBuf>,
    /// Mounts under a container's default file posture: the path each was marked through → the container's id.
    posture: HashMap<PathBuf, String>,
    /// Marks refused at the last look, by device and path: the next look tries again, and reports only a new
    /// failure (the looks come twice a second).
    failed: HashSet<(u64, PathBuf)>,
    failures: MarkFailures,
}

impl ContainerMarks {
    /// Refused marks are counted in `counters` and logged.
    pub fn new(counters: Arc<Counters>) -> Self {
        Self {
            private: HashMap::new(),
            host: HashMap::new(),
            posture: HashMap::new(),
            failed: HashSet::new(),
            failures: MarkFailures::logged_here(counters),
        }
    }

    /// Marks what the selected containers of `scopes` need and removes what none needs any more. Marking
    /// again what is marked changes nothing, and a mark the decision thread placed at a container's first
    /// exec is taken into the books here.
    pub fn sync(&mut self, marks: &Marks, guard: &Guard, scopes: &Scopes) {
        let marker = marks.marker();
        let open = guard.config.open_guard.enabled;
        let mut private: HashMap<u64, (PathBuf, Mask, String)> = HashMap::new();
        let mut host: HashMap<u64, PathBuf> = HashMap::new();
        let mut failed: HashSet<(u64, PathBuf)> = HashSet::new();
        let mut posture: HashMap<PathBuf, String> = HashMap::new();
        for s in scopes.all() {
            let (id, pid) = (&s.container.info.id, s.container.init_pid);
            if s.file_posture() {
                for mount_point in &s.posture_mounts {
                    let path = through_root(pid, mount_point);
                    match marker.mark_mount(&path, POSTURE_MASK) {
                        Ok(()) => {
                            if !self.posture.contains_key(&path) {
                                tracing::info!(id = %id, mount = %String::from_utf8_lossy(mount_point), "marked a container's mount for its default file posture");
                            }
                            posture.insert(path, id.clone());
                        }
                        Err(error) => self.refused(&mut failed, 0, MarkFailure { what: POSTURE_MOUNT, path, error }),
                    }
                }
            }
            for m in &s.mounts {
                if m.private {
                    let extra = if open && m.whole { Mask::FAN_OPEN_PERM } else { Mask::empty() };
                    let mask = Mask::FAN_OPEN_EXEC_PERM | extra;
                    let path = through_root(pid, &m.mount_point);
                    match marker.mark_filesystem(&path, mask) {
                        Ok(()) => {
                            if !self.private.contains_key(&m.dev) {
                                tracing::info!(id = %id, mount = %m.describe(), "marked a container's own mount");
                            }
                            private.insert(m.dev, (path, mask, id.clone()));
                        }
                        // Mostly a container going away, or whose namespace changed since it was read.
                        Err(error) => {
                            self.refused(&mut failed, m.dev, MarkFailure { what: PRIVATE_MOUNT, path, error })
                        }
                    }
                    continue;
                }
                if marks.filesystem_mask(m.dev).contains(Mask::FAN_OPEN_EXEC_PERM) || host.contains_key(&m.dev) {
                    continue;
                }
                let Some(ours) = guard.mounts.primary(m.dev) else { continue };
                let path = ours.mount_point_path();
                match marker.mark_filesystem(&path, Mask::FAN_OPEN_EXEC_PERM) {
                    Ok(()) => {
                        if !self.host.contains_key(&m.dev) {
                            tracing::info!(id = %id, mount = %m.describe(), via = %path.display(), "marked the filesystem of a container's bind mount");
                        }
                        host.insert(m.dev, path);
                    }
                    Err(error) => self.refused(&mut failed, m.dev, MarkFailure { what: HOST_FILESYSTEM, path, error }),
                }
            }
        }
        for (dev, (path, mask, id)) in self.private.drain() {
            if !private.contains_key(&dev) {
                // Gone with its container, mostly; a container no policy selects any more keeps running.
                if marker.unmark_filesystem(&path, mask).is_ok() {
                    tracing::info!(id = %id, via = %path.display(), "removed the mark of a container's mount");
                }
            }
        }
        for (dev, path) in self.host.drain() {
            if !host.contains_key(&dev)
                && marks.filesystem_mask(dev).is_empty()
                && marker.unmark_filesystem(&path, Mask::FAN_OPEN_EXEC_PERM).is_ok()
            {
                tracing::info!(via = %path.display(), "removed the mark of a filesystem no container binds any more");
            }
        }
        for (path, id) in self.posture.drain() {
            // A container gone took its mounts and their marks with it: this fails then, and changes nothing.
            if !posture.contains_key(&path) && marker.unmark_mount(&path, POSTURE_MASK).is_ok() {
                tracing::info!(id = %id, via = %path.display(), "removed the default file posture's mark of a container's mount");
            }
        }
        self.private = private;
        self.host = host;
        self.posture = posture;
        self.failed = failed;
    }

    /// A mark refused at this look: reported unless the last look was refused it too.
    fn refused(&self, failed: &mut HashSet<(u64, PathBuf)>, dev: u64, failure: MarkFailure) {
        let key = (dev, failure.path.clone());
        if !self.failed.contains(&key) {
            self.failures.report(failure);
        }
        failed.insert(key);
    }
}

/// The decision thread's part: at the first exec it sees of a container, the marks the container's own
/// mounts and protected directories need. Reads the caller's mountinfo and makes one fanotify_mark per mount:
/// path lookups through `/proc/PID/root`, which raise no permission event. A refused mark is counted and
/// handed over to be logged (this thread never logs).
pub struct FirstExecMarks {
    /// `None`: nothing is marked, though the containers are still told apart (the decision path's unit tests).
    marker: Option<(Arc<dyn Marker>, MarkFailures)>,
    /// Containers whose mounts were marked here.
    marked: HashSet<String>,
}

impl FirstExecMarks {
    /// Marks nothing.
    pub fn none() -> Self {
        Self { marker: None, marked: HashSet::new() }
    }

    /// Marks through `marker`; reports refused marks to `failures` (which must not log on this thread).
    pub fn new(marker: Arc<dyn Marker>, failures: MarkFailures) -> Self {
        Self { marker: Some((marker, failures)), marked: HashSet::new() }
    }

    /// The first sight of a container the daemon's list does not have yet, when its identity does not matter
    /// for this file: marks what [`selected`](Self::selected) would, with the rules of every container
    /// policy together standing for the ones that will select it (a superset: an unselected container's
    /// directories marked cost events only, each decided with its real scope once it is known). `false` when
    /// the container has a private mount in that scope (a `--tmpfs /tmp`): how it is marked depends on its
    /// own policies (whether the whole mount is protected), so the container is looked up as before.
    /// The directories of every container policy's file rules are marked so too: an open there waits while
    /// the container is looked up (see `decide::container`).
    pub fn unknown(&mut self, guard: &Guard, id: &str, pid: i32) -> bool {
        let all = guard.all_container_rules.as_ref();
        let files = guard.all_container_files.as_ref();
        if all.is_none() && files.is_none() {
            return false;
        }
        if self.marked.contains(id) {
            return true;
        }
        let (mounts, layers) = ctr_mounts::of_process(all, pid, &guard.mounts);
        if mounts.iter().any(|m| m.private) {
            return false;
        }
        self.remember(id);
        if let Some((marker, failures)) = self.marker.as_ref() {
            let mut roots = Vec::new();
            if let Some(all) = all
                && guard.config.open_guard.enabled
            {
                roots = ctr_mounts::open_roots(all, pid, &mounts, &layers);
            }
            if let Some(files) = files {
                roots.extend(ctr_mounts::file_roots(files, pid, &mounts, &layers));
            }
            if !roots.is_empty() {
                mark_open_roots(marker.as_ref(), failures, pid, roots);
            }
        }
        true
    }

    /// At the first exec this thread sees of a selected container (its first program, through its image
    /// layers), `scope`: marks its private mounts in protected scope, its protected directories and its file
    /// rules' directories (not their subdirectories: the tokio side's rescan walks those). Binds of host
    /// directories wait for the tokio side's next look at the containers (their filesystem is marked through
    /// our own mount of it).
    pub fn selected(&mut self, guard: &Guard, scope: &ContainerScope, pid: i32) {
        let (matcher, files) = (scope.matcher.as_ref(), scope.files.as_ref());
        let id = &scope.container.info.id;
        if self.marker.is_none() || (matcher.is_none() && files.is_none()) || self.marked.contains(id.as_str()) {
            return;
        }
        self.remember(id);
        let Some((marker, failures)) = self.marker.as_ref() else { return };
        // Read once: its mounts in protected scope, its layers, and where its posture reaches.
        let text = ctr_mounts::mountinfo_of(pid).unwrap_or_default();
        let mounts = matcher.map(|m| ctr_mounts::find(m, &text, &guard.mounts)).unwrap_or_default();
        let layers = ctr_mounts::rootfs_layers(&text);
        let open = guard.config.open_guard.enabled;
        for m in mounts.iter().filter(|m| m.private) {
            let extra = if open && m.whole { Mask::FAN_OPEN_PERM } else { Mask::empty() };
            let path = through_root(pid, &m.mount_point);
            if let Err(error) = marker.mark_filesystem(&path, Mask::FAN_OPEN_EXEC_PERM | extra) {
                failures.report(MarkFailure { what: PRIVATE_MOUNT, path, error });
            }
        }
        let mut roots = Vec::new();
        if let Some(matcher) = matcher
            && open
        {
            roots = ctr_mounts::open_roots(matcher, pid, &mounts, &layers);
        }
        if let Some(files) = files {
            roots.extend(ctr_mounts::file_roots(files, pid, &mounts, &layers));
        }
        if !roots.is_empty() {
            mark_open_roots(marker.as_ref(), failures, pid, roots);
        }
        if scope.file_posture() {
            for mount_point in ctr_mounts::posture_mounts(&text) {
                let path = through_root(pid, &mount_point);
                if let Err(error) = marker.mark_mount(&path, POSTURE_MASK) {
                    failures.report(MarkFailure { what: POSTURE_MOUNT, path, error });
                }
            }
        }
    }

    fn remember(&mut self, id: &str) {
        if self.marked.len() >= MARKED_MAX {
            self.marked.clear();
        }
        self.marked.insert(id.to_owned());
    }
}

/// Marks a container's open-guard `roots` (of its process `pid`) and keeps them for the walks that follow a
/// flush of the group's inode marks, until the container is in the tokio side's list.
fn mark_open_roots(marker: &dyn Marker, failures: &MarkFailures, pid: i32, roots: Vec<OpenRoot>) {
    // Remembered first: a flush of the group's inode marks under way now then marks them again after it.
    remember_first_exec_roots(pid, &roots);
    for root in &roots {
        if let Err(error) = marker.mark_inode(&root.path, root.dir_mask()) {
            failures.report(MarkFailure { what: CONTAINER_DIR, path: root.path.clone(), error });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::marks::DirMask;
    use nix::errno::Errno;
    use std::os::fd::BorrowedFd;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;
    use std::sync::Mutex;
    use std::sync::atomic::Ordering;
    use tokio::sync::mpsc;

    /// Records every mark asked for; refuses each one when `refuse` is set.
    #[derive(Default)]
    struct FakeMarker {
        asked: Mutex<Vec<(&'static str, PathBuf, Mask)>>,
        refuse: bool,
    }

    impl FakeMarker {
        fn ask(&self, op: &'static str, path: &Path, mask: Mask) -> Result<(), Errno> {
            self.asked.lock().unwrap().push((op, path.to_path_buf(), mask));
            if self.refuse { Err(Errno::ENOENT) } else { Ok(()) }
        }

        fn asked(&self) -> Vec<(&'static str, PathBuf, Mask)> {
            self.asked.lock().unwrap().clone()
        }
    }

    impl Marker for FakeMarker {
        fn mark_filesystem(&self, path: &Path, mask: Mask) -> Result<(), Errno> {
            self.ask("mark_filesystem", path, mask)
        }

        fn unmark_filesystem(&self, path: &Path, mask: Mask) -> Result<(), Errno> {
            self.ask("unmark_filesystem", path, mask)
        }

        fn mark_inode(&self, path: &Path, mask: Mask) -> Result<(), Errno> {
            self.ask("mark_inode", path, mask)
        }

        fn mark_fd(&self, _: BorrowedFd<'_>, mask: Mask) -> Result<(), Errno> {
            self.ask("mark_fd", Path::new(""), mask)
        }

        fn unmark_fd(&self, _: BorrowedFd<'_>, mask: Mask) -> Result<(), Errno> {
            self.ask("unmark_fd", Path::new(""), mask)
        }

        fn mark_mount(&self, path: &Path, mask: Mask) -> Result<(), Errno> {
            self.ask("mark_mount", path, mask)
        }

        fn unmark_mount(&self, path: &Path, mask: Mask) -> Result<(), Errno> {
            self.ask("unmark_mount", path, mask)
        }
    }

    fn me() -> i32 {
        i32::try_from(std::process::id()).unwrap()
    }

    /// A tmpfs this process has mounted somewhere other than `/` (`/dev/shm`, most often), by its mount point:
    /// a container's private mount for a guard whose table does not show it.
    fn own_tmpfs() -> Option<String> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let tmpfs: Vec<String> = text
            .lines()
            .filter(|l| l.split(" - ").nth(1).is_some_and(|t| t.starts_with("tmpfs ")))
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .filter(|mp| mp != "/" && !mp.contains('\\'))
            .collect();
        tmpfs.iter().find(|mp| *mp == "/dev/shm").or_else(|| tmpfs.first()).cloned()
    }

    /// A Guard whose container policies protect `dir`, over a mount table that shows none of this process's
    /// mounts but a root filesystem of its own.
    fn guard_protecting(dir: &str, open_guard: bool) -> Guard {
        let policy = format!(
            "[open_guard]\nenabled = {open_guard}\n[[policy]]\nname = \"ctr\"\n[policy.selector]\n\
             match_labels = {{ app = \"x\" }}\n[[policy.process.match_directories]]\ndir = \"{dir}/\"\nrecursive = true\n"
        );
        let config = crate::policy::load_str(Path::new("t.toml"), &policy).unwrap();
        let table = crate::host::mounts::MountTable::parse(b"1 0 0:999 / / rw - ext4 /dev/noexecd-test rw\n");
        Guard::build(config, table).unwrap()
    }

    /// Container `id` as the daemon's list would hold it: selected by every container policy of `guard`, or by
    /// none.
    fn scope(id: &str, guard: &Guard, selected: bool) -> ContainerScope {
        use crate::containers::runtimes::podman::PODMAN;
        use crate::containers::{Container, ContainerInfo};
        let container = Container { info: ContainerInfo::new(id.to_owned(), PODMAN), init_pid: me() };
        let mut scope = ContainerScope::new(&guard.config, container);
        if selected {
            scope.matcher = guard.all_container_rules.clone();
            scope.files = guard.all_container_files.clone();
        } else {
            (scope.matcher, scope.files) = (None, None);
        }
        scope
    }

    fn first_exec_marks(refuse: bool) -> (FirstExecMarks, Arc<FakeMarker>, Arc<Counters>, mpsc::Receiver<MarkFailure>) {
        let marker = Arc::new(FakeMarker { refuse, ..FakeMarker::default() });
        let counters = Arc::new(Counters::default());
        let (failures, rx) = MarkFailures::handed_over(counters.clone(), 8);
        (FirstExecMarks::new(marker.clone(), failures), marker, counters, rx)
    }

    #[test]
    fn a_selected_containers_first_exec_marks_its_private_mounts_once() {
        let Some(tmpfs) = own_tmpfs() else { return };
        let guard = guard_protecting(&tmpfs, false);
        let (mut marks, marker, counters, _rx) = first_exec_marks(false);
        marks.selected(&guard, &scope("c1", &guard, true), me());
        let asked = marker.asked();
        let through_root = PathBuf::from(format!("/proc/{}/root{tmpfs}", me()));
        assert!(
            asked.iter().any(|(op, path, mask)| *op == "mark_filesystem"
                && *path == through_root
                && mask.contains(Mask::FAN_OPEN_EXEC_PERM)),
            "{asked:?}"
        );
        assert_eq!(counters.marks_failed.load(Ordering::Relaxed), 0);
        marks.selected(&guard, &scope("c1", &guard, true), me());
        assert_eq!(marker.asked().len(), asked.len(), "marked once per container");
        // A container no policy selects has nothing to mark.
        marks.selected(&guard, &scope("c2", &guard, false), me());
        assert_eq!(marker.asked().len(), asked.len());
    }

    #[test]
    fn a_refused_mark_is_counted_and_handed_over_with_its_path() {
        let Some(tmpfs) = own_tmpfs() else { return };
        let guard = guard_protecting(&tmpfs, false);
        let (mut marks, marker, counters, mut rx) = first_exec_marks(true);
        marks.selected(&guard, &scope("c1", &guard, true), me());
        let asked = marker.asked();
        assert!(!asked.is_empty());
        assert_eq!(counters.marks_failed.load(Ordering::Relaxed), asked.len() as u64, "each refusal counted");
        let failure = rx.try_recv().expect("handed over to be logged");
        assert_eq!(failure.path, asked[0].1);
        assert_eq!(failure.error, Errno::ENOENT);
    }

    #[test]
    fn an_unknown_container_with_a_private_mount_in_scope_is_looked_up_instead() {
        let Some(tmpfs) = own_tmpfs() else { return };
        let guard = guard_protecting(&tmpfs, true);
        let (mut marks, marker, _, _rx) = first_exec_marks(false);
        assert!(!marks.unknown(&guard, "c1", me()), "how its mount is marked depends on its own policies");
        assert!(!marks.unknown(&guard, "c1", me()), "not remembered");
        assert!(marker.asked().is_empty());
    }

    #[test]
    fn an_unknown_containers_protected_directories_are_marked_for_the_open_guard() {
        let guard = guard_protecting("/noexecd-test-nowhere", true);
        let (mut marks, marker, _, _rx) = first_exec_marks(false);
        assert!(marks.unknown(&guard, "c1", me()));
        let asked = marker.asked();
        assert!(!asked.is_empty());
        assert!(asked.iter().all(|(op, path, mask)| *op == "mark_inode"
            && path.as_os_str().as_bytes().ends_with(b"/noexecd-test-nowhere")
            && *mask == DirMask::OPEN_AND_EXEC));
        assert!(marks.unknown(&guard, "c1", me()), "remembered");
        assert_eq!(marker.asked().len(), asked.len(), "and not marked again");
        let none = guard_protecting("/noexecd-test-nowhere", false);
        let (mut marks, marker, _, _rx) = first_exec_marks(false);
        assert!(marks.unknown(&none, "c1", me()));
        assert!(marker.asked().is_empty(), "the open guard is off");
    }

    /// A Guard whose only container policy has a file rule on `dir`, with the open guard off.
    fn guard_with_file_rule(dir: &str) -> Guard {
        let policy = format!(
            "[open_guard]\nenabled = false\n[[policy]]\nname = \"files\"\n[policy.selector]\n\
             match_labels = {{ app = \"x\" }}\n[[policy.file.match_directories]]\ndir = \"{dir}/\"\nrecursive = true\n"
        );
        let config = crate::policy::load_str(Path::new("t.toml"), &policy).unwrap();
        let table = crate::host::mounts::MountTable::parse(b"1 0 0:999 / / rw - ext4 /dev/noexecd-test rw\n");
        Guard::build(config, table).unwrap()
    }

    #[test]
    fn a_containers_file_rule_directories_are_marked_at_its_first_exec_whatever_the_open_guard() {
        let guard = guard_with_file_rule("/noexecd-test-files");
        assert!(guard.all_container_rules.is_none() && guard.all_container_files.is_some());
        let only_files = |asked: &[(&'static str, PathBuf, Mask)]| {
            !asked.is_empty()
                && asked.iter().all(|(op, path, mask)| {
                    *op == "mark_inode"
                        && path.as_os_str().as_bytes().ends_with(b"/noexecd-test-files")
                        && *mask == DirMask::OPEN
                })
        };
        // Not known yet: every container policy's file rules stand for its own.
        let (mut marks, marker, _, _rx) = first_exec_marks(false);
        assert!(marks.unknown(&guard, "c1", me()), "marked without asking the runtimes");
        assert!(only_files(&marker.asked()), "{:?}", marker.asked());
        // Known and selected: its own file rules.
        let (mut marks, marker, _, _rx) = first_exec_marks(false);
        marks.selected(&guard, &scope("c1", &guard, true), me());
        assert!(only_files(&marker.asked()), "{:?}", marker.asked());
        // Known and selected by nothing: nothing.
        let (mut marks, marker, _, _rx) = first_exec_marks(false);
        marks.selected(&guard, &scope("c2", &guard, false), me());
        assert!(marker.asked().is_empty());
    }
}
