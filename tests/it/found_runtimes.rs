//! Privileged: container runtimes found by what runs on the node, with no `[containers]` in the
//! configuration. containerd runs in a `containers::Sandbox` at k3s's places (socket
//! `/run/k3s/containerd/containerd.sock`, state `/run/k3s/containerd`, root
//! `/var/lib/rancher/k3s/agent/containerd`, on the sandbox's own `/run` and `/var/lib`), started as k3s starts
//! it; a task carries a WordPress pod's labels. `noexecd containers` lists it and says where containerd was
//! found; `noexecd run` selects it by its labels and refuses the exec its policy blocks.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::*;
use crate::containers::{IMAGE, Sandbox, WORDPRESS_LABELS, have_tools, label_args, path_str};

const K3S_SOCKET: &str = "/run/k3s/containerd/containerd.sock";
const K3S_STATE: &str = "/run/k3s/containerd";
const K3S_ROOT: &str = "/var/lib/rancher/k3s/agent/containerd";
const K3S_CONFIG: &str = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml";

/// A KubeArmor policy selecting the WordPress pod by its label: nothing in its `/tmp` may run.
const KSP_YAML: &str = "\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: ksp-block-exec-inside-tmp
  namespace: wordpress-mysql
spec:
  selector:
    matchLabels:
      app: wordpress
  process:
    matchPatterns:
    - pattern: /tmp/*
  action: Block
";

fn fresh_id() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{:032x}{:032x}", nanos, u128::from(std::process::id()))
}

/// Seconds since midnight UTC, as the daemon's log lines stamp them.
fn seconds_of_day(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() % 86_400.0
}

/// The host pid of the `noexecd` process whose pid in the sandbox is `ns_pid`.
fn host_pid(sb: &Sandbox, ns_pid: i64) -> Option<i32> {
    let exe = fs::canonicalize(bin()).ok()?;
    let pidns = fs::read_link(format!("/proc/{}/ns/pid", sb.init)).ok()?;
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if fs::read_link(format!("/proc/{pid}/ns/pid")).ok().as_ref() != Some(&pidns) {
            continue;
        }
        if fs::read_link(format!("/proc/{pid}/exe")).ok().as_ref() != Some(&exe) {
            continue;
        }
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let nspid = status.lines().find_map(|l| l.strip_prefix("NSpid:")).unwrap_or_default();
        if nspid.split_whitespace().last().and_then(|p| p.parse::<i64>().ok()) == Some(ns_pid) {
            return Some(pid);
        }
    }
    None
}

#[test]
fn containerd_at_k3s_places_is_found_without_configuration_and_its_pods_are_guarded() {
    privileged!(needs: Needs::WritableCgroups);
    let name = test_name!();
    if !have_tools(&name, &["containerd", "ctr", "containerd-shim-runc-v2", "runc", "podman", "busybox", "tar", "file"])
    {
        return;
    }
    let mut sb = Sandbox::new(&name, "found-k3s");
    sb.build_image_tar();
    sb.write_containers_conf();
    let base = sb.base();
    let tar = path_str(&base.join("img.tar"));
    let oci = path_str(&base.join("oci.tar"));
    sb.podman(&["import", "-q", &tar, IMAGE]);
    sb.podman(&["save", "-q", "--format", "oci-archive", "-o", &oci, IMAGE]);

    // containerd as k3s starts it: its own config file, and the places as flags too.
    let config = Path::new(K3S_CONFIG);
    fs::create_dir_all(sb.host_view(config.parent().unwrap())).unwrap();
    fs::write(
        sb.host_view(config),
        format!(
            "version = 2\nroot = {}\nstate = {}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\n\
             [grpc]\n  address = {}\n\n[ttrpc]\n  address = {}\n",
            toml_str(Path::new(K3S_ROOT)),
            toml_str(Path::new(K3S_STATE)),
            toml_str(Path::new(K3S_SOCKET)),
            toml_str(&Path::new(K3S_STATE).join("containerd.sock.ttrpc")),
        ),
    )
    .unwrap();
    let argv: Vec<String> =
        ["containerd", "-c", K3S_CONFIG, "-a", K3S_SOCKET, "--state", K3S_STATE, "--root", K3S_ROOT]
            .map(str::to_owned)
            .to_vec();
    sb.start_daemon("containerd", &argv);
    assert!(
        sb.wait_for_socket(Path::new(K3S_SOCKET)),
        "{name}: containerd did not open its socket:\n{}",
        sb.daemon_log("containerd")
    );
    let ctr = |sb: &Sandbox, args: &[&str]| -> String {
        let mut argv =
            vec!["ctr".to_owned(), "-a".to_owned(), K3S_SOCKET.to_owned(), "-n".to_owned(), "k8s.io".to_owned()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        sb.ok(&argv)
    };
    ctr(&sb, &["images", "import", &oci]);
    let id = fresh_id();
    let mut args: Vec<String> =
        vec!["run".into(), "-d".into(), "--cgroup".into(), format!("/{}/k8s.io/{id}", sb.cgroup)];
    args.extend(label_args(&WORDPRESS_LABELS));
    args.extend([IMAGE, &id, "/bin/sleep", "600"].map(String::from));
    ctr(&sb, &args.iter().map(String::as_str).collect::<Vec<_>>());

    // `noexecd containers` with no flag: containerd is found by its process, the task listed with its labels.
    let out = sb.run(&[path_str(&bin()), "containers".to_owned()]);
    assert!(out.status.success(), "{name}: noexecd containers failed\n{out}");
    assert!(out.stdout.contains(&id) && out.stdout.contains("\"app\":\"wordpress\""), "{name}: not listed\n{out}");
    let found_line = out.stderr.lines().find(|l| l.starts_with("runtime\tcontainerd\tfound=process "));
    let found_line = found_line.unwrap_or_else(|| panic!("{name}: no runtime line for containerd's process\n{out}"));
    assert!(found_line.contains(&format!("containerd_state={K3S_STATE}")), "{name}: {found_line}");
    assert!(found_line.contains(&format!("containerd_socket={K3S_SOCKET}")), "{name}: {found_line}");
    assert!(found_line.contains(&format!("containerd_root={K3S_ROOT}")), "{name}: {found_line}");

    // The guard, configured without [containers].
    let policy_dir = base.join("policy.d");
    fs::create_dir_all(sb.host_view(&policy_dir)).unwrap();
    fs::write(sb.host_view(&policy_dir.join("ksp-block-exec-inside-tmp.yaml")), KSP_YAML).unwrap();
    let alert_log = base.join("alerts.jsonl");
    let noexecd_config = base.join("noexecd.toml");
    fs::write(
        sb.host_view(&noexecd_config),
        format!(
            "[daemon]\nmode = \"enforce\"\nalert_log = {}\npolicy_dir = {}\nalert_socket = \"\"\nfail_mode = \"open\"\n",
            toml_str(&alert_log),
            toml_str(&policy_dir),
        ),
    )
    .unwrap();
    let check = sb.run(&[path_str(&bin()), "check".to_owned(), "--config".to_owned(), path_str(&noexecd_config)]);
    assert!(check.stdout.contains("runtime\tcontainerd\tfound=process "), "{name}: check names no runtime\n{check}");
    assert!(!check.stderr.contains("no container runtime"), "{name}: check warns\n{check}");

    let mut allowed = BTreeSet::new();
    for m in ["/run", "/var/lib", "/var/tmp", "/dev/shm"].map(PathBuf::from).iter().chain([&base]) {
        allowed.insert(split_dev(fs::metadata(sb.host_view(m)).unwrap().dev()));
    }
    sb.start_daemon(
        "noexecd",
        &[
            path_str(&bin()),
            "--log-level".into(),
            "debug".into(),
            "run".into(),
            "--config".into(),
            path_str(&noexecd_config),
        ],
    );
    let ns_pid: i64 =
        sb.ok(&["sh", "-c", "pidof noexecd || true"]).split_whitespace().next().unwrap_or("0").parse().unwrap();
    let pid = poll_until(Duration::from_secs(10), || host_pid(&sb, ns_pid))
        .unwrap_or_else(|| panic!("{name}: noexecd is not running:\n{}", sb.daemon_log("noexecd")));
    let selected = poll_until(Duration::from_secs(30), || {
        let bad = marks_outside_but_sandbox_superblocks(pid, &allowed);
        if !bad.is_empty() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            panic!("{name}: SAFETY: noexecd marked a filesystem outside the test: {bad:?}");
        }
        let log = sb.daemon_log("noexecd");
        (log.contains(&format!("id={id}"))
            && log.contains("policies=ksp-block-exec-inside-tmp")
            && log.contains("noexecd is guarding"))
        .then_some(())
    });
    assert!(selected.is_some(), "{name}: the task was not selected:\n{}", sb.daemon_log("noexecd"));

    let exec = |exec_id: &str, argv: &[&str]| {
        let mut a = vec!["ctr", "-a", K3S_SOCKET, "-n", "k8s.io", "task", "exec", "--exec-id", exec_id, id.as_str()];
        a.extend(argv);
        sb.run(&a)
    };
    let refused =
        exec("tmpx", &["/bin/sh", "-c", "busybox mkdir -p /tmp && busybox cp /bin/busybox /tmp/true && /tmp/true"]);
    assert!(!refused.status.success(), "{name}: /tmp/true ran in the selected container\n{refused}");
    let ran = exec("true", &["/bin/true"]);
    assert!(ran.status.success(), "{name}: true was refused\n{ran}");
    let alerts = poll_until(Duration::from_secs(10), || {
        let text = fs::read_to_string(sb.host_view(&alert_log)).unwrap_or_default();
        text.contains(&id).then_some(text)
    });
    let alerts = alerts.unwrap_or_else(|| panic!("{name}: no alert for the container:\n{}", sb.daemon_log("noexecd")));
    assert!(alerts.contains("ksp-block-exec-inside-tmp") && alerts.contains("app=wordpress"), "{name}: {alerts}");

    // A container started now is known from containerd's event, before the next look.
    let second = fresh_id();
    let mut args: Vec<String> =
        vec!["run".into(), "-d".into(), "--cgroup".into(), format!("/{}/k8s.io/{second}", sb.cgroup)];
    args.extend(label_args(&WORDPRESS_LABELS));
    args.extend([IMAGE, &second, "/bin/sleep", "600"].map(String::from));
    ctr(&sb, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let started = seconds_of_day(SystemTime::now());
    let known = poll_until(Duration::from_secs(10), || {
        let log = sb.daemon_log("noexecd");
        log.lines().find(|l| l.contains(" INFO container ") && l.contains(&format!("id={second}"))).map(str::to_owned)
    });
    let known = known.unwrap_or_else(|| panic!("{name}: the second task is not known:\n{}", sb.daemon_log("noexecd")));
    let at = known.get(11..26).and_then(|t| {
        let mut parts = t.split(':');
        let h: f64 = parts.next()?.parse().ok()?;
        let m: f64 = parts.next()?.parse().ok()?;
        let s: f64 = parts.next()?.parse().ok()?;
        Some(h * 3600.0 + m * 60.0 + s)
    });
    let events = sb.daemon_log("noexecd").contains("containerd: following its events");
    println!(
        "{name}: the second task known {:.1} ms after ctr run -d returned (events followed: {events})",
        (at.unwrap_or(started) - started) * 1000.0
    );
    assert!(events, "{name}: containerd's events are not followed:\n{}", sb.daemon_log("noexecd"));

    let bad = marks_outside_but_sandbox_superblocks(pid, &allowed);
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    assert!(bad.is_empty(), "{name}: SAFETY: noexecd marked a filesystem outside the test: {bad:?}");
}
