//! Privileged: the kernel-side exec cache (inode ignore marks on allowed files) on a loop-mounted ext4 image
//! that holds both `<img>/tmp` (protected) and `<img>/usr/bin`, the model of /tmp as a directory on `/`.
//! A file may be cached only when no unprivileged user can ever give it a name in protected scope; these
//! tests move files into `<img>/tmp` after they ran outside it and check what the guard then does.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use nix::sys::signal::Signal;

const NOBODY: &[&str] = &["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"];
/// How long the daemon's tokio side may take to place (or flush) a mark after the exec was answered.
const CACHE_SETTLE: Duration = Duration::from_secs(3);

/// `<img>/tmp/` (1777) protected, `<img>/usr/bin` and `<img>/home/u` (owned by 65534) beside it.
fn start(env: &mut Env) -> PathBuf {
    start_with(env, "")
}

/// `start` with `extra` appended to the config (e.g. an `[open_guard]` table).
fn start_with(env: &mut Env, extra: &str) -> PathBuf {
    let img = sh_quote(&env.img);
    env.sh(&format!(
        "mkdir -p {img}/tmp {img}/usr/bin {img}/home/u && chmod 1777 {img}/tmp && chmod 0755 {img} {img}/usr {img}/usr/bin {img}/home && chown 65534:65534 {img}/home/u"
    ));
    let tmp = env.img.join("tmp");
    let cfg = env.write_config(&DaemonOpts::enforce(), &format!("{}{extra}", dir_policy("Block", &tmp, true)));
    let marks = env.check(&cfg);
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(marks[0].decides, "path", "the path must decide on this image: {marks:?}");
    env.start_daemon(&cfg);
    tmp
}

/// Inode numbers that carry an exec ignore mark in the daemon's group (`/proc/PID/fdinfo`).
fn cached_inodes(env: &mut Env) -> BTreeSet<u64> {
    let pid = env.daemon().pid;
    let mut inodes = BTreeSet::new();
    for ent in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let Ok(text) = std::fs::read_to_string(ent.unwrap().path()) else { continue };
        for line in text.lines().filter(|l| l.starts_with("fanotify ino:")) {
            let field = |name: &str| line.split_whitespace().find_map(|t| t.strip_prefix(name)).map(str::to_owned);
            let ignored = field("ignored_mask:").and_then(|m| u64::from_str_radix(&m, 16).ok()).unwrap_or(0);
            if ignored & libc::FAN_OPEN_EXEC_PERM != 0
                && let Some(ino) = field("ino:").and_then(|i| u64::from_str_radix(&i, 16).ok())
            {
                inodes.insert(ino);
            }
        }
    }
    inodes
}

fn ino(env: &Env, p: &Path) -> u64 {
    std::fs::metadata(env.host_view(p)).unwrap().ino()
}

/// Polls until `want(cached)` holds, or fails with `what`.
fn wait_cache(env: &mut Env, what: &str, want: impl Fn(&BTreeSet<u64>) -> bool) {
    let mut got = BTreeSet::new();
    if poll_until(CACHE_SETTLE, || {
        got = cached_inodes(env);
        want(&got).then_some(())
    })
    .is_none()
    {
        panic!("{what}: cached inodes {got:?}\n{}", env.daemon_stderr());
    }
}

#[test]
fn allowed_root_only_file_is_cached_until_written_or_reloaded() {
    let mut env = privileged!(Layout::WithExt4Image);
    start(&mut env);
    let bin = env.img.join("usr/bin/x");
    env.put_elf(&bin);
    let x = ino(&env, &bin);
    let cwd = env.img.clone();
    env.bash_exec(&bin, &cwd).assert_ran("<img>/usr/bin/x");
    wait_cache(&mut env, "root-owned file in root-only directories gets an ignore mark", |c| c.contains(&x));
    env.bash_exec(&bin, &cwd).assert_ran("<img>/usr/bin/x, cached");

    // A write clears the mark (no FAN_MARK_IGNORED_SURV_MODIFY); the next exec is decided and cached again.
    env.sh(&format!("cat /bin/true > {}", sh_quote(&bin)));
    wait_cache(&mut env, "a write drops the ignore mark", |c| !c.contains(&x));
    env.bash_exec(&bin, &cwd).assert_ran("<img>/usr/bin/x, rewritten");
    wait_cache(&mut env, "decided again and cached again", |c| c.contains(&x));

    // A reload flushes the cache.
    env.daemon().signal(Signal::SIGHUP);
    wait_cache(&mut env, "SIGHUP flushes the exec cache", |c| !c.contains(&x));
    assert!(env.daemon().try_wait().is_none(), "daemon still running");
    assert!(env.wait_alerts(0).is_empty(), "allowed execs raise no alert: {:?}", env.alerts());
}

