//! The guard's whole state at one moment: the compiled policy, the mount table, which filesystems are marked
//! and how each one is decided. Built off the decision path, swapped in atomically, never mutated.
#![forbid(unsafe_code)]

pub mod ctr_marks;
pub mod ctr_mounts;
pub mod dirtrack;
pub mod exec_cache;
pub mod loaders;
pub mod marks;
pub mod scopes;
pub mod subvol_watch;

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::host::mounts::{Mount, MountTable, device_of, is_path_prefix};
use crate::policy::Config;
use crate::policy::file_rules::FileMatcher;
use crate::policy::matcher::Matcher;
use crate::sys::FileFacts;
use loaders::Loaders;

/// How a target's `protects` names a runtime's layer root (`containers:/var/lib/containers/storage`): marked
/// for execs only, never a protected directory of the open guard.
pub const CONTAINER_LAYERS: &str = "containers:";

/// The next [`Guard::generation`].
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// How exec events on one filesystem are decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decides {
    /// Every file on it gets the same decision: it is all below this directory (with trailing `/`) of our
    /// namespace, and no rule draws a line inside. No path lookup.
    Filesystem { below: Vec<u8> },
    /// Protected paths share the filesystem with the rest of the system: the canonical path decides.
    Path,
}

impl std::fmt::Display for Decides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decides::Filesystem { .. } => "filesystem",
            Decides::Path => "path",
        })
    }
}

/// A filesystem the guard marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkTarget {
    /// Where it is marked: the mount through which the first protected path that brought it in is reached
    /// (a filesystem mark covers the whole superblock, whichever of its mounts it is placed through).
    pub mount_point: PathBuf,
    /// The superblock's device, as mountinfo reports it (statx reports it too, except on btrfs: there each
    /// subvolume has a device of its own, which [`Guard::target_for`] knows as well).
    pub dev: u64,
    pub fstype: String,
    pub decides: Decides,
    /// The rules' directories (or files) that brought it in.
    pub protects: Vec<String>,
}

/// A mount whose root is a root of the open guard: it carries a FAN_OPEN_PERM mount mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenMount {
    /// The mount's id in our mount table: a mount replaced at the same place is another mount.
    pub id: u64,
    pub path: PathBuf,
}

#[derive(Debug)]
pub struct Guard {
    /// Different for every guard built in this process: what was decided under one guard (a remembered
    /// denial) is known by it not to be the current one's.
    pub generation: u64,
    pub config: Config,
    pub mounts: MountTable,
    pub targets: Vec<MarkTarget>,
    /// The host's dynamic loaders, found when the guard is built (reload and mount changes find them again).
    pub loaders: Loaders,
    /// The rules of every container policy together, whichever containers they select: a file of an image's
    /// lower layer is shared by every container of the image, so the exec cache may keep it only when its path
    /// inside the container is outside all of them. `None` without container policies.
    pub all_container_rules: Option<Matcher>,
    /// The enforced file rules of every container policy together: at a container's first exec, before the
    /// daemon knows which policies select it, their directories are marked in it, and an open there waits
    /// while its container is looked up. `None` without such rules.
    pub all_container_files: Option<FileMatcher>,
    /// Device → index into `targets`. Also keyed by the `st_dev` of each of its mounts' roots where that
    /// differs (btrfs: one per subvolume mounted).
    by_dev: HashMap<u64, usize>,
    /// btrfs superblock id ([`superblock_fsid`]) → index into `targets`: a subvolume mounted nowhere (made by
    /// any user with `btrfs subvolume create` where they can write) has a device no mount shows.
    by_fsid: HashMap<[u8; 8], usize>,
}

