//! Privileged: the root filesystem layouts of the common distributions, each a loop image in the test's own
//! mount namespace (`env.img` plays `/`). In each, a policy protecting `<img>/tmp/` and `<img>/var/tmp/` must
//! deny exec there (EPERM, one alert naming the file) while exec elsewhere on the same filesystem runs, and
//! `check` must say the path decides (the filesystem holds protected and unprotected paths).
//!
//! Covered elsewhere: ext4 with /tmp a directory and a tmpfs /tmp (`mounts.rs`, `enforce.rs`).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::common::*;

/// The policy: Block in `<img>/tmp/` and `<img>/var/tmp/`, recursively.
fn tmp_and_var_tmp_policy(env: &Env) -> String {
    let var_tmp = env.img.join("var/tmp");
    let extra = format!(
        "\n[[policy.process.match_directories]]\ndir = {}\nrecursive = true\n",
        toml_str(Path::new(&dir_slash(&var_tmp)))
    );
    named_dir_policy(POLICY_NAME, "Block", &env.img.join("tmp"), true, &extra)
}

/// Runs `check` (one mark, on the image's filesystem, decided by path, protecting both directories; the
/// harness has already checked it names a test device) and starts the daemon.
fn start(env: &mut Env, fstype: &str) {
    env.sh(&format!("mkdir -p {i}/tmp {i}/var/tmp {i}/var/lib {i}/usr/bin", i = sh_quote(&env.img)));
    let cfg = env.write_config(&DaemonOpts::enforce(), &tmp_and_var_tmp_policy(env));
    let marks = env.check(&cfg);
    assert_eq!(marks.len(), 1, "one filesystem holds both directories: {marks:?}");
    let m = &marks[0];
    assert_eq!(m.fstype, fstype, "{m:?}");
    let mounts = env.layout.image_mounts(&env.img, &env.top);
    assert!(
        mounts.iter().any(|p| p.to_str() == Some(m.mount_point.as_str())),
        "marked through a mount of the image: {m:?}"
    );
    assert_eq!(m.decides, "path", "{fstype} holding tmp, var/tmp and usr/bin: the path must decide: {m:?}");
    for dir in [env.img.join("tmp"), env.img.join("var/tmp")] {
        assert!(m.protects.iter().any(|p| trim_slash(p) == dir.to_str().unwrap()), "protects {}: {m:?}", dir.display());
    }
    env.start_daemon(&cfg);
}

/// Execs each of `runs` (must run) and each of `denied` (exec path, the Resource its alert names: must be
/// refused with EPERM), then checks exactly one alert per refusal, in order.
fn assert_guarded(env: &Env, runs: &[PathBuf], denied: &[(PathBuf, PathBuf)]) {
    for p in runs.iter().chain(denied.iter().map(|(p, _)| p)) {
        env.put_elf(p);
    }
    let cwd = env.out.clone();
    for p in runs {
        env.bash_exec(p, &cwd).assert_ran(&format!("{} (same filesystem, not protected)", p.display()));
    }
    let mut execs = Vec::new();
    for (p, _) in denied {
        let e = env.bash_exec(p, &cwd);
        e.assert_denied_bash(&format!("{} (protected)", p.display()));
        execs.push(e);
    }
    // Still running after the refusals.
    if let Some(p) = runs.first() {
        env.bash_exec(p, &cwd).assert_ran(&format!("{} again", p.display()));
    }
    let alerts = env.expect_alerts(denied.len());
    for ((_, resource), (a, e)) in denied.iter().zip(alerts.iter().zip(&execs)) {
        assert_exec_alert(a, &Expect::block(resource, e, &cwd));
    }
}

/// The files every layout checks: unprotected ones beside and inside the protected directories' parents,
/// and the protected ones (named by their own path).
fn common_cases(env: &Env) -> (Vec<PathBuf>, Vec<(PathBuf, PathBuf)>) {
    let i = &env.img;
    let runs = vec![i.join("usr/bin/x"), i.join("x"), i.join("var/lib/x"), i.join("tmpfoo/x"), i.join("var/tmpx/x")];
    let denied =
        [i.join("tmp/x"), i.join("tmp/a/b/x"), i.join("var/tmp/x")].into_iter().map(|p| (p.clone(), p)).collect();
    (runs, denied)
}

#[test]
fn xfs_root_with_tmp_a_directory() {
    let mut env = privileged!(Layout::WithXfsImage);
    start(&mut env, "xfs");
    let (runs, denied) = common_cases(&env);
    assert_guarded(&env, &runs, &denied);
}

#[test]
fn btrfs_tmp_and_var_subvolumes_without_the_top_level_mounted() {
    let mut env = privileged!(Layout::BtrfsSubvolumes { top_level: false });
    start(&mut env, "btrfs");
    let (runs, denied) = common_cases(&env);
    assert_guarded(&env, &runs, &denied);
}

