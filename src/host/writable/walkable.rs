//! Which mounts the walk enters: the filesystems that can hold a file a user wrote and runs, each walked once
//! from one of its mounts.

use crate::host::mountinfo;
use crate::host::mounts::is_path_prefix;

/// One mountinfo line, as far as choosing what to walk needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountLine {
    pub dev: u64,
    pub root: Vec<u8>,
    pub mount_point: Vec<u8>,
    pub fstype: String,
    pub read_only: bool,
    pub noexec: bool,
}

/// The lines of `/proc/self/mountinfo` text, with the mount and superblock flags `MountTable` does not keep.
pub fn parse_mountinfo(text: &[u8]) -> Vec<MountLine> {
    mountinfo::lines(text)
        .map(|l| MountLine {
            dev: l.dev(),
            root: l.root.to_vec(),
            mount_point: l.mount_point.to_vec(),
            fstype: String::from_utf8_lossy(&l.fstype).into_owned(),
            read_only: l.has_option(b"ro") || l.has_super_option(b"ro"),
            noexec: l.has_option(b"noexec"),
        })
        .collect()
}

/// Filesystems that cannot hold a file a user wrote and runs, or that are kernel interfaces: not walked, and
/// nothing mounted below them either (a tmpfs under /sys/fs/cgroup, /proc/sys/fs/binfmt_misc). `autofs`:
/// reading it would mount what it stands for. `mqueue`: its files are message queues (write(2) fails).
/// `hugetlbfs`: files are huge-page mappings, not readable programs.
const VIRTUAL: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "bpf",
    "tracefs",
    "debugfs",
    "securityfs",
    "pstore",
    "configfs",
    "autofs",
    "devpts",
    "mqueue",
    "hugetlbfs",
    "fusectl",
    "binfmt_misc",
    "efivarfs",
    "rpc_pipefs",
    "nfsd",
    "nsfs",
    "selinuxfs",
    "smackfs",
];

/// Filesystems of another machine, or shared between machines: not walked (slow, may hang, and another
/// host's permissions). Every `fuse.*` (sshfs, rclone, gvfsd-fuse, lxcfs, ...) counts: its server may be
/// remote, slow or hostile; `fuseblk` (ntfs-3g, exfat on a local disk) is walked.
const NETWORK: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ncpfs",
    "9p",
    "virtiofs",
    "vboxsf",
    "drvfs",
    "afs",
    "ceph",
    "glusterfs",
    "lustre",
    "gpfs",
    "ocfs2",
    "gfs2",
    "davfs",
    "fuse",
];

/// Why a mount is not walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    Virtual,
    Network,
    ReadOnly,
    /// Below a virtual or network mount.
    Inside,
    /// Another mount at the same place hides it.
    Hidden,
    /// A bind mount of part of a filesystem that is walked elsewhere.
    Bind,
}

fn kind(fstype: &str) -> Option<Skip> {
    if VIRTUAL.contains(&fstype) {
        Some(Skip::Virtual)
    } else if NETWORK.contains(&fstype) || fstype.starts_with("fuse.") {
        Some(Skip::Network)
    } else {
        None
    }
}

/// For each mount, walked (`None`) or why not. Over-mounted mounts are hidden by the last one at their mount
/// point; of the mounts of one filesystem, one whose root lies inside another walked one's root is a bind of
/// what is walked already (btrfs subvolumes, with disjoint roots, are each walked).
pub fn choose(mounts: &[MountLine]) -> Vec<Option<Skip>> {
    let mut out: Vec<Option<Skip>> = vec![None; mounts.len()];
    for (i, m) in mounts.iter().enumerate() {
        let hidden = mounts.iter().skip(i + 1).any(|later| later.mount_point == m.mount_point);
        let skip = if hidden {
            Some(Skip::Hidden)
        } else if let Some(k) = kind(&m.fstype) {
            Some(k)
        } else if m.read_only {
            Some(Skip::ReadOnly)
        } else {
            None
        };
        if let Some(slot) = out.get_mut(i) {
            *slot = skip;
        }
    }
    // Inside a virtual or network mount that is in sight.
    let blocking: Vec<&[u8]> = mounts
        .iter()
        .zip(&out)
        .filter(|(_, s)| matches!(s, Some(Skip::Virtual | Skip::Network)))
        .map(|(m, _)| m.mount_point.as_slice())
        .collect();
    for (m, slot) in mounts.iter().zip(out.iter_mut()) {
        if slot.is_none()
            && blocking.iter().any(|b| *b != m.mount_point.as_slice() && is_path_prefix(b, &m.mount_point))
        {
            *slot = Some(Skip::Inside);
        }
    }
    // Binds: the same filesystem, a root inside another candidate's root.
    let candidates: Vec<usize> = (0..mounts.len()).filter(|&i| out.get(i).is_some_and(Option::is_none)).collect();
    for &i in &candidates {
        let Some(m) = mounts.get(i) else { continue };
        let covered = candidates.iter().filter(|&&j| j != i).filter_map(|&j| mounts.get(j)).any(|n| {
            n.dev == m.dev
                && is_path_prefix(&n.root, &m.root)
                && (n.root.len() < m.root.len()
                    || (n.root == m.root
                        && (n.mount_point.len(), &n.mount_point) < (m.mount_point.len(), &m.mount_point)))
        });
        if covered && let Some(slot) = out.get_mut(i) {
            *slot = Some(Skip::Bind);
        }
    }
    out
}