impl Guard {
    /// Works out which filesystems hold protected paths and how each is decided.
    pub fn build(config: Config, mut mounts: MountTable) -> Result<Self> {
        let mut targets: Vec<MarkTarget> = Vec::new();
        // The mounts that give protected directories their names: a file of such a directory is named through
        // them, wherever it is reached from (see `MountTable::prefer`).
        let mut naming: Vec<u64> = Vec::new();
        let mut by_dev: HashMap<u64, usize> = HashMap::new();
        // `by_path`: the filesystem holds container layers, whose files are decided by their paths (the host's
        // and the container's).
        let mut add = |mount: &Mount, protects: &[u8], by_path: bool, targets: &mut Vec<MarkTarget>| {
            let protects = String::from_utf8_lossy(protects).into_owned();
            if let Some(&i) = by_dev.get(&mount.dev) {
                if let Some(t) = targets.get_mut(i) {
                    if !t.protects.contains(&protects) {
                        t.protects.push(protects);
                    }
                    if by_path {
                        t.decides = Decides::Path;
                    }
                }
                return;
            }
            let decides = if by_path { Decides::Path } else { decides_for(&config, &mounts, mount.dev) };
            by_dev.insert(mount.dev, targets.len());
            targets.push(MarkTarget {
                mount_point: mount.mount_point_path(),
                dev: mount.dev,
                fstype: mount.fstype.clone(),
                decides,
                protects: vec![protects],
            });
        };
        for rule in config.matcher.rules() {
            let prefix = rule.target.scope_prefix();
            let containing = mounts.containing(prefix).ok_or_else(|| Error::NoMountFor { path: bytes_path(prefix) })?;
            add(containing, prefix, false, &mut targets);
            naming.push(containing.id);
            for nested in mounts.below(prefix) {
                add(nested, prefix, false, &mut targets);
                naming.push(nested.id);
            }
        }
        // Container policies: the filesystems of the runtimes' image layers. Every exec in a container raises
        // an event on its layer's real file there (Linux 6.5+), before any program of the container runs.
        if config.reads_containers() {
            for root in config.containers.layer_roots() {
                let bytes = root.as_os_str().as_bytes();
                if root.is_dir()
                    && let Some(m) = mounts.containing(bytes)
                {
                    let mut label = CONTAINER_LAYERS.as_bytes().to_vec();
                    label.extend_from_slice(bytes);
                    add(m, &label, true, &mut targets);
                }
            }
        }
        for id in naming {
            mounts.prefer(id);
        }
        // btrfs reports for a file the device of its subvolume, not the superblock's that mountinfo shows: each
        // mount's root tells the device of the subvolume mounted there. (A subvolume mounted nowhere on its own
        // stays unknown: its files are decided by their paths.) A mount hidden under another shows the other.
        for (i, t) in targets.iter().enumerate() {
            for m in mounts.mounts_of(t.dev) {
                if mounts.containing(&m.mount_point).is_some_and(|top| top.id == m.id)
                    && let Ok(dev) = device_of(&m.mount_point_path())
                    && dev != t.dev
                {
                    by_dev.entry(dev).or_insert(i);
                }
            }
        }
        let mut by_fsid = HashMap::new();
        for (i, t) in targets.iter().enumerate().filter(|(_, t)| t.fstype == "btrfs") {
            for m in mounts.mounts_of(t.dev) {
                if let Some(id) = std::fs::File::open(m.mount_point_path()).ok().and_then(|f| superblock_of(f.as_fd()))
                {
                    by_fsid.entry(id).or_insert(i);
                }
            }
        }
        let all: Vec<usize> = (0..config.container_policies.len()).collect();
        let all_container_rules = (!all.is_empty()).then(|| config.container_matcher(&all));
        let all_files: Vec<usize> = (0..config.container_file_policies.len()).collect();
        let all_container_files = config.container_file_enforced(&all_files);
        let generation = GENERATIONS.fetch_add(1, Ordering::Relaxed);
        let loaders = Loaders::find();
        Ok(Self {
            generation,
            config,
            mounts,
            targets,
            loaders,
            all_container_rules,
            all_container_files,
            by_dev,
            by_fsid,
        })
    }

