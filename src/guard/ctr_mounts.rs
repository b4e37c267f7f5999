//! A selected container's own mounts in its protected scope: a tmpfs at `/tmp` or `/dev/shm`, an emptyDir, a
//! bind of a host directory at `/var/tmp`. The marks on the runtime's image layers see none of them, so each
//! needs a mark of its own: found from the container's `/proc/PID/mountinfo`, read from the host.
//!
//! Two kinds, told apart by whether a mount of ours shows the superblock:
//! - private (a tmpfs mounted inside the container's namespace): marked through `/proc/PID/root/<mount point>`
//!   and gone with the container (a superblock takes its marks with it). No host path names its files, so
//!   only the container's policies decide them, by the path the container sees;
//! - shared with the host (a bind of a host directory, podman's `/dev/shm`, which podman mounts on the host):
//!   its filesystem is marked for execs through our own mount of it, and a file reached through the
//!   container's mount is decided by the host's policies on its host path and by the container's on its path
//!   inside the container, the stricter standing.
//!
//! The open guard's directories on the container's rootfs (its `/tmp` where no mount covers it) are marked on
//! the container's overlay itself (`/proc/PID/root/tmp`), never in its layers: the overlay's directory exists
//! from the container's first instruction and keeps its inode across the copy-up that brings it into the upper
//! layer at the first write there, while the upper layer's directory appears only then. Never both: the fd
//! fanotify opens for the daemon on an overlay file opens the layer's real file inside the daemon's own
//! `read(2)`, and an event on a marked layer directory there would wait for that very read (measured on
//! 6.18). The directory tracker follows new subdirectories on the overlay: Linux 6.6+ encodes an overlay's
//! file handles for fanotify even without `nfs_export` (they identify, they do not open).

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::guard::dirtrack::OpenRoot;
use crate::host::mountinfo;
use crate::host::mounts::{MountTable, is_path_prefix};
use crate::host::overlay::{Layer, overlay_layers};
use crate::policy::file_rules::FileMatcher;
use crate::policy::matcher::Matcher;

/// Filesystems that hold no files anyone executes; never marked.
const PSEUDO: &[&str] = &["proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "overlay", "securityfs"];

/// One mount of a container that its policies' protected scope reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMount {
    /// The mount's id (unique on the host while it exists).
    pub id: u64,
    /// Its superblock, as mountinfo reports it.
    pub dev: u64,
    /// Where the container sees it.
    pub mount_point: Vec<u8>,
    pub fstype: String,
    /// No mount of ours shows this superblock: only the container reaches it.
    pub private: bool,
    /// A private mount wholly in protected scope (no rule draws a line inside): the open guard's
    /// FAN_OPEN_PERM goes on its filesystem mark, not on directory marks.
    pub whole: bool,
}

impl ContainerMount {
    /// How `noexecd check` and the log name it: `/tmp:tmpfs:private`.
    pub fn describe(&self) -> String {
        let kind = match (self.private, self.whole) {
            (true, true) => "private,whole",
            (true, false) => "private",
            (false, _) => "host",
        };
        format!("{}:{}:{kind}", String::from_utf8_lossy(&self.mount_point), self.fstype)
    }
}

/// The mounts of a container (its mountinfo `text`) at or below a protected prefix of `matcher`'s rules, or
/// holding one; never its rootfs (the layers' marks see that). `host` is our own mount table.
pub fn find(matcher: &Matcher, text: &[u8], host: &MountTable) -> Vec<ContainerMount> {
    let table = MountTable::parse(text);
    let mut out: Vec<ContainerMount> = Vec::new();
    for rule in matcher.rules() {
        let prefix = rule.target.scope_prefix();
        let holding = table.containing(prefix).into_iter();
        for m in holding.chain(table.below(prefix)) {
            if m.mount_point == b"/" || PSEUDO.contains(&m.fstype.as_str()) || out.iter().any(|o| o.id == m.id) {
                continue;
            }
            let private = host.mounts_of(m.dev).next().is_none();
            let mut below = m.mount_point.clone();
            below.push(b'/');
            let whole = private && matcher.path_independent_below(&below);
            out.push(ContainerMount {
                id: m.id,
                dev: m.dev,
                mount_point: m.mount_point.clone(),
                fstype: m.fstype.clone(),
                private,
                whole,
            });
        }
    }
    out
}

