//! Writable places the policy may not name, found for `noexecd check`: directories on local, writable
//! filesystems where a non-root user can create a file — everyone (the "other" bits allow it) or a service
//! account (a user or group of /etc/passwd and /etc/group with an id below 1000, or `nobody`) — and reach
//! it through its parents. Whether a rule protects a directory is the caller's question ([`Cover`]): this
//! stage knows nothing of the policy.
//!
//! The walk only reads directories and stats entries; it never opens a file, never follows a symlink, never
//! enters another mount (each walkable mount is walked from its own mount point) and stops at a depth, an
//! entry count and a time budget. It does not go into a directory it reports, one no candidate writer can
//! search, or one whose whole subtree is covered.

use std::collections::{HashSet, VecDeque};
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::mountinfo;
use super::mounts::is_path_prefix;

/// The overflow id (`nobody`, `nogroup`): unprivileged daemons run as it.
const NOBODY: u32 = 65534;

/// A service account: a system user or group (id 1..=999, as Debian, Ubuntu, Fedora and RHEL allocate them)
/// or `nobody`. Root is not one: root writes everywhere, and the threat model leaves root out.
pub fn is_service_id(id: u32) -> bool {
    (1..1000).contains(&id) || id == NOBODY
}

/// One line of /etc/passwd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// One line of /etc/group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The local account tables, and the service accounts among them with every group each one is in.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    users: Vec<User>,
    groups: Vec<Group>,
    /// Service users: uid and all their gids (primary first).
    service_users: Vec<(u32, Vec<u32>)>,
    /// Service groups' gids.
    service_groups: Vec<u32>,
}

impl Accounts {
    /// Parses passwd and group text by hand (no NSS: accounts from LDAP, sssd or systemd's DynamicUser are
    /// not seen). Comments, NIS `+`/`-` lines and lines that do not parse are skipped.
    pub fn parse(passwd: &str, group: &str) -> Self {
        let fields = |line: &str| -> Option<Vec<String>> {
            let line = line.trim_end_matches('\r');
            if line.is_empty() || line.starts_with('#') || line.starts_with('+') || line.starts_with('-') {
                return None;
            }
            Some(line.split(':').map(str::to_owned).collect())
        };
        let users: Vec<User> = passwd
            .lines()
            .filter_map(fields)
            .filter_map(|f| {
                let mut f = f.into_iter();
                let name = f.next()?;
                let _pw = f.next()?;
                Some(User { name, uid: f.next()?.parse().ok()?, gid: f.next()?.parse().ok()? })
            })
            .collect();
        let groups: Vec<Group> = group
            .lines()
            .filter_map(fields)
            .filter_map(|f| {
                let mut f = f.into_iter();
                let name = f.next()?;
                let _pw = f.next()?;
                let gid = f.next()?.parse().ok()?;
                let members = f.next().unwrap_or_default();
                let members = members.split(',').map(str::trim).filter(|m| !m.is_empty()).map(str::to_owned).collect();
                Some(Group { name, gid, members })
            })
            .collect();
        let mut service_users: Vec<(u32, Vec<u32>)> = Vec::new();
        for u in users.iter().filter(|u| is_service_id(u.uid)) {
            let gids =
                std::iter::once(u.gid).chain(groups.iter().filter(|g| g.members.contains(&u.name)).map(|g| g.gid));
            let slot = match service_users.iter().position(|(uid, _)| *uid == u.uid) {
                Some(i) => i,
                None => {
                    service_users.push((u.uid, Vec::new()));
                    service_users.len() - 1
                }
            };
            if let Some((_, known)) = service_users.get_mut(slot) {
                for g in gids {
                    if !known.contains(&g) {
                        known.push(g);
                    }
                }
            }
        }
        let mut service_groups: Vec<u32> = groups.iter().map(|g| g.gid).filter(|&g| is_service_id(g)).collect();
        service_groups.sort_unstable();
        service_groups.dedup();
        Self { users, groups, service_users, service_groups }
    }

    /// This host's /etc/passwd and /etc/group (empty tables where a file cannot be read).
    pub fn read() -> Self {
        let read = |p: &str| std::fs::read(p).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        Self::parse(&read("/etc/passwd"), &read("/etc/group"))
    }

    /// The first name for `uid`, or the number.
    pub fn user_name(&self, uid: u32) -> String {
        self.users.iter().find(|u| u.uid == uid).map_or_else(|| uid.to_string(), |u| u.name.clone())
    }