    /// Whether FAN_OPEN_PERM goes on this target's filesystem mark: only where the filesystem holds nothing
    /// but protected paths. On a filesystem shared with the rest of the system (/tmp on `/`), a filesystem
    /// mark would send every open on the host to us; [`Guard::open_inode_roots`] marks directories instead.
    pub fn open_perm_on_filesystem(&self, target: &MarkTarget) -> bool {
        self.config.open_guard.enabled && matches!(target.decides, Decides::Filesystem { .. })
    }

    /// The protected directories (and files) on path-decided filesystems that get FAN_OPEN_PERM inode marks,
    /// with every subdirectory below them: the rules' directories, or a nested mount's root where a rule's
    /// directory lies above it.
    pub fn open_inode_roots(&self) -> Vec<PathBuf> {
        if !self.config.open_guard.enabled {
            return Vec::new();
        }
        let mut roots: Vec<PathBuf> = Vec::new();
        for t in self.targets.iter().filter(|t| t.decides == Decides::Path) {
            let point = t.mount_point.as_os_str().as_encoded_bytes();
            for prefix in &t.protects {
                // A layer root is no protected directory: walking it would put FAN_OPEN_PERM on every directory
                // of the runtime's storage (or of the whole filesystem holding it), and the decision thread
                // itself reads the runtimes' files there when it looks up a container it does not know yet.
                if prefix.starts_with(CONTAINER_LAYERS) {
                    continue;
                }
                // A rule reaching up to `/` (a pattern such as "/**/x") would mean walking and marking whole
                // filesystems every second: no open guard from it (SECURITY.md).
                if prefix.as_str() == "/" {
                    continue;
                }
                let bytes = prefix.as_bytes();
                // The rule's directory is on this filesystem (through any of its mounts: btrfs subvolumes),
                // and mounts of it below the rule's directory are roots of their own (the walk does not cross
                // a mount: a subvolume mounted at /tmp/x inside @/tmp has another device).
                let below: Vec<PathBuf> =
                    self.mounts.below(bytes).filter(|m| m.dev == t.dev).map(Mount::mount_point_path).collect();
                let here: Vec<PathBuf> = if self.mounts.containing(bytes).is_some_and(|m| m.dev == t.dev) {
                    std::iter::once(PathBuf::from(prefix.trim_end_matches('/'))).chain(below).collect()
                } else if below.is_empty() && !is_path_prefix(point, bytes) {
                    vec![t.mount_point.clone()]
                } else {
                    below
                };
                for root in here {
                    if root.as_os_str().is_empty() || root == Path::new("/") {
                        continue;
                    }
                    if !roots.contains(&root) {
                        roots.push(root);
                    }
                }
            }
        }
        roots
    }

    /// The open guard's roots that are the root of a mount of ours (a tmpfs whose files a rule tells apart, a
    /// btrfs subvolume mounted there, a bind of the directory onto itself or from elsewhere): a mount mark
    /// there sees the open of a file in a directory made a moment ago, before the directory tracker has
    /// marked it. The directory marks stay, for the other ways to the same files (another namespace's copy of
    /// the mount, another bind, `/proc/PID/root`), which a mount mark does not see.
    pub fn open_mounts(&self) -> Vec<OpenMount> {
        self.open_inode_roots()
            .into_iter()
            .filter_map(|path| {
                let m = self.mounts.containing(path.as_os_str().as_bytes())?;
                (m.mount_point_path() == path).then_some(OpenMount { id: m.id, path })
            })
            .collect()
    }

    /// The open guard's roots that are only a directory of a filesystem shared with the rest of the system
    /// (/tmp on `/`): there only the directory marks guard, placed on each new directory once the tracker
    /// hears of it, and a file opened in a directory made a moment before may be let through. A bind of the
    /// directory onto itself makes it a mount of its own ([`Guard::open_mounts`]).
    pub fn open_roots_without_mount(&self) -> Vec<PathBuf> {
        let mounted = self.open_mounts();
        self.open_inode_roots().into_iter().filter(|r| !mounted.iter().any(|m| &m.path == r)).collect()
    }