#[test]
fn btrfs_tmp_and_var_subvolumes_with_the_top_level_mounted_elsewhere() {
    // SLES/openSUSE with snapper or btrbk: subvolid=5 mounted too. The superblock is shared by every subvolume;
    // the top level's mount shows all of it but names none of /tmp and /var/tmp.
    let mut env = privileged!(Layout::BtrfsSubvolumes { top_level: true });
    start(&mut env, "btrfs");
    let (mut runs, mut denied) = common_cases(&env);
    let top = env.top.clone();
    // Through the top level: the same files, named by the subvolume's own mount.
    runs.extend([top.join("@/usr/bin/y"), top.join("only-in-top/x")]);
    denied.push((top.join("@/tmp/y"), env.img.join("tmp/y")));
    denied.push((top.join("@/var/tmp/y"), env.img.join("var/tmp/y")));
    assert_guarded(&env, &runs, &denied);
}

#[test]
fn btrfs_root_subvolume_with_var_tmp_a_plain_directory() {
    // Fedora: subvolume `root` at `/`, `home` at /home; /var/tmp a directory of `root`.
    let mut env = privileged!(Layout::BtrfsRootSubvolume);
    start(&mut env, "btrfs");
    let (mut runs, denied) = common_cases(&env);
    runs.push(env.img.join("home/user/x"));
    assert_guarded(&env, &runs, &denied);
}

/// `cmd` run by uid 65534 in the namespace.
fn as_nobody(env: &Env, cmd: &str) -> Output {
    env.run_in_ns(&["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c", cmd])
}

#[test]
fn btrfs_subvolumes_a_user_creates_inside_protected_directories_are_guarded() {
    // An unprivileged user may `btrfs subvolume create` wherever they can write. Each subvolume reports an
    // st_dev (and a statfs fsid) of its own, mounted nowhere: its files are still the marked superblock's.
    let mut env = privileged!(Layout::BtrfsSubvolumes { top_level: true });
    let img = env.img.clone();
    let q = sh_quote(&img);
    env.sh(&format!("mkdir -p {q}/tmp {q}/var/tmp {q}/srv && chmod 1777 {q}/tmp {q}/var/tmp {q}/srv"));
    // Before the daemon starts (found by the first walk), nested, and in an unprotected place.
    let o = as_nobody(
        &env,
        &format!(
            "set -e; cd {q}; for v in tmp/early tmp/early/nested var/tmp/v srv/free; do btrfs -q subvolume create $v >/dev/null; done"
        ),
    );
    assert!(o.status.success(), "uid 65534 creates subvolumes\n{o}");
    start(&mut env, "btrfs");
    // After the start (found by the directory events), with a subvolume and a plain directory inside.
    let o = as_nobody(
        &env,
        &format!(
            "set -e; cd {q}; btrfs -q subvolume create tmp/late >/dev/null; btrfs -q subvolume create tmp/late/inner >/dev/null; mkdir -p tmp/late/d/e tmp/early/nested/d var/tmp/after/deep"
        ),
    );
    assert!(o.status.success(), "uid 65534 creates subvolumes under the running guard\n{o}");
    let st = |p: &Path| fs::metadata(env.host_view(p)).unwrap().dev();
    assert_ne!(st(&img.join("tmp/late")), st(&img.join("tmp")), "a subvolume has a device of its own");
    assert_ne!(st(&img.join("tmp/early/nested")), st(&img.join("tmp/early")));
    let inside = [
        "tmp/early/x",
        "tmp/early/nested/x",
        "tmp/early/nested/d/x",
        "var/tmp/v/x",
        "tmp/late/x",
        "tmp/late/inner/x",
        "tmp/late/d/e/x",
        // A plain directory of `@/var`: the second subvolume of the superblock the tracker's roots are on.
        "var/tmp/after/deep/x",
    ];
    let denied: Vec<(PathBuf, PathBuf)> = inside.iter().map(|p| (img.join(p), img.join(p))).collect();
    let runs = vec![img.join("srv/free/x"), img.join("usr/bin/x")];
    assert_guarded(&env, &runs, &denied);
    // The open guard (path-decided: directory marks) covers them too: `sh FILE` is refused and alerted.
    let before = env.alerts().len();
    for p in inside {
        let file = img.join(p).with_file_name("s");
        env.put_script(&file);
        let o = as_nobody(&env, &format!("sh {}", sh_quote(&file)));
        assert!(
            !o.status.success() && o.stderr.contains(EPERM_TEXT) && !o.stdout.contains("ran"),
            "sh {}: the open guard must refuse it\n{o}\n{}",
            file.display(),
            env.daemon_stderr()
        );
    }
    let alerts = env.expect_alerts(before + inside.len());
    for (a, p) in alerts[before..].iter().zip(inside) {
        assert_eq!(get_str(a, "Resource"), img.join(p).with_file_name("s").to_str().unwrap(), "{a}");
        assert_eq!(get_str(a, "Data"), "fanotify=FAN_OPEN_PERM route=interpreter", "{a}");
    }
    // Unprotected, on the same filesystem: sh of a script runs.
    let free = img.join("srv/free/s");
    env.put_script(&free);
    let o = as_nobody(&env, &format!("sh {}", sh_quote(&free)));
    assert!(o.status.success() && o.stdout.contains("ran"), "sh in an unprotected subvolume runs\n{o}");
}
