//! Privileged: the open guard inside a selected podman container, on both host layouts of
//! `container_enforce` (its fixture: the KubeArmor drop-in `ksp-block-exec-inside-tmp` selecting the
//! WordPress containers, a host policy on the host's tmp directories).
//!
//! The routes that run code without an exec of it: `sh /tmp/s`, the container's own loader (`ld.so /tmp/x`),
//! `LD_PRELOAD=/tmp/lib.so`, and a script in a directory made after the container started
//! (`/tmp/newdir/s`, `/tmp/a/b/c/s`): the directory marks are in the overlay's upper layer, on the
//! storage's filesystem, where new directories are reported by file handle. Then a container's own tmpfs at
//! `/tmp` (`--mount type=tmpfs`) and a host directory bound at `/var/tmp` (an emptyDir), and a reload that
//! deselects the container: its marks (the tmpfs's filesystem mark, the layers' directory marks) are gone.
//!
//! The image: the busybox image of `container_enforce` plus a dynamically linked program (`/bin/dtrue`, the
//! host's `true` with its libc and loader at the paths `ldd` names) and `/lib.so`, a library whose
//! constructor prints `preloaded`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::*;
use crate::container_enforce::{
    Guarded, OTHER_LABELS, assert_denied_in_shell, assert_open_refused, assert_own_mount_alert, expected_marks, setup,
};
use crate::containers::{SandboxLayout, WORDPRESS_LABELS, path_str};

const DYN_IMAGE: &str = "localhost/noexecd-it-dyn:1";
/// A TOML container policy beside the KubeArmor drop-in (whose `/tmp/*` stops at `/tmp`'s own files): the
/// WordPress containers' whole /tmp tree.
const TREE_POLICY: &str = "ctr-block-exec-in-tmp-tree";
const TREE_TOML: &str = "\
[[policy]]
name = \"ctr-block-exec-in-tmp-tree\"
action = \"Block\"
message = \"Alert! Execution attempted inside the /tmp tree\"