    /// The first name for `gid`, or the number.
    pub fn group_name(&self, gid: u32) -> String {
        self.groups.iter().find(|g| g.gid == gid).map_or_else(|| gid.to_string(), |g| g.name.clone())
    }
}

/// What of a directory's inode decides who may write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirStat {
    /// Permission bits with setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

const W: u32 = 0o2;
const X: u32 = 0o1;

impl DirStat {
    /// The rwx bits for a process: the owner's if it is the owner, else the group's if it is in the group,
    /// else the others' (the kernel's order; POSIX ACLs are not read).
    fn bits(&self, uid: Option<u32>, in_group: bool) -> u32 {
        if uid == Some(self.uid) {
            (self.mode >> 6) & 7
        } else if in_group {
            (self.mode >> 3) & 7
        } else {
            self.mode & 7
        }
    }
}

/// Who may still be able to search down to a directory: everyone (the "other" bits of every parent allow
/// it), and the service users and groups whose class allows it. It only shrinks on the way down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    everyone: bool,
    /// Indices into [`Accounts::service_users`].
    users: Vec<usize>,
    /// Indices into [`Accounts::service_groups`].
    groups: Vec<usize>,
}

impl Reach {
    /// Everyone and every service account: the reach of `/`.
    pub fn all(a: &Accounts) -> Self {
        Self {
            everyone: true,
            users: (0..a.service_users.len()).collect(),
            groups: (0..a.service_groups.len()).collect(),
        }
    }

    /// Those of `self` who may search `dir`, so reach what is in it.
    pub fn through(&self, dir: &DirStat, a: &Accounts) -> Self {
        let everyone = self.everyone && dir.bits(None, false) & X != 0;
        let users = self
            .users
            .iter()
            .copied()
            .filter(|&i| {
                a.service_users.get(i).is_some_and(|(uid, gids)| dir.bits(Some(*uid), gids.contains(&dir.gid)) & X != 0)
            })
            .collect();
        let groups = self
            .groups
            .iter()
            .copied()
            .filter(|&i| a.service_groups.get(i).is_some_and(|&gid| dir.bits(None, gid == dir.gid) & X != 0))
            .collect();
        Self { everyone, users, groups }
    }

    pub fn is_empty(&self) -> bool {
        !self.everyone && self.users.is_empty() && self.groups.is_empty()
    }
}

/// Someone other than root who can create a file in a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Writer {
    /// Any local user: the "other" bits give write and search.
    Everyone,
    /// A service user (its uid), as owner or through one of its groups.
    User(u32),
    /// Any process running with this service group (its gid).
    Group(u32),
}

/// Who can create a file in `dir` (write and search permission for their class) among those `reach` says
/// get there. Everyone alone when the "other" bits allow it; else the service users (by uid) and service
/// groups (by gid) that can. A uid or gid that is not a service account is never named: a person may write
/// their own home, which is no finding.
pub fn writers(dir: &DirStat, reach: &Reach, a: &Accounts) -> Vec<Writer> {
    let can = |bits: u32| bits & (W | X) == W | X;
    if reach.everyone && can(dir.bits(None, false)) {
        return vec![Writer::Everyone];
    }
    let mut out: Vec<Writer> = reach
        .users
        .iter()
        .filter_map(|&i| a.service_users.get(i))
        .filter(|(uid, gids)| can(dir.bits(Some(*uid), gids.contains(&dir.gid))))
        .map(|(uid, _)| Writer::User(*uid))
        .collect();
    out.extend(
        reach
            .groups
            .iter()
            .filter_map(|&i| a.service_groups.get(i))
            .filter(|&&gid| can(dir.bits(None, gid == dir.gid)))
            .map(|&gid| Writer::Group(gid)),
    );
    out.sort_unstable();
    out.dedup();
    out
}

/// How the policy treats what a writer could put in a directory (the caller's answer for each directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cover {
    /// A file put in it, or in a subdirectory made in it, would run: a writable directory is reported.
    None,
    /// Such files are blocked, but something below may not be: the walk goes on inside.
    Here,
    /// Every file below is blocked: the walk does not go in.
    Below,
}

/// A writable directory no rule protects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    pub stat: DirStat,
    pub writers: Vec<Writer>,
    pub fstype: String,
    /// On a mount with `noexec`: execve refuses already, an interpreter reading a script does not.
    pub noexec: bool,
}

