//! Privileged: a file is named before anything is refused, whichever mount of which namespace it is reached
//! through. A runtime in a mount namespace of its own (its state on a tmpfs it mounted, its root a mount of a
//! guarded filesystem that our namespace shows only part of) runs its programs, with no
//! `noexecd-unresolvable-path` refusal, while a payload in a protected directory of the host reached through
//! that namespace is refused under the host's name. And a protected directory bound from a directory of
//! another filesystem (`/var/tmp` bound from a data filesystem also mounted whole elsewhere, `/data/tmp /tmp
//! none bind`) is protected under its own name, through every mount that shows it.

use std::path::{Path, PathBuf};

use crate::common::*;

/// The built-in rule of a file that could not be named.
const UNRESOLVABLE: &str = "noexecd-unresolvable-path";

fn unresolvable(alerts: &[serde_json::Value]) -> usize {
    alerts.iter().filter(|a| get_str(a, "PolicyName") == UNRESOLVABLE).count()
}

fn q(p: &Path) -> String {
    sh_quote(p)
}

/// The source (loop device) of the filesystem mounted at `mount_point` in the namespace.
fn source_of(env: &Env, mount_point: &Path) -> String {
    let o = env.sh(&format!("findmnt -n -o SOURCE --mountpoint {}", q(mount_point)));
    let source = o.stdout.lines().last().unwrap_or("").trim().to_owned();
    assert!(source.starts_with("/dev/loop"), "{}: the image's source: {source:?}", env.name);
    source
}

#[test]
fn a_runtime_in_a_mount_namespace_of_its_own_runs_and_a_host_payload_through_it_is_refused() {
    let mut env = privileged!(Layout::WithExt4Image);
    // The ext4 image holds the host's directories (`host/run/lock`, `host/tmp`) and, beside them, what a runtime
    // keeps on the same disk (`state`: bundles, runc's clone). Our namespace shows only `host`, bound at
    // <base>/host (the image's own mount is gone): the runtime's part is in no mount of ours.
    let img = env.img.clone();
    let loopdev = source_of(&env, &img);
    let host = env.base().join("host");
    env.sh(&format!(
        "mkdir -p {i}/host/run/lock {i}/host/tmp {i}/state/bundle/rootfs {h}\nmount --bind {i}/host {h}\numount {i}",
        i = q(&img),
        h = q(&host)
    ));
    let lock = host.join("run/lock");
    let tmp = host.join("tmp");
    let policy = format!(
        "{}\n{}",
        named_dir_policy("lock", "Block", &lock, true, ""),
        named_dir_policy("tmp", "Block", &tmp, true, "")
    );
    let cfg = env.write_config(&DaemonOpts::enforce(), &policy);
    let marks = env.check(&cfg);
    let ext4: Vec<&MarkLine> = marks.iter().filter(|m| m.fstype == "ext4").collect();
    assert_eq!(ext4.len(), 1, "{marks:?}");
    assert_eq!(ext4[0].decides, "path", "{marks:?}");
    assert_eq!(ext4[0].mount_point, host.to_str().unwrap(), "marked through the mount that shows the host's part");
    env.start_daemon(&cfg);

    // The runtime: a namespace of its own, its state on a tmpfs it mounted, the disk mounted whole there (the
    // runtime's root), a bundle's rootfs bound from a directory of it; it execs from each, its cwd the rootfs.
    let rt = env.base().join("rt");
    let state = env.base().join("rt-state");
    let rootfs = env.base().join("rt-rootfs");
    env.sh(&format!("mkdir -p {} {} {}", q(&rt), q(&state), q(&rootfs)));
    let runtime_setup = format!(
        "mount -t tmpfs noexecd-test-rt-state {s}\nmount {loopdev} {r}\nmount --bind {r}/state/bundle/rootfs {f}\n\
         cp {t} {s}/runc\ncp {t} {r}/state/runc\ncp {t} {f}/pause\ncp {t} {r}/host/tmp/payload\n",
        s = q(&state),
        r = q(&rt),
        f = q(&rootfs),
        t = q(&PathBuf::from(real_exe("true")))
    );
    let unshare = ["unshare", "--mount", "--propagation", "private", "--"];
    let started = std::time::Instant::now();
    let mut refused_runs = Vec::new();
    for target in [state.join("runc"), rt.join("state/runc"), rootfs.join("pause")] {
        let e = env.shell_exec_with_setup("bash", &unshare, &runtime_setup, &target, &rootfs);
        if !e.out.status.success() {
            refused_runs.push(format!("{}: {}", target.display(), e.out));
        }
    }
    // A payload in the host's protected /tmp, reached through the runtime's mount of the disk.
    let through_rt = rt.join("host/tmp/payload");
    let e = env.shell_exec_with_setup("bash", &unshare, &runtime_setup, &through_rt, &rootfs);
    let alerts = env.wait_alerts(1 + refused_runs.len());
    let refused = unresolvable(&alerts);
    eprintln!(
        "{}: {} of 3 runtime execs refused, {refused} {UNRESOLVABLE} refusals, in {:?}",
        env.name,
        refused_runs.len(),
        started.elapsed()
    );
    assert!(refused_runs.is_empty(), "the runtime's programs run: {refused_runs:#?}");
    assert_eq!(refused, 0, "no exec is refused for want of a name: {alerts:?}");
    e.assert_denied_bash("the host's protected /tmp through the runtime's namespace");
    let alerts = env.expect_alerts(1);
    let mut want = Expect::block(&tmp.join("payload"), &e, &rootfs);
    want.policy = "tmp".into();
    assert_exec_alert(&alerts[0], &want);

    // A container of that runtime: an overlay mounted in the runtime's namespace over layers of the disk, and
    // a process in its rootfs (chrooted, as `runc init` is pivoted) execs from it. Its layers' paths are the
    // runtime's, seen neither by the caller nor by us. Its image's program runs; a lower layer that is the
    // host's protected /tmp is refused under the host's name.
    let busybox = which("busybox").unwrap();
    let merged = env.base().join("rt-merged");
    let host_layer = env.base().join("rt-merged-host");
    env.sh(&format!("mkdir -p {} {}", q(&merged), q(&host_layer)));
    let container = |lower: &str, merged: &Path, program: &str| {
        let script = format!(
            "{runtime_setup}mkdir -p {r}/state/ovl/lower/bin {r}/state/ovl/upper {r}/state/ovl/work {r}/state/ovl/work2 \
             {r}/state/ovl/upper2\ncp {bb} {r}/state/ovl/lower/bin/busybox\ncp {bb} {r}/host/tmp/payload-static\n\
             mount -t overlay overlay -o lowerdir={r}/{lower},upperdir={r}/state/ovl/upper{n},workdir={r}/state/ovl/work{n} {m}\n\
             chroot {m} {program} true\necho rc=$?\n",
            r = rt.display(),
            bb = busybox.display(),
            m = merged.display(),
            n = if lower == "host/tmp" { "2" } else { "" },
        );
        env.run_in_ns(&["unshare", "--mount", "--propagation", "private", "--", "bash", "-c", &script])
    };
    let ran = container("state/ovl/lower", &merged, "/bin/busybox");
    assert!(ran.stdout.contains("rc=0"), "the container's image program runs:\n{ran}");
    let denied = container("host/tmp", &host_layer, "/payload-static");
    assert!(denied.stdout.contains("rc=126"), "the host's /tmp as a container's layer is refused:\n{denied}");
    let alerts = env.expect_alerts(2);
    assert_eq!(get_str(&alerts[1], "Resource"), tmp.join("payload-static").to_str().unwrap(), "{alerts:?}");
    assert_eq!(get_str(&alerts[1], "PolicyName"), "tmp", "{alerts:?}");
    assert_eq!(unresolvable(&env.alerts()), 0);
}

