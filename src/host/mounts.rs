//! The mount table (`/proc/self/mountinfo`) and the one question the decision path asks of it: where does a
//! file, opened through some mount, sit in our own namespace? Bind mounts, other mount namespaces and
//! PrivateTmp all show a file under another name; mapping through the filesystem's own root gives one
//! canonical path per file, so a policy written for `/tmp/` holds whatever name the exec used.
//!
//! btrfs: every subvolume of one filesystem shares its superblock (one mountinfo `major:minor` for all its
//! mounts, and one filesystem mark covers them all), but `stat`/`statx` of a file report the anonymous device
//! of its subvolume (a different one per subvolume, the top level's included). A subvolume mounted with
//! `subvol=` shows in mountinfo with its path from the top level as root (`/@/tmp`) and the subvolume in the
//! super options (`subvol=/@/tmp`; a bind of a directory inside shows the subvolume that holds it). A file is
//! named through a mount of its own subvolume where one exists: with the top level also mounted (snapper,
//! btrbk), `/.top/@/tmp/x` is `/tmp/x`, the name the system and its policy use.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::mountinfo;
use super::overlay::{self, Layer};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub id: u64,
    /// `makedev(major, minor)` of the filesystem, as mountinfo reports it.
    pub dev: u64,
    /// The directory of the filesystem that is mounted here (`/` unless a bind mount of a subtree).
    pub root: Vec<u8>,
    pub mount_point: Vec<u8>,
    pub fstype: String,
}

impl Mount {
    pub fn from_line(line: &mountinfo::Line<'_>) -> Self {
        Self {
            id: line.id,
            dev: line.dev(),
            root: line.root.to_vec(),
            mount_point: line.mount_point.to_vec(),
            fstype: String::from_utf8_lossy(&line.fstype).into_owned(),
        }
    }

    pub fn mount_point_path(&self) -> PathBuf {
        PathBuf::from(std::ffi::OsStr::from_bytes(&self.mount_point))
    }
}

/// A parsed mount table with the indexes the decision path uses.
#[derive(Debug, Default, Clone)]
pub struct MountTable {
    mounts: Vec<Mount>,
    by_id: HashMap<u64, usize>,
    /// For each device, its mounts ordered by how close their root is to the filesystem root.
    by_dev: HashMap<u64, Vec<usize>>,
    /// Per mount (same index as `mounts`): the btrfs subvolume holding its root, as `subvol=` names it.
    subvols: Vec<Option<Vec<u8>>>,
    /// Per mount (same index as `mounts`): whether it gives a protected directory its name (see
    /// [`prefer`](Self::prefer)).
    preferred: Vec<bool>,
    /// The layer directories of the overlays mounted in this namespace (see `overlay`).
    overlay_layers: Vec<Layer>,
}

impl MountTable {
    pub fn read_self() -> std::io::Result<(Vec<u8>, Self)> {
        let raw = std::fs::read("/proc/self/mountinfo")?;
        let table = Self::parse(&raw);
        Ok((raw, table))
    }

    pub fn parse(text: &[u8]) -> Self {
        let lines: Vec<mountinfo::Line<'_>> = mountinfo::lines(text).collect();
        let (mounts, subvols) = lines.iter().map(|l| (Mount::from_line(l), btrfs_subvol(l))).unzip();
        let overlay_layers = overlay::overlay_layers(&lines);
        Self { overlay_layers, subvols, ..Self::from_mounts(mounts) }
    }