impl Found {
    /// `writable <dir> mode=<oooo> owner=<user>:<group> by=<writers> fstype=<type> noexec=<yes|no>
    /// cover=<rule>`, tab-separated; `cover=-` when the name is not UTF-8 (TOML cannot name it).
    pub fn line(&self, a: &Accounts) -> String {
        let by: Vec<String> = self
            .writers
            .iter()
            .map(|w| match *w {
                Writer::Everyone => "everyone".to_owned(),
                Writer::User(uid) => format!("user:{}", a.user_name(uid)),
                Writer::Group(gid) => format!("group:{}", a.group_name(gid)),
            })
            .collect();
        let bytes = self.path.as_os_str().as_bytes();
        format!(
            "writable\t{}\tmode={:04o}\towner={}:{}\tby={}\tfstype={}\tnoexec={}\tcover={}",
            shown(bytes),
            self.stat.mode,
            shown(a.user_name(self.stat.uid).as_bytes()),
            shown(a.group_name(self.stat.gid).as_bytes()),
            shown(by.join(",").as_bytes()),
            shown(self.fstype.as_bytes()),
            if self.noexec { "yes" } else { "no" },
            cover_rule(bytes).unwrap_or_else(|| "-".to_owned()),
        )
    }
}

/// A name for a tab-separated line: control characters, backslash and bytes that are not UTF-8 as `\xHH`.
pub fn shown(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_ascii_control() || c == '\\' {
                out.push_str(&format!("\\x{:02x}", u32::from(c)));
            } else if c.is_control() {
                out.push_str(&format!("\\u{{{:04x}}}", u32::from(c)));
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The rule that covers `dir` and all below it, on one line: `dir = "/run/lock/" recursive = true` (the keys
/// of a `[[policy.process.match_directories]]` table). `None` when the name is not UTF-8.
pub fn cover_rule(dir: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(dir).ok()?;
    let mut quoted = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    if !quoted.ends_with('/') {
        quoted.push('/');
    }
    Some(format!("dir = \"{quoted}\" recursive = true"))
}

/// Bounds of the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Path components below `/`: directories deeper than this are not read.
    pub max_depth: usize,
    /// Directory entries read, over all mounts.
    pub max_entries: u64,
    pub budget: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_depth: 16, max_entries: 2_000_000, budget: Duration::from_secs(5) }
    }
}

/// Why the walk stopped before it was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Time,
    Entries,
}

/// What the walk found and what it cost.
#[derive(Debug, Clone)]
pub struct Report {
    /// Sorted by path; no path lies below another.
    pub found: Vec<Found>,
    pub stopped: Option<Stop>,
    /// Mounts walked, directories read, entries seen, directories that could not be read.
    pub mounts: usize,
    pub dirs: u64,
    pub entries: u64,
    pub unreadable: u64,
    pub elapsed: Duration,
    pub limits: Limits,
}

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

/// The walk's bounds and counters, shared by every mount walked.
struct Budget {
    limits: Limits,
    start: Instant,
    stopped: Option<Stop>,
    dirs: u64,
    entries: u64,
    unreadable: u64,
}

impl Budget {
    fn new(limits: Limits) -> Self {
        Self { limits, start: Instant::now(), stopped: None, dirs: 0, entries: 0, unreadable: 0 }
    }

    fn out_of_time(&mut self) -> bool {
        if self.stopped.is_none() && self.start.elapsed() > self.limits.budget {
            self.stopped = Some(Stop::Time);
        }
        self.stopped.is_some()
    }

    /// Counts one directory entry; the clock is read every 4096 (a directory may hold millions).
    fn entry(&mut self) -> bool {
        self.entries += 1;
        if self.stopped.is_none() && self.entries > self.limits.max_entries {
            self.stopped = Some(Stop::Entries);
        }
        if self.entries % 4096 == 0 {
            return self.out_of_time();
        }
        self.stopped.is_some()
    }
}

/// What one tree walk needs besides the budget.
struct Tree<'a> {
    accounts: &'a Accounts,
    /// Every mount point: the walk does not go into one (it is walked on its own, or skipped).
    mount_points: &'a HashSet<Vec<u8>>,
    fstype: &'a str,
    noexec: bool,
}

