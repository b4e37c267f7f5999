//! Privileged: `noexecd run` enforcing KubeArmor's `ksp-block-exec-inside-tmp` (a KubeArmorPolicy for the
//! `app=wordpress` pods of namespace `wordpress-mysql`, loaded unchanged as a YAML drop-in) inside podman
//! containers, next to a host policy protecting the host's tmp directories, on two host layouts:
//!
//! - `tmp_tmpfs_*`: the host's `/tmp` is its own tmpfs (a fresh one over `/tmp` in the test's namespace) and
//!   the host policy protects `/tmp/` and `/var/tmp/` as written; podman's storage is at its default place,
//!   `/var/lib/containers/storage`, on the test's tmpfs over `/var/lib`;
//! - `ext4_root_*`: `/tmp` is a directory of the filesystem that also holds the container storage: a
//!   loop-mounted ext4 image `<root>` stands for `/`, the host policy protects `<root>/tmp/` and
//!   `<root>/var/tmp/`, and podman's `--root` is `<root>/var/lib/containers/storage`.
//!
//! Each test runs in a `containers::Sandbox` (private mount and pid namespace, fresh tmpfs over `/run`,
//! `/var/lib`, `/var/tmp`, `/dev/shm`; [`SandboxLayout`]) with a private podman (`--runtime runc`, cgroupfs
//! below the test's own cgroup, its API service on a socket of the test, images imported from tarballs) and
//! the daemon started in the same namespaces: podman's overlay mounts are in the daemon's mount table and
//! podman's pids are the daemon's. The daemon's `[containers]` table names the test's podman socket and
//! storage, and a directory that does not exist for every other runtime.
//!
//! Safety, as in `common`: the policy goes through `noexecd check` first and every `mark` line must name a
//! filesystem this test mounted (never the machine's `/` or `/tmp`, `forbidden_devs`); once READY=1 came, the
//! daemon's marks are read back from /proc/PID/fdinfo (`marks_outside`) after every step, and a mark anywhere
//! else kills it. Every command is bounded by a timeout; the namespace, its mounts and its processes go with
//! the sandbox, the cgroups are removed by it.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::*;
use crate::containers::{IMAGE, Sandbox, SandboxLayout, WORDPRESS_LABELS, have_tools, label_args, path_str};

/// KubeArmor's example policy, as its users apply it (`kubectl apply -f`): the drop-in, unchanged.
pub(crate) const KSP_YAML: &str = "\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: ksp-block-exec-inside-tmp
  namespace: wordpress-mysql