/// Where the protected directory comes from: a directory of a data filesystem also mounted whole elsewhere.
#[derive(Debug, Clone, Copy)]
enum DataFs {
    /// The data filesystem is the ext4 image (mounted whole at `img`), the host's directory on a tmpfs.
    Ext4,
    /// The data filesystem is a tmpfs (mounted whole at `out`), the host's directory on the ext4 image.
    Tmpfs,
}

/// `dir` (`var/tmp` or `tmp`) of the host (the image, or the tmpfs `fs`) is a bind of `<data>/<from>` of the
/// data filesystem, which is also mounted whole at `<data>`: a host rule on `dir` blocks a file put there,
/// named as the host names it, the same file reached through the data filesystem's own mount, and one reached
/// through a bind of the directory in another namespace (a pod's `hostPath`), while the rest of the data
/// filesystem runs.
fn bound_protected_dir(data_fs: DataFs, dir: &str, from: &str) {
    let mut env = privileged!(Layout::WithExt4Image);
    let (root, data) = match data_fs {
        DataFs::Ext4 => (env.fs.clone(), env.img.clone()),
        DataFs::Tmpfs => (env.img.clone(), env.out.clone()),
    };
    let protected = root.join(dir);
    let source = data.join(from);
    env.sh(&format!(
        "mkdir -p {p} {s} {d}/other\nmount --bind {s} {p}",
        p = q(&protected),
        s = q(&source),
        d = q(&data)
    ));
    let cfg = env.write_config(&DaemonOpts::enforce(), &dir_policy("Block", &protected, true));
    let marks = env.check(&cfg);
    let data_dev = env.mountinfo_dev(&data).unwrap();
    let mark = marks.iter().find(|m| m.dev == data_dev).unwrap_or_else(|| {
        panic!("{}: the data filesystem holding {} is marked: {marks:?}", env.name, protected.display())
    });
    assert_eq!(mark.decides, "path", "{}: it holds unprotected directories too: {mark:?}", env.name);
    assert!(
        mark.protects.iter().any(|p| trim_slash(p) == protected.to_str().unwrap()),
        "{}: protects= names the directory as the host does: {mark:?}",
        env.name
    );
    env.start_daemon(&cfg);

    let x = protected.join("x");
    let y = protected.join("y");
    let other = data.join("other/z");
    for p in [&x, &y, &other] {
        env.put_elf(p);
    }
    let cwd = env.out.clone();
    let e1 = env.bash_exec(&x, &cwd);
    e1.assert_denied_bash(&format!("{dir}/x"));
    let e2 = env.bash_exec(&source.join("y"), &cwd);
    e2.assert_denied_bash(&format!("{dir}/y through the data filesystem's whole mount"));
    env.bash_exec(&other, &cwd).assert_ran("the data filesystem's unprotected directory");
    // A pod's `hostPath` of the directory: a bind of it in a namespace of its own.
    let w = protected.join("w");
    env.put_elf(&w);
    let pod_view = env.base().join("pod-host-dir");
    env.sh(&format!("mkdir -p {}", q(&pod_view)));
    let unshare = ["unshare", "--mount", "--propagation", "private", "--"];
    let setup = format!("mount --bind {} {}", q(&protected), q(&pod_view));
    let e3 = env.shell_exec_with_setup("bash", &unshare, &setup, &pod_view.join("w"), &cwd);
    e3.assert_denied_bash(&format!("{dir}/w through a hostPath-like bind in another namespace"));
    let alerts = env.expect_alerts(3);
    assert_exec_alert(&alerts[0], &Expect::block(&x, &e1, &cwd));
    assert_exec_alert(&alerts[1], &Expect::block(&y, &e2, &cwd));
    assert_exec_alert(&alerts[2], &Expect::block(&w, &e3, &cwd));
    assert_eq!(unresolvable(&alerts), 0);
}