#[test]
fn a_file_run_outside_then_moved_into_tmp_by_a_user_is_still_blocked() {
    let mut env = privileged!(Layout::WithExt4Image);
    let tmp = start(&mut env);
    let home = env.img.join("home/u");
    // The user's own program, and a root-owned one that sits in the user's directory (root installed it
    // there, but the user may rename it: the directory is theirs).
    let own = home.join("own");
    let rootbin = home.join("rootbin");
    env.sh(&format!("cp /bin/true {o} && chmod 0755 {o} && chown 65534:65534 {o}", o = sh_quote(&own)));
    env.put_elf(&rootbin);
    // And one that may be cached: root-owned, in root-only directories.
    let cached = env.img.join("usr/bin/cached");
    env.put_elf(&cached);
    let cwd = env.img.clone();

    for p in [&own, &rootbin, &cached] {
        env.shell_exec("bash", NOBODY, p, &cwd).assert_ran(&format!("{} as uid 65534", p.display()));
    }
    let c = ino(&env, &cached);
    wait_cache(&mut env, "the root-only file is cached", |s| s.contains(&c));
    let refused = [ino(&env, &own), ino(&env, &rootbin)];
    let now = cached_inodes(&mut env);
    assert!(refused.iter().all(|i| !now.contains(i)), "a file a user can move got an ignore mark: {now:?}");

    // The user moves both into protected scope: still blocked, with an alert each.
    let moved_own = tmp.join("own");
    let moved_root = tmp.join("rootbin");
    let mv = format!(
        "mv {} {} && mv {} {}",
        sh_quote(&own),
        sh_quote(&moved_own),
        sh_quote(&rootbin),
        sh_quote(&moved_root)
    );
    let mut argv: Vec<String> = NOBODY.iter().map(|s| (*s).to_owned()).collect();
    argv.extend(["sh".into(), "-c".into(), mv]);
    let o = env.run_in_ns(&argv);
    assert!(o.status.success(), "uid 65534 moves its files into <img>/tmp\n{o}");
    let e1 = env.shell_exec("bash", NOBODY, &moved_own, &cwd);
    e1.assert_denied_bash("the user's program, run once outside, then moved into <img>/tmp");
    let e2 = env.shell_exec("bash", NOBODY, &moved_root, &cwd);
    e2.assert_denied_bash("a root-owned program from the user's directory, moved into <img>/tmp");

    // The cached file cannot be brought in by the user: no rename (root-only directory), no hard link
    // (fs.protected_hardlinks = 1: the user neither owns it nor may write it).
    let ln = format!("ln {} {}/cached", sh_quote(&cached), sh_quote(&tmp));
    let mv = format!("mv {} {}/cached", sh_quote(&cached), sh_quote(&tmp));
    for attempt in [ln, mv] {
        let mut argv: Vec<String> = NOBODY.iter().map(|s| (*s).to_owned()).collect();
        argv.extend(["sh".into(), "-c".into(), attempt.clone()]);
        let o = env.run_in_ns(&argv);
        assert!(!o.status.success(), "uid 65534 must not be able to: {attempt}\n{o}");
    }
    let alerts = env.expect_alerts(2);
    assert_eq!(get_str(&alerts[0], "Resource"), moved_own.to_str().unwrap());
    assert_eq!(get_str(&alerts[1], "Resource"), moved_root.to_str().unwrap());
    assert_eq!(get_str(&alerts[0], "Action"), "Block");
}