/// The layers of a container's rootfs overlay (its mountinfo `text`), upper first, as the overlay's options
/// name them: absolute paths in the namespace it was mounted in (the host's, for every runtime here). None
/// when `/` is no overlay.
pub fn rootfs_layers(text: &[u8]) -> Vec<Layer> {
    // The last mount at `/` is the one the container sees.
    let root = mountinfo::lines(text).filter(|l| &*l.mount_point == b"/").last();
    overlay_layers(root.as_ref()).into_iter().filter(|l| l.dir.starts_with(b"/")).collect()
}

/// Filesystems the kernel makes (no files anyone writes or reads as data): never under a default file posture.
const KERNEL_FS: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "mqueue",
    "securityfs",
    "debugfs",
    "tracefs",
    "bpf",
    "configfs",
    "fusectl",
    "binfmt_misc",
];

/// Where a container's kernel files are: never under a default file posture, whatever is mounted there.
const KERNEL_DIRS: &[&[u8]] = &[b"/proc", b"/sys", b"/dev"];

/// The mount points of a container (its mountinfo `text`) that a default file posture covers: its rootfs and
/// every other mount of files (a tmpfs, a volume, a bind of a host directory, the runtime's `/etc/hosts`),
/// not the kernel's (`/proc`, `/sys`, `/dev` and what is below them, and pseudo filesystems wherever they
/// are). Each once, in the order mountinfo lists them.
pub fn posture_mounts(text: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for line in mountinfo::lines(text) {
        let m = crate::host::mounts::Mount::from_line(&line);
        if KERNEL_FS.contains(&m.fstype.as_str())
            || KERNEL_DIRS.iter().any(|d| is_path_prefix(d, &m.mount_point))
            || out.contains(&m.mount_point)
        {
            continue;
        }
        out.push(m.mount_point);
    }
    out
}

/// The text of `/proc/PID/mountinfo`; `None` when the process is gone.
pub fn mountinfo_of(pid: i32) -> Option<Vec<u8>> {
    if pid <= 0 {
        return None;
    }
    std::fs::read(format!("/proc/{pid}/mountinfo")).ok()
}

/// Reads `/proc/PID/mountinfo` and [`find`]s the mounts in it (none without a `matcher`: a container only
/// file rules select), with its rootfs layers; nothing when the process is gone.
pub fn of_process(matcher: Option<&Matcher>, pid: i32, host: &MountTable) -> (Vec<ContainerMount>, Vec<Layer>) {
    match mountinfo_of(pid) {
        Some(text) => (matcher.map(|m| find(m, &text, host)).unwrap_or_default(), rootfs_layers(&text)),
        None => (Vec::new(), Vec::new()),
    }
}

fn as_path(bytes: &[u8]) -> &std::path::Path {
    std::path::Path::new(std::ffi::OsStr::from_bytes(bytes))
}

/// `path` inside the container of process `pid`, from the host: `/proc/PID/root/<path>`.
pub fn through_root(pid: i32, path: &[u8]) -> PathBuf {
    let mut p = format!("/proc/{pid}/root").into_bytes();
    if !path.starts_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(path);
    PathBuf::from(std::ffi::OsStr::from_bytes(&p))
}

/// The directories of a container (`pid`) that get the open guard's FAN_OPEN_PERM inode marks: each protected
/// prefix of `matcher`, and each of `mounts` below one, except where a private mount wholly in scope carries
/// FAN_OPEN_PERM on its filesystem mark. Each is seen through `/proc/PID/root`, and marked for execs too
/// (`OpenRoot::exec`); a directory of the rootfs the image does not hold is taken in the upper layer of its
/// overlay (`layers`), anchored at the layer, where it appears at the first write there (not for execs: a
/// layer's filesystem carries its exec mark whole).
pub fn open_roots(matcher: &Matcher, pid: i32, mounts: &[ContainerMount], layers: &[Layer]) -> Vec<OpenRoot> {
    let prefixes: Vec<&[u8]> = matcher.rules().iter().map(|r| r.target.scope_prefix()).collect();
    roots_through(&prefixes, true, pid, mounts, layers)
        .into_iter()
        .map(|root| OpenRoot { exec: root.anchor.is_none(), ..root })
        .collect()
}

/// The directories of a container (`pid`) its file rules reach ([`FileRule::directory`]), marked as the open
/// guard's are and followed into the directories made below them. Always their own marks, also on a private
/// mount wholly in the open guard's scope (the open guard may be off; a second mark of the same group on a
/// file's way raises no second event).
///
/// [`FileRule::directory`]: crate::policy::file_rules::FileRule::directory
pub fn file_roots(files: &FileMatcher, pid: i32, mounts: &[ContainerMount], layers: &[Layer]) -> Vec<OpenRoot> {
    let directories: Vec<&[u8]> = files.rules().iter().map(|r| r.directory()).collect();
    roots_through(&directories, false, pid, mounts, layers)
}

