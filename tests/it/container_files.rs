//! Privileged: KubeArmor's file rules in a `KubeArmorPolicy`, enforced by the real daemon inside podman
//! containers (the fixture of `container_enforce`, on both host layouts). The WordPress container's image
//! holds the files; the drop-in, loaded as a user applies it, blocks a path, a `readOnly` path, an
//! `ownerOnly` path and a recursive directory, and audits another directory. Checked: the errno of each
//! refused open, what still opens (reads of the `readOnly` file, the owner's opens, files next to the ruled
//! ones), a subdirectory made in the audited directory after the container started, each alert field by
//! field (KubeArmor's file form with the container's fields), and that neither a container no policy
//! selects nor a host process reading the same files through `/proc/PID/root` is decided by the container's
//! rules.

use std::fs;

use serde_json::Value;

use crate::common::*;
use crate::container_enforce::{InContainer, OTHER_LABELS, expected_marks, setup};
use crate::containers::{SandboxLayout, WORDPRESS_LABELS, path_str};

/// The image: the fixture's busybox with the files the rules point at, all owned by root.
const FILES_IMAGE: &str = "localhost/noexecd-it-files:1";

const KSP_FILES: &str = "\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: ksp-wordpress-block-config
  namespace: wordpress-mysql
spec:
  severity: 7
  tags: [\"WORDPRESS\", \"FILE\"]
  message: Alert! A protected file of WordPress was opened
  selector:
    matchLabels:
      app: wordpress
  file:
    matchPaths:
    - path: /var/www/html/wp-config.php
    - path: /etc/app/readonly.txt
      readOnly: true
    - path: /etc/app/owned.txt
      ownerOnly: true
    - path: /etc/app/by-cat
      fromSource:
      - path: /usr/local/bin/cat
    matchDirectories:
    - dir: /srv/secrets/
      recursive: true
  action: Block
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: ksp-wordpress-audit-logs
  namespace: wordpress-mysql
spec:
  selector:
    matchLabels:
      app: wordpress
  file:
    matchDirectories:
    - dir: /srv/audit/
      recursive: true
  action: Audit
";

/// KubeArmor's `Data` of an open for reading by `openat`.
const RDONLY: &str = "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY";

const BLOCK_POLICY: &str = "ksp-wordpress-block-config";
const AUDIT_POLICY: &str = "ksp-wordpress-audit-logs";

/// Every field of a file alert in the WordPress container `c`, opened by busybox with `data`.
fn assert_file_alert(a: &Value, c: &InContainer<'_>, policy: &str, action: &str, data: &str) {
    assert_eq!(get_str(a, "Type"), "MatchedPolicy", "a container policy's alert: {a}");
    assert_eq!(get_str(a, "Operation"), "File", "{a}");
    assert_eq!(get_str(a, "PolicyName"), policy, "{a}");
    assert_eq!(get_str(a, "Action"), action, "{a}");
    let result = if action == "Block" { EPERM_TEXT } else { "Passed" };
    assert_eq!(get_str(a, "Result"), result, "{a}");
    assert_eq!(get_str(a, "Resource"), c.resource, "the path inside the container: {a}");
    assert_eq!(get_str(a, "Data"), data, "{a}");
    assert_eq!(get_str(a, "Enforcer"), "fanotify", "{a}");
    assert!(get_str(a, "ProcessName").ends_with("/busybox"), "the opener, busybox's applet: {a}");
    assert!(get_str(a, "Source").ends_with("/busybox"), "{a}");
    assert_eq!(get_str(a, "ContainerID"), c.id, "{a}");
    assert_eq!(get_str(a, "ContainerName"), "wordpress", "{a}");
    assert_eq!(get_str(a, "ContainerImage"), c.image, "{a}");
    assert_eq!(get_str(a, "NamespaceName"), "wordpress-mysql", "{a}");
    assert_eq!(get_str(a, "PodName"), "wp-1", "{a}");
    assert_eq!(get_str(a, "Labels"), "app=wordpress", "{a}");
    assert_eq!(get_str(a, "ClusterName"), CLUSTER_NAME, "{a}");
    let (pid, host_pid) = (get_int(a, "PID"), get_int(a, "HostPID"));
    assert!(pid > 0 && host_pid > 0 && host_pid != pid, "PID inside the container, HostPID outside: {a}");
    if policy == BLOCK_POLICY {
        assert_eq!(get_str(a, "Severity"), "7", "{a}");
        assert_eq!(get_str(a, "Tags"), "WORDPRESS,FILE", "{a}");
        assert_eq!(get_str(a, "Message"), "Alert! A protected file of WordPress was opened", "{a}");
    }
}

fn file_rules_in_podman_containers(name: &str, layout: SandboxLayout) {
    let Some(mut g) = setup(name, layout) else { return };
    let base = g.sb.base();
    fs::write(g.sb.host_view(&base.join("policy.d/ksp-wordpress-files.yaml")), KSP_FILES).unwrap();
    build_files_image(&g);
    let want = expected_marks(&g);
    g.start(&want);

    let started =
        g.run_container(&WORDPRESS_LABELS, &["-d", "--name", "wp-files"], FILES_IMAGE, &["/bin/sleep", "600"]);
    assert!(started.status.success(), "{name}: the WordPress container starts\n{started}");
    let wp = started.stdout.trim().to_owned();
    let other = g.run_container(&OTHER_LABELS, &["-d", "--name", "other-files"], FILES_IMAGE, &["/bin/sleep", "600"]);
    assert!(other.status.success(), "{name}: the other container starts\n{other}");
    // The daemon has read both containers and marked the WordPress container's directories.
    g.caught_up();
    let image = format!("{FILES_IMAGE}@sha256:{}", g.image_id(FILES_IMAGE));
    let exec = |user: &str, container: &str, script: &str| {
        g.podman(&["exec", "--user", user, container, "/bin/sh", "-c", script])
    };
    let refused = |o: &Output, what: &str| {
        assert!(
            o.code() != Some(0) && o.stderr.contains(EPERM_TEXT) && !o.stdout.contains("data"),
            "{name}: {what}: expected EPERM\n{o}"
        );
    };
    let opened = |o: &Output, what: &str| {
        assert!(o.status.success() && !o.stderr.contains(EPERM_TEXT), "{name}: {what}: expected it to open\n{o}");
    };

    // Block: a path.
    refused(&exec("0", "wp-files", "cat /var/www/html/wp-config.php"), "cat wp-config.php");
    let a = g.expect_alerts(1, "wp-config.php refused");
    let c = |resource| InContainer { id: &wp, image: image.clone(), resource, source: None, pid: None };
    let rdonly = RDONLY;
    assert_file_alert(&a[0], &c("/var/www/html/wp-config.php"), BLOCK_POLICY, "Block", rdonly);
    opened(&exec("0", "wp-files", "cat /var/www/html/index.php /etc/app/plain.txt"), "the files next to it");

    // readOnly: reads open, writes do not.
    opened(&exec("0", "wp-files", "cat /etc/app/readonly.txt"), "a read of the readOnly file");
    refused(&exec("0", "wp-files", "echo more >> /etc/app/readonly.txt"), "an append to the readOnly file");
    let a = g.expect_alerts(2, "the append refused");
    let append = "syscall=SYS_OPENAT fd=-100 flags=O_WRONLY|O_CREAT|O_APPEND";
    assert_file_alert(&a[1], &c("/etc/app/readonly.txt"), BLOCK_POLICY, "Block", append);

    // ownerOnly: the owner (root) opens it, nobody does not.
    opened(&exec("0", "wp-files", "cat /etc/app/owned.txt"), "the owner's read of the ownerOnly file");
    refused(&exec("65534", "wp-files", "cat /etc/app/owned.txt"), "another user's read of the ownerOnly file");
    let a = g.expect_alerts(3, "nobody's read refused");
    assert_file_alert(&a[2], &c("/etc/app/owned.txt"), BLOCK_POLICY, "Block", rdonly);
    assert_eq!(get_int(&a[2], "UID"), 65534, "{}", a[2]);

    // A recursive directory: a file two levels down.
    refused(&exec("0", "wp-files", "cat /srv/secrets/deep/key"), "a file below the blocked directory");
    let a = g.expect_alerts(4, "the secret key refused");
    assert_file_alert(&a[3], &c("/srv/secrets/deep/key"), BLOCK_POLICY, "Block", rdonly);

    // Audit: the open goes through with its alert, also in a subdirectory made after the container started.
    opened(&exec("0", "wp-files", "cat /srv/audit/log"), "an audited read");
    opened(&exec("0", "wp-files", "mkdir /srv/audit/new"), "a new subdirectory of the audited directory");
    opened(&exec("0", "wp-files", "echo x > /srv/audit/new/f"), "a write in the new subdirectory");
    let a = g.expect_alerts(6, "two audited opens");
    assert_file_alert(&a[4], &c("/srv/audit/log"), AUDIT_POLICY, "Audit", rdonly);
    let create = "syscall=SYS_OPENAT fd=-100 flags=O_WRONLY|O_CREAT|O_TRUNC";
    assert_file_alert(&a[5], &c("/srv/audit/new/f"), AUDIT_POLICY, "Audit", create);

    // fromSource: the rule's program (a copy of busybox at /usr/local/bin/cat) is refused, another is not.
    opened(&exec("0", "wp-files", "/bin/cat /etc/app/by-cat"), "by-cat read by another program");
    refused(&exec("0", "wp-files", "/usr/local/bin/cat /etc/app/by-cat"), "by-cat read by the fromSource program");
    let a = g.expect_alerts(7, "the fromSource read refused");
    assert_eq!(get_str(&a[6], "Resource"), "/etc/app/by-cat", "{}", a[6]);
    assert_eq!(get_str(&a[6], "ProcessName"), "/usr/local/bin/cat", "{}", a[6]);
    assert_eq!(get_str(&a[6], "PolicyName"), BLOCK_POLICY, "{}", a[6]);
    assert_eq!(get_str(&a[6], "Operation"), "File", "{}", a[6]);

    // Not the WordPress container's rules: another container, and the host reading the same files.
    opened(&exec("0", "other-files", "cat /var/www/html/wp-config.php /srv/secrets/deep/key"), "the other container");
    let pid = g.inspect("wp-files", "{{.State.Pid}}");
    let host_read = g.sb.run(&["cat", &format!("/proc/{pid}/root/var/www/html/wp-config.php")]);
    opened(&host_read, "the host reading the container's file through /proc/PID/root");
    g.expect_alerts(7, "nothing more");
    let status = g.watch().fresh_status();
    assert!(!status.line.contains("FILE RULES NOT ENFORCED"), "{name}: every file rule here is enforced: {status:?}");

    // No window at a container's start: the open of the blocked file as the first command of fresh
    // containers, several started at once, before the daemon's look at the runtimes can know them.
    let fresh = first_commands(&g, "/bin/cat /var/www/html/wp-config.php", FRESH);
    for (i, out) in fresh.iter().enumerate() {
        assert!(
            out.contains(EPERM_TEXT) && !out.contains("data"),
            "{name}: fresh container {i}: its first open of the blocked file went through:\n{out}\n--- noexecd ---\n{}",
            g.log_text()
        );
    }
    let a = g.expect_alerts(7 + FRESH, "one alert per fresh container");
    for x in &a[7..] {
        assert_eq!(get_str(x, "PolicyName"), BLOCK_POLICY, "{name}: {x}");
        assert_eq!(get_str(x, "Resource"), "/var/www/html/wp-config.php", "{name}: {x}");
        assert_eq!(get_str(x, "Operation"), "File", "{name}: {x}");
        assert_eq!(get_str(x, "NamespaceName"), "wordpress-mysql", "{name}: {x}");
    }
    g.verify();
}

/// Fresh containers started at once whose first command opens a blocked file.
const FRESH: usize = 8;

/// Runs `cmd` (split at spaces) as the first command of `n` fresh WordPress containers, all at once; each
/// one's output.
fn first_commands(g: &crate::container_enforce::Guarded, cmd: &str, n: usize) -> Vec<String> {
    let out = g.sb.base().join("fresh");
    fs::create_dir_all(g.sb.host_view(&out)).unwrap();
    let cgroup = format!("/{}", g.sb.cgroup);
    let mut args: Vec<String> =
        ["run", "--rm", "--network", "none", "--cgroup-parent", &cgroup].map(String::from).to_vec();
    args.extend(crate::containers::label_args(&WORDPRESS_LABELS));
    args.push(FILES_IMAGE.to_owned());
    args.extend(cmd.split(' ').map(String::from));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let argv: Vec<String> = g.sb.podman_argv(&refs).iter().map(|a| sh_quote(std::path::Path::new(a))).collect();
    let argv = argv.join(" ");
    let mut script = String::new();
    for i in 0..n {
        let file = sh_quote(&out.join(i.to_string()));
        script += &format!("timeout -k 2 120 {argv} > {file} 2>&1 < /dev/null &\n");
    }
    script += "wait\n";
    g.sb.sh(&script);
    (0..n).map(|i| fs::read_to_string(g.sb.host_view(&out.join(i.to_string()))).unwrap_or_default()).collect()
}

/// Allow file rules: under `default_file_posture = "block"`, the selected container opens only what they
/// allow; KubeArmor's default file posture, enforced on every mount of the container's files.
const KSP_ALLOW: &str = "\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: ksp-wordpress-allow-files
  namespace: wordpress-mysql
spec:
  selector:
    matchLabels:
      app: wordpress
  file:
    matchDirectories:
    - dir: /bin/
      recursive: true
    - dir: /srv/audit/
      recursive: true
    matchPaths:
    - path: /etc/app/plain.txt
    - path: /etc/app/readonly.txt
      readOnly: true
  action: Allow
";

/// The fixture with the image of [`file_rules_in_podman_containers`], and a daemon whose default file
/// posture is `block`, with [`KSP_ALLOW`] as its only file policy.
fn allow_setup(name: &str, layout: SandboxLayout) -> Option<crate::container_enforce::Guarded> {
    let g = setup(name, layout)?;
    let base = g.sb.base();
    fs::write(g.sb.host_view(&base.join("policy.d/ksp-wordpress-allow.yaml")), KSP_ALLOW).unwrap();
    let config = g.sb.host_view(&g.config);
    let text =
        fs::read_to_string(&config).unwrap().replacen("[daemon]\n", "[daemon]\ndefault_file_posture = \"block\"\n", 1);
    fs::write(&config, text).unwrap();
    build_files_image(&g);
    Some(g)
}

/// The fixture's busybox image with the files the rules point at, all owned by root, as [`FILES_IMAGE`].
fn build_files_image(g: &crate::container_enforce::Guarded) {
    let base = g.sb.base();
    g.sb.sh(&format!(
        "cd {b}\ncp -a img files\ncd files\nmkdir -p var/www/html etc/app srv/secrets/deep srv/audit usr/local/bin\n\
         cp bin/busybox usr/local/bin/cat\n\
         for f in var/www/html/wp-config.php var/www/html/index.php etc/app/readonly.txt etc/app/owned.txt \
         etc/app/plain.txt etc/app/by-cat srv/secrets/deep/key srv/audit/log; do echo data > $f; done\n\
         chmod 0666 etc/app/readonly.txt\nchmod 0644 etc/app/owned.txt\nchmod 0777 srv/audit\n\
         tar -C . -cf ../files.tar .\n",
        b = sh_quote(&base)
    ));
    g.sb.podman(&["import", "-q", &path_str(&base.join("files.tar")), FILES_IMAGE]);
}

fn allow_posture_in_podman_containers(name: &str, layout: SandboxLayout) {
    let Some(mut g) = allow_setup(name, layout) else { return };
    let want = expected_marks(&g);
    g.start(&want);
    let started =
        g.run_container(&WORDPRESS_LABELS, &["-d", "--name", "wp-allow"], FILES_IMAGE, &["/bin/sleep", "600"]);
    assert!(started.status.success(), "{name}: the WordPress container starts under its posture\n{started}");
    let wp = started.stdout.trim().to_owned();
    let other = g.run_container(&OTHER_LABELS, &["-d", "--name", "other-allow"], FILES_IMAGE, &["/bin/sleep", "600"]);
    assert!(other.status.success(), "{name}: the other container starts\n{other}");
    g.caught_up();
    let check = g.sb.run(&[bin().into_os_string(), "check".into(), "--config".into(), g.config.clone().into()]);
    assert!(
        check.stdout.lines().any(|l| l.starts_with(&format!("container-file-posture\t{wp}\t/"))),
        "{name}: `check` lists the container's mounts under its posture\n{check}"
    );
    let image = format!("{FILES_IMAGE}@sha256:{}", g.image_id(FILES_IMAGE));
    let exec = |container: &str, script: &str| g.podman(&["exec", container, "/bin/sh", "-c", script]);
    let opened = |o: &Output, what: &str| {
        assert!(o.status.success() && !o.stderr.contains(EPERM_TEXT), "{name}: {what}: expected it to open\n{o}");
    };
    let refused = |o: &Output, what: &str| {
        assert!(o.code() != Some(0) && o.stderr.contains(EPERM_TEXT), "{name}: {what}: expected EPERM\n{o}");
    };
    // What the Allow rules name opens (the shell and cat themselves: /bin/ is allowed).
    opened(&exec("wp-allow", "cat /etc/app/plain.txt /srv/audit/log /etc/app/readonly.txt"), "allowed files");
    opened(&exec("wp-allow", "echo x > /srv/audit/new && cat /srv/audit/new"), "a new file in an allowed directory");
    opened(&exec("wp-allow", "echo x > /dev/null"), "/dev is the kernel's, under no posture");
    // Everything else is refused by the posture, each with its alert.
    refused(&exec("wp-allow", "cat /var/www/html/index.php"), "a file no Allow rule names");
    refused(&exec("wp-allow", "echo x >> /etc/app/readonly.txt"), "a write to a file allowed read-only");
    refused(&exec("wp-allow", "echo x > /tmp/dropped"), "a new file in /tmp");
    let a = g.expect_alerts(3, "three opens refused by the posture");
    let c = |resource| InContainer { id: &wp, image: image.clone(), resource, source: None, pid: None };
    assert_file_alert(&a[0], &c("/var/www/html/index.php"), "DefaultPosture", "Block", RDONLY);
    let append = "syscall=SYS_OPENAT fd=-100 flags=O_WRONLY|O_CREAT|O_APPEND";
    assert_file_alert(&a[1], &c("/etc/app/readonly.txt"), "DefaultPosture", "Block", append);
    let create = "syscall=SYS_OPENAT fd=-100 flags=O_WRONLY|O_CREAT|O_TRUNC";
    assert_file_alert(&a[2], &c("/tmp/dropped"), "DefaultPosture", "Block", create);
    // A container no Allow rule selects, and the host, are under no posture.
    opened(&exec("other-allow", "cat /var/www/html/index.php && echo x > /tmp/dropped"), "the other container");
    let pid = g.inspect("wp-allow", "{{.State.Pid}}");
    opened(&g.sb.run(&["cat", &format!("/proc/{pid}/root/var/www/html/index.php")]), "the host reading the file");
    // From a fresh container's first command.
    let fresh = first_commands(&g, "/bin/cat /var/www/html/index.php", FRESH);
    for (i, out) in fresh.iter().enumerate() {
        assert!(
            out.contains(EPERM_TEXT) && !out.contains("data"),
            "{name}: fresh container {i}: its first open went through its posture:\n{out}\n--- noexecd ---\n{}",
            g.log_text()
        );
    }
    for out in &first_commands(&g, "/bin/cat /etc/app/plain.txt", 2) {
        assert!(out.contains("data") && !out.contains(EPERM_TEXT), "{name}: an allowed first open:\n{out}");
    }
    g.expect_alerts(3 + FRESH, "one alert per fresh container refused");
    g.verify();
}

#[test]
fn tmp_tmpfs_allow_posture_in_podman_containers() {
    allow_posture_in_podman_containers(&test_name!(), SandboxLayout::TmpTmpfs);
}

#[test]
fn ext4_root_allow_posture_in_podman_containers() {
    allow_posture_in_podman_containers(&test_name!(), SandboxLayout::Ext4Root);
}

#[test]
fn tmp_tmpfs_file_rules_in_podman_containers() {
    file_rules_in_podman_containers(&test_name!(), SandboxLayout::TmpTmpfs);
}

#[test]
fn ext4_root_file_rules_in_podman_containers() {
    file_rules_in_podman_containers(&test_name!(), SandboxLayout::Ext4Root);
}