    pub fn from_mounts(mounts: Vec<Mount>) -> Self {
        let by_id = mounts.iter().enumerate().map(|(i, m)| (m.id, i)).collect();
        let mut by_dev: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, m) in mounts.iter().enumerate() {
            by_dev.entry(m.dev).or_default().push(i);
        }
        for list in by_dev.values_mut() {
            list.sort_by_key(|&i| mounts.get(i).map(|m| (m.root.len(), m.mount_point.len())));
        }
        let subvols = vec![None; mounts.len()];
        let preferred = vec![false; mounts.len()];
        Self { mounts, by_id, by_dev, subvols, preferred, overlay_layers: Vec::new() }
    }

    /// Names what mount `id` shows through it before any other mount of its filesystem (a btrfs subvolume's
    /// own mount aside): it is how a protected directory is named. A directory bound from elsewhere (`/var/tmp`
    /// a bind of a directory of a filesystem also mounted whole at `/data`) then has one name, the protected
    /// one, whichever mount or namespace a file of it is reached through.
    pub fn prefer(&mut self, id: u64) {
        if let Some(&i) = self.by_id.get(&id)
            && let Some(p) = self.preferred.get_mut(i)
        {
            *p = true;
        }
    }

    /// Whether some mount of this namespace shows the file or directory at `fs_path` of filesystem `dev` (its
    /// path from the filesystem's root, btrfs: its top level): its root is a path prefix of it.
    pub fn shows(&self, dev: u64, fs_path: &[u8]) -> bool {
        self.mounts_of(dev).any(|m| is_path_prefix(&m.root, fs_path))
    }

    /// Writes into `out` the path from its filesystem's root of a file that the kernel named `raw` when it
    /// was reached through mount `via` (of any namespace): the mount's root within the filesystem (mountinfo's
    /// fourth field) joined with the path relative to the mount. False when `raw` is not below `via`.
    pub fn path_in_filesystem(via: &Mount, raw: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(rest) = strip_path_prefix(&via.mount_point, raw) else {
            return false;
        };
        out.clear();
        out.extend_from_slice(trim_slash(&via.root));
        out.extend_from_slice(rest);
        if out.is_empty() {
            out.push(b'/');
        }
        true
    }

    pub fn overlay_layers(&self) -> &[Layer] {
        &self.overlay_layers
    }

    pub fn by_id(&self, id: u64) -> Option<&Mount> {
        self.by_id.get(&id).and_then(|&i| self.mounts.get(i))
    }

    /// The mount through which `path` is reached in this namespace: the longest mount point that is a
    /// path prefix of it, the last mounted on ties (it hides the ones below).
    pub fn containing(&self, path: &[u8]) -> Option<&Mount> {
        let mut best: Option<&Mount> = None;
        for m in &self.mounts {
            if is_path_prefix(&m.mount_point, path) && best.is_none_or(|b| m.mount_point.len() >= b.mount_point.len()) {
                best = Some(m);
            }
        }
        best
    }

    /// Mounts whose mount point lies strictly below `dir`.
    pub fn below<'a>(&'a self, dir: &'a [u8]) -> impl Iterator<Item = &'a Mount> + 'a {
        self.mounts
            .iter()
            .filter(move |m| m.mount_point.len() > trim_slash(dir).len() && is_path_prefix(dir, &m.mount_point))
    }

    /// The mount that shows the largest part of filesystem `dev` in this namespace (the smallest root).
    pub fn primary(&self, dev: u64) -> Option<&Mount> {
        self.by_dev.get(&dev)?.first().and_then(|&i| self.mounts.get(i))
    }

    /// Every mount of filesystem (superblock) `dev` in this namespace, the most complete first.
    pub fn mounts_of(&self, dev: u64) -> impl Iterator<Item = &Mount> + '_ {
        self.by_dev.get(&dev).into_iter().flatten().filter_map(|&i| self.mounts.get(i))
    }

    /// The mount whose directory names every file of filesystem `dev` canonically, if there is one: its most
    /// complete mount shows the whole filesystem (root `/`), and no mount shows another btrfs subvolume
    /// (whose files are named through that mount instead, see [`canonical_path`](Self::canonical_path)).
    /// Only such a filesystem can be decided as a whole.
    pub fn whole(&self, dev: u64) -> Option<&Mount> {
        let list = self.by_dev.get(&dev)?;
        let &first = list.first()?;
        let primary = self.mounts.get(first)?;
        let subvol = self.subvols.get(first)?;
        let one_subvolume = list.iter().all(|&i| self.subvols.get(i).is_some_and(|s| s == subvol));
        (primary.root == b"/" && one_subvolume).then_some(primary)
    }

    /// The btrfs subvolume that holds mount `i`'s root, as deep as a path prefix of `fs_path` (0 elsewhere).
    fn subvol_depth(&self, i: usize, fs_path: &[u8]) -> usize {
        match self.subvols.get(i) {
            Some(Some(s)) if is_path_prefix(s, fs_path) => trim_slash(s).len(),
            _ => 0,
        }
    }

    /// Writes into `out` the canonical name of a file that the kernel named `raw` when it was reached through
    /// mount `via`: its place under the mount of its filesystem that shows it in this namespace, a mount of
    /// its own btrfs subvolume before any other, then one that names a protected directory
    /// ([`prefer`](Self::prefer)), then the most complete one. Returns false when the file is not visible in
    /// this namespace or `raw` is not under `via`.
    pub fn canonical_path(&self, via: &Mount, raw: &[u8], scratch: &mut Vec<u8>, out: &mut Vec<u8>) -> bool {
        if strip_path_prefix(&via.mount_point, raw).is_none() {
            return false;
        }
        out.clear();
        let Some(list) = self.by_dev.get(&via.dev) else {
            return false;
        };
        // The common case: the filesystem is mounted once, and that is the mount the file came through.
        if let [only] = list.as_slice()
            && self.mounts.get(*only).is_some_and(|m| m.id == via.id && m.root == via.root)
        {
            out.extend_from_slice(raw);
            return true;
        }
        // The file's path from the filesystem's root (btrfs: its top level).
        if !Self::path_in_filesystem(via, raw, scratch) {
            return false;
        }
        // Among the mounts that show it: the deepest subvolume, then a protected directory's name, then the
        // most complete (the list's order).
        let mut best: Option<((usize, bool), &Mount)> = None;
        for &i in list {
            let Some(m) = self.mounts.get(i) else { continue };
            if !is_path_prefix(&m.root, scratch) {
                continue;
            }
            let rank = (self.subvol_depth(i, scratch), self.preferred.get(i).copied().unwrap_or(false));
            if best.is_none_or(|(r, _)| rank > r) {
                best = Some((rank, m));
            }
        }
        let Some((_, m)) = best else {
            return false;
        };
        let Some(inner) = strip_path_prefix(&m.root, scratch) else {
            return false;
        };
        out.extend_from_slice(trim_slash(&m.mount_point));
        out.extend_from_slice(inner);
        if out.is_empty() {
            out.push(b'/');
        }
        true
    }
}