/// Finds the writable directories no rule protects on this host's local, writable filesystems, as
/// `/proc/self/mountinfo` (`mountinfo`) lists them. `cover(dir, dev)` says how the policy treats files put in
/// directory `dir` of the filesystem `dev` (mountinfo's device).
pub fn find(
    mountinfo: &[u8],
    accounts: &Accounts,
    limits: Limits,
    cover: &mut dyn FnMut(&Path, u64) -> Cover,
) -> Report {
    let mounts = parse_mountinfo(mountinfo);
    let skips = choose(&mounts);
    let mount_points: HashSet<Vec<u8>> = mounts.iter().map(|m| m.mount_point.clone()).collect();
    let mut walk: Vec<&MountLine> = mounts.iter().zip(&skips).filter(|(_, s)| s.is_none()).map(|(m, _)| m).collect();
    walk.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
    let mut budget = Budget::new(limits);
    let mut found: Vec<Found> = Vec::new();
    let mut walked = 0;
    for m in walk {
        if budget.out_of_time() {
            break;
        }
        if found.iter().any(|f| is_path_prefix(f.path.as_os_str().as_bytes(), &m.mount_point)) {
            continue;
        }
        let root = Path::new(OsStr::from_bytes(&m.mount_point));
        let Some(reach) = reach_to(root, accounts) else { continue };
        let tree = Tree { accounts, mount_points: &mount_points, fstype: &m.fstype, noexec: m.noexec };
        walked += 1;
        walk_tree(root, reach, &tree, &mut budget, &mut |dir| cover(dir, m.dev), &mut found);
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Report {
        found,
        stopped: budget.stopped,
        mounts: walked,
        dirs: budget.dirs,
        entries: budget.entries,
        unreadable: budget.unreadable,
        elapsed: budget.start.elapsed(),
        limits,
    }
}

/// Who can search every directory above `path` (`lstat` of each); `None` when one is missing or not a
/// directory.
fn reach_to(path: &Path, a: &Accounts) -> Option<Reach> {
    let mut reach = Reach::all(a);
    for anc in path.ancestors().skip(1).collect::<Vec<_>>().into_iter().rev() {
        let meta = std::fs::symlink_metadata(anc).ok()?;
        if !meta.is_dir() {
            return None;
        }
        reach = reach.through(&DirStat { mode: meta.mode() & 0o7777, uid: meta.uid(), gid: meta.gid() }, a);
    }
    Some(reach)
}

/// One directory waiting to be read: its path, the (dev, ino) its parent saw, who reaches it, its depth.
struct Pending {
    path: PathBuf,
    id: Option<(u64, u64)>,
    reach: Rc<Reach>,
    depth: usize,
}

/// Breadth first from `root` (so a time budget spends itself on the shallow directories first), within
/// one filesystem: reports writable directories `cover` leaves open, into `found`.
fn walk_tree(
    root: &Path,
    reach: Reach,
    tree: &Tree<'_>,
    budget: &mut Budget,
    cover: &mut dyn FnMut(&Path) -> Cover,
    found: &mut Vec<Found>,
) {
    let depth = root.components().count().saturating_sub(1);
    let mut queue = VecDeque::from([Pending { path: root.to_owned(), id: None, reach: Rc::new(reach), depth }]);
    while let Some(p) = queue.pop_front() {
        if budget.out_of_time() {
            return;
        }
        // O_NOFOLLOW and the identity check: a directory swapped for a symlink (or moved) since its parent
        // was read is not followed.
        let Ok(dir) = File::options().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW).open(&p.path)
        else {
            budget.unreadable += 1;
            continue;
        };
        let Ok(meta) = dir.metadata() else { continue };
        if !meta.is_dir() || p.id.is_some_and(|id| id != (meta.dev(), meta.ino())) {
            continue;
        }
        budget.dirs += 1;
        let stat = DirStat { mode: meta.mode() & 0o7777, uid: meta.uid(), gid: meta.gid() };
        let covered = cover(&p.path);
        if covered == Cover::Below {
            continue;
        }
        let who = writers(&stat, &p.reach, tree.accounts);
        if !who.is_empty() && covered == Cover::None {
            found.push(Found { path: p.path, stat, writers: who, fstype: tree.fstype.to_owned(), noexec: tree.noexec });
            continue;
        }
        let inner = p.reach.through(&stat, tree.accounts);
        if inner.is_empty() || p.depth >= budget.limits.max_depth {
            continue;
        }
        let inner = if inner == *p.reach { Rc::clone(&p.reach) } else { Rc::new(inner) };
        // Read through the open descriptor: the directory checked above, whatever its path names now.
        let Ok(entries) = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd())) else {
            budget.unreadable += 1;
            continue;
        };
        let mut children: Vec<(PathBuf, (u64, u64))> = Vec::new();
        for entry in entries {
            if budget.entry() {
                return;
            }
            let Ok(entry) = entry else { break };
            // d_type: no stat for files, and a symlink is never a directory here.
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let child = p.path.join(entry.file_name());
            if tree.mount_points.contains(child.as_os_str().as_bytes()) {
                continue;
            }
            // fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW): the identity the child must still have when opened.
            if let Ok(m) = entry.metadata()
                && m.is_dir()
            {
                children.push((child, (m.dev(), m.ino())));
            }
        }
        children.sort();
        queue.extend(children.into_iter().map(|(path, id)| Pending {
            path,
            id: Some(id),
            reach: Rc::clone(&inner),
            depth: p.depth + 1,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash
# a comment
+nis
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
alice:x:1000:1000::/home/alice:/bin/bash
broken:x:notanumber:1::/:/bin/sh
";
    const GROUP: &str = "\
root:x:0:
daemon:x:1:
adm:x:4:syslog
www-data:x:33:
ssl-cert:x:103:postgres
postgres:x:104:
users:x:100:alice
alice:x:1000:
deploy:x:1001:www-data,alice
nogroup:x:65534:
";

    fn accounts() -> Accounts {
        Accounts::parse(PASSWD, GROUP)
    }

    fn dir(mode: u32, uid: u32, gid: u32) -> DirStat {
        DirStat { mode, uid, gid }
    }

    /// Who can write `d` when every parent lets everyone through.
    fn who(d: DirStat) -> Vec<Writer> {
        let a = accounts();
        writers(&d, &Reach::all(&a), &a)
    }

    #[test]
    fn passwd_and_group_are_parsed_by_hand() {
        let a = accounts();
        assert_eq!(a.users.len(), 6, "comment, NIS and unparsable lines skipped: {:?}", a.users);
        assert_eq!(a.user_name(33), "www-data");
        assert_eq!(a.user_name(4242), "4242");
        assert_eq!(a.group_name(103), "ssl-cert");
        assert_eq!(a.group_name(4242), "4242");
        let uids: Vec<u32> = a.service_users.iter().map(|(u, _)| *u).collect();
        assert_eq!(uids, vec![1, 33, 101, 65534], "root and alice are not service accounts");
        let postgres = a.service_users.iter().find(|(u, _)| *u == 101).unwrap();
        assert_eq!(postgres.1, vec![104, 103], "primary group, then the groups that list it");
        let www = a.service_users.iter().find(|(u, _)| *u == 33).unwrap();
        assert_eq!(www.1, vec![33, 1001], "a person's group that lists a service user");
        assert_eq!(a.service_groups, vec![1, 4, 33, 100, 103, 104, 65534]);
        assert!(is_service_id(1) && is_service_id(999) && is_service_id(65534));
        assert!(!is_service_id(0) && !is_service_id(1000) && !is_service_id(65533));
    }

    #[test]
    fn world_writable_sticky_or_not_is_everyone() {
        assert_eq!(who(dir(0o1777, 0, 0)), vec![Writer::Everyone], "/run/lock, /tmp");
        assert_eq!(who(dir(0o1733, 0, 0)), vec![Writer::Everyone], "/var/lib/php/sessions: wx without r");
        assert_eq!(who(dir(0o0777, 1000, 1000)), vec![Writer::Everyone]);
        assert_eq!(who(dir(0o0772, 0, 0)), vec![], "write without search creates nothing");
        assert_eq!(who(dir(0o0755, 0, 0)), vec![]);
    }

    #[test]
    fn service_owner_and_service_group_are_named() {
        assert_eq!(who(dir(0o0755, 33, 33)), vec![Writer::User(33)], "/var/www owned by www-data");
        assert_eq!(who(dir(0o2775, 101, 104)), vec![Writer::User(101), Writer::Group(104)], "/run/postgresql");
        assert_eq!(who(dir(0o1730, 0, 4)), vec![Writer::Group(4)], "root:adm 1730: group adm");
        assert_eq!(who(dir(0o0555, 33, 33)), vec![], "read-only for its owner too");
        assert_eq!(who(dir(0o0700, 0, 0)), vec![], "root only");
        assert_eq!(who(dir(0o0770, 0, 0)), vec![], "group root is root");
        assert_eq!(who(dir(0o0755, 1000, 1000)), vec![], "a person's own directory");
        assert_eq!(who(dir(0o0755, 4242, 4242)), vec![], "an id no table names");
    }

    #[test]
    fn a_persons_group_with_service_members_names_those_members() {
        // root:deploy 0775, deploy (gid 1001) lists www-data and alice: only www-data counts.
        assert_eq!(who(dir(0o0775, 0, 1001)), vec![Writer::User(33)]);
        // root:ssl-cert 0775: the service group, and postgres through it.
        assert_eq!(who(dir(0o0775, 0, 103)), vec![Writer::User(101), Writer::Group(103)]);
        // The owner class wins: www-data owns it with r-x, even though its group could write.
        assert_eq!(who(dir(0o0575, 33, 1001)), vec![]);
    }

    #[test]
    fn reach_shrinks_through_parents_that_do_not_let_a_class_search() {
        let a = accounts();
        let all = Reach::all(&a);
        // /var/lib/docker 0710 root:root: nobody but root gets below it.
        assert!(all.through(&dir(0o0710, 0, 0), &a).is_empty());
        // /srv/app 0750 root:www-data: only www-data's group (the user, its group) get in.
        let app = all.through(&dir(0o0750, 0, 33), &a);
        assert!(!app.everyone);
        assert_eq!(writers(&dir(0o0777, 0, 0), &app, &a), vec![Writer::User(33), Writer::Group(33)]);
        // A world-writable directory under a 0700 home of a person: no finding.
        let home = all.through(&dir(0o0700, 1000, 1000), &a);
        assert!(home.is_empty());
        assert_eq!(writers(&dir(0o1777, 1000, 1000), &home, &a), vec![]);
        // 0711: everyone may search, not list; that is enough to reach.
        assert!(all.through(&dir(0o0711, 0, 0), &a).everyone);
    }

    #[test]
    fn the_line_is_tab_separated_and_gives_the_rule() {
        let a = accounts();
        let f = Found {
            path: PathBuf::from("/run/lock"),
            stat: dir(0o1777, 0, 0),
            writers: vec![Writer::Everyone],
            fstype: "tmpfs".into(),
            noexec: false,
        };
        assert_eq!(
            f.line(&a),
            "writable\t/run/lock\tmode=1777\towner=root:root\tby=everyone\tfstype=tmpfs\tnoexec=no\t\
             cover=dir = \"/run/lock/\" recursive = true"
        );
        let f = Found {
            path: PathBuf::from("/run/postgresql"),
            stat: dir(0o2775, 101, 104),
            writers: vec![Writer::User(101), Writer::Group(104)],
            fstype: "tmpfs".into(),
            noexec: true,
        };
        let line = f.line(&a);
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 8, "{line}");
        assert_eq!(fields[3], "owner=postgres:postgres");
        assert_eq!(fields[4], "by=user:postgres,group:postgres");
        assert_eq!(fields[6], "noexec=yes");
    }

    #[test]
    fn hostile_names_stay_on_one_line_and_quote_in_toml() {
        assert_eq!(shown(b"/a\tb\nc\\d"), "/a\\x09b\\x0ac\\x5cd");
        assert_eq!(shown(b"/caf\xc3\xa9/\xff"), "/caf\u{e9}/\\xff");
        assert_eq!(cover_rule(b"/srv/a\"b\\c\n").unwrap(), "dir = \"/srv/a\\\"b\\\\c\\u000A/\" recursive = true");
        assert_eq!(cover_rule(b"/srv/\xff"), None);
        let f = Found {
            path: PathBuf::from(OsStr::from_bytes(b"/x\xff\nwritable\t/y")),
            stat: dir(0o0777, 0, 0),
            writers: vec![Writer::Everyone],
            fstype: "ext4".into(),
            noexec: false,
        };
        let line = f.line(&accounts());
        assert!(!line.contains('\n') && line.split('\t').count() == 8, "{line}");
        assert!(line.ends_with("\tcover=-"), "{line}");
    }

    const MOUNTINFO: &[u8] = b"\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,nosuid,relatime - devtmpfs devtmpfs rw,mode=755
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw
26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
28 27 0:25 / /mnt/tools ro,nosuid,nodev,relatime - tmpfs tools ro,size=4k
30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 27 0:40 / /run rw,nosuid,nodev,noexec - tmpfs tmpfs rw
33 27 254:0 /srv/data /mnt/bind rw - ext4 /dev/vda rw
34 27 0:41 / /home/u/remote rw - fuse.sshfs u@h: rw
35 27 0:42 / /net rw - nfs4 srv:/ rw
36 27 0:43 /@home /home rw - btrfs /dev/vdb rw
37 27 0:43 /@ /data rw - btrfs /dev/vdb rw
38 27 0:44 / /mnt/ntfs rw - fuseblk /dev/vdc1 rw
39 35 0:45 / /net/x/tmp rw - tmpfs tmpfs rw
40 27 0:46 / /ro-root rw - ext4 /dev/vdd ro,errors=remount-ro
";

    #[test]
    fn mountinfo_flags_are_read() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(m.len(), 18);
        let run = m.iter().find(|m| m.mount_point == b"/run").unwrap();
        assert!(run.noexec && !run.read_only);
        assert!(m.iter().find(|m| m.mount_point == b"/mnt/tools").unwrap().read_only);
        assert!(m.iter().find(|m| m.mount_point == b"/ro-root").unwrap().read_only, "superblock ro");
        assert_eq!(m.iter().find(|m| m.mount_point == b"/home").unwrap().root, b"/@home");
    }

    #[test]
    fn choose_walks_local_writable_mounts_once() {
        let m = parse_mountinfo(MOUNTINFO);
        let skips = choose(&m);
        let of = |p: &str| {
            let i = m.iter().rposition(|m| m.mount_point == p.as_bytes()).unwrap();
            skips[i]
        };
        assert_eq!(of("/"), None);
        assert_eq!(of("/dev"), None, "devtmpfs is walked");
        assert_eq!(of("/dev/shm"), None, "the top /dev/shm");
        assert_eq!(skips[3], Some(Skip::Hidden), "the /dev/shm below it");
        assert_eq!(of("/run"), None, "noexec mounts are walked (and say so)");
        assert_eq!(of("/proc"), Some(Skip::Virtual));
        assert_eq!(of("/dev/pts"), Some(Skip::Virtual));
        assert_eq!(of("/sys/fs/cgroup"), Some(Skip::Inside));
        assert_eq!(of("/mnt/tools"), Some(Skip::ReadOnly));
        assert_eq!(of("/ro-root"), Some(Skip::ReadOnly));
        assert_eq!(of("/mnt/bind"), Some(Skip::Bind), "/srv/data of / is walked at /srv/data");
        assert_eq!(of("/home/u/remote"), Some(Skip::Network));
        assert_eq!(of("/net"), Some(Skip::Network));
        assert_eq!(of("/net/x/tmp"), Some(Skip::Inside));
        assert_eq!(of("/home"), None, "btrfs subvolumes: disjoint roots");
        assert_eq!(of("/data"), None);
        assert_eq!(of("/mnt/ntfs"), None, "fuseblk is a local disk");
    }

    /// Creates `rel` under `base` with `mode`, and returns its path.
    fn mkdir(base: &Path, rel: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = base.join(rel);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn walk(
        root: &Path,
        limits: Limits,
        mount_points: &HashSet<Vec<u8>>,
        cover: &mut dyn FnMut(&Path) -> Cover,
    ) -> (Vec<Found>, Budget) {
        // The tables without the account running the test (it owns the tree; it may be `nobody`).
        let me = nix::unistd::geteuid().as_raw();
        let passwd: String =
            PASSWD.lines().filter(|l| l.split(':').nth(2) != Some(&me.to_string())).map(|l| format!("{l}\n")).collect();
        let a = Accounts::parse(&passwd, GROUP);
        let tree = Tree { accounts: &a, mount_points, fstype: "ext4", noexec: false };
        let mut budget = Budget::new(limits);
        let mut found = Vec::new();
        walk_tree(root, Reach::all(&a), &tree, &mut budget, cover, &mut found);
        (found, budget)
    }

    fn rel(root: &Path, found: &[Found]) -> Vec<String> {
        let mut v: Vec<String> =
            found.iter().map(|f| f.path.strip_prefix(root).unwrap().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn walk_reports_the_top_writable_directory_and_skips_what_it_must() {
        let t = tempfile::tempdir().unwrap();
        let root = mkdir(t.path(), "root", 0o755);
        mkdir(&root, "lock/deep/deeper", 0o777);
        std::fs::set_permissions(root.join("lock"), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
        mkdir(&root, "var/lib/php/sessions", 0o755);
        std::fs::set_permissions(
            root.join("var/lib/php/sessions"),
            std::os::unix::fs::PermissionsExt::from_mode(0o1733),
        )
        .unwrap();
        mkdir(&root, "usr/share/doc", 0o755);
        mkdir(&root, "private/inner", 0o777);
        std::fs::set_permissions(root.join("private"), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        mkdir(&root, "tmp/sub", 0o777);
        std::fs::set_permissions(root.join("tmp"), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
        mkdir(&root, "flat/child", 0o777);
        std::fs::set_permissions(root.join("flat"), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        mkdir(&root, "mnt/over", 0o777);
        mkdir(&root, "lib", 0o755);
        std::os::unix::fs::symlink(root.join("lock"), root.join("lib/link-to-lock")).unwrap();
        std::fs::write(root.join("usr/share/doc/file"), b"x").unwrap();

        let mount_points: HashSet<Vec<u8>> = [root.join("mnt/over").as_os_str().as_bytes().to_vec()].into();
        let tmp = root.join("tmp");
        let flat = root.join("flat");
        let mut asked = Vec::new();
        let (found, budget) = walk(&root, Limits::default(), &mount_points, &mut |d| {
            asked.push(d.to_owned());
            if d == tmp {
                Cover::Below
            } else if d == flat {
                Cover::Here
            } else {
                Cover::None
            }
        });
        assert_eq!(budget.stopped, None);
        let private = root.join("private/inner");
        // Running as root the walk reads private/, but no candidate writer gets through its 0700.
        assert_eq!(rel(&root, &found), vec!["flat/child", "lock", "var/lib/php/sessions"], "{found:?}");
        assert!(!asked.contains(&root.join("lock/deep")), "nothing below a reported directory is looked at");
        assert!(!asked.contains(&root.join("tmp/sub")), "nothing below a directory covered whole");
        assert!(!asked.contains(&private), "nothing below a directory no writer can search");
        assert!(!asked.iter().any(|p| p.starts_with(root.join("mnt/over"))), "mount points are not entered");
        assert!(!asked.iter().any(|p| p.starts_with(root.join("lib/link-to-lock"))), "symlinks are not followed");
        let lock = found.iter().find(|f| f.path.ends_with("lock")).unwrap();
        assert_eq!(lock.stat.mode, 0o1777);
        assert_eq!(lock.writers, vec![Writer::Everyone]);
    }

    #[test]
    fn walk_stops_at_its_depth_entry_and_time_limits() {
        let t = tempfile::tempdir().unwrap();
        let root = mkdir(t.path(), "root", 0o755);
        mkdir(&root, "a/b/c/d/open", 0o777);
        let depth = root.components().count() - 1;
        let none = HashSet::new();
        let at = |extra| Limits { max_depth: depth + extra, ..Limits::default() };
        assert_eq!(rel(&root, &walk(&root, at(5), &none, &mut |_| Cover::None).0), vec!["a/b/c/d/open"]);
        assert!(walk(&root, at(4), &none, &mut |_| Cover::None).0.is_empty(), "d is not read at depth 4");
        let (found, budget) = walk(&root, Limits { max_entries: 2, ..Limits::default() }, &none, &mut |_| Cover::None);
        assert!(found.is_empty());
        assert_eq!(budget.stopped, Some(Stop::Entries));
        let (_, budget) =
            walk(&root, Limits { budget: Duration::ZERO, ..Limits::default() }, &none, &mut |_| Cover::None);
        assert_eq!(budget.stopped, Some(Stop::Time));
    }

    #[test]
    fn service_owned_directory_is_found_when_root_can_chown() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let root = mkdir(t.path(), "root", 0o755);
        let uploads = mkdir(&root, "www/uploads", 0o755);
        std::os::unix::fs::chown(&uploads, Some(33), Some(33)).unwrap();
        let (found, _) = walk(&root, Limits::default(), &HashSet::new(), &mut |_| Cover::None);
        assert_eq!(rel(&root, &found), vec!["www/uploads"]);
        assert_eq!(
            found[0].writers,
            vec![Writer::User(33)],
            "0755 www-data:www-data: the owner writes, the group reads"
        );
    }

    #[test]
    fn find_over_this_hosts_mounts_stays_in_budget() {
        let raw = std::fs::read("/proc/self/mountinfo").unwrap();
        let limits = Limits { budget: Duration::from_millis(300), ..Limits::default() };
        let r = find(&raw, &accounts(), limits, &mut |_, _| Cover::None);
        assert!(r.elapsed < Duration::from_secs(2), "{:?}", r.elapsed);
        for (i, f) in r.found.iter().enumerate() {
            assert!(!f.path.starts_with("/proc") && !f.path.starts_with("/sys"), "{f:?}");
            for g in r.found.iter().skip(i + 1) {
                assert!(!g.path.starts_with(&f.path), "{g:?} is below {f:?}");
            }
        }
    }
}