    /// The marked filesystem a file with this `st_dev` lives on, if any.
    pub fn target_for(&self, dev: u64) -> Option<&MarkTarget> {
        self.by_dev.get(&dev).and_then(|&i| self.targets.get(i))
    }

    /// The marked filesystem the file open at `fd` lives on: by its device, or, for a file in a btrfs
    /// subvolume no mount shows, by its superblock's id (one `fstatfs`, only then).
    pub fn target_of(&self, fd: BorrowedFd<'_>, facts: &FileFacts) -> Option<&MarkTarget> {
        if let Some(t) = self.target_for(facts.dev) {
            return Some(t);
        }
        if self.by_fsid.is_empty() {
            return None;
        }
        let id = superblock_fsid(crate::sys::fsid(fd).ok()?, facts.subvol?);
        self.by_fsid.get(&id).and_then(|&i| self.targets.get(i))
    }
}

/// The id of a btrfs superblock, the same from every subvolume: btrfs's `f_fsid` is the filesystem's id with
/// the subvolume's id mixed in (high half into the first word, low half into the second, by xor), so that
/// each subvolume reports one of its own.
pub fn superblock_fsid(fsid: [u8; 8], subvol: u64) -> [u8; 8] {
    let word = |i: usize| u32::from_ne_bytes(fsid.get(i..i + 4).and_then(|b| b.try_into().ok()).unwrap_or([0; 4]));
    let (hi, lo) = ((subvol >> 32) as u32, subvol as u32);
    let mut out = [0u8; 8];
    let (a, b) = out.split_at_mut(4);
    a.copy_from_slice(&(word(0) ^ hi).to_ne_bytes());
    b.copy_from_slice(&(word(4) ^ lo).to_ne_bytes());
    out
}

/// [`superblock_fsid`] of the filesystem the file open at `fd` is on, where it reports a subvolume.
fn superblock_of(fd: BorrowedFd<'_>) -> Option<[u8; 8]> {
    let subvol = crate::sys::file_facts(fd).ok()?.subvol?;
    Some(superblock_fsid(crate::sys::fsid(fd).ok()?, subvol))
}

/// A filesystem is decided without its paths when one mount names all of it (its most complete mount shows
/// the whole superblock, no mount shows a btrfs subvolume of it elsewhere: see [`MountTable::whole`], and
/// no mount of it lies outside that mount point) and the policy treats everything below that mount point
/// alike. A btrfs whose top level is mounted at
/// `/.top` while its subvolume `@/tmp` is mounted at `/tmp` holds protected and unprotected paths: the path
/// decides.
fn decides_for(config: &Config, mounts: &MountTable, dev: u64) -> Decides {
    let Some(whole) = mounts.whole(dev) else {
        return Decides::Path;
    };
    let mut below = whole.mount_point.clone();
    if below.last() != Some(&b'/') {
        below.push(b'/');
    }
    // Every name of the filesystem must lie below it: a bind of a directory of it elsewhere (`/var/tmp` bound
    // from `/data/vartmp`, `/data/tmp /tmp none bind`) gives its files names a rule may draw a line at.
    let elsewhere = mounts.mounts_of(dev).any(|m| !is_path_prefix(&below, &m.mount_point));
    if below != b"/" && !elsewhere && config.matcher.path_independent_below(&below) {
        Decides::Filesystem { below }
    } else {
        Decides::Path
    }
}

