//! Privileged: the filesystem mark covers every way of reaching the protected filesystem (bind mounts, other
//! mount namespaces), and on a filesystem shared with unprotected directories (a loop-mounted ext4 image, the
//! model of /tmp as a directory on `/`) the path decides.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;

/// Checks an alert whose Resource may be reported either through the path the caller used or through the
/// filesystem's primary mount; returns the Resource.
fn assert_alert_resource_one_of(a: &serde_json::Value, allowed: &[&Path], want: &Expect) -> String {
    let got = get_str(a, "Resource").to_owned();
    assert!(allowed.iter().any(|p| p.to_str() == Some(got.as_str())), "Resource {got:?} is none of {allowed:?}: {a}");
    let mut w = want.clone();
    w.resource = got.clone();
    assert_exec_alert(a, &w);
    got
}

fn start_protecting_fs(env: &mut Env) {
    let cfg = env.write_config(&DaemonOpts::enforce(), &dir_policy("Block", &env.fs, true));
    env.start_daemon(&cfg);
}

#[test]
fn exec_through_a_bind_mount_of_the_protected_filesystem_is_blocked() {
    let mut env = privileged!(Layout::Tmpfs);
    start_protecting_fs(&mut env);
    let payload = env.fs.join("payload");
    env.put_elf(&payload);
    // Made after the daemon started, like a service's PrivateTmp.
    let bind = env.base().join("bind");
    env.sh(&format!("mkdir -p {b} && mount --bind {f} {b}", b = sh_quote(&bind), f = sh_quote(&env.fs)));
    let via_bind = bind.join("payload");
    let cwd = env.out.clone();

    let e = env.bash_exec(&via_bind, &cwd);
    e.assert_denied_bash("exec through a bind mount");
    let alerts = env.expect_alerts(1);
    assert_alert_resource_one_of(&alerts[0], &[&payload, &via_bind], &Expect::block(&payload, &e, &cwd));
}

#[test]
fn exec_from_another_mount_namespace_is_blocked() {
    let mut env = privileged!(Layout::Tmpfs);
    start_protecting_fs(&mut env);
    let payload = env.fs.join("payload");
    env.put_elf(&payload);
    let inner = env.base().join("inner");
    std::fs::create_dir(&inner).unwrap();
    let via_inner = inner.join("payload");
    let cwd = env.out.clone();
    let unshare = ["unshare", "--mount", "--propagation", "private", "--"];

    // 1. Same path, new mount namespace (`unshare -m` inside ours).
    let e1 = env.shell_exec("bash", &unshare, &payload, &cwd);
    e1.assert_denied_bash("exec from a nested mount namespace");
    // 2. New mount namespace that binds the protected filesystem somewhere else (PrivateTmp, containers).
    let setup = format!("mount --bind {} {}", sh_quote(&env.fs), sh_quote(&inner));
    let e2 = env.shell_exec_with_setup("bash", &unshare, &setup, &via_inner, &cwd);
    e2.assert_denied_bash("exec through a bind mount that exists only in a nested namespace");

    let alerts = env.expect_alerts(2);
    assert_exec_alert(&alerts[0], &Expect::block(&payload, &e1, &cwd));
    assert_alert_resource_one_of(&alerts[1], &[&payload, &via_inner], &Expect::block(&payload, &e2, &cwd));
}

/// `<img>/tmp/` protected on an ext4 image that also holds `<img>/usr/bin`: one filesystem mark, path decides.
fn start_protecting_img_tmp(env: &mut Env) -> PathBuf {
    let tmp = env.img.join("tmp");
    env.sh(&format!("mkdir -p {}/tmp {}/usr/bin", sh_quote(&env.img), sh_quote(&env.img)));
    let cfg = env.write_config(&DaemonOpts::enforce(), &dir_policy("Block", &tmp, true));
    let marks = env.check(&cfg);
    assert_eq!(marks.len(), 1, "{marks:?}");
    let m = &marks[0];
    assert_eq!(m.mount_point, env.img.to_str().unwrap(), "{m:?}");
    assert_eq!(m.fstype, "ext4", "{m:?}");
    assert_eq!(m.decides, "path", "ext4 holding /tmp and /usr/bin: the path must decide: {m:?}");
    assert!(m.protects.iter().any(|p| trim_slash(p) == tmp.to_str().unwrap()), "{m:?}");
    env.start_daemon(&cfg);
    tmp
}