/// Finds mount `id` in another process's namespace (`/proc/PID/mountinfo`, read through `procs` into a buffer
/// the caller keeps), for a file reached through a mount we cannot see. Off the fast path: only for events
/// from other mount namespaces whose mount the decision thread does not remember yet.
pub fn foreign_mount_with(procs: &crate::sys::ProcDirs, pid: i32, id: u64, buf: &mut Vec<u8>) -> Option<Mount> {
    procs.read_pid_file(pid, b"mountinfo", buf).ok()?;
    mountinfo::lines(buf).find(|l| l.id == id).map(|l| Mount::from_line(&l))
}

/// The btrfs subvolume that holds a mount's root: `subvol=` of its super options.
fn btrfs_subvol(line: &mountinfo::Line<'_>) -> Option<Vec<u8>> {
    (&*line.fstype == b"btrfs").then(|| line.super_option(b"subvol")).flatten().map(|s| s.into_owned())
}

fn trim_slash(p: &[u8]) -> &[u8] {
    p.strip_suffix(b"/").unwrap_or(p)
}

/// Whether `prefix` names `path` or a directory above it (component-wise: `/tm` is not a prefix of `/tmp`).
pub fn is_path_prefix(prefix: &[u8], path: &[u8]) -> bool {
    strip_path_prefix(prefix, path).is_some()
}

/// `path` relative to `prefix`, starting with `/` (or empty when they are equal), if `prefix` is above it.
pub fn strip_path_prefix<'p>(prefix: &[u8], path: &'p [u8]) -> Option<&'p [u8]> {
    let prefix = trim_slash(prefix);
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.first() == Some(&b'/')).then_some(rest)
}

