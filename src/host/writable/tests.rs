use super::accounts::*;
use super::walkable::*;
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
    std::fs::set_permissions(root.join("var/lib/php/sessions"), std::os::unix::fs::PermissionsExt::from_mode(0o1733))
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
    let (_, budget) = walk(&root, Limits { budget: Duration::ZERO, ..Limits::default() }, &none, &mut |_| Cover::None);
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
    assert_eq!(found[0].writers, vec![Writer::User(33)], "0755 www-data:www-data: the owner writes, the group reads");
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