fn bytes_path(b: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const MOUNTS: &[u8] = b"\
1 0 254:0 / / rw - ext4 /dev/vda rw
2 1 0:30 / /tmp rw - tmpfs tmpfs rw
3 1 0:31 / /dev/shm rw - tmpfs tmpfs rw
4 2 0:32 / /tmp/nested rw - tmpfs tmpfs rw
5 1 0:33 / /home rw - ext4 /dev/vdb rw
";

    fn guard(policy: &str) -> Guard {
        let config = crate::policy::load_str(Path::new("t.toml"), policy).unwrap();
        Guard::build(config, MountTable::parse(MOUNTS)).unwrap()
    }

    const DEFAULT: &str = r#"
[[policy]]
name = "tmp"
[[policy.process.match_directories]]
dir = "/tmp/"
recursive = true
[[policy.process.match_directories]]
dir = "/var/tmp/"
recursive = true
[[policy.process.match_directories]]
dir = "/dev/shm/"
recursive = true
"#;

    #[test]
    fn marks_each_filesystem_holding_protected_paths_once() {
        let g = guard(DEFAULT);
        let points: Vec<_> = g.targets.iter().map(|t| t.mount_point.to_string_lossy().into_owned()).collect();
        assert_eq!(points, vec!["/tmp", "/tmp/nested", "/", "/dev/shm"]);
        assert!(g.target_for(libc::makedev(0, 33)).is_none(), "/home holds no protected path");
    }

    #[test]
    fn tmpfs_at_a_protected_dir_is_decided_without_paths() {
        let g = guard(DEFAULT);
        let tmp = g.target_for(libc::makedev(0, 30)).unwrap();
        assert_eq!(tmp.decides, Decides::Filesystem { below: b"/tmp/".to_vec() });
        let root = g.target_for(libc::makedev(254, 0)).unwrap();
        assert_eq!(root.decides, Decides::Path);
        assert_eq!(root.protects, vec!["/var/tmp/".to_owned()]);
    }

    #[test]
    fn open_perm_goes_on_whole_filesystems_and_on_directories_elsewhere() {
        let g = guard(DEFAULT);
        let tmp = g.target_for(libc::makedev(0, 30)).unwrap();
        let root = g.target_for(libc::makedev(254, 0)).unwrap();
        assert!(g.open_perm_on_filesystem(tmp));
        assert!(!g.open_perm_on_filesystem(root), "never FAN_OPEN_PERM on a filesystem mark of `/`");
        assert_eq!(g.open_inode_roots(), vec![PathBuf::from("/var/tmp")]);
        let everywhere = guard(&format!(
            "{DEFAULT}\n[[policy]]\nname = \"x\"\n[[policy.process.match_patterns]]\npattern = \"/**/x\"\n"
        ));
        // The pattern makes every filesystem path-decided; its own prefix `/` adds no root.
        let roots: Vec<PathBuf> = ["/tmp", "/tmp/nested", "/var/tmp", "/dev/shm"].iter().map(PathBuf::from).collect();
        assert_eq!(everywhere.open_inode_roots(), roots, "never a walk of `/` or /home");
        let off = guard(&format!("[open_guard]\nenabled = false\n{DEFAULT}"));
        assert!(!off.open_perm_on_filesystem(off.target_for(libc::makedev(0, 30)).unwrap()));
        assert!(off.open_inode_roots().is_empty());
    }

    /// SLES/openSUSE on btrfs: `@` at `/`, `@/tmp` at /tmp, `@/var` at /var (one superblock, one mountinfo
    /// device), optionally with the top level mounted at /.top.
    fn btrfs_guard(policy: &str, top: bool) -> Guard {
        let mut text = b"\
90 1 0:42 /@ / rw - btrfs /dev/vda rw,subvolid=256,subvol=/@
91 90 0:42 /@/tmp /tmp rw - btrfs /dev/vda rw,subvolid=257,subvol=/@/tmp
92 90 0:42 /@/var /var rw - btrfs /dev/vda rw,subvolid=258,subvol=/@/var
3 1 0:31 / /dev/shm rw - tmpfs tmpfs rw
"
        .to_vec();
        if top {
            text.extend_from_slice(b"93 90 0:42 / /.top rw - btrfs /dev/vda rw,subvolid=5,subvol=/\n");
        }
        let config = crate::policy::load_str(Path::new("t.toml"), policy).unwrap();
        Guard::build(config, MountTable::parse(&text)).unwrap()
    }

    #[test]
    fn btrfs_subvolumes_are_one_filesystem_decided_by_path_whatever_else_is_mounted() {
        for top in [false, true] {
            let g = btrfs_guard(DEFAULT, top);
            let btrfs: Vec<_> = g.targets.iter().filter(|t| t.fstype == "btrfs").collect();
            assert_eq!(btrfs.len(), 1, "one superblock, one mark (top level mounted: {top}): {btrfs:?}");
            let t = btrfs[0];
            assert_eq!(t.decides, Decides::Path, "@/tmp is only part of the filesystem (top level mounted: {top})");
            assert_eq!(t.mount_point, PathBuf::from("/tmp"), "marked through the protected path's mount");
            assert_eq!(t.protects, vec!["/tmp/".to_owned(), "/var/tmp/".to_owned()]);
            // The tmpfs at /dev/shm is decided as a whole: its open guard is on its filesystem mark.
            assert_eq!(g.open_inode_roots(), vec![PathBuf::from("/tmp"), PathBuf::from("/var/tmp")]);
        }
        // A subvolume mounted inside a protected directory is a root of its own (walks stop at mounts).
        let config = crate::policy::load_str(Path::new("t.toml"), DEFAULT).unwrap();
        let mut text = b"90 1 0:42 /@ / rw - btrfs /dev/vda rw,subvolid=256,subvol=/@\n".to_vec();
        text.extend_from_slice(b"91 90 0:42 /@/srv /tmp/srv rw - btrfs /dev/vda rw,subvolid=259,subvol=/@/srv\n");
        let g = Guard::build(config, MountTable::parse(&text)).unwrap();
        let roots: Vec<PathBuf> = ["/tmp", "/tmp/srv", "/var/tmp", "/dev/shm"].iter().map(PathBuf::from).collect();
        assert_eq!(g.open_inode_roots(), roots);
        // The top level alone at /tmp (no subvolume mounted elsewhere) is the whole filesystem.
        let config = crate::policy::load_str(Path::new("t.toml"), DEFAULT).unwrap();
        let only = MountTable::parse(
            b"1 0 254:0 / / rw - ext4 /dev/vda rw\n9 1 0:42 / /tmp rw - btrfs /dev/vdb rw,subvolid=5,subvol=/\n",
        );
        let g = Guard::build(config, only).unwrap();
        assert_eq!(
            g.target_for(libc::makedev(0, 42)).unwrap().decides,
            Decides::Filesystem { below: b"/tmp/".to_vec() }
        );
    }

    #[test]
    fn a_btrfs_superblock_has_one_id_whatever_subvolume_reports_it() {
        // What btrfs's statfs reports for the top level (5) and subvolumes 256 and 257 of one filesystem.
        let fsid = |a: u32, b: u32| [a.to_ne_bytes(), b.to_ne_bytes()].concat().try_into().unwrap();
        let base = superblock_fsid(fsid(0xedf0_9d9e, 0xe752_775f), 5);
        assert_eq!(base, superblock_fsid(fsid(0xedf0_9d9e, 0xe752_765a), 256));
        assert_eq!(base, superblock_fsid(fsid(0xedf0_9d9e, 0xe752_765b), 257));
        assert_ne!(base, superblock_fsid(fsid(0xedf0_9d9e, 0xe752_765b), 256), "another superblock");
        assert_eq!(superblock_fsid(fsid(1, 2), (3 << 32) | 4), fsid(1 ^ 3, 2 ^ 4), "the high half goes first");
    }

    #[test]
    fn a_layer_root_is_marked_for_execs_and_never_walked_by_the_open_guard() {
        let storage = tempfile::tempdir().unwrap();
        let dir = storage.path().to_str().unwrap();
        // The storage's filesystem also holds a protected directory (a disk image standing for `/`).
        let policy = format!(
            "[containers]\nstorage = \"{dir}\"\ndocker_root = \"/nonexistent/d\"\ncontainerd_root = \"/nonexistent/c\"\n\
             [[policy]]\nname = \"h\"\n[[policy.process.match_directories]]\ndir = \"{dir}/tmp/\"\nrecursive = true\n\
             [[policy]]\nname = \"c\"\n[policy.selector]\n[[policy.process.match_patterns]]\npattern = \"/tmp/*\"\n"
        );
        let config = crate::policy::load_str(Path::new("t.toml"), &policy).unwrap();
        let mounts = [MOUNTS, format!("6 1 0:34 / {dir} rw - ext4 /dev/loop0 rw\n").as_bytes()].concat();
        let g = Guard::build(config, MountTable::parse(&mounts)).unwrap();
        let t = g.target_for(libc::makedev(0, 34)).expect("the layer root's filesystem is marked");
        assert_eq!(t.decides, Decides::Path);
        assert_eq!(t.protects, vec![format!("{dir}/tmp/"), format!("{CONTAINER_LAYERS}{dir}")]);
        assert!(!g.open_perm_on_filesystem(t));
        // The protected directory is, the rest of the filesystem (the runtime's storage) is not.
        assert_eq!(g.open_inode_roots(), vec![PathBuf::from(format!("{dir}/tmp"))]);
    }

    /// `/var/tmp` a bind of `/vartmp` of a data filesystem mounted whole at `/data`, and `/tmp` a bind of its
    /// `/tmp` (`/data/tmp /tmp none bind`).
    const BOUND: &[u8] = b"\
1 0 254:0 / / rw - ext4 /dev/vda rw
2 1 8:16 / /data rw - ext4 /dev/vdb rw
3 1 8:16 /vartmp /var/tmp rw - ext4 /dev/vdb rw
4 1 8:16 /tmp /tmp rw - ext4 /dev/vdb rw
";

    #[test]
    fn a_protected_directory_bound_from_another_filesystem_has_its_protected_name_through_every_mount() {
        let config = crate::policy::load_str(Path::new("t.toml"), DEFAULT).unwrap();
        let g = Guard::build(config, MountTable::parse(BOUND)).unwrap();
        let data = g.target_for(libc::makedev(8, 16)).expect("the data filesystem holding /var/tmp and /tmp is marked");
        assert_eq!(data.decides, Decides::Path, "it holds unprotected directories too");
        assert_eq!(data.protects, vec!["/tmp/".to_owned(), "/var/tmp/".to_owned()]);
        let name = |via: &Mount, raw: &[u8]| {
            let (mut s, mut out) = (Vec::new(), Vec::new());
            g.mounts.canonical_path(via, raw, &mut s, &mut out).then(|| String::from_utf8(out).unwrap())
        };
        let whole = g.mounts.by_id(2).unwrap();
        assert_eq!(name(g.mounts.by_id(3).unwrap(), b"/var/tmp/x").as_deref(), Some("/var/tmp/x"));
        assert_eq!(name(g.mounts.by_id(4).unwrap(), b"/tmp/x").as_deref(), Some("/tmp/x"));
        assert_eq!(
            name(whole, b"/data/vartmp/x").as_deref(),
            Some("/var/tmp/x"),
            "the same directory, its protected name"
        );
        assert_eq!(name(whole, b"/data/tmp/a/x").as_deref(), Some("/tmp/a/x"));
        assert_eq!(
            name(whole, b"/data/other/x").as_deref(),
            Some("/data/other/x"),
            "unprotected: the whole mount's name"
        );
        // Through a mount of another namespace (a runtime's, a pod's hostPath): a bind of a directory inside.
        let foreign = Mount {
            id: 999,
            dev: libc::makedev(8, 16),
            root: b"/vartmp/pod".to_vec(),
            mount_point: b"/host-var-tmp".to_vec(),
            fstype: "ext4".into(),
        };
        assert_eq!(name(&foreign, b"/host-var-tmp/x").as_deref(), Some("/var/tmp/pod/x"));
        // Without a rule there, nothing prefers the bind: the most complete mount names it.
        let config = crate::policy::load_str(
            Path::new("t.toml"),
            "[[policy]]\nname = \"d\"\n[[policy.process.match_directories]]\ndir = \"/data/p/\"\n",
        )
        .unwrap();
        let g = Guard::build(config, MountTable::parse(BOUND)).unwrap();
        let (mut s, mut out) = (Vec::new(), Vec::new());
        assert!(g.mounts.canonical_path(g.mounts.by_id(3).unwrap(), b"/var/tmp/x", &mut s, &mut out));
        assert_eq!(out, b"/data/vartmp/x");
    }

    #[test]
    fn open_guard_roots_that_are_mount_roots_get_a_mount_mark_and_the_others_the_remedy() {
        let paths = |v: Vec<OpenMount>| v.into_iter().map(|m| (m.id, m.path)).collect::<Vec<_>>();
        // /tmp a directory of `/`, /var/tmp too: directory marks only.
        let config = crate::policy::load_str(Path::new("t.toml"), DEFAULT).unwrap();
        let shared =
            MountTable::parse(b"1 0 254:0 / / rw - ext4 /dev/vda rw\n3 1 0:31 / /dev/shm rw - tmpfs tmpfs rw\n");
        let g = Guard::build(config, shared).unwrap();
        assert!(g.open_mounts().is_empty());
        assert_eq!(g.open_roots_without_mount(), vec![PathBuf::from("/tmp"), PathBuf::from("/var/tmp")]);
        // /tmp bound onto itself (`/tmp /tmp none bind`): its mount is marked; /var/tmp still is not a mount.
        let config = crate::policy::load_str(Path::new("t.toml"), DEFAULT).unwrap();
        let bound = MountTable::parse(
            b"1 0 254:0 / / rw - ext4 /dev/vda rw\n7 1 254:0 /tmp /tmp rw - ext4 /dev/vda rw\n3 1 0:31 / /dev/shm rw - tmpfs tmpfs rw\n",
        );
        let g = Guard::build(config, bound).unwrap();
        assert_eq!(g.target_for(libc::makedev(254, 0)).unwrap().decides, Decides::Path);
        assert_eq!(paths(g.open_mounts()), vec![(7, PathBuf::from("/tmp"))]);
        assert_eq!(g.open_roots_without_mount(), vec![PathBuf::from("/var/tmp")]);
        // Both bound from a data filesystem; /dev/shm, a directory of `/` there, is no mount.
        let config = crate::policy::load_str(Path::new("t.toml"), DEFAULT).unwrap();
        let g = Guard::build(config, MountTable::parse(BOUND)).unwrap();
        assert_eq!(paths(g.open_mounts()), vec![(4, PathBuf::from("/tmp")), (3, PathBuf::from("/var/tmp"))]);
        assert_eq!(g.open_roots_without_mount(), vec![PathBuf::from("/dev/shm")]);
        // SLES: the btrfs subvolume @/tmp is mounted at /tmp (a mount root); /var/tmp is a directory of @/var.
        let g = btrfs_guard(DEFAULT, false);
        assert_eq!(paths(g.open_mounts()), vec![(91, PathBuf::from("/tmp"))]);
        assert_eq!(g.open_roots_without_mount(), vec![PathBuf::from("/var/tmp")]);
        // The open guard off: nothing.
        let g = guard(&format!("[open_guard]\nenabled = false\n{DEFAULT}"));
        assert!(g.open_mounts().is_empty() && g.open_roots_without_mount().is_empty());
    }

    #[test]
    fn a_rule_drawing_a_line_inside_makes_the_path_decide() {
        let with = |pattern: &str| {
            guard(&format!(
                "{DEFAULT}\n[[policy]]\nname = \"scripts\"\n[[policy.process.match_patterns]]\npattern = \"{pattern}\"\naction = \"Allow\"\n"
            ))
        };
        let g = with("/tmp/*.sh");
        assert_eq!(g.target_for(libc::makedev(0, 30)).unwrap().decides, Decides::Path);
        // A rule elsewhere leaves the tmpfs decided as a whole.
        let g = with("/var/tmp/*.sh");
        assert!(matches!(g.target_for(libc::makedev(0, 30)).unwrap().decides, Decides::Filesystem { .. }));
    }
}
