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

use super::mounts::is_path_prefix;

mod accounts;
mod walkable;

pub use accounts::{Accounts, DirStat, Reach, Writer, writers};
pub use walkable::{MountLine, choose, parse_mountinfo};

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
mod tests;