/// The `st_dev` of a path, for matching mountinfo's device with what statx reports for event fds.
pub fn device_of(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| m.dev())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_foreign_mount_is_found_alike_through_the_proc_dirs() {
        let me = std::process::id() as i32;
        let (_, table) = MountTable::read_self().unwrap();
        let root = table.containing(b"/").unwrap().clone();
        let mut buf = Vec::new();
        let procs = crate::sys::ProcDirs::open();
        assert_eq!(foreign_mount_with(&procs, me, root.id, &mut buf).as_ref(), table.by_id(root.id));
        assert_eq!(foreign_mount_with(&procs, me, root.id, &mut buf).map(|m| m.mount_point), Some(b"/".to_vec()));
        assert_eq!(foreign_mount_with(&procs, me, u64::MAX, &mut buf), None);
    }

    const SAMPLE: &[u8] = b"\
1 0 254:0 / / rw,relatime - ext4 /dev/vda rw
2 1 0:30 / /tmp rw - tmpfs tmpfs rw
3 1 254:0 /tmp /mnt/bind rw - ext4 /dev/vda rw
4 1 0:30 /sub /srv/sub rw shared:1 - tmpfs tmpfs rw
5 1 254:0 /home /with\\040space rw - ext4 /dev/vda rw
";

    fn table() -> MountTable {
        MountTable::parse(SAMPLE)
    }

    #[test]
    fn parses_fields_and_escapes() {
        let t = table();
        assert_eq!(t.mounts.len(), 5);
        let m = t.by_id(5).unwrap();
        assert_eq!(m.mount_point, b"/with space");
        assert_eq!(m.root, b"/home");
        assert_eq!(m.fstype, "ext4");
        assert_eq!(m.dev, libc::makedev(254, 0));
        assert_eq!(t.by_id(4).unwrap().fstype, "tmpfs");
    }

    #[test]
    fn containing_prefers_longest_component_prefix() {
        let t = table();
        assert_eq!(t.containing(b"/tmp/x").unwrap().id, 2);
        assert_eq!(t.containing(b"/tmpfoo/x").unwrap().id, 1);
        assert_eq!(t.containing(b"/tmp").unwrap().id, 2);
        assert_eq!(t.containing(b"/var/tmp/").unwrap().id, 1);
    }

    #[test]
    fn below_lists_nested_mounts_only() {
        let t = table();
        let ids: Vec<u64> = t.below(b"/srv/").map(|m| m.id).collect();
        assert_eq!(ids, vec![4]);
        assert_eq!(t.below(b"/tmp/").count(), 0);
    }

    #[test]
    fn canonical_maps_bind_mounts_to_the_primary_mount() {
        let t = table();
        let (mut s, mut out) = (Vec::new(), Vec::new());
        assert!(t.canonical_path(t.by_id(3).unwrap(), b"/mnt/bind/x", &mut s, &mut out));
        assert_eq!(out, b"/tmp/x");
        assert!(t.canonical_path(t.by_id(4).unwrap(), b"/srv/sub/a/b", &mut s, &mut out));
        assert_eq!(out, b"/tmp/sub/a/b");
        assert!(t.canonical_path(t.by_id(1).unwrap(), b"/usr/bin/true", &mut s, &mut out));
        assert_eq!(out, b"/usr/bin/true");
        assert!(!t.canonical_path(t.by_id(3).unwrap(), b"/elsewhere/x", &mut s, &mut out));
    }

    #[test]
    fn foreign_namespace_mount_maps_through_its_root() {
        // A PrivateTmp-style bind: the service sees /tmp, which is /tmp/systemd-private-1/tmp on the root fs.
        let t = table();
        let via = Mount {
            id: 99,
            dev: libc::makedev(254, 0),
            root: b"/tmp/systemd-private-1/tmp".to_vec(),
            mount_point: b"/tmp".to_vec(),
            fstype: "ext4".into(),
        };
        let (mut s, mut out) = (Vec::new(), Vec::new());
        assert!(t.canonical_path(&via, b"/tmp/payload", &mut s, &mut out));
        assert_eq!(out, b"/tmp/systemd-private-1/tmp/payload");
    }

    /// SLES/openSUSE: subvolumes `@`, `@/tmp`, `@/var` mounted with `subvol=`, as mountinfo shows them on
    /// Linux 6.18 (one `major:minor` for every mount of the filesystem), and the top level (subvolid=5) mounted
    /// at `/.top` (snapper, btrbk) in `BTRFS_TOP`.
    const BTRFS: &[u8] = b"\
90 1 0:42 /@ / rw,relatime - btrfs /dev/loop0 rw,space_cache=v2,subvolid=256,subvol=/@
91 90 0:42 /@/tmp /tmp rw,relatime - btrfs /dev/loop0 rw,space_cache=v2,subvolid=257,subvol=/@/tmp
92 90 0:42 /@/var /var rw,relatime - btrfs /dev/loop0 rw,space_cache=v2,subvolid=258,subvol=/@/var
";
    const BTRFS_TOP: &[u8] =
        b"93 90 0:42 / /.top rw,relatime - btrfs /dev/loop0 rw,space_cache=v2,subvolid=5,subvol=/\n";

    fn btrfs(top: bool) -> MountTable {
        let mut text = BTRFS.to_vec();
        if top {
            text.extend_from_slice(BTRFS_TOP);
        }
        MountTable::parse(&text)
    }

    fn canonical(t: &MountTable, via: u64, raw: &[u8]) -> Option<String> {
        let (mut s, mut out) = (Vec::new(), Vec::new());
        t.canonical_path(t.by_id(via).unwrap(), raw, &mut s, &mut out).then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn btrfs_subvolumes_are_read_from_the_super_options() {
        let t = btrfs(true);
        assert_eq!(
            t.subvols,
            vec![Some(b"/@".to_vec()), Some(b"/@/tmp".to_vec()), Some(b"/@/var".to_vec()), Some(b"/".to_vec())]
        );
        assert!(table().subvols.iter().all(Option::is_none), "only btrfs has subvolumes");
        let escaped = MountTable::parse(b"7 1 0:50 /a\\040b /x rw - btrfs /dev/sda rw,subvolid=300,subvol=/a\\040b\n");
        assert_eq!(escaped.subvols, vec![Some(b"/a b".to_vec())]);
    }

    #[test]
    fn btrfs_files_are_named_through_their_own_subvolume_whatever_mount_they_came_through() {
        for top in [false, true] {
            let t = btrfs(top);
            assert_eq!(canonical(&t, 91, b"/tmp/x").as_deref(), Some("/tmp/x"), "top level mounted: {top}");
            assert_eq!(canonical(&t, 92, b"/var/tmp/x").as_deref(), Some("/var/tmp/x"));
            assert_eq!(canonical(&t, 90, b"/usr/bin/x").as_deref(), Some("/usr/bin/x"));
            // Through @'s mount, below the directory where @/tmp is nested (hidden here by its own mount).
            assert_eq!(canonical(&t, 90, b"/tmp/x").as_deref(), Some("/tmp/x"));
        }
        let t = btrfs(true);
        assert_eq!(
            canonical(&t, 93, b"/.top/@/tmp/x").as_deref(),
            Some("/tmp/x"),
            "the top level names nothing of @/tmp"
        );
        assert_eq!(canonical(&t, 93, b"/.top/@/var/tmp/x").as_deref(), Some("/var/tmp/x"));
        assert_eq!(canonical(&t, 93, b"/.top/@/usr/bin/x").as_deref(), Some("/usr/bin/x"));
        assert_eq!(canonical(&t, 93, b"/.top/other/x").as_deref(), Some("/.top/other/x"), "only in the top level");
        // A bind of a directory inside @/tmp (its super options name @/tmp) maps to @/tmp's mount.
        let bind = Mount {
            id: 99,
            dev: libc::makedev(0, 42),
            root: b"/@/tmp/svc".to_vec(),
            mount_point: b"/srv/svc".to_vec(),
            fstype: "btrfs".into(),
        };
        let (mut s, mut out) = (Vec::new(), Vec::new());
        assert!(t.canonical_path(&bind, b"/srv/svc/x", &mut s, &mut out));
        assert_eq!(out, b"/tmp/svc/x");
    }

    #[test]
    fn a_filesystem_is_whole_only_when_one_mount_names_all_of_it() {
        let dev = libc::makedev(0, 42);
        assert!(btrfs(false).whole(dev).is_none(), "@ is not the whole filesystem");
        assert!(btrfs(true).whole(dev).is_none(), "the top level is mounted, but @/tmp is named at /tmp");
        let only_top = MountTable::parse(BTRFS_TOP);
        assert_eq!(only_top.whole(dev).map(|m| m.id), Some(93));
        assert_eq!(table().whole(libc::makedev(0, 30)).map(|m| m.id), Some(2), "a tmpfs and a bind of part of it");
        assert_eq!(btrfs(true).mounts_of(dev).map(|m| m.id).collect::<Vec<_>>(), vec![93, 90, 91, 92]);
    }

    #[test]
    fn path_prefix_is_component_wise() {
        assert!(is_path_prefix(b"/", b"/x"));
        assert!(is_path_prefix(b"/tmp/", b"/tmp/x"));
        assert!(is_path_prefix(b"/tmp", b"/tmp"));
        assert!(!is_path_prefix(b"/tmp", b"/tmpx"));
        assert_eq!(strip_path_prefix(b"/", b"/a/b"), Some(&b"/a/b"[..]));
    }
}
