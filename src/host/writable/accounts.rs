//! Who may write a directory: the local account tables, the service accounts among them, and the writers a
//! directory's mode and owner let in through the directories above it.

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
    pub(super) users: Vec<User>,
    groups: Vec<Group>,
    /// Service users: uid and all their gids (primary first).
    pub(super) service_users: Vec<(u32, Vec<u32>)>,
    /// Service groups' gids.
    pub(super) service_groups: Vec<u32>,
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
    pub(super) everyone: bool,
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