#[test]
fn loop_ext4_protected_dir_is_blocked_while_its_sibling_runs() {
    let mut env = privileged!(Layout::WithExt4Image);
    let tmp = start_protecting_img_tmp(&mut env);
    let sibling = env.img.join("usr/bin/x");
    let at_root = env.img.join("x");
    let lookalike = env.img.join("tmpfoo/x");
    let blocked = tmp.join("x");
    let blocked_deep = tmp.join("a/b/x");
    let blocked_script = tmp.join("s.sh");
    for p in [&sibling, &at_root, &lookalike, &blocked, &blocked_deep] {
        env.put_elf(p);
    }
    env.put_script(&blocked_script);
    let cwd = env.img.join("usr/bin");

    env.bash_exec(&sibling, &cwd).assert_ran("<img>/usr/bin/x: same filesystem, unprotected dir");
    env.bash_exec(&at_root, &cwd).assert_ran("<img>/x");
    env.bash_exec(&lookalike, &cwd).assert_ran("<img>/tmpfoo/x");
    let e1 = env.bash_exec(&blocked, &cwd);
    e1.assert_denied_bash("<img>/tmp/x");
    let e2 = env.bash_exec(&blocked_deep, &cwd);
    e2.assert_denied_bash("<img>/tmp/a/b/x");
    let e3 = env.bash_exec(&blocked_script, &cwd);
    e3.assert_denied_bash("<img>/tmp/s.sh");
    // And the sibling still runs afterwards.
    env.bash_exec(&sibling, &cwd).assert_ran("<img>/usr/bin/x again");

    let alerts = env.expect_alerts(3);
    assert_exec_alert(&alerts[0], &Expect::block(&blocked, &e1, &cwd));
    assert_exec_alert(&alerts[1], &Expect::block(&blocked_deep, &e2, &cwd));
    assert_exec_alert(&alerts[2], &Expect::block(&blocked_script, &e3, &cwd));
}

#[test]
fn loop_ext4_protected_subdir_bound_elsewhere_in_another_namespace_is_blocked() {
    // The PrivateTmp model on a path-decided filesystem: a service's namespace binds <img>/tmp/svc over an
    // unprotected directory; the file still lives in the protected directory.
    let mut env = privileged!(Layout::WithExt4Image);
    let tmp = start_protecting_img_tmp(&mut env);
    let svc = tmp.join("svc");
    let real = svc.join("x");
    env.put_elf(&real);
    let view = env.img.join("usr/view");
    env.sh(&format!("mkdir -p {}", sh_quote(&view)));
    let via_view = view.join("x");
    let cwd = env.out.clone();
    let unshare = ["unshare", "--mount", "--propagation", "private", "--"];
    let setup = format!("mount --bind {} {}", sh_quote(&svc), sh_quote(&view));

    let e = env.shell_exec_with_setup("bash", &unshare, &setup, &via_view, &cwd);
    e.assert_denied_bash("protected dir bound over an unprotected one in a nested namespace");
    // In the daemon's own namespace the view is still the empty unprotected directory: nothing else changed.
    let sibling = env.img.join("usr/bin/x");
    env.put_elf(&sibling);
    env.bash_exec(&sibling, &cwd).assert_ran("<img>/usr/bin/x");

    let alerts = env.expect_alerts(1);
    assert_alert_resource_one_of(&alerts[0], &[&real], &Expect::block(&real, &e, &cwd));
}

#[test]
fn a_tmpfs_mounted_on_a_protected_path_after_start_is_marked_within_a_second() {
    // tmp.mount late in boot, a new tmpfs on /dev/shm: the daemon watches the mount table.
    let mut env = privileged!(Layout::Tmpfs);
    let late = env.fs.join("late");
    env.sh(&format!("mkdir -p {}", sh_quote(&late)));
    let cfg = env.write_config(&DaemonOpts::enforce(), &dir_policy("Block", &late, true));
    env.start_daemon(&cfg);

    let before = env.fresh_status().get("mount_checks");
    let start = Instant::now();
    env.sh(&format!("mount -t tmpfs -o size=16m noexecd-test-late {}", sh_quote(&late)));
    // A whole look at the mount table begun after the mount: the new tmpfs is marked.
    env.wait_generation_after("mount_checks", before);
    let took = start.elapsed();
    let late_dev = split_dev(std::fs::metadata(env.host_view(&late)).unwrap().dev());
    assert!(env.test_devs.insert(late_dev), "a new filesystem");
    let x = late.join("x");
    env.put_elf(&x);
    let cwd = env.out.clone();

    let denied = env.bash_exec(&x, &cwd);
    denied.assert_denied_bash("exec on the late tmpfs");
    assert!(took < Duration::from_millis(1500), "marked after {took:?}; want about a second at most");
    let alerts = env.expect_alerts(1);
    assert_exec_alert(&alerts[0], &Expect::block(&x, &denied, &cwd));
    let marks = env.verify_kernel_marks();
    assert!(marks.contains(&kernel_dev_of(late_dev)), "the late tmpfs carries a filesystem mark: {marks:x?}");
}

fn kernel_dev_of((major, minor): (u64, u64)) -> u64 {
    (major << 20) | minor
}

#[test]
fn harness_safety_check_refuses_a_policy_that_would_mark_the_host_root() {
    // The guard every other test relies on: a policy naming a plain directory of the host (here the scratch
    // dir, on the host's root filesystem) must be refused before any daemon starts. Only `check` runs.
    let env = privileged!(Layout::Tmpfs);
    let on_host_root = env.base().join("plain-dir");
    std::fs::create_dir(&on_host_root).unwrap();
    let cfg = env.write_config(&DaemonOpts::enforce(), &dir_policy("Block", &on_host_root, true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| env.check(&cfg)));
    let err = result.expect_err("the safety check must refuse a policy that marks the host's filesystem");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("SAFETY"), "refused for the right reason: {msg}");
    assert!(env.daemon.is_none());
}