/// Each of `prefixes` and each of `mounts` below one, seen through `/proc/PID/root` or waited for in the
/// upper layer (see [`open_roots`]); `skip_whole`: not those a private mount wholly in scope covers.
fn roots_through(
    prefixes: &[&[u8]],
    skip_whole: bool,
    pid: i32,
    mounts: &[ContainerMount],
    layers: &[Layer],
) -> Vec<OpenRoot> {
    let mut roots: Vec<OpenRoot> = Vec::new();
    if pid <= 0 {
        return roots;
    }
    let covered = |path: &[u8]| skip_whole && mounts.iter().any(|m| m.whole && is_path_prefix(&m.mount_point, path));
    let on_rootfs = |path: &[u8]| !mounts.iter().any(|m| is_path_prefix(&m.mount_point, path));
    let layers: Vec<&Layer> =
        layers.iter().filter(|l| std::fs::symlink_metadata(as_path(&l.dir)).is_ok_and(|m| m.is_dir())).collect();
    let mut add = |path: &[u8]| {
        let path = path.strip_suffix(b"/").unwrap_or(path);
        if path.is_empty() || covered(path) {
            return;
        }
        let mut found = Vec::new();
        let overlay = through_root(pid, path);
        if !on_rootfs(path) || !layers.iter().any(|l| l.upper) || overlay.is_dir() {
            // The overlay's own directory, never its layers' as well: the fd of an event on an overlay file
            // opens the layer's real file in the reader's own read(2), whose event on a marked layer
            // directory would wait for that very reader.
            found.push(OpenRoot::from(overlay));
        } else {
            // No such directory in the image: it appears in the upper layer at the first write there.
            for layer in layers.iter().filter(|l| l.upper) {
                let dir = layer.dir.strip_suffix(b"/").unwrap_or(&layer.dir);
                let full = as_path(&[dir, path].concat()).to_path_buf();
                found.push(OpenRoot { path: full, anchor: Some(as_path(dir).to_path_buf()), exec: false });
            }
        }
        for root in found {
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
    };
    for prefix in prefixes {
        add(prefix);
    }
    for m in mounts {
        if prefixes.iter().any(|p| is_path_prefix(p, &m.mount_point)) {
            add(&m.mount_point);
        }
    }
    roots
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A podman container started with `--tmpfs /tmp -v /srv/data:/var/tmp`: its own /dev and /dev/shm,
    /// podman's shm (a tmpfs the host shows at podman's storage) and the bind of the host's /srv/data.
    const CONTAINER: &[u8] = b"\
500 400 0:90 / / rw - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
501 500 0:91 / /proc rw - proc proc rw
502 500 0:92 / /dev rw - tmpfs tmpfs rw
503 502 0:93 / /dev/shm rw - tmpfs shm rw
504 500 0:94 / /tmp rw - tmpfs tmpfs rw
505 500 8:1 /srv/data /var/tmp rw - ext4 /dev/sda1 rw
506 504 0:95 / /tmp/deep rw - tmpfs tmpfs rw
";
    const HOST: &[u8] = b"\
1 0 8:1 / / rw - ext4 /dev/sda1 rw
2 1 0:93 / /var/lib/containers/storage/overlay-containers/c/userdata/shm rw - tmpfs shm rw
";

    fn matcher(rules: &str) -> Matcher {
        let text = format!("[[policy]]\nname = \"c\"\n[policy.selector]\n{rules}");
        let config = crate::policy::load_str(Path::new("t.toml"), &text).unwrap();
        config.container_matcher(&[0])
    }

    const KSP: &str = "[[policy.process.match_patterns]]\npattern = \"/tmp/*\"\n\
                       [[policy.process.match_patterns]]\npattern = \"/var/tmp/*\"\n\
                       [[policy.process.match_directories]]\ndir = \"/dev/shm/\"\nrecursive = true\n";

    #[test]
    fn a_default_file_posture_covers_every_mount_of_files_and_none_of_the_kernels() {
        let got: Vec<String> =
            posture_mounts(CONTAINER).iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect();
        assert_eq!(got, ["/", "/tmp", "/var/tmp", "/tmp/deep"], "not /proc, /dev, /dev/shm");
        let hosts = b"600 0 0:90 / / rw - overlay overlay rw\n601 600 8:1 /c/hosts /etc/hosts rw - ext4 /dev/sda1 rw\n\
                      602 600 0:91 / /sys rw - sysfs sysfs rw\n603 602 0:92 / /sys/fs/cgroup rw - cgroup2 cgroup rw\n";
        let got: Vec<String> = posture_mounts(hosts).iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect();
        assert_eq!(got, ["/", "/etc/hosts"]);
    }

    #[test]
    fn the_mounts_in_protected_scope_and_how_each_is_marked() {
        let m = matcher(KSP);
        let found = find(&m, CONTAINER, &MountTable::parse(HOST));
        let mut got: Vec<String> = found.iter().map(ContainerMount::describe).collect();
        got.sort();
        // /dev holds /dev/shm/ only through the deeper mount, the rootfs and /proc are never marked; the
        // pattern /tmp/* draws a line inside /tmp (its subdirectories are not in scope): not whole.
        assert_eq!(got, ["/dev/shm:tmpfs:host", "/tmp/deep:tmpfs:private", "/tmp:tmpfs:private", "/var/tmp:ext4:host"]);
        // The open guard: directories where no filesystem mark carries FAN_OPEN_PERM.
        let mut roots = paths(open_roots(&m, 7, &found, &[]));
        roots.sort();
        let want: Vec<PathBuf> =
            ["/proc/7/root/dev/shm", "/proc/7/root/tmp", "/proc/7/root/tmp/deep", "/proc/7/root/var/tmp"]
                .iter()
                .map(PathBuf::from)
                .collect();
        assert_eq!(roots, want);
    }

    #[test]
    fn a_private_tmpfs_wholly_in_scope_is_watched_by_its_filesystem_mark() {
        let m = matcher("[[policy.process.match_directories]]\ndir = \"/tmp/\"\nrecursive = true\n");
        let found = find(&m, CONTAINER, &MountTable::parse(HOST));
        let mut got: Vec<String> = found.iter().map(ContainerMount::describe).collect();
        got.sort();
        assert_eq!(got, ["/tmp/deep:tmpfs:private,whole", "/tmp:tmpfs:private,whole"]);
        assert!(open_roots(&m, 7, &found, &[]).is_empty());
        // Without a tmpfs there, /tmp is a directory of the rootfs: its directory marks.
        let plain = b"500 400 0:90 / / rw - overlay overlay rw\n";
        let none = find(&m, plain, &MountTable::parse(HOST));
        assert!(none.is_empty());
        assert_eq!(paths(open_roots(&m, 7, &none, &[])), vec![PathBuf::from("/proc/7/root/tmp")]);
        assert!(open_roots(&m, 0, &none, &[]).is_empty(), "no pid, no roots");
    }

    fn paths(roots: Vec<OpenRoot>) -> Vec<PathBuf> {
        roots.into_iter().map(|r| r.path).collect()
    }

    #[test]
    fn a_rootfs_directory_is_marked_on_the_overlay_never_in_its_layers() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["upper", "lower1/tmp/baked", "lower2"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let text = format!(
            "500 400 0:90 / / rw - overlay overlay rw,lowerdir={d}/lower1:{d}/lower2:rel/l,upperdir={d}/upper,workdir={d}/w\n\
             501 500 0:91 / /proc rw - proc proc rw\n",
            d = d.display()
        );
        let layers = rootfs_layers(text.as_bytes());
        assert_eq!(layers.len(), 3, "the relative layer is left out: {layers:?}");
        assert!(layers.first().is_some_and(|l| l.upper));
        let m = matcher("[[policy.process.match_patterns]]\npattern = \"/tmp/*\"\n");
        // The container's /tmp exists (this process's root stands for the container's): the overlay's own
        // directory, whose inode outlives the copy-up; none of the layers.
        let me = i32::try_from(std::process::id()).unwrap();
        assert_eq!(paths(open_roots(&m, me, &[], &layers)), vec![PathBuf::from(format!("/proc/{me}/root/tmp"))]);
        // No such directory in the image (a process that has none stands for it): the upper layer's, waited
        // for at the layer.
        let none = i32::MAX;
        let want = vec![OpenRoot { path: d.join("upper/tmp"), anchor: Some(d.join("upper")), exec: false }];
        assert_eq!(open_roots(&m, none, &[], &layers), want);
        // A tmpfs of the container's own at /tmp: through the container's root, as before.
        let tmpfs = find(
            &m,
            b"500 400 0:90 / / rw - overlay overlay rw\n504 500 0:94 / /tmp rw - tmpfs tmpfs rw\n",
            &MountTable::parse(HOST),
        );
        assert_eq!(paths(open_roots(&m, 7, &tmpfs, &layers)), vec![PathBuf::from("/proc/7/root/tmp")]);
        assert!(rootfs_layers(b"1 0 8:1 / / rw - ext4 /dev/sda1 rw\n").is_empty(), "no overlay at /");
    }
}