spec:
  tags:
  - config-files
  message: Alert! Execution attempted inside tmp folder
  selector:
    matchLabels:
      app: wordpress
  process:
    matchPatterns:
    - pattern: /tmp/*
    - pattern: /var/tmp/*
  action: Block
";

/// The host policy's name (a container policy and a host policy may share one; these differ so that each
/// alert says which decided).
pub(crate) const HOST_POLICY: &str = "host-block-exec-inside-tmp";
const HOST_MESSAGE: &str = "Alert! Execution attempted inside the host's tmp folder";
/// The `Labels` of a WordPress container's alert: KubeArmor's `k=v,...`, sorted by key.
/// The pod's own labels: KubeArmor's alert leaves out the kubelet's `io.kubernetes.*`.
const WORDPRESS_LABEL_TEXT: &str = "app=wordpress";
/// Same namespace, another app: the policy does not select it.
pub(crate) const OTHER_LABELS: [(&str, &str); 2] =
    [("app", "other"), ("io.kubernetes.pod.namespace", "wordpress-mysql")];
/// The busybox image with `/tmp/x` baked in (a static program that prints `ran` and exits 0).
const TMPX_IMAGE: &str = "localhost/noexecd-it-tmpx:1";
/// How long the daemon may take to say READY=1 (its first look at the runtimes is bounded by 3 s).
const READY_WITHIN: Duration = Duration::from_secs(30);
/// Containers started and removed in a row by the churn tests.
const CHURN: usize = 100;
/// The churn tests' bound on the daemon's RSS growth.
const RSS_GROWTH_MAX_KIB: i64 = 2048;

// ---------------------------------------------------------------------------------------------------------
// The daemon, in the sandbox's mount and pid namespaces

/// `noexecd run` inside a sandbox: `setpriv --pdeathsig KILL -- nsenter -m -p ... -- setpriv --pdeathsig KILL
/// -- timeout -k 2 900 noexecd run`; nsenter forks for the pid namespace, the daemon is timeout's child.
pub(crate) struct GuardDaemon {
    nsenter: Child,
    /// The daemon's pid as the test (the host) sees it.
    pid: i32,
    log: PathBuf,
    /// Its status file, as the test sees it (see `common::StatusWatch`).
    status: PathBuf,
    /// `$NOTIFY_SOCKET`: kept bound while the daemon runs.
    _notify: UnixDatagram,
}

impl GuardDaemon {
    /// Starts the daemon and waits for READY=1, then checks its marks against `allowed`.
    pub(crate) fn start(sb: &Sandbox, name: &str, config: &Path, allowed: &BTreeSet<(u64, u64)>) -> GuardDaemon {
        Self::start_with_env(sb, name, config, allowed, &[])
    }

    /// [`GuardDaemon::start`] with `env` added to the daemon's environment.
    pub(crate) fn start_with_env(
        sb: &Sandbox,
        name: &str,
        config: &Path,
        allowed: &BTreeSet<(u64, u64)>,
        env: &[(&str, &str)],
    ) -> GuardDaemon {
        let notify_path = sb.base().join("notify.sock");
        let _ = fs::remove_file(sb.host_view(&notify_path));
        let notify = UnixDatagram::bind(sb.host_view(&notify_path)).unwrap();
        notify.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let log = sb.dir.path().join("noexecd.log");
        let out = fs::File::create(&log).unwrap();
        let status = sb.base().join("noexecd.status");
        let nsenter = Command::new("setpriv")
            .env("PATH", SYS_PATH)
            .args(["--pdeathsig", "KILL", "--", "nsenter", "-t"])
            .arg(sb.init.to_string())
            .args(["-m", "-p", "--", "setpriv", "--pdeathsig", "KILL", "--", "timeout", "-k", "2", "900"])
            .arg(bin())
            .args(["--log-level", "debug", "run", "--status-file"])
            .arg(&status)
            .arg("--config")
            .arg(config)
            .env("NOEXECD_STATUS_EVERY_MS", STATUS_EVERY_MS)
            .env("NOTIFY_SOCKET", &notify_path)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn nsenter for noexecd");
        let mut d = GuardDaemon { pid: 0, nsenter, log, status: sb.host_view(&status), _notify: notify };
        let exe = fs::canonicalize(bin()).unwrap();
        let parent = d.nsenter.id();
        let deadline = Instant::now() + READY_WITHIN;
        // nsenter's child is setpriv, then timeout, whose child is the daemon.
        let found = poll_until(READY_WITHIN, || {
            let mut stack = vec![parent as i32];
            while let Some(p) = stack.pop() {
                if p != parent as i32 && fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == exe) {
                    return Some(Some(p));
                }
                let children = fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
                stack.extend(children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
            }
            d.nsenter.try_wait().unwrap().is_some().then_some(None)
        });
        match found {
            Some(Some(pid)) => d.pid = pid,
            Some(None) => panic!("{name}: noexecd ended at once:\n{}", d.log_text()),
            None => panic!("{name}: no noexecd process below nsenter:\n{}", d.log_text()),
        }
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        loop {
            if let Ok(n) = d._notify.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let ready = msg.lines().any(|l| l == "READY=1");
                got.push(msg);
                if ready {
                    break;
                }
            }
            if let Some(st) = d.nsenter.try_wait().unwrap() {
                panic!("{name}: noexecd exited ({st}) before READY=1; datagrams {got:?}:\n{}", d.log_text());
            }
            if Instant::now() > deadline {
                let log = d.log_text();
                d.kill_hard();
                panic!("{name}: no READY=1 within {READY_WITHIN:?}; datagrams {got:?}:\n{log}");
            }
        }
        d.verify(name, allowed);
        d
    }

    /// The daemon's pid as the test (the host) sees it.
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// SAFETY: every mark the daemon holds is on a filesystem of `allowed` or on a superblock of the test's
    /// containers (`marks_outside_but_sandbox_superblocks`); else the daemon is killed at once.
    pub(crate) fn verify(&mut self, name: &str, allowed: &BTreeSet<(u64, u64)>) {
        let bad = marks_outside_but_sandbox_superblocks(self.pid, allowed);
        if !bad.is_empty() {
            self.kill_hard();
            panic!("{name}: SAFETY: noexecd marked a filesystem outside the test: {bad:?} (allowed {allowed:?})");
        }
    }

    pub(crate) fn log_text(&self) -> String {
        fs::read(&self.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    pub(crate) fn watch(&self) -> StatusWatch<'_> {
        StatusWatch { path: &self.status, pid: self.pid, log: &self.log }
    }

    pub(crate) fn alive(&mut self) -> bool {
        self.nsenter.try_wait().unwrap().is_none()
    }

    /// VmRSS in KiB.
    pub(crate) fn rss_kib(&self) -> i64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/PID/status");
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS in kB")
    }

    pub(crate) fn kill_hard(&mut self) {
        if self.pid > 0 {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
        let _ = self.nsenter.kill();
        let _ = self.nsenter.wait();
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub(crate) fn stop(&mut self) {
        if !self.alive() {
            return;
        }
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
        poll_until(Duration::from_secs(10), || (!self.alive()).then_some(()));
        self.kill_hard();
    }
}

impl Drop for GuardDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------------------
// The fixture: a sandbox with podman, its two images, the policies, and (once started) the daemon

pub(crate) struct Guarded {
    /// Declared first: dropped (stopped) before the sandbox goes.
    daemon: Option<GuardDaemon>,
    pub(crate) sb: Sandbox,
    name: String,
    /// The host's two tmp directories, as the host policy names them.
    pub(crate) host_tmp: [PathBuf; 2],
    /// The filesystems this test mounted: the only ones the daemon may mark.
    pub(crate) allowed: BTreeSet<(u64, u64)>,
    pub(crate) config: PathBuf,
    pub(crate) alert_log: PathBuf,
    /// `/tmp/x` (a copy of the `ok` program) on the host, outside every protected directory.
    host_ok: PathBuf,
    /// A daemon this fixture did not start (a pod's): its status file as the test sees it, and its pid.
    pod_status: Option<(PathBuf, i32)>,
}

/// Sets up the sandbox, podman and the config; the daemon is not started yet. `None`: a skip.
pub(crate) fn setup(name: &str, layout: SandboxLayout) -> Option<Guarded> {
    if !may_run_privileged(name) || !available_here(name, Needs::WritableCgroups) {
        return None;
    }
    let tools = ["podman", "runc", "conmon", "busybox", "tar", "file", "cc", "truncate", "losetup"];
    if !have_tools(name, &tools) {
        return None;
    }
    let runtime = if layout == SandboxLayout::Ext4Root { "enforce-ext4" } else { "enforce-tmpfs" };
    let mut sb = Sandbox::with_layout(name, runtime, layout);
    let base = sb.base();
    let host_tmp = match &sb.root {
        Some(root) => [root.join("tmp"), root.join("var/tmp")],
        None => [PathBuf::from("/tmp"), PathBuf::from("/var/tmp")],
    };
    build_images(&sb);
    sb.write_containers_conf();
    sb.podman(&["import", "-q", &path_str(&base.join("img.tar")), IMAGE]);
    sb.podman(&["import", "-q", &path_str(&base.join("tmpx.tar")), TMPX_IMAGE]);
    let socket = base.join("podman.sock");
    let service = sb.podman_argv(&["system", "service", "--time=0", &format!("unix://{}", socket.display())]);
    sb.start_daemon("podman-service", &service);
    assert!(
        sb.wait_for_socket(&socket),
        "{name}: podman's API socket did not appear:\n{}",
        sb.daemon_log("podman-service")
    );

    // Every filesystem the test mounted, and nothing else.
    let mut mounted: Vec<PathBuf> = ["/run", "/var/lib", "/var/tmp", "/dev/shm"].map(PathBuf::from).to_vec();
    mounted.push(base.clone());
    match layout {
        SandboxLayout::TmpTmpfs => mounted.push(PathBuf::from("/tmp")),
        SandboxLayout::Ext4Root => mounted.push(sb.root.clone().unwrap()),
        SandboxLayout::Plain => unreachable!("the enforce tests stand in for the host's /tmp"),
    }
    let forbidden = forbidden_devs();
    let mut allowed = BTreeSet::new();
    for m in &mounted {
        let dev = split_dev(fs::metadata(sb.host_view(m)).unwrap().dev());
        assert!(!forbidden.contains(&dev), "{name}: {} is not a fresh filesystem of the test", m.display());
        assert!(allowed.insert(dev), "{name}: two test mounts share device {dev:?}");
    }

    fs::create_dir_all(sb.host_view(&base.join("policy.d"))).unwrap();
    fs::write(sb.host_view(&base.join("policy.d/ksp-block-exec-inside-tmp.yaml")), KSP_YAML).unwrap();
    let none = base.join("none");
    let alert_log = base.join("alerts.jsonl");
    let mut text = format!(
        "[daemon]\nmode = \"enforce\"\nalert_log = {}\ncluster_name = \"{CLUSTER_NAME}\"\nhost_name = \"{HOST_NAME}\"\n\
         max_alerts_per_sec = 1000\npolicy_dir = {}\nalert_socket = \"\"\nfail_mode = \"open\"\n\n\
         [containers]\npodman_socket = {}\nstorage = {}\ndocker_root = {}\ncontainerd_state = {}\ncontainerd_socket = {}\ncontainerd_root = {}\n\n\
         [[policy]]\nname = \"{HOST_POLICY}\"\naction = \"Block\"\nmessage = \"{HOST_MESSAGE}\"\n",
        toml_str(&alert_log),
        toml_str(&base.join("policy.d")),
        toml_str(&socket),
        toml_str(&sb.podman_root),
        toml_str(&none.join("docker")),
        toml_str(&none.join("containerd-state")),
        toml_str(&none.join("containerd.sock")),
        toml_str(&none.join("containerd")),
    );
    for dir in &host_tmp {
        text += &format!(
            "\n[[policy.process.match_directories]]\ndir = {}\nrecursive = true\n",
            toml_str(Path::new(&dir_slash(dir)))
        );
    }
    let config = base.join("noexecd.toml");
    fs::write(sb.host_view(&config), text).unwrap();
    let host_ok = base.join("ok");
    Some(Guarded {
        daemon: None,
        sb,
        name: name.to_owned(),
        host_tmp,
        allowed,
        config,
        alert_log,
        host_ok,
        pod_status: None,
    })
}

/// `<base>/img.tar` (a static busybox, its applets, and `/bin/ok`: a static program that prints `ran` and exits
/// 0 whatever its name) and `<base>/tmpx.tar` (the same with `/tmp/x`, a copy of `ok`); `<base>/ok` too.
fn build_images(sb: &Sandbox) {
    let busybox = which("busybox").unwrap();
    let file = run_bounded(Command::new("file").arg("-L").arg(&busybox), Duration::from_secs(20));
    assert!(file.stdout.contains("statically linked"), "{} is not static (install busybox-static)", busybox.display());
    let base = sb.base();
    let src = sb.dir.path().join("ok.c");
    fs::write(&src, "#include <unistd.h>\nint main(void) { return write(1, \"ran\\n\", 4) == 4 ? 0 : 1; }\n").unwrap();
    let ok = sb.host_view(&base.join("ok"));
    let mut cc = Command::new("cc");
    cc.env("PATH", SYS_PATH).args(["-O2", "-static", "-o"]).arg(&ok).arg(&src);
    let o = run_bounded(&mut cc, Duration::from_secs(120));
    assert!(o.status.success(), "cc -static failed (gcc and libc6-dev: `make test-deps`)\n{o}");
    sb.sh(&format!(
        "cd {b}\nmkdir -p img/bin img/tmp img/var/tmp\nchmod 1777 img/tmp img/var/tmp\ncp {bb} img/bin/busybox\n\
         for a in sh sleep true cat cp echo ls rm id; do ln -s busybox img/bin/$a; done\ncp ok img/bin/ok\n\
         tar -C img -cf img.tar .\ncp -a img tmpx\ncp ok tmpx/tmp/x\ntar -C tmpx -cf tmpx.tar .\n",
        b = sh_quote(&base),
        bb = sh_quote(&busybox)
    ));
}

impl Guarded {
    /// `noexecd check` (its marks must be exactly `want`: mount point, decides, protects), then the daemon.
    pub(crate) fn start(&mut self, want: &[(String, &str, Vec<String>)]) {
        let o = self.sb.run(&[bin().into_os_string(), "check".into(), "--config".into(), self.config.clone().into()]);
        assert_eq!(o.code(), Some(0), "{}: `noexecd check` failed\n{o}", self.name);
        let forbidden = forbidden_devs();
        let marks = parse_marks(&o.stdout);
        for m in &marks {
            assert!(!forbidden.contains(&m.dev), "SAFETY: the policy would mark the host's / or /tmp: {m:?}");
            assert!(
                self.allowed.contains(&m.dev),
                "SAFETY: the policy would mark a filesystem the test did not mount: {m:?}"
            );
        }
        let got: Vec<(String, &str, Vec<String>)> =
            marks.iter().map(|m| (m.mount_point.clone(), m.decides.as_str(), m.protects.clone())).collect();
        assert_eq!(got, want, "{}: the filesystems `noexecd check` would mark\n{}", self.name, o.stdout);
        // The selector itself is what the containers' behaviour below tests.
        let policy_line = o.stdout.lines().find(|l| l.starts_with("container-policy\tksp-block-exec-inside-tmp\t"));
        assert!(
            policy_line.is_some_and(|l| l.ends_with("\trules=2")),
            "{}: the KubeArmor drop-in is a container policy with its two patterns:\n{}",
            self.name,
            o.stdout
        );
        self.daemon = Some(GuardDaemon::start(&self.sb, &self.name, &self.config, &self.allowed));
        self.assert_open_guard_marks_only_protected_dirs();
    }

    pub(crate) fn daemon_pid(&mut self) -> i32 {
        self.daemon().pid
    }

    fn daemon(&mut self) -> &mut GuardDaemon {
        self.daemon.as_mut().expect("the daemon runs")
    }

    /// The running daemon's status file (this fixture's daemon, else a pod's, see [`Guarded::watch_pod`]).
    pub(crate) fn watch(&self) -> StatusWatch<'_> {
        self.daemon.as_ref().map(GuardDaemon::watch).unwrap_or_else(|| {
            let (path, pid) = self.pod_status.as_ref().expect("the daemon runs");
            StatusWatch { path, pid: *pid, log: path }
        })
    }

    /// Waits on a daemon this fixture did not start: `status` (as the test sees it) and its pid.
    pub(crate) fn watch_pod(&mut self, status: PathBuf, pid: i32) {
        self.pod_status = Some((status, pid));
    }

    /// Waits until the daemon has looked at the mount table and at the runtimes, each a whole time, since
    /// this call began: the containers started and gone before it are in (or out of) its list and marks.
    pub(crate) fn caught_up(&self) {
        let w = self.watch();
        let now = w.fresh_status();
        w.wait_generation_after("mount_checks", now.get("mount_checks"));
        w.wait_generation_after("scope_refreshes", now.get("scope_refreshes"));
    }

    /// SAFETY check of the marks, and the daemon is still there.
    pub(crate) fn verify(&mut self) {
        let (name, allowed) = (self.name.clone(), self.allowed.clone());
        let d = self.daemon();
        assert!(d.alive(), "{name}: noexecd is gone:\n{}", d.log_text());
        d.verify(&name, &allowed);
    }

    pub(crate) fn log_text(&self) -> String {
        self.daemon.as_ref().map(GuardDaemon::log_text).unwrap_or_default()
    }

    /// The open guard's FAN_OPEN_PERM inode marks are on the directories of the protected trees on
    /// path-decided filesystems, and nowhere else: not on the container storage (a filesystem marked for
    /// execs only), where every open of podman's and of the daemon's own would wait for the daemon.
    /// Containers' marks go with their superblocks, which the kernel frees a moment after the container ends:
    /// checked again for up to 3 s.
    pub(crate) fn assert_open_guard_marks_only_protected_dirs(&mut self) {
        let pid = self.daemon().pid;
        let inode_marks = || -> BTreeSet<(u64, u64)> {
            fanotify_mark_lines(pid)
                .iter()
                .filter(|l| l.starts_with("fanotify ino:"))
                .filter_map(|l| {
                    let field = |name: &str| {
                        l.split_whitespace()
                            .find_map(|t| t.strip_prefix(name))
                            .and_then(|h| u64::from_str_radix(h, 16).ok())
                    };
                    (field("mask:")? != 0).then_some((field("sdev:")?, field("ino:")?))
                })
                .collect()
        };
        let mut want = BTreeSet::new();
        if self.sb.root.is_some() {
            // <root>/tmp and <root>/var/tmp share the filesystem with the rest of <root>: their directories.
            let mut stack: Vec<PathBuf> = self.host_tmp.iter().map(|d| self.sb.host_view(d)).collect();
            while let Some(dir) = stack.pop() {
                let m = fs::symlink_metadata(&dir).unwrap();
                want.insert((kernel_dev(m.dev()), m.ino()));
                for e in fs::read_dir(&dir).unwrap().flatten() {
                    if e.file_type().unwrap().is_dir() {
                        stack.push(e.path());
                    }
                }
            }
        }
        // /tmp and /var/tmp as tmpfs of their own are watched by their filesystem marks: no inode mark.
        let mut marked = BTreeSet::new();
        poll_until(Duration::from_secs(3), || {
            marked = inode_marks();
            (marked == want).then_some(())
        });
        if marked != want {
            // What the marks left over are on: the mounts of their devices, the group's marks, the daemon's log.
            let mi = self.sb.run(&["cat".to_owned(), "/proc/self/mountinfo".to_owned()]).stdout;
            let devs: Vec<String> = marked.iter().map(|(d, _)| format!("{}:{}", d >> 20, d & 0xfffff)).collect();
            for l in mi.lines().filter(|l| devs.iter().any(|d| l.split_whitespace().nth(2) == Some(d.as_str()))) {
                eprintln!("mount of a marked device: {l}");
            }
            eprintln!("the group's marks: {:#?}\nthe daemon's log:\n{}", fanotify_mark_lines(pid), self.log_text());
        }
        assert_eq!(marked, want, "{}: the open guard's inode marks (sdev, ino)", self.name);
    }

    pub(crate) fn alerts(&self) -> Vec<Value> {
        Env::read_alerts_at(&self.sb.host_view(&self.alert_log))
    }

    /// Waits until the log holds at least `n` alerts and the daemon's alert writer has caught up with its
    /// decisions, and asserts it holds exactly `n`.
    pub(crate) fn expect_alerts(&self, n: usize, what: &str) -> Vec<Value> {
        poll_until(ALERT_TIMEOUT, || (self.alerts().len() >= n).then_some(()));
        if (self.daemon.is_some() || self.pod_status.is_some()) && !self.watch().has_ended() {
            self.watch().settle();
        }
        let a = self.alerts();
        assert_eq!(
            a.len(),
            n,
            "{}: {what}: expected {n} alert(s), got:\n{}\n--- noexecd ---\n{}",
            self.name,
            a.iter().map(Value::to_string).collect::<Vec<_>>().join("\n"),
            self.log_text()
        );
        a
    }

    pub(crate) fn podman(&self, args: &[&str]) -> Output {
        self.sb.run(&self.sb.podman_argv(args))
    }

    /// `podman run --network none --cgroup-parent <the test's cgroup> LABELS FLAGS IMAGE CMD...`.
    fn run_argv(&self, labels: &[(&str, &str)], flags: &[&str], image: &str, cmd: &[&str]) -> Vec<String> {
        let cgroup = format!("/{}", self.sb.cgroup);
        let mut args: Vec<&str> = vec!["run", "--network", "none", "--cgroup-parent", &cgroup];
        let labels = label_args(labels);
        args.extend(labels.iter().map(String::as_str));
        args.extend(flags);
        args.push(image);
        args.extend(cmd);
        self.sb.podman_argv(&args)
    }

    pub(crate) fn run_container(&self, labels: &[(&str, &str)], flags: &[&str], image: &str, cmd: &[&str]) -> Output {
        self.sb.run(&self.run_argv(labels, flags, image, cmd))
    }

    /// The id, image id and state of a container.
    pub(crate) fn inspect(&self, container: &str, format: &str) -> String {
        let o = self.podman(&["inspect", "--format", format, container]);
        assert!(o.status.success(), "{}: podman inspect {container}\n{o}", self.name);
        o.stdout.trim().to_owned()
    }

    pub(crate) fn image_id(&self, image: &str) -> String {
        let o = self.podman(&["image", "inspect", "--format", "{{.Id}}", image]);
        assert!(o.status.success(), "{}: podman image inspect {image}\n{o}", self.name);
        o.stdout.trim().to_owned()
    }

    /// Runs `path` on the host (in the namespace, not in a container): `bash -c 'exec "$1"'`.
    pub(crate) fn host_exec(&self, path: &Path) -> Output {
        self.sb.run(&[OsString::from("bash"), "-c".into(), "exec \"$1\"".into(), "host".into(), path.into()])
    }

    /// A copy of the `ok` program at `path` on the host, mode 0755.
    pub(crate) fn put_ok(&self, path: &Path) {
        let hv = self.sb.host_view(path);
        fs::copy(self.sb.host_view(&self.host_ok), &hv).unwrap();
        fs::set_permissions(&hv, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------------------
// Checks

pub(crate) fn assert_ran(out: &Output, what: &str) {
    assert!(
        out.status.success()
            && out.stdout.contains("ran")
            && !out.stderr.to_lowercase().contains("operation not permitted"),
        "{what}: expected it to run (print `ran`, exit 0)\n{out}"
    );
}

/// A shell (busybox's or bash) whose exec was refused: exit 126 with the errno text.
pub(crate) fn assert_denied_in_shell(out: &Output, what: &str) {
    assert!(
        out.code() == Some(126) && out.stderr.contains(EPERM_TEXT) && !out.stdout.contains("ran"),
        "{what}: expected the exec to fail with EPERM ({EPERM_TEXT:?}, exit 126)\n{out}"
    );
}

/// What a container alert must say besides the policy's own fields.
pub(crate) struct InContainer<'a> {
    pub(crate) id: &'a str,
    /// `image@sha256:<image id>`.
    pub(crate) image: String,
    pub(crate) resource: &'a str,
    /// The program that called exec, as the container names it; `None`: not checked.
    pub(crate) source: Option<&'a str>,
    /// The caller's pid inside the container, when the test knows it.
    pub(crate) pid: Option<i64>,
}

/// Every field of a Block alert of `ksp-block-exec-inside-tmp` in the WordPress container `c`.
pub(crate) fn assert_wordpress_alert(a: &Value, c: &InContainer<'_>) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let ts = get_int(a, "Timestamp");
    assert!((now - 120..=now + 5).contains(&ts), "Timestamp {ts} is not now ({now}): {a}");
    let updated = parse_updated_time(get_str(a, "UpdatedTime")).unwrap_or_else(|| panic!("UpdatedTime: {a}"));
    assert!((updated - ts).abs() <= 1, "UpdatedTime agrees with Timestamp: {a}");
    assert_eq!(get_str(a, "ClusterName"), CLUSTER_NAME, "{a}");
    assert_eq!(get_str(a, "HostName"), HOST_NAME, "{a}");
    assert_eq!(get_str(a, "Type"), "MatchedPolicy", "KubeArmor's type for a container policy's alert: {a}");
    assert_eq!(get_str(a, "PolicyName"), POLICY_NAME, "{a}");
    assert_eq!(get_str(a, "Severity"), "1", "KubeArmor's default severity: {a}");
    assert_eq!(get_str(a, "Tags"), "config-files", "{a}");
    assert_eq!(a.get("ATags"), Some(&serde_json::json!(["config-files"])), "{a}");
    assert_eq!(get_str(a, "Message"), POLICY_MESSAGE, "{a}");
    assert_eq!(get_str(a, "Action"), "Block", "{a}");
    assert_eq!(get_str(a, "Result"), EPERM_TEXT, "{a}");
    assert_eq!(get_str(a, "Operation"), "Process", "{a}");
    assert_eq!(get_str(a, "Enforcer"), "fanotify", "{a}");
    assert_eq!(get_str(a, "Data"), "fanotify=FAN_OPEN_EXEC_PERM", "{a}");
    assert_eq!(get_str(a, "Resource"), c.resource, "the path inside the container: {a}");
    assert_eq!(get_str(a, "ProcessName"), c.resource, "{a}");
    let source = get_str(a, "Source");
    assert!(!source.is_empty(), "{a}");
    if let Some(want) = c.source {
        assert_eq!(source, want, "{a}");
    }
    // The caller's parent: a shell in the container, or the runtime's process for the first program and `exec`
    // (`runc exec` may have exited before the alert reads it: then the field is left out, as for any parent
    // gone).
    match a.get("ParentProcessName").and_then(Value::as_str) {
        Some(parent) => assert!(parent.starts_with('/'), "the parent's executable: {a}"),
        None => {
            assert_eq!(get_int(a, "PPID"), get_int(a, "HostPPID"), "only a parent outside the container is gone: {a}")
        }
    }
    let id = get_str(a, "ContainerID");
    assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()), "ContainerID is 64 hex digits: {a}");
    assert_eq!(id, c.id, "ContainerID is podman's id: {a}");
    assert_eq!(get_str(a, "ContainerName"), "wordpress", "the Kubernetes container name: {a}");
    assert_eq!(get_str(a, "ContainerImage"), c.image, "{a}");
    assert!(get_str(a, "ContainerImage").contains("noexecd-it-"), "the image's name: {a}");
    assert_eq!(get_str(a, "NamespaceName"), "wordpress-mysql", "{a}");
    assert_eq!(get_str(a, "PodName"), "wp-1", "{a}");
    assert_eq!(get_str(a, "Labels"), WORDPRESS_LABEL_TEXT, "{a}");
    assert_eq!(get_int(a, "UID"), 0, "{a}");
    let (pid, host_pid) = (get_int(a, "PID"), get_int(a, "HostPID"));
    assert!(pid > 0 && host_pid > 0 && host_pid != pid, "PID inside the container, HostPID outside: {a}");
    if let Some(want) = c.pid {
        assert_eq!(pid, want, "PID as the container numbers it: {a}");
    }
    let (ppid, host_ppid) = (get_int(a, "PPID"), get_int(a, "HostPPID"));
    assert!(host_ppid > 0, "{a}");
    // KubeArmor's PPID: the parent's number in its own pid namespace, so the container's for a parent inside
    // it and the host's for the runtime's conmon or shim, which starts the first program and every `exec`.
    assert!(ppid > 0, "{a}");
    if c.pid == Some(1) {
        assert_eq!(ppid, host_ppid, "the parent of the container's pid 1 is on the host: {a}");
    } else if ppid != host_ppid {
        assert!(ppid < pid, "a parent inside the container, numbered there: {a}");
    }
}

/// A Block alert of the host policy for `resource`, by bash on the host.
pub(crate) fn assert_host_alert(a: &Value, resource: &Path) {
    assert_eq!(get_str(a, "Type"), "MatchedHostPolicy", "{a}");
    assert_eq!(get_str(a, "PolicyName"), HOST_POLICY, "{a}");
    assert_eq!(get_str(a, "Message"), HOST_MESSAGE, "{a}");
    assert_eq!(get_str(a, "Action"), "Block", "{a}");
    assert_eq!(get_str(a, "Result"), EPERM_TEXT, "{a}");
    assert_eq!(get_str(a, "Resource"), path_str(resource), "{a}");
    assert_eq!(get_str(a, "Source"), real_exe("bash"), "{a}");
    assert_eq!(get_int(a, "HostPID"), get_int(a, "PID"), "{a}");
    for field in ["ContainerID", "ContainerName", "NamespaceName", "PodName", "Labels"] {
        assert!(a.get(field).is_none(), "no {field} on a host alert: {a}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// The tests

/// The `mark` lines `noexecd check` must print for a layout: (mount point, decides, protects).
pub(crate) fn expected_marks(g: &Guarded) -> Vec<(String, &'static str, Vec<String>)> {
    let storage = format!("containers:{}", g.sb.podman_root.display());
    match &g.sb.root {
        None => vec![
            ("/tmp".into(), "filesystem", vec!["/tmp/".into()]),
            ("/var/tmp".into(), "filesystem", vec!["/var/tmp/".into()]),
            ("/var/lib".into(), "path", vec![storage]),
        ],
        Some(root) => {
            vec![(path_str(root), "path", vec![dir_slash(&g.host_tmp[0]), dir_slash(&g.host_tmp[1]), storage])]
        }
    }
}

/// a–e of the container policy and the host policy, on one layout.
fn policies_decide_execs_in_podman_containers(name: &str, layout: SandboxLayout) {
    let Some(mut g) = setup(name, layout) else { return };
    let want = expected_marks(&g);
    g.start(&want);
    let wp_name = "wp-1-wordpress";

    // (a) A WordPress container starts and runs its programs.
    let o = g.run_container(&WORDPRESS_LABELS, &["-d", "--name", wp_name], IMAGE, &["/bin/sleep", "600"]);
    assert!(o.status.success(), "{name}: the WordPress container starts\n{o}");
    let wp = o.stdout.trim().to_owned();
    assert!(wp.len() == 64, "{name}: podman's container id: {wp:?}");
    let image = format!("{IMAGE}@sha256:{}", g.image_id(IMAGE));
    let o = g.podman(&["exec", wp_name, "/bin/sh", "-c", "echo hi"]);
    assert!(o.status.success() && o.stdout == "hi\n", "{name}: /bin/sh -c 'echo hi' in the container\n{o}");
    let o =
        g.podman(&["exec", wp_name, "/bin/sh", "-c", "ls /bin >/dev/null && id -u && cat /etc/hostname >/dev/null"]);
    assert!(o.status.success() && o.stdout == "0\n", "{name}: busybox applets in the container\n{o}");
    let o = g.run_container(&WORDPRESS_LABELS, &["--rm"], IMAGE, &["/bin/sh", "-c", "echo hi; /bin/ok"]);
    assert!(o.status.success() && o.stdout == "hi\nran\n", "{name}: a WordPress container's first program\n{o}");
    g.expect_alerts(0, "programs outside tmp");
    // podman's start events are followed, so a container is known when it starts, not at the next look.
    g.wait_for_log("podman: following its events");

    // ... and cannot run what it puts in /var/tmp: one alert, in KubeArmor's container form.
    let script = "cp /bin/busybox /var/tmp/xvzf && /var/tmp/xvzf true";
    let o = g.podman(&["exec", wp_name, "/bin/sh", "-c", script]);
    assert_denied_in_shell(&o, &format!("{name}: {script} in the WordPress container"));
    let alerts = g.expect_alerts(1, "the /var/tmp exec in the WordPress container");
    let c = InContainer {
        id: &wp,
        image: image.clone(),
        resource: "/var/tmp/xvzf",
        source: Some("/bin/busybox"),
        pid: None,
    };
    assert_wordpress_alert(&alerts[0], &c);
    g.verify();

    // (b) Files in its /tmp are read and copied as ever (an ELF too): only running them is refused.
    let script = "echo data > /tmp/f && cat /tmp/f && cp /tmp/f /tmp/g && cat /tmp/g && cp /bin/busybox /tmp/bb && \
                  cat /tmp/bb > /dev/null && cp /tmp/bb /var/tmp/bb2 && cat /var/tmp/xvzf > /dev/null && echo copied";
    let o = g.podman(&["exec", wp_name, "/bin/sh", "-c", script]);
    assert!(o.status.success() && o.stdout == "data\ndata\ncopied\n", "{name}: reading and copying in /tmp\n{o}");
    let o = g.podman(&["exec", wp_name, "/bin/sh", "-c", "cp /bin/ok /tmp/y && /tmp/y"]);
    assert_denied_in_shell(&o, &format!("{name}: /tmp/y in the WordPress container"));
    let alerts = g.expect_alerts(2, "reading and copying raise none; the /tmp exec one");
    let c = InContainer { resource: "/tmp/y", ..c };
    assert_wordpress_alert(&alerts[1], &c);

    // (c) Another app of the namespace: not selected, its /var/tmp runs.
    let o = g.run_container(
        &OTHER_LABELS,
        &["--rm"],
        IMAGE,
        &["/bin/sh", "-c", "cp /bin/ok /var/tmp/xvzf && /var/tmp/xvzf true"],
    );
    assert_ran(&o, &format!("{name}: /var/tmp/xvzf in an app=other container"));
    // busybox itself runs too (and says it has no applet called xvzf): not refused.
    let o = g.run_container(
        &OTHER_LABELS,
        &["--rm"],
        IMAGE,
        &["/bin/sh", "-c", "cp /bin/busybox /var/tmp/xvzf && /var/tmp/xvzf true"],
    );
    assert!(
        o.code() == Some(127) && o.stderr.contains("xvzf: applet not found") && !o.stderr.contains(EPERM_TEXT),
        "{name}: busybox copied to /var/tmp/xvzf runs in an app=other container\n{o}"
    );
    g.expect_alerts(2, "nothing from the app=other container");

    // (d) The host policy: the host's tmp directories are protected ...
    let mut n = 2;
    for dir in &g.host_tmp {
        let x = dir.join("hx");
        g.put_ok(&x);
        let o = g.host_exec(&x);
        assert_denied_in_shell(&o, &format!("{name}: {} on the host", x.display()));
        n += 1;
        let alerts = g.expect_alerts(n, "the host's exec in its tmp");
        assert_host_alert(&alerts[n - 1], &x);
    }
    assert_ran(&g.host_exec(&g.host_ok), &format!("{name}: a program outside the host's tmp"));
    // ... and its paths are the host's: a container's own /tmp and /var/tmp are not what it protects.
    let script = "cp /bin/ok /tmp/x && /tmp/x && cp /bin/ok /var/tmp/x && /var/tmp/x";
    let o = g.run_container(&OTHER_LABELS, &["--rm"], IMAGE, &["/bin/sh", "-c", script]);
    assert!(
        o.status.success() && o.stdout == "ran\nran\n",
        "{name}: a container's own tmp under the host policy only\n{o}"
    );
    g.expect_alerts(n, "nothing from a container the host policy does not reach");
    g.verify();

    // (e) The first program of a container, baked into its image at /tmp/x: refused for a WordPress
    // container, whose entrypoint then cannot start ...
    let tmpx = format!("{TMPX_IMAGE}@sha256:{}", g.image_id(TMPX_IMAGE));
    let o = g.run_container(&WORDPRESS_LABELS, &["--name", "wp-tmpx"], TMPX_IMAGE, &["/tmp/x"]);
    let said = format!("{}{}", o.stdout, o.stderr).to_lowercase();
    assert!(
        !o.status.success() && said.contains("operation not permitted") && !o.stdout.contains("ran"),
        "{name}: a WordPress container whose entrypoint is /tmp/x does not start\n{o}"
    );
    let id = g.inspect("wp-tmpx", "{{.Id}}");
    n += 1;
    let alerts = g.expect_alerts(n, "the WordPress container's first exec");
    // The caller is `runc init`, pid 1 of the container, whose executable is runc's own (runc 1.1 runs it from a
    // detached bind mount, named `/`; others from a memfd): its name is runc's business, not checked.
    let c = InContainer { id: &id, image: tmpx, resource: "/tmp/x", source: None, pid: Some(1) };
    assert_wordpress_alert(&alerts[n - 1], &c);
    assert!(g.podman(&["rm", "-f", "wp-tmpx"]).status.success(), "{name}: podman rm");
    // ... while another app's container runs it.
    let o = g.run_container(&OTHER_LABELS, &["--rm"], TMPX_IMAGE, &["/tmp/x"]);
    assert_ran(&o, &format!("{name}: an app=other container whose entrypoint is /tmp/x"));
    g.expect_alerts(n, "nothing from the app=other container's first exec");

    let o = g.podman(&["rm", "-f", "-t", "0", wp_name]);
    assert!(o.status.success(), "{name}: podman rm\n{o}");
    g.assert_open_guard_marks_only_protected_dirs();
    g.verify();
    let log = g.log_text();
    assert!(!log.contains("noexecd-unresolvable-path"), "{name}: every file was named:\n{log}");
    let alerts: Vec<String> = g.alerts().iter().map(Value::to_string).collect();
    println!("{name}: the alerts:\n{}", alerts.join("\n"));
}

/// f: containers started and removed in a row leave the daemon as they found it.
fn containers_leave_nothing_behind(name: &str, layout: SandboxLayout) {
    let Some(mut g) = setup(name, layout) else { return };
    // With a tmpfs of its own at /tmp, marked for each container (private: it goes with the container).
    let run = g.run_argv(&WORDPRESS_LABELS, &["--rm", "--tmpfs", "/tmp:rw,exec,size=16m"], IMAGE, &["/bin/true"]);
    // runc's own rare failure (about one start in a thousand here, with or without the guard): its init process
    // is gone before `runc start`, before the container's first exec. Retried, counted, at most twice a test.
    let flakes = std::cell::Cell::new(0);
    let start_one = |g: &Guarded, what: &str| -> Duration {
        let t = Instant::now();
        let mut o = g.sb.run_quietly(&run);
        if !o.status.success() && o.stderr.contains("cannot start a container that has stopped") && flakes.get() < 2 {
            println!("{name}: {what}: runc's init was gone before its start; again\n{o}");
            flakes.set(flakes.get() + 1);
            o = g.sb.run_quietly(&run);
        }
        assert!(o.status.success(), "{name}: {what}\n{o}\n--- noexecd ---\n{}", g.log_text());
        t.elapsed()
    };
    let mean = |d: &[Duration]| d.iter().sum::<Duration>() / u32::try_from(d.len()).unwrap();
    let unguarded: Vec<Duration> = (0..10).map(|_| start_one(&g, "a container without the guard")).collect();
    let want = expected_marks(&g);
    g.start(&want);
    let at_ready = g.daemon().rss_kib();
    for _ in 0..5 {
        start_one(&g, "a warm-up container");
    }
    g.caught_up();
    let (rss0, marks0) = (g.daemon().rss_kib(), fanotify_mark_lines(g.daemon().pid));
    let started = Instant::now();
    let guarded: Vec<Duration> = (0..CHURN).map(|i| start_one(&g, &format!("container {i}"))).collect();
    let churn = started.elapsed();
    // The daemon's list catches up, then the figures.
    g.caught_up();
    g.verify();
    let (rss1, marks1) = (g.daemon().rss_kib(), fanotify_mark_lines(g.daemon().pid));
    println!(
        "{name}: {CHURN} containers in {churn:?}; one start (podman run --rm ... /bin/true): {:?} without the guard \
         (mean of 10), {:?} with it (mean of {CHURN}, slowest {:?}); RSS {at_ready} KiB at READY, {rss0} KiB after 5 \
         warm-up containers, {rss1} KiB after {CHURN} more ({:+} KiB); {} marks before, {} after; {} runc start(s) \
         retried",
        mean(&unguarded),
        mean(&guarded),
        guarded.iter().max().unwrap(),
        rss1 - rss0,
        marks0.len(),
        marks1.len(),
        flakes.get()
    );
    assert!(
        rss1 - rss0 <= RSS_GROWTH_MAX_KIB,
        "{name}: the daemon's RSS grew by {} KiB over {CHURN} containers (from {rss0} to {rss1} KiB)",
        rss1 - rss0
    );
    // The exec cache's ignore marks (mask 0: they raise nothing) come and go with the cache, which is bounded and
    // flushed on every mount change, not with the containers: an image layer's program may stay cached.
    let placing = |lines: &[String]| lines.iter().filter(|l| !l.contains(" mask:0 ")).cloned().collect::<Vec<_>>();
    let (marks0, marks1) = (placing(&marks0), placing(&marks1));
    assert_eq!(marks1.len(), marks0.len(), "{name}: marks before:\n{marks0:#?}\nafter:\n{marks1:#?}");
    g.assert_open_guard_marks_only_protected_dirs();
    g.expect_alerts(0, "nothing in the churn runs in tmp");
    // Still deciding: a WordPress container's first exec in /tmp is refused, with its alert.
    let o = g.run_container(&WORDPRESS_LABELS, &["--rm"], TMPX_IMAGE, &["/tmp/x"]);
    assert!(!o.status.success() && !o.stdout.contains("ran"), "{name}: /tmp/x after the churn\n{o}");
    let alerts = g.expect_alerts(1, "the WordPress container's /tmp/x after the churn");
    assert_eq!(get_str(&alerts[0], "Resource"), "/tmp/x", "{}", alerts[0]);
    assert_eq!(get_str(&alerts[0], "Labels"), WORDPRESS_LABEL_TEXT, "{}", alerts[0]);
    assert!(g.daemon().alive(), "{name}: noexecd is gone:\n{}", g.log_text());
}

#[test]
fn tmp_tmpfs_container_and_host_policies_decide_execs_in_podman_containers() {
    policies_decide_execs_in_podman_containers(&test_name!(), SandboxLayout::TmpTmpfs);
}

#[test]
fn ext4_root_container_and_host_policies_decide_execs_in_podman_containers() {
    policies_decide_execs_in_podman_containers(&test_name!(), SandboxLayout::Ext4Root);
}

/// A container's first program that no container policy's rule reaches is answered without asking the
/// runtimes which container it is: which policies select it cannot change that answer. podman's API is
/// replaced by a socket that accepts and never answers, so every look at it lasts its 1 s timeout: a
/// WordPress container's `/bin/ok` starts without that wait, while the baked `/tmp/x` entrypoint (the policy's
/// pattern reaches it) is still looked up before its answer, and waits.
fn a_container_start_does_not_wait_on_its_runtime(name: &str, layout: SandboxLayout) {
    let Some(mut g) = setup(name, layout) else { return };
    let base = g.sb.base();
    let silent = base.join("silent.sock");
    let listener = UnixListener::bind(g.sb.host_view(&silent)).unwrap();
    // Accepts and holds every connection, never writing: the test binary's exit ends the thread.
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let config = g.sb.host_view(&g.config);
    let text = fs::read_to_string(&config).unwrap();
    let real = toml_str(&base.join("podman.sock"));
    assert!(text.contains(&real), "{name}: the config names podman's socket");
    fs::write(&config, text.replace(&real, &toml_str(&silent))).unwrap();
    let want = expected_marks(&g);
    g.start(&want);
    let fastest = |g: &Guarded, image: &str, cmd: &str| -> Duration {
        (0..3)
            .map(|_| {
                let t0 = Instant::now();
                let o = g.run_container(&WORDPRESS_LABELS, &["--rm"], image, &[cmd]);
                let took = t0.elapsed();
                assert!(o.stdout.contains("ran") || cmd == "/tmp/x", "{name}: {cmd} in a WordPress container\n{o}");
                took
            })
            .min()
            .unwrap()
    };
    let untouched = fastest(&g, IMAGE, "/bin/ok");
    // Unknown to the silent runtime, the container is selected by nothing: `/tmp/x` may run. What counts is
    // that its first exec waited for the look at the runtimes, and that it waited alone: the host's own execs
    // on the guarded filesystem (fresh copies, which no cache holds) are answered meanwhile.
    let root = g.sb.root.clone().expect("the ext4 image standing for /");
    let stop = g.sb.base().join("host-execs.stop");
    let script = format!(
        "d={}/opt/host-execs; mkdir -p \"$d\"; worst=0; n=0; end=$(($(date +%s) + 60))\n\
         while [ ! -e {} ] && [ \"$(date +%s)\" -lt \"$end\" ]; do\n\
           n=$((n + 1)); cp /bin/true \"$d/t$n\"\n\
           t0=$(date +%s%N); \"$d/t$n\" || exit 1; t1=$(date +%s%N)\n\
           [ $((t1 - t0)) -gt \"$worst\" ] && worst=$((t1 - t0)); rm -f \"$d/t$n\"; sleep 0.05\n\
         done\n\
         echo \"worst_ns=$worst execs=$n\"",
        sh_quote(&root),
        sh_quote(&stop)
    );
    let (reached, host) = thread::scope(|s| {
        let before = g.watch().fresh_status();
        let host = s.spawn(|| g.sb.run(&["sh", "-c", &script]));
        // The loop is under way first: its execs are being decided.
        g.watch().wait_decided(&before, 2);
        let reached = fastest(&g, TMPX_IMAGE, "/tmp/x");
        fs::write(g.sb.host_view(&stop), b"").unwrap();
        (reached, host.join().unwrap())
    });
    assert!(
        untouched + Duration::from_millis(700) < reached,
        "{name}: `podman run IMAGE /bin/ok` took {untouched:?} at best, `/tmp/x` (looked up, 1 s timeout) {reached:?}:\n{}",
        g.log_text()
    );
    let field = |key: &str| -> u64 {
        host.stdout
            .split_whitespace()
            .find_map(|t| t.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no {key} from the host's exec loop\n{host}"))
    };
    let (worst, execs) = (Duration::from_nanos(field("worst_ns=")), field("execs="));
    assert!(host.status.success() && execs >= 10, "{name}: the host's execs ran during the lookups\n{host}");
    assert!(
        worst < Duration::from_millis(500),
        "{name}: a host exec took {worst:?} while containers were looked up (each lookup waits 1 s on the silent socket):\n{host}\n{}",
        g.log_text()
    );
    g.verify();
}

#[test]
fn ext4_root_a_container_start_does_not_wait_on_its_runtime() {
    a_container_start_does_not_wait_on_its_runtime(&test_name!(), SandboxLayout::Ext4Root);
}

#[test]
fn tmp_tmpfs_100_containers_leave_no_memory_or_marks_behind() {
    containers_leave_nothing_behind(&test_name!(), SandboxLayout::TmpTmpfs);
}

#[test]
fn ext4_root_100_containers_leave_no_memory_or_marks_behind() {
    containers_leave_nothing_behind(&test_name!(), SandboxLayout::Ext4Root);
}

// ---------------------------------------------------------------------------------------------------------
// The exec cache and image layers

/// A container policy naming `/bin/ok`, as a second drop-in.
const KSP_OK_YAML: &str = "\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: ksp-block-bin-ok
  namespace: wordpress-mysql
spec:
  selector:
    matchLabels:
      app: wordpress
  process:
    matchPaths:
    - path: /bin/ok
  action: Block
";

/// (sdev, ino) of the inodes carrying an exec-cache ignore mark (FAN_OPEN_EXEC_PERM in the ignored mask).
fn exec_cached(pid: i32) -> BTreeSet<(u64, u64)> {
    fanotify_mark_lines(pid)
        .iter()
        .filter(|l| l.starts_with("fanotify ino:"))
        .filter_map(|l| {
            let field = |name: &str| {
                l.split_whitespace().find_map(|t| t.strip_prefix(name)).and_then(|h| u64::from_str_radix(h, 16).ok())
            };
            (field("ignored_mask:")? & libc::FAN_OPEN_EXEC_PERM != 0).then_some((field("sdev:")?, field("ino:")?))
        })
        .collect()
}

/// (sdev, ino) of a file of the namespace.
fn inode_of(sb: &Sandbox, path: &Path) -> (u64, u64) {
    let m = fs::symlink_metadata(sb.host_view(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (kernel_dev(m.dev()), m.ino())
}

fn wait_cached(g: &mut Guarded, what: &str, done: impl Fn(&BTreeSet<(u64, u64)>) -> bool) {
    let pid = g.daemon().pid;
    let mut cached = BTreeSet::new();
    if poll_until(Duration::from_secs(10), || {
        cached = exec_cached(pid);
        done(&cached).then_some(())
    })
    .is_none()
    {
        panic!("{}: {what}; cached {cached:?}\n{}", g.name, g.log_text());
    }
}

/// While container policies are loaded, no layer file is cached, not even a lower layer's file no container
/// policy names (a cached entrypoint would start the next container of the image with no event, where its
/// protected directories are marked); one in a container's upper layer never is; a policy naming the file,
/// loaded by SIGHUP, decides it at once.
/// The execs run in long-lived containers (`podman exec`): a container starting or stopping changes the mount
/// table, which flushes the whole cache by itself.
fn layer_files_are_cached_until_a_policy_names_them(name: &str, layout: SandboxLayout) {
    let Some(mut g) = setup(name, layout) else { return };
    let want = expected_marks(&g);
    g.start(&want);
    // The image's /bin/ok in its (only) layer: the one `diff/bin/ok` of each image before any container ran.
    let overlay = g.sb.podman_root.join("overlay");
    let layers: Vec<PathBuf> = fs::read_dir(g.sb.host_view(&overlay))
        .unwrap()
        .flatten()
        .map(|e| overlay.join(e.file_name()).join("diff/bin/ok"))
        .filter(|p| fs::symlink_metadata(g.sb.host_view(p)).is_ok())
        .collect();
    assert_eq!(layers.len(), 2, "{name}: /bin/ok in the layers of the two images: {layers:?}");
    let image_ok: BTreeSet<(u64, u64)> = layers.iter().map(|p| inode_of(&g.sb, p)).collect();
    for (labels, cname) in [(&WORDPRESS_LABELS[..], "wp"), (&OTHER_LABELS[..], "other")] {
        let o = g.run_container(labels, &["-d", "--name", cname], IMAGE, &["/bin/sleep", "600"]);
        assert!(o.status.success(), "{name}: the detached container {cname}\n{o}");
    }
    // The mount table settles (the daemon flushes the cache on a change): a whole look at it since.
    g.caught_up();
    let exec = |g: &Guarded, cname: &str, script: &str| g.podman(&["exec", cname, "/bin/sh", "-c", script]);

    // (1) Allowed in a WordPress container (its policy names /tmp and /var/tmp only), and not cached.
    for _ in 0..2 {
        assert_ran(&exec(&g, "wp", "/bin/ok"), &format!("{name}: /bin/ok in the WordPress container"));
    }

    // (2) A copy in the container's upper layer, outside every rule too: never cached (the container could
    // rename it into its /tmp, and the inode would keep its mark).
    let o = exec(&g, "wp", "cp /bin/ok /bin/ok2 && /bin/ok2 && /bin/ok2");
    assert!(o.status.success() && o.stdout == "ran\nran\n", "{name}: /bin/ok2 in the upper layer\n{o}");
    let upper = PathBuf::from(g.inspect("wp", "{{.GraphDriver.Data.UpperDir}}"));
    let upper_ok2 = inode_of(&g.sb, &upper.join("bin/ok2"));
    // The control loop, which places the cache's marks, has turned since.
    g.watch().fresh_status();
    let cached = exec_cached(g.daemon().pid);
    assert!(!cached.contains(&upper_ok2), "{name}: the upper layer's /bin/ok2 is cached: {cached:?}");
    assert!(image_ok.iter().all(|i| !cached.contains(i)), "{name}: the image's /bin/ok is cached: {cached:?}");
    g.expect_alerts(0, "nothing refused so far");

    // (3) A container policy naming /bin/ok arrives with a reload: the cache is flushed, the exec refused.
    let dropin = g.sb.base().join("policy.d/ksp-block-bin-ok.yaml");
    fs::write(g.sb.host_view(&dropin), KSP_OK_YAML).unwrap();
    let before = g.watch().fresh_status().get("reloads");
    kill(Pid::from_raw(g.daemon().pid), Signal::SIGHUP).unwrap();
    g.watch().wait_status("the reload after SIGHUP", |s| s.get("reloads") > before);
    assert!(g.log_text().contains("policy reloaded"), "{name}: the reload is applied:\n{}", g.log_text());
    wait_cached(&mut g, "the reload flushes the cache", |c| image_ok.iter().all(|i| !c.contains(i)));
    let o = exec(&g, "wp", "/bin/ok");
    assert_denied_in_shell(&o, &format!("{name}: /bin/ok in the WordPress container once a policy names it"));
    let alerts = g.expect_alerts(1, "the refused /bin/ok");
    assert_eq!(get_str(&alerts[0], "Resource"), "/bin/ok", "{}", alerts[0]);
    assert_eq!(get_str(&alerts[0], "PolicyName"), "ksp-block-bin-ok", "{}", alerts[0]);
    // The other app's container is not selected and runs it, but it is no longer cached: a policy names it.
    for _ in 0..2 {
        assert_ran(&exec(&g, "other", "/bin/ok"), &format!("{name}: /bin/ok in the app=other container"));
    }
    // The control loop, which places the cache's marks, has turned since.
    g.watch().fresh_status();
    let cached = exec_cached(g.daemon().pid);
    assert!(image_ok.iter().all(|i| !cached.contains(i)), "{name}: /bin/ok cached again: {cached:?}");
    assert_denied_in_shell(&exec(&g, "wp", "/bin/ok"), &format!("{name}: /bin/ok refused again"));
    g.expect_alerts(2, "the refused /bin/ok, twice");
    assert!(g.podman(&["rm", "-f", "-t", "0", "wp", "other"]).status.success(), "{name}: podman rm");
    g.verify();
}

#[test]
fn ext4_root_layer_files_are_cached_until_a_policy_names_them() {
    layer_files_are_cached_until_a_policy_names_them(&test_name!(), SandboxLayout::Ext4Root);
}

#[test]
fn tmp_tmpfs_layer_files_are_cached_until_a_policy_names_them() {
    layer_files_are_cached_until_a_policy_names_them(&test_name!(), SandboxLayout::TmpTmpfs);
}

// ---------------------------------------------------------------------------------------------------------
// A selected container's own mounts, and the open guard inside containers

/// A TOML container policy beside the KubeArmor drop-in: the WordPress containers' /dev/shm.
const SHM_POLICY: &str = "ctr-block-exec-in-dev-shm";
const SHM_TOML: &str = "\
[[policy]]
name = \"ctr-block-exec-in-dev-shm\"
action = \"Block\"
message = \"Alert! Execution attempted inside /dev/shm\"
tags = [\"config-files\"]

[policy.selector]
match_labels = { app = \"wordpress\" }
namespace = \"wordpress-mysql\"

[[policy.process.match_directories]]
dir = \"/dev/shm/\"
recursive = true
";

impl Guarded {
    /// Waits until the daemon's log holds `needle` (at most 10 s).
    pub(crate) fn wait_for_log(&self, needle: &str) {
        if poll_until(Duration::from_secs(10), || self.log_text().contains(needle).then_some(())).is_none() {
            panic!("{}: no {needle:?} in the log:\n{}", self.name, self.log_text());
        }
    }
}

/// Alerts of `ksp-block-exec-inside-tmp` (or the /dev/shm policy) for `resource` in container `id`: the
/// fields that tell the container's own mount was decided by its policy, by the path it sees.
pub(crate) fn assert_own_mount_alert(a: &Value, id: &str, policy: &str, resource: &str, data: &str) {
    assert_eq!(get_str(a, "Type"), "MatchedPolicy", "{a}");
    assert_eq!(get_str(a, "PolicyName"), policy, "{a}");
    assert_eq!(get_str(a, "Action"), "Block", "{a}");
    assert_eq!(get_str(a, "Result"), EPERM_TEXT, "{a}");
    assert_eq!(get_str(a, "Resource"), resource, "the path inside the container: {a}");
    assert_eq!(get_str(a, "ContainerID"), id, "{a}");
    assert_eq!(get_str(a, "ContainerName"), "wordpress", "{a}");
    assert_eq!(get_str(a, "NamespaceName"), "wordpress-mysql", "{a}");
    assert_eq!(get_str(a, "PodName"), "wp-1", "{a}");
    assert_eq!(get_str(a, "Labels"), WORDPRESS_LABEL_TEXT, "{a}");
    assert_eq!(get_str(a, "Data"), format!("fanotify={data}"), "{a}");
    assert_eq!(get_str(a, "Enforcer"), "fanotify", "{a}");
}

/// A shell's open of its script refused: busybox sh cannot open it.
pub(crate) fn assert_open_refused(out: &Output, what: &str) {
    assert!(
        !out.status.success() && out.stderr.contains(EPERM_TEXT) && !out.stdout.contains("ran"),
        "{what}: expected the open to fail with EPERM\n{out}"
    );
}

/// g–k: a WordPress container's tmpfs at /tmp, its /dev/shm and a bind of a host directory at /var/tmp.
fn own_mounts_are_guarded(name: &str, layout: SandboxLayout) {
    let Some(mut g) = setup(name, layout) else { return };
    fs::write(g.sb.host_view(&g.sb.base().join("policy.d/shm.toml")), SHM_TOML).unwrap();
    let hostdir = g.sb.base().join("hostvar");
    fs::create_dir_all(g.sb.host_view(&hostdir)).unwrap();
    fs::set_permissions(g.sb.host_view(&hostdir), fs::Permissions::from_mode(0o1777)).unwrap();
    let want = expected_marks(&g);
    g.start(&want);
    let bind = format!("{}:/var/tmp", hostdir.display());
    // podman's --tmpfs (and its own /dev/shm) is noexec unless told otherwise: a noexec mount refuses execs
    // itself (EACCES). The /dev/shm tmpfs is wholly in the /dev/shm policy's scope: its filesystem mark
    // carries the open guard.
    let mounts = ["--tmpfs", "/tmp:rw,exec,size=64m", "--tmpfs", "/dev/shm:rw,exec,size=16m", "-v", &bind];

    // (g) From the first instruction: the container's first program puts a program on its tmpfs and runs it.
    let script = "cp /bin/ok /tmp/x; /tmp/x";
    let mut flags = vec!["--name", "wp-first"];
    flags.extend(mounts);
    let o = g.run_container(&WORDPRESS_LABELS, &flags, IMAGE, &["/bin/sh", "-c", script]);
    assert_denied_in_shell(&o, &format!("{name}: {script} as a WordPress container's first program"));
    let first = g.inspect("wp-first", "{{.Id}}");
    let alerts = g.expect_alerts(1, "the first program's exec on its own tmpfs");
    assert_own_mount_alert(&alerts[0], &first, POLICY_NAME, "/tmp/x", "FAN_OPEN_EXEC_PERM");
    assert!(g.podman(&["rm", "-f", "wp-first"]).status.success(), "{name}: podman rm");
    g.verify();

    // (h) A running WordPress container: its tmpfs at /tmp, its /dev/shm, the bind at /var/tmp.
    let wp_name = "wp-1-wordpress";
    let mut flags = vec!["-d", "--name", wp_name];
    flags.extend(mounts);
    let o = g.run_container(&WORDPRESS_LABELS, &flags, IMAGE, &["/bin/sleep", "600"]);
    assert!(o.status.success(), "{name}: the WordPress container starts\n{o}");
    let wp = o.stdout.trim().to_owned();
    // The bind's host filesystem is marked at the daemon's next look at the containers.
    g.wait_for_log("marked the filesystem of a container's bind mount");
    let o = g.podman(&["exec", wp_name, "/bin/sh", "-c", "grep -E ' /(tmp|var/tmp|dev/shm) ' /proc/mounts"]);
    println!("{name}: the container's own mounts:\n{}", o.stdout);
    let noexec = o.stdout.split([' ', ',']).any(|opt| opt == "noexec");
    assert!(!noexec, "{name}: the container's mounts allow execs:\n{o}");
    let mut n = 1;
    for (dir, policy) in [("/tmp", POLICY_NAME), ("/var/tmp", POLICY_NAME), ("/dev/shm", SHM_POLICY)] {
        let x = format!("{dir}/x");
        let script = format!("cp /bin/ok {x} && {x}");
        let o = g.podman(&["exec", wp_name, "/bin/sh", "-c", &script]);
        assert_denied_in_shell(&o, &format!("{name}: {script} in the WordPress container"));
        n += 1;
        let alerts = g.expect_alerts(n, &format!("the exec in the container's {dir}"));
        assert_own_mount_alert(&alerts[n - 1], &wp, policy, &x, "FAN_OPEN_EXEC_PERM");
        assert_eq!(get_str(&alerts[n - 1], "Source"), "/bin/busybox", "{}", alerts[n - 1]);
    }
    g.verify();

    // (i) Reading and copying there works; only running is refused.
    let script = "echo data > /tmp/f && cat /tmp/f && cp /tmp/x /tmp/y && cat /tmp/y > /dev/null && \
                  cp /tmp/y /var/tmp/y && cat /var/tmp/y > /dev/null && echo copied";
    let o = g.podman(&["exec", wp_name, "/bin/sh", "-c", script]);
    assert!(o.status.success() && o.stdout == "data\ncopied\n", "{name}: reading and copying\n{o}");
    g.expect_alerts(n, "reading and copying raise none");

    // (j) The open guard inside the container: `sh /tmp/s` is refused, by its open.
    for (dir, policy) in [("/tmp", POLICY_NAME), ("/var/tmp", POLICY_NAME), ("/dev/shm", SHM_POLICY)] {
        let s = format!("{dir}/s");
        let o = g.podman(&["exec", wp_name, "/bin/sh", "-c", &format!("echo 'echo ran' > {s} && /bin/sh {s}")]);
        assert_open_refused(&o, &format!("{name}: sh {s} in the WordPress container"));
        n += 1;
        let alerts = g.expect_alerts(n, &format!("sh {s}"));
        assert_own_mount_alert(&alerts[n - 1], &wp, policy, &s, "FAN_OPEN_PERM route=interpreter");
        // Reading it is no route to running it.
        let o = g.podman(&["exec", wp_name, "/bin/cat", &s]);
        assert!(o.status.success() && o.stdout == "echo ran\n", "{name}: cat {s}\n{o}");
    }
    g.expect_alerts(n, "cat raises none");

    // (k) A host process running a file of the container's tmpfs through /proc/PID/root: decided by the
    // container's policy, which owns the mount.
    let pid = g.inspect(wp_name, "{{.State.Pid}}");
    let through = PathBuf::from(format!("/proc/{pid}/root/tmp/x"));
    let o = g.host_exec(&through);
    assert_denied_in_shell(&o, &format!("{name}: {} on the host", through.display()));
    n += 1;
    let alerts = g.expect_alerts(n, "the host's exec of the container's /tmp/x");
    assert_own_mount_alert(&alerts[n - 1], &wp, POLICY_NAME, "/tmp/x", "FAN_OPEN_EXEC_PERM");
    assert_eq!(get_str(&alerts[n - 1], "Source"), real_exe("bash"), "the host's bash: {}", alerts[n - 1]);
    // ... and so is one that entered the container's mount namespace only (its cgroup is the host's).
    let o = g.sb.run(&["nsenter".into(), "-t".into(), OsString::from(&pid), "-m".into(), "--".into(), "/tmp/x".into()]);
    assert!(
        !o.status.success() && o.stderr.contains(EPERM_TEXT) && !o.stdout.contains("ran"),
        "{name}: nsenter -m into the container, then /tmp/x\n{o}"
    );
    n += 1;
    let alerts = g.expect_alerts(n, "nsenter -m's exec of the container's /tmp/x");
    assert_own_mount_alert(&alerts[n - 1], &wp, POLICY_NAME, "/tmp/x", "FAN_OPEN_EXEC_PERM");

    // (l) Another app's container with the same mounts runs all of it; the host policy is as before.
    let script = "cp /bin/ok /tmp/x && /tmp/x && cp /bin/ok /var/tmp/o && /var/tmp/o && echo 'echo ran' > /tmp/s && /bin/sh /tmp/s";
    let mut flags = vec!["--rm"];
    flags.extend(mounts);
    let o = g.run_container(&OTHER_LABELS, &flags, IMAGE, &["/bin/sh", "-c", script]);
    assert!(o.status.success() && o.stdout == "ran\nran\nran\n", "{name}: an app=other container\n{o}");
    g.expect_alerts(n, "nothing from the app=other container");
    let hx = g.host_tmp[0].join("hx");
    g.put_ok(&hx);
    assert_denied_in_shell(&g.host_exec(&hx), &format!("{name}: {} on the host", hx.display()));
    n += 1;
    let alerts = g.expect_alerts(n, "the host's exec in its tmp");
    assert_host_alert(&alerts[n - 1], &hx);
    let o = g.podman(&["exec", wp_name, "/bin/sh", "-c", "cp /bin/ok /var/tmp/o2"]);
    assert!(o.status.success(), "{name}: cp\n{o}");
    assert_ran(&g.host_exec(&hostdir.join("o2")), &format!("{name}: the bound host directory's file, run on the host"));
    g.expect_alerts(n, "the host's own path of the bound directory is the host policy's, which allows it");

    // `noexecd check` lists the container's own mounts.
    let o = g.sb.run(&[bin().into_os_string(), "check".into(), "--config".into(), g.config.clone().into()]);
    let lines: Vec<&str> = o.stdout.lines().filter(|l| l.starts_with(&format!("container-mount\t{wp}\t"))).collect();
    assert!(
        lines.iter().any(|l| l.ends_with("\t/tmp:tmpfs:private"))
            && lines.iter().any(|l| l.ends_with("\t/dev/shm:tmpfs:private,whole"))
            && lines.iter().any(|l| l.contains("\t/var/tmp:")),
        "{name}: check lists the container's own mounts:\n{}",
        o.stdout
    );

    let o = g.podman(&["rm", "-f", "-t", "0", wp_name]);
    assert!(o.status.success(), "{name}: podman rm\n{o}");
    g.caught_up();
    g.verify();
    g.assert_open_guard_marks_only_protected_dirs();
    let log = g.log_text();
    assert!(!log.contains("noexecd-unresolvable-path"), "{name}: every file was named:\n{log}");
}

#[test]
fn tmp_tmpfs_a_containers_own_mounts_are_guarded() {
    own_mounts_are_guarded(&test_name!(), SandboxLayout::TmpTmpfs);
}

#[test]
fn ext4_root_a_containers_own_mounts_are_guarded() {
    own_mounts_are_guarded(&test_name!(), SandboxLayout::Ext4Root);
}

/// KubeArmor's own `execname` and label-expression test policies (`tests/fixtures/kubearmor/`, unchanged) as
/// drop-ins, on podman containers labelled as the pods of KubeArmor's `multiubuntu` deployment: `apt` is
/// refused wherever it lies in an `ubuntu-1` container (`ksp-ubuntu-1-block-proc-execname`) and in any other
/// container of the namespace (`ksp-match-expression-notin-block-process`, `NotIn container=ubuntu-1`), and
/// runs in another namespace; `apt-get` runs everywhere. The cluster policy `csp-in-operator-block-process`
/// refuses `/usr/bin/apt` in namespace `nginx1`, not in `nginx2`.
fn kubearmor_exec_names_and_expressions(name: &str, layout: SandboxLayout) {
    let Some(mut g) = setup(name, layout) else { return };
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubearmor");
    for f in [
        "ksp-ubuntu-1-block-proc-execname.yaml",
        "ksp-match-expression-notin-block-process.yaml",
        "csp-in-operator-block-process.yaml",
    ] {
        fs::copy(fixtures.join(f), g.sb.host_view(&g.sb.base().join("policy.d").join(f))).unwrap();
    }
    let want = expected_marks(&g);
    g.start(&want);
    let ns = ("io.kubernetes.pod.namespace", "multiubuntu");
    let ubuntu_1 = [ns, ("group", "group-1"), ("container", "ubuntu-1")];
    let ubuntu_3 = [ns, ("group", "group-1"), ("container", "ubuntu-3")];
    let elsewhere = [("io.kubernetes.pod.namespace", "other"), ("group", "group-1"), ("container", "ubuntu-3")];
    let apt = |dir: &str| format!("mkdir -p {dir} && cp /bin/ok {dir}/apt && {dir}/apt");
    let apt_get = "cp /bin/ok /bin/apt-get && /bin/apt-get";

    let run =
        |labels: &[(&str, &str)], script: &str| g.run_container(labels, &["--rm"], IMAGE, &["/bin/sh", "-c", script]);
    assert_denied_in_shell(&run(&ubuntu_1, &apt("/usr/bin")), &format!("{name}: /usr/bin/apt in ubuntu-1"));
    assert_denied_in_shell(&run(&ubuntu_1, &apt("/opt/x")), &format!("{name}: /opt/x/apt in ubuntu-1"));
    assert_ran(&run(&ubuntu_1, apt_get), &format!("{name}: apt-get in ubuntu-1"));
    assert_denied_in_shell(&run(&ubuntu_3, &apt("/usr/bin")), &format!("{name}: /usr/bin/apt in ubuntu-3"));
    assert_ran(&run(&ubuntu_3, apt_get), &format!("{name}: apt-get in ubuntu-3"));
    assert_ran(&run(&elsewhere, &apt("/usr/bin")), &format!("{name}: apt in another namespace"));
    let nginx = |ns| [("io.kubernetes.pod.namespace", ns), ("app", "nginx")];
    assert_denied_in_shell(&run(&nginx("nginx1"), &apt("/usr/bin")), &format!("{name}: apt in nginx1"));
    assert_ran(&run(&nginx("nginx2"), &apt("/usr/bin")), &format!("{name}: apt in nginx2"));
    let alerts = g.expect_alerts(4, "the four apt execs refused");
    let got: Vec<(&str, &str)> = alerts.iter().map(|a| (get_str(a, "PolicyName"), get_str(a, "Resource"))).collect();
    assert_eq!(
        got,
        vec![
            ("ksp-ubuntu-1-block-proc-execname", "/usr/bin/apt"),
            ("ksp-ubuntu-1-block-proc-execname", "/opt/x/apt"),
            ("ksp-match-expression-notin-block-process", "/usr/bin/apt"),
            ("csp-in-operator-block-process", "/usr/bin/apt"),
        ],
        "{name}"
    );
    g.verify();
}

#[test]
fn tmp_tmpfs_kubearmor_exec_names_and_expressions_in_podman_containers() {
    kubearmor_exec_names_and_expressions(&test_name!(), SandboxLayout::TmpTmpfs);
}