/// A container-like overlay on `<img>` (the model of container storage on the filesystem that holds /tmp):
/// lower layer and upper layer under `<img>/var/lib/containers/storage`, merged at `<img>/var/lib/.../merged`.
fn mount_container_overlay(env: &Env, lower: &Path) -> PathBuf {
    let storage = env.img.join("var/lib/containers/storage/overlay/c1");
    let merged = storage.join("merged");
    env.sh(&format!(
        "mkdir -p {s}/upper {s}/work {m} && mount -t overlay -o lowerdir={l},upperdir={s}/upper,workdir={s}/work overlay {m}",
        s = sh_quote(&storage),
        m = sh_quote(&merged),
        l = sh_quote(lower)
    ));
    merged
}

#[test]
fn container_storage_on_the_guarded_filesystem_keeps_running() {
    // /tmp a directory of the filesystem that holds the container storage (Debian, RHEL): an exec through a
    // container's overlay is seen on the real file of its layer, in no mount table; it is named by the layer's
    // path on the host and decided as a host path, so it runs.
    let mut env = privileged!(Layout::WithExt4Image);
    let lower = env.img.join("var/lib/containers/storage/overlay/l1/diff");
    env.put_elf(&lower.join("bin/true"));
    let tmp = start_protecting_img_tmp(&mut env);
    let merged = mount_container_overlay(&env, &lower);
    let cwd = env.img.join("usr/bin");
    env.bash_exec(&merged.join("bin/true"), &cwd).assert_ran("a lower-layer program through the overlay");
    // Written into the running container: its upper layer.
    env.sh(&format!(
        "cp {m}/bin/true {m}/bin/new && mkdir -p {m}/tmp && cp {m}/bin/true {m}/tmp/x",
        m = sh_quote(&merged)
    ));
    env.bash_exec(&merged.join("bin/new"), &cwd).assert_ran("an upper-layer program");
    // The container's own /tmp is a path of the container, not the host's /tmp: host rules do not decide it.
    env.bash_exec(&merged.join("tmp/x"), &cwd).assert_ran("the container's /tmp under a host policy");
    // The same overlay mounted only in a new mount namespace (runc's view: the rootfs, then the exec).
    let inner = env.out.join("rootfs");
    let setup = format!("mkdir -p {i} && mount --bind {m} {i}", i = sh_quote(&inner), m = sh_quote(&merged));
    let unshare = ["unshare", "--mount", "--propagation", "private", "--"];
    env.shell_exec_with_setup("bash", &unshare, &setup, &inner.join("bin/true"), &cwd)
        .assert_ran("through a bind of the rootfs in another namespace");
    // The host's own /tmp stays guarded, and nothing was alerted for the container's programs.
    env.put_elf(&tmp.join("x"));
    let e = env.bash_exec(&tmp.join("x"), &cwd);
    e.assert_denied_bash("<img>/tmp/x");
    let alerts = env.expect_alerts(1);
    assert_exec_alert(&alerts[0], &Expect::block(&tmp.join("x"), &e, &cwd));
}

#[test]
fn an_overlay_over_a_protected_directory_is_blocked_and_named_by_its_layer() {
    // An overlay whose lower layer is the protected directory: the file lives in /tmp on the host, whatever
    // the overlay calls it.
    let mut env = privileged!(Layout::WithExt4Image);
    let tmp = start_protecting_img_tmp(&mut env);
    let lower = tmp.join("drop");
    env.put_elf(&lower.join("payload"));
    let merged = mount_container_overlay(&env, &lower);
    let cwd = env.img.join("usr/bin");
    let e1 = env.bash_exec(&merged.join("payload"), &cwd);
    e1.assert_denied_bash("an overlay over <img>/tmp/drop");
    // Mounted only inside a new namespace, where the daemon's own table never sees it.
    let inner = env.out.join("merged2");
    let work = env.img.join("var/w2");
    let setup = format!(
        "mkdir -p {i} {w}/u {w}/w && mount -t overlay -o lowerdir={l},upperdir={w}/u,workdir={w}/w overlay {i}",
        i = sh_quote(&inner),
        w = sh_quote(&work),
        l = sh_quote(&lower)
    );
    let unshare = ["unshare", "--mount", "--propagation", "private", "--"];
    let e2 = env.shell_exec_with_setup("bash", &unshare, &setup, &inner.join("payload"), &cwd);
    e2.assert_denied_bash("an overlay over <img>/tmp/drop in a nested namespace");
    let alerts = env.expect_alerts(2);
    assert_exec_alert(&alerts[0], &Expect::block(&lower.join("payload"), &e1, &cwd));
    assert_exec_alert(&alerts[1], &Expect::block(&lower.join("payload"), &e2, &cwd));
}