[policy.selector]
match_labels = { app = \"wordpress\" }
namespace = \"wordpress-mysql\"

[[policy.process.match_directories]]
dir = \"/tmp/\"
recursive = true
";

/// Waits until the directory tracker has marked `n` directories more than `before` said.
fn wait_tracked(g: &Guarded, before: &DaemonStatus, n: u64) {
    let want = before.get("open_dirs") + n;
    g.watch().wait_status(format_args!("open_dirs >= {want}"), |s| s.get("open_dirs") >= want);
}

/// The loader `ldd` names for the host's `true`, and the libraries it needs; `None`: a static `true`.
fn loader_and_libs() -> Option<(String, Vec<String>)> {
    let true_bin = which("true")?;
    let o = run_bounded(Command::new("ldd").arg(&true_bin), Duration::from_secs(20));
    let paths: Vec<String> = o.stdout.split_whitespace().filter(|w| w.starts_with('/')).map(str::to_owned).collect();
    let loader = paths.iter().find(|p| p.contains("ld-linux") || p.contains("ld-musl"))?.clone();
    Some((loader, paths))
}

/// `<base>/dyn.tar`: the busybox image with `/bin/dtrue`, its libraries and loader, and `/lib.so`.
fn build_dyn_image(g: &Guarded, libs: &[String]) {
    let base = g.sb.base();
    let src = g.sb.dir.path().join("pre.c");
    fs::write(
        &src,
        "#include <unistd.h>\n__attribute__((constructor)) static void pre(void) { write(1, \"preloaded\\n\", 10); }\n",
    )
    .unwrap();
    let lib = g.sb.host_view(&base.join("lib.so"));
    let mut cc = Command::new("cc");
    cc.env("PATH", SYS_PATH).args(["-shared", "-fPIC", "-O2", "-o"]).arg(&lib).arg(&src);
    let o = run_bounded(&mut cc, Duration::from_secs(120));
    assert!(o.status.success(), "cc -shared failed\n{o}");
    let mut script = format!(
        "cd {}\ncp -a img dyn\ncp -L {} dyn/bin/dtrue\ncp lib.so dyn/lib.so\n",
        sh_quote(&base),
        sh_quote(&which("true").unwrap())
    );
    for l in libs {
        script += &format!("mkdir -p dyn$(dirname {l})\ncp -L {l} dyn{l}\n");
    }
    script += "tar -C dyn -cf dyn.tar .\n";
    g.sb.sh(&script);
    g.sb.podman(&["import", "-q", &path_str(&base.join("dyn.tar")), DYN_IMAGE]);
}

/// The open-guard alert of a WordPress container for `resource`: its policy, its path inside the container.
fn assert_route_alert(a: &Value, id: &str, policy: &str, resource: &str) {
    assert_own_mount_alert(a, id, policy, resource, &get_str(a, "Data").replace("fanotify=", ""));
    assert!(get_str(a, "Data").starts_with("fanotify=FAN_OPEN_PERM route="), "an open-guard refusal: {a}");
}

/// `major:minor` of the mount at `point` in process `pid`'s mountinfo, as the kernel's `s_dev`.
fn mount_sdev(g: &Guarded, pid: &str, point: &str) -> Option<u64> {
    // The pid is the sandbox's: read in its namespaces.
    let text = g.sb.run(&["cat".to_owned(), format!("/proc/{pid}/mountinfo")]).stdout;
    let line = text.lines().find(|l| l.split_whitespace().nth(4) == Some(point))?;
    let (maj, min) = line.split_whitespace().nth(2)?.split_once(':')?;
    Some((maj.parse::<u64>().ok()? << 20) | min.parse::<u64>().ok()?)
}

/// The devices (kernel `s_dev`) of the daemon's filesystem marks, and (sdev, ino) of its inode marks.
fn daemon_marks(pid: i32) -> (BTreeSet<u64>, BTreeSet<(u64, u64)>) {
    let (mut fs_marks, mut inodes) = (BTreeSet::new(), BTreeSet::new());
    for l in fanotify_mark_lines(pid) {
        let field = |name: &str| {
            l.split_whitespace().find_map(|t| t.strip_prefix(name)).and_then(|h| u64::from_str_radix(h, 16).ok())
        };
        if field("mask:") == Some(0) {
            continue;
        }
        match (field("ino:"), field("sdev:")) {
            (Some(ino), Some(sdev)) => {
                inodes.insert((sdev, ino));
            }
            (None, Some(sdev)) => {
                fs_marks.insert(sdev);
            }
            _ => {}
        }
    }
    (fs_marks, inodes)
}

/// (kernel sdev, ino) of `path` as the host sees it.
fn inode(g: &Guarded, path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::symlink_metadata(g.sb.host_view(path)).ok()?;
    Some((kernel_dev(m.dev()), m.ino()))
}

/// `sh -c SCRIPT` in the running container `c`.
fn in_ctr(g: &Guarded, c: &str, script: &str) -> Output {
    g.podman(&["exec", c, "/bin/sh", "-c", script])
}

fn container_routes(name: &str, layout: SandboxLayout) {
    let Some(mut g) = setup(name, layout) else { return };
    let Some((loader, libs)) = loader_and_libs() else {
        eprintln!("SKIPPED {name}: the host's `true` is not dynamically linked");
        return;
    };
    build_dyn_image(&g, &libs);
    fs::write(g.sb.host_view(&g.sb.base().join("policy.d/tree.toml")), TREE_TOML).unwrap();
    let want = expected_marks(&g);
    g.start(&want);
    let wp_name = "wp-1-wordpress";
    let o = g.run_container(&WORDPRESS_LABELS, &["-d", "--name", wp_name], DYN_IMAGE, &["/bin/sleep", "600"]);
    assert!(o.status.success(), "{name}: the WordPress container starts\n{o}");
    let wp = o.stdout.trim().to_owned();
    // The daemon's look at the containers (every 500 ms) finds the container and its layers.
    g.wait_for_log(&format!("id={wp}"));
    g.caught_up();
    let mut n = 0;

    // (a) `sh /tmp/s`, with /tmp not yet in the upper layer: the first write copies it up, and the overlay's
    // /tmp, marked since the container's first exec, keeps its inode and its mark (nothing to wait for).
    let o = in_ctr(&g, wp_name, "echo 'echo ran' > /tmp/s");
    assert!(o.status.success(), "{name}: a write to the container's /tmp\n{o}");
    let o = in_ctr(&g, wp_name, "/bin/sh /tmp/s");
    assert_open_refused(&o, &format!("{name}: sh /tmp/s in the WordPress container"));
    n += 1;
    let a = g.expect_alerts(n, "sh /tmp/s");
    assert_route_alert(&a[n - 1], &wp, POLICY_NAME, "/tmp/s");

    // (b) A directory made after the container started, and one made with its parents, at once.
    for (dir, made) in [("/tmp/newdir", 1), ("/tmp/a/b/c", 3)] {
        let s = format!("{dir}/s");
        let before = g.watch().fresh_status();
        let o = in_ctr(&g, wp_name, &format!("mkdir -p {dir}"));
        assert!(o.status.success(), "{name}: mkdir -p {dir}\n{o}");
        wait_tracked(&g, &before, made);
        let o = in_ctr(&g, wp_name, &format!("echo 'echo ran' > {s} && /bin/sh {s}"));
        assert_open_refused(&o, &format!("{name}: sh {s} in the WordPress container"));
        n += 1;
        let a = g.expect_alerts(n, &format!("sh {s}"));
        assert_route_alert(&a[n - 1], &wp, TREE_POLICY, &s);
        // ... and an exec there, by the exec guard.
        let x = format!("{dir}/x");
        assert_denied_in_shell(&in_ctr(&g, wp_name, &format!("cp /bin/ok {x} && {x}")), &format!("{name}: {x}"));
        n += 1;
        g.expect_alerts(n, &format!("exec {x}"));
    }

    // (c) The container's own loader running a program of /tmp, and a preload library from /tmp.
    let o = in_ctr(&g, wp_name, &format!("cp /bin/dtrue /tmp/d && {loader} /tmp/d"));
    assert!(!o.status.success() && o.stderr.contains(EPERM_TEXT), "{name}: {loader} /tmp/d in the container\n{o}");
    n += 1;
    let a = g.expect_alerts(n, "ld.so /tmp/d");
    assert_route_alert(&a[n - 1], &wp, POLICY_NAME, "/tmp/d");
    let o =
        in_ctr(&g, wp_name, "cp /lib.so /tmp/newdir/lib.so && LD_PRELOAD=/tmp/newdir/lib.so /bin/dtrue && echo done");
    assert!(!o.stdout.contains("preloaded") && o.stdout.contains("done"), "{name}: LD_PRELOAD from /tmp\n{o}");
    n += 1;
    let a = g.expect_alerts(n, "LD_PRELOAD=/tmp/newdir/lib.so");
    assert_route_alert(&a[n - 1], &wp, TREE_POLICY, "/tmp/newdir/lib.so");

    // (d) Reading and copying there works; nothing is alerted.
    let o = in_ctr(
        &g,
        wp_name,
        "cat /tmp/newdir/s && cp /tmp/newdir/s /tmp/a/b/c/t && cat /tmp/a/b/c/t /tmp/d > /dev/null && echo copied",
    );
    assert!(o.status.success() && o.stdout == "echo ran\ncopied\n", "{name}: reading and copying\n{o}");
    g.expect_alerts(n, "reading and copying raise none");

    // (e) Another app's container runs all of it.
    let script = format!(
        "mkdir -p /tmp/newdir && echo 'echo ran' > /tmp/newdir/s && /bin/sh /tmp/newdir/s && cp /bin/dtrue /tmp/d && \
         {loader} /tmp/d && cp /lib.so /tmp/lib.so && LD_PRELOAD=/tmp/lib.so /bin/dtrue"
    );
    let o = g.run_container(&OTHER_LABELS, &["--rm"], DYN_IMAGE, &["/bin/sh", "-c", &script]);
    assert!(o.status.success() && o.stdout == "ran\npreloaded\n", "{name}: an app=other container\n{o}");
    g.expect_alerts(n, "nothing from the app=other container");
    g.verify();

    // (f) A WordPress container with its own tmpfs at /tmp (`--mount type=tmpfs`) and a host directory bound at
    // /var/tmp (what an emptyDir is).
    let hostdir = g.sb.base().join("emptydir");
    fs::create_dir_all(g.sb.host_view(&hostdir)).unwrap();
    let bind = format!("{}:/var/tmp", hostdir.display());
    let mounted = "wp-mounts";
    let flags = ["-d", "--name", mounted, "--mount", "type=tmpfs,destination=/tmp", "-v", &bind];
    let o = g.run_container(&WORDPRESS_LABELS, &flags, DYN_IMAGE, &["/bin/sleep", "600"]);
    assert!(o.status.success(), "{name}: the container with its own mounts starts\n{o}");
    let wm = o.stdout.trim().to_owned();
    g.wait_for_log("marked the filesystem of a container's bind mount");
    let o = in_ctr(&g, mounted, "grep -E ' /(tmp|var/tmp) ' /proc/mounts");
    // podman's `--mount type=tmpfs` is `rw,nosuid,nodev` (exec allowed), unlike its `--tmpfs` (noexec).
    let tmp_noexec = o.stdout.lines().any(|l| l.contains(" /tmp ") && l.split([' ', ',']).any(|f| f == "noexec"));
    println!("{name}: the container's own mounts (the tmpfs noexec: {tmp_noexec}):\n{}", o.stdout);
    let o = in_ctr(&g, mounted, "cp /bin/ok /tmp/x && /tmp/x");
    if tmp_noexec {
        // The kernel refuses it itself (EACCES) before fanotify sees anything.
        assert!(o.code() == Some(126) && !o.stdout.contains("ran"), "{name}: /tmp/x on a noexec tmpfs\n{o}");
    } else {
        assert_denied_in_shell(&o, &format!("{name}: /tmp/x on the container's tmpfs"));
        n += 1;
        g.expect_alerts(n, "exec on the container's own tmpfs");
    }
    // A script is read, not executed: noexec does not stop `sh /tmp/s`; the open guard does.
    let o = in_ctr(&g, mounted, "echo 'echo ran' > /tmp/s && /bin/sh /tmp/s");
    assert_open_refused(&o, &format!("{name}: sh /tmp/s on the container's tmpfs"));
    n += 1;
    let a = g.expect_alerts(n, "sh /tmp/s on the container's tmpfs");
    assert_route_alert(&a[n - 1], &wm, POLICY_NAME, "/tmp/s");
    assert_denied_in_shell(
        &in_ctr(&g, mounted, "cp /bin/ok /var/tmp/x && /var/tmp/x"),
        &format!("{name}: /var/tmp/x (bind)"),
    );
    n += 1;
    let a = g.expect_alerts(n, "exec in the bound /var/tmp");
    assert_own_mount_alert(&a[n - 1], &wm, POLICY_NAME, "/var/tmp/x", "FAN_OPEN_EXEC_PERM");
    g.verify();

    // (g) A reload that deselects the WordPress containers: their marks go, and they run what they put in /tmp.
    let pid = g.inspect(mounted, "{{.State.Pid}}");
    let tmpfs = mount_sdev(&g, &pid, "/tmp").expect("the container's /tmp tmpfs in its mountinfo");
    let daemon = g.daemon_pid();
    let (fs_marks, inodes) = daemon_marks(daemon);
    assert!(fs_marks.contains(&tmpfs), "{name}: the container's tmpfs is marked: {fs_marks:?}");
    // The open marks are on the container's overlay (its own directories), none in its layers.
    let wp_pid = g.inspect(wp_name, "{{.State.Pid}}");
    let overlay = mount_sdev(&g, &wp_pid, "/").expect("the container's rootfs in its mountinfo");
    let o = in_ctr(&g, wp_name, "stat -c %i /tmp /tmp/newdir /tmp/a/b/c");
    let layer_dirs: Vec<(u64, u64)> =
        o.stdout.split_whitespace().filter_map(|i| Some((overlay, i.parse().ok()?))).collect();
    assert_eq!(layer_dirs.len(), 3, "{name}: the container's directories\n{o}");
    for d in &layer_dirs {
        assert!(inodes.contains(d), "{name}: the overlay's directory {d:?} carries the open mark: {inodes:?}");
    }
    let upper = PathBuf::from(g.inspect(wp_name, "{{.GraphDriver.Data.UpperDir}}"));
    for d in ["tmp", "tmp/newdir", "tmp/a/b/c"] {
        let layer = inode(&g, &upper.join(d)).expect("the upper layer holds the container's /tmp");
        assert!(
            !inodes.contains(&layer),
            "{name}: the upper layer's {d} is marked (a read of an event would wait on itself)"
        );
    }
    let reloads = g.watch().fresh_status().get("reloads");
    for f in ["ksp-block-exec-inside-tmp.yaml", "tree.toml"] {
        fs::remove_file(g.sb.host_view(&g.sb.base().join("policy.d").join(f))).unwrap();
    }
    kill(Pid::from_raw(daemon), Signal::SIGHUP).unwrap();
    g.watch().wait_status("the reload after SIGHUP", |s| s.get("reloads") > reloads);
    let (mut fs_marks, mut inodes) = daemon_marks(daemon);
    poll_until(Duration::from_secs(5), || {
        (fs_marks, inodes) = daemon_marks(daemon);
        (!fs_marks.contains(&tmpfs) && !layer_dirs.iter().any(|d| inodes.contains(d))).then_some(())
    });
    assert!(!fs_marks.contains(&tmpfs), "{name}: the deselected container's tmpfs is still marked: {fs_marks:?}");
    for d in &layer_dirs {
        assert!(!inodes.contains(d), "{name}: a deselected container's layer directory {d:?} is still marked");
    }
    let o = in_ctr(&g, wp_name, "/bin/sh /tmp/newdir/s && cp /bin/ok /tmp/newdir/y && /tmp/newdir/y");
    assert!(o.status.success() && o.stdout == "ran\nran\n", "{name}: the deselected container runs its /tmp\n{o}");
    let o = in_ctr(&g, mounted, "/bin/sh /tmp/s");
    assert!(o.status.success() && o.stdout == "ran\n", "{name}: and its tmpfs\n{o}");
    g.expect_alerts(n, "nothing after the container policy went");

    for c in [wp_name, mounted] {
        let o = g.podman(&["rm", "-f", "-t", "0", c]);
        assert!(o.status.success(), "{name}: podman rm {c}\n{o}");
    }
    g.assert_open_guard_marks_only_protected_dirs();
    g.verify();
    let log = g.log_text();
    assert!(!log.contains("noexecd-unresolvable-path"), "{name}: every file was named:\n{log}");
}

#[test]
fn tmp_tmpfs_open_routes_inside_a_selected_container() {
    container_routes(&test_name!(), SandboxLayout::TmpTmpfs);
}

#[test]
fn ext4_root_open_routes_inside_a_selected_container() {
    container_routes(&test_name!(), SandboxLayout::Ext4Root);
}