#[test]
fn var_tmp_bound_from_a_directory_of_an_ext4_data_filesystem_is_protected() {
    bound_protected_dir(DataFs::Ext4, "var/tmp", "vartmp");
}

#[test]
fn var_tmp_bound_from_a_directory_of_a_tmpfs_data_filesystem_is_protected() {
    bound_protected_dir(DataFs::Tmpfs, "var/tmp", "vartmp");
}

#[test]
fn tmp_bound_from_a_data_partitions_directory_is_protected() {
    bound_protected_dir(DataFs::Ext4, "tmp", "tmp");
}

#[test]
fn tmp_bound_from_a_tmpfs_data_filesystems_directory_is_protected() {
    bound_protected_dir(DataFs::Tmpfs, "tmp", "tmp");
}

/// An overlay of another namespace whose options name a protected directory through a symbolic link (as
/// anyone who may mount an overlay, in a user namespace of their own, can write them): its file is refused.
#[test]
fn an_overlay_whose_layer_is_named_through_a_symbolic_link_to_a_protected_directory_is_refused() {
    let mut env = privileged!(Layout::WithExt4Image);
    let tmp = env.img.join("tmp");
    let link = env.img.join("home/l");
    let (upper, work, merged) = (env.out.join("upper"), env.out.join("work"), env.base().join("merged"));
    env.sh(&format!(
        "mkdir -p {t} {h} {u} {w} {m}\nln -s {t} {l}",
        t = q(&tmp),
        h = q(&env.img.join("home")),
        u = q(&upper),
        w = q(&work),
        m = q(&merged),
        l = q(&link)
    ));
    let cfg = env.write_config(&DaemonOpts::enforce(), &dir_policy("Block", &tmp, true));
    env.check(&cfg);
    env.start_daemon(&cfg);
    let busybox = which("busybox").unwrap();
    env.sh(&format!("cp {} {}", q(&busybox), q(&tmp.join("p"))));
    let script = format!(
        "mount -t overlay overlay -o lowerdir={l},upperdir={u},workdir={w} {m}\nchroot {m} /p true\necho rc=$?\n",
        l = link.display(),
        u = upper.display(),
        w = work.display(),
        m = merged.display()
    );
    let o = env.run_in_ns(&["unshare", "--mount", "--propagation", "private", "--", "bash", "-c", &script]);
    assert!(o.stdout.contains("rc=126"), "a protected directory as a layer, named through a link, is refused:\n{o}");
    let alerts = env.expect_alerts(1);
    assert_eq!(get_str(&alerts[0], "Resource"), tmp.join("p").to_str().unwrap(), "named as the kernel names it");
}