/// Runs `<img>/usr/bin/y` until it is cached, then root moves it into `tmp`: its new path, inode and the cwd.
fn cache_then_move_into(env: &mut Env, tmp: &Path) -> (PathBuf, u64, PathBuf) {
    let bin = env.img.join("usr/bin/y");
    env.put_elf(&bin);
    let y = ino(env, &bin);
    let cwd = env.img.clone();
    env.bash_exec(&bin, &cwd).assert_ran("<img>/usr/bin/y");
    wait_cache(env, "cached", |c| c.contains(&y));
    let moved = tmp.join("y");
    env.sh(&format!("mv {} {}", sh_quote(&bin), sh_quote(&moved)));
    (moved, y, cwd)
}

/// Root is outside the threat model (root can stop the daemon). What happens is pinned down here: a cached
/// file that root moves into protected scope keeps its exec ignore mark. With the open guard on (the
/// default) the exec's own open of the file still raises FAN_OPEN_PERM, which the ignore mark does not
/// cover, and is refused: the file does not run.
#[test]
fn root_moving_a_cached_file_into_protected_scope_is_still_refused_by_the_open_guard() {
    let mut env = privileged!(Layout::WithExt4Image);
    let tmp = start(&mut env);
    let (moved, _, cwd) = cache_then_move_into(&mut env, &tmp);
    let e = env.bash_exec(&moved, &cwd);
    e.assert_denied_bash("root moved a cached file into <img>/tmp; the open guard refuses its open");
    let alerts = env.expect_alerts(1);
    let a = &alerts[0];
    assert_eq!(get_str(a, "Resource"), moved.to_str().unwrap(), "{a}");
    assert_eq!(get_str(a, "Action"), "Block", "{a}");
    assert!(get_str(a, "Data").starts_with("fanotify=FAN_OPEN_PERM"), "refused at open, not at exec: {a}");
}

/// The same with the open guard off: the moved file runs until a reload flushes the cache (documented gap).
#[test]
fn root_moving_a_cached_file_into_protected_scope_runs_it_until_reload_without_the_open_guard() {
    let mut env = privileged!(Layout::WithExt4Image);
    let tmp = start_with(&mut env, "\n[open_guard]\nenabled = false\n");
    let (moved, y, cwd) = cache_then_move_into(&mut env, &tmp);
    env.bash_exec(&moved, &cwd).assert_ran("documented gap: root moved a cached file into <img>/tmp");
    env.daemon().signal(Signal::SIGHUP);
    wait_cache(&mut env, "SIGHUP flushes the exec cache", |c| !c.contains(&y));
    let e = env.bash_exec(&moved, &cwd);
    e.assert_denied_bash("after the reload the moved file is decided again");
    let alerts = env.expect_alerts(1);
    assert_exec_alert(&alerts[0], &Expect::block(&moved, &e, &cwd));
}

#[test]
fn exec_cache_off_places_no_mark() {
    let mut env = privileged!(Layout::WithExt4Image);
    let img = sh_quote(&env.img);
    env.sh(&format!("mkdir -p {img}/tmp {img}/usr/bin && chmod 1777 {img}/tmp"));
    let tmp = env.img.join("tmp");
    let cfg = env.write_config(&DaemonOpts::enforce(), &dir_policy("Block", &tmp, true));
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("[daemon]\n", "[daemon]\nexec_cache = false\n", 1);
    std::fs::write(&cfg, text).unwrap();
    env.start_daemon(&cfg);
    let bin = env.img.join("usr/bin/z");
    env.put_elf(&bin);
    let cwd = env.img.clone();
    env.bash_exec(&bin, &cwd).assert_ran("<img>/usr/bin/z");
    // The control loop, which would place the mark, has turned since.
    env.fresh_status();
    let z = ino(&env, &bin);
    assert!(!cached_inodes(&mut env).contains(&z), "exec_cache = false must place no ignore mark");
}
