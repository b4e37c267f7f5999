//! Privileged: `noexecd containers` against real container runtimes (podman, containerd with ctr, docker),
//! each started privately by the test, with containers labelled as the kubelet labels a WordPress pod.
//!
//! Each test runs in a `Sandbox`: a private mount namespace and a private pid namespace (its first process
//! reaps orphans; when it dies, every process in the namespace dies with it), with fresh tmpfs over the test's
//! own directory, `/run`, `/var/lib`, `/var/tmp` and `/dev/shm`. Every runtime keeps all of its state below the
//! test's directory (`podman --root/--runroot`, containerd's `root`/`state`/`[grpc] address`, dockerd's
//! `--data-root/--exec-root`), and the tmpfs over `/run` and `/var/lib` hide the machine's own runtimes and
//! catch whatever a runtime writes to its default places: the machine's podman storage, containerd and docker
//! are never touched. The runtimes' cgroups go below a cgroup named after the test process
//! (`noexecd-it-<pid>-<runtime>`), removed at the end. Every command is bounded by a timeout and printed with
//! what it printed (`cargo test -- --nocapture` shows them).
//!
//! The images come from no registry: a directory with a static busybox and its applet links, `tar`red and
//! imported (`podman import`, `docker import`; containerd gets podman's `save --format oci-archive`).
//!
//! Tools: podman, runc, busybox-static and containerd come from `make test-deps`; a missing one is a skip (a
//! failure under `NOEXECD_REQUIRE_PRIVILEGED=1`). docker is tried only where Debian's dockerd
//! (`/usr/sbin/dockerd`, package docker.io) is installed, and is a skip, never a failure, wherever dockerd
//! is missing or cannot start in the test's namespace, even under `NOEXECD_REQUIRE_PRIVILEGED=1`.
//!
//! `container_enforce` runs `noexecd run` in the same kind of sandbox, with the host's `/tmp` and podman's
//! storage stood in for by fresh filesystems ([`SandboxLayout`]).

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::common::*;

/// The image every test starts its containers from.
pub(crate) const IMAGE: &str = "localhost/noexecd-it-busybox:1";
/// How long a runtime command may take (an import or the first start can take seconds on a loaded machine).
pub(crate) const RUNTIME_CMD_SECS: u64 = 90;
/// How long a runtime's daemon has to open its socket.
const DAEMON_START: Duration = Duration::from_secs(30);

/// The labels a kubelet would put on the container `wordpress` of pod `wp-1` in namespace `wordpress-mysql`.
pub(crate) const WORDPRESS_LABELS: [(&str, &str); 4] = [
    ("app", "wordpress"),
    ("io.kubernetes.pod.namespace", "wordpress-mysql"),
    ("io.kubernetes.pod.name", "wp-1"),
    ("io.kubernetes.container.name", "wordpress"),
];

pub(crate) fn label_args(labels: &[(&str, &str)]) -> Vec<String> {
    labels.iter().flat_map(|(k, v)| ["--label".to_owned(), format!("{k}={v}")]).collect()
}

fn label_json(labels: &[(&str, &str)]) -> Value {
    Value::Object(labels.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect())
}

/// The tools a test needs are there, else a skip (a failure under `NOEXECD_REQUIRE_PRIVILEGED=1`).
pub(crate) fn have_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| which(t).is_none()).collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("{} not found on PATH (run `make test-deps`)", missing.join(", "));
    if require_privileged() {
        panic!("{test}: {why} and NOEXECD_REQUIRE_PRIVILEGED=1");
    }
    eprintln!("SKIPPED {test}: {why} (set NOEXECD_REQUIRE_PRIVILEGED=1 to make this a failure)");
    false
}

/// A container id as the CRI makes them (64 hex digits), unique to this test run.
fn fresh_id() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{:032x}{:032x}", nanos, u128::from(std::process::id()))
}

// ---------------------------------------------------------------------------------------------------------
// The sandbox

/// Which filesystems a sandbox mounts besides the tmpfs over `/run`, `/var/lib`, `/var/tmp` and `/dev/shm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SandboxLayout {
    /// The test's directory (`<host tempdir>/ns`), a tmpfs holding everything, podman's storage included.
    Plain,
    /// A host whose `/tmp` is its own tmpfs: a fresh tmpfs over `/tmp`; podman's storage at its default place
    /// (`/var/lib/containers/storage`, on the fresh tmpfs over `/var/lib`); the test's directory is
    /// [`ENFORCE_BASE`], a tmpfs of its own.
    TmpTmpfs,
    /// A host whose `/tmp` is a directory of the filesystem that holds the container storage: a loop-mounted
    /// ext4 image at `<base>/root` stands for `/`, with `<root>/tmp`, `<root>/var/tmp` and podman's storage
    /// `<root>/var/lib/containers/storage` on it. `/tmp` itself stays the machine's (nothing marks it).
    Ext4Root,
}

/// The test's directory in the namespace for [`SandboxLayout::TmpTmpfs`] and [`SandboxLayout::Ext4Root`]: on
/// the sandbox's `/run`, so that it is below no protected directory.
pub(crate) const ENFORCE_BASE: &str = "/run/noexecd-it";

/// A private mount and pid namespace for one test's runtimes (see the module docs).
pub(crate) struct Sandbox {
    test: String,
    /// Host directory; for [`SandboxLayout::Plain`], `base` (its `ns`) is a tmpfs inside the namespace.
    pub(crate) dir: tempfile::TempDir,
    /// The test's directory as the namespace sees it (a tmpfs there).
    base: PathBuf,
    /// `<base>/root` for [`SandboxLayout::Ext4Root`]: the ext4 image standing for `/`.
    pub(crate) root: Option<PathBuf>,
    /// podman's `--root` and `--runroot`.
    pub(crate) podman_root: PathBuf,
    podman_runroot: PathBuf,
    holder: Child,
    /// Host pid of the namespace's first process (its pid 1).
    pub(crate) init: u32,
    /// The cgroup every runtime puts its containers below (one per hierarchy), removed on drop.
    pub(crate) cgroup: String,
    /// Daemons started in the namespace (name, pid in the namespace), stopped on drop.
    daemons: Vec<(String, i64)>,
}

impl Sandbox {
    pub(crate) fn new(test: &str, runtime: &str) -> Sandbox {
        Self::with_layout(test, runtime, SandboxLayout::Plain)
    }

    pub(crate) fn with_layout(test: &str, runtime: &str, layout: SandboxLayout) -> Sandbox {
        let dir = tempfile::Builder::new().prefix("noexecd-it-ctr-").tempdir().unwrap();
        let base = match layout {
            SandboxLayout::Plain => dir.path().join("ns"),
            SandboxLayout::TmpTmpfs | SandboxLayout::Ext4Root => PathBuf::from(ENFORCE_BASE),
        };
        let root = (layout == SandboxLayout::Ext4Root).then(|| base.join("root"));
        let (podman_root, podman_runroot) = match (layout, &root) {
            (SandboxLayout::Plain, _) => (base.join("podman/root"), base.join("podman/run")),
            (_, Some(r)) => (r.join("var/lib/containers/storage"), PathBuf::from("/run/containers/storage")),
            (_, None) => (PathBuf::from("/var/lib/containers/storage"), PathBuf::from("/run/containers/storage")),
        };
        let b = sh_quote(&base);
        let tmpfs_base = format!("mkdir -p {b}\nmount -t tmpfs -o size=768m,mode=0700 noexecd-test-containers {b}\n");
        let (before, after) = match layout {
            SandboxLayout::Plain => {
                fs::create_dir(&base).unwrap();
                (tmpfs_base, String::new())
            }
            SandboxLayout::TmpTmpfs => {
                (String::new(), format!("{tmpfs_base}mount -t tmpfs -o size=256m,mode=1777 noexecd-test-tmp /tmp\n"))
            }
            SandboxLayout::Ext4Root => {
                let r = sh_quote(root.as_ref().unwrap());
                let image = sh_quote(&base.join("root.img"));
                (
                    String::new(),
                    format!(
                        "{tmpfs_base}truncate -s 2G {image}\nmkfs.ext4 -q -F {image} >/dev/null\nmkdir {r}\n\
                         mount -o loop {image} {r}\nmkdir -p {r}/tmp {r}/var/tmp {r}/var/lib/containers/storage\n\
                         chmod 1777 {r}/tmp {r}/var/tmp\n"
                    ),
                )
            }
        };
        // The namespace's pid 1 is bash, which reaps the orphans (conmon, shims and daemons end up its
        // children); bounded by its loop even if nobody kills it.
        let script = format!(
            "set -eu\n\
             {before}\
             mount -t tmpfs -o mode=0755 noexecd-test-run /run\n\
             mount -t tmpfs -o mode=0755 noexecd-test-varlib /var/lib\n\
             mount -t tmpfs -o mode=1777 noexecd-test-vartmp /var/tmp\n\
             mount -t tmpfs -o mode=1777 noexecd-test-shm /dev/shm\n\
             {after}\
             mkdir -p {b}/tmp {b}/none\n\
             echo ready\n\
             exec >/dev/null 2>&1 </dev/null\n\
             for i in $(seq 1800); do sleep 1; done\n"
        );
        let mut holder = Command::new("setpriv")
            .env("PATH", SYS_PATH)
            .args(["--pdeathsig", "KILL", "--", "unshare", "--mount", "--propagation", "private"])
            .args(["--pid", "--fork", "--mount-proc", "--kill-child", "--", "bash", "-c"])
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the namespace holder");
        let stdout = holder.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let unshare = holder.id();
        let init = fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
            .ok()
            .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()));
        let Some(init) = init.filter(|_| line.trim() == "ready") else {
            let _ = holder.kill();
            let _ = holder.wait();
            panic!("{test}: the namespace holder did not come up (got {line:?})");
        };
        let sandbox = Sandbox {
            test: test.to_owned(),
            dir,
            base: base.clone(),
            root,
            podman_root,
            podman_runroot,
            holder,
            init,
            cgroup: format!("noexecd-it-{}-{runtime}", std::process::id()),
            daemons: Vec::new(),
        };
        println!("{test}: sandbox {} (pid 1 of its namespace is host pid {init})", base.display());
        sandbox
    }

    /// The test's directory, as the namespace sees it (a tmpfs there).
    pub(crate) fn base(&self) -> PathBuf {
        self.base.clone()
    }

    /// A path of the namespace, as the test process reaches it.
    pub(crate) fn host_view(&self, p: &Path) -> PathBuf {
        let mut v = OsString::from(format!("/proc/{}/root", self.init));
        v.push(p.as_os_str());
        PathBuf::from(v)
    }

    /// `argv` in the namespace (mount and pid), bounded by `timeout`; printed with its output.
    pub(crate) fn run<S: AsRef<std::ffi::OsStr>>(&self, argv: &[S]) -> Output {
        let out = self.run_quietly(argv);
        let shown: Vec<String> = argv.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
        println!("{}: $ {}\n{}", self.test, shown.join(" "), indent(&out));
        out
    }

    /// The same, not printed.
    pub(crate) fn run_quietly<S: AsRef<std::ffi::OsStr>>(&self, argv: &[S]) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.env("PATH", SYS_PATH)
            .env("CONTAINERS_CONF", self.base().join("containers.conf"))
            .env("TMPDIR", self.base().join("tmp"))
            .arg("-t")
            .arg(self.init.to_string())
            .args(["-m", "-p", "--", "timeout", "-k", "2"])
            .arg(RUNTIME_CMD_SECS.to_string())
            .args(argv);
        run_bounded(&mut cmd, Duration::from_secs(RUNTIME_CMD_SECS + 10))
    }

    /// `argv` in the namespace; must succeed. Its stdout.
    pub(crate) fn ok<S: AsRef<std::ffi::OsStr>>(&self, argv: &[S]) -> String {
        let out = self.run(argv);
        assert!(out.status.success(), "{}: command failed\n{out}", self.test);
        out.stdout
    }

    pub(crate) fn sh(&self, script: &str) -> String {
        self.ok(&["bash", "-ec", script])
    }

    /// Starts `argv` in the background in the namespace, its output to `<base>/<name>.log`; stopped on drop.
    pub(crate) fn start_daemon(&mut self, name: &str, argv: &[String]) {
        let log = self.base().join(format!("{name}.log"));
        let mut sh: Vec<String> = vec![
            "sh".into(),
            "-c".into(),
            format!("timeout -k 2 900 \"$@\" > {} 2>&1 < /dev/null & echo $!", sh_quote(&log)),
            "sh".into(),
        ];
        sh.extend(argv.iter().cloned());
        let pid: i64 = self.ok(&sh).trim().parse().expect("the daemon's pid");
        self.daemons.push((name.to_owned(), pid));
    }

    pub(crate) fn daemon_log(&self, name: &str) -> String {
        fs::read_to_string(self.host_view(&self.base().join(format!("{name}.log")))).unwrap_or_default()
    }

    /// Waits for a daemon's socket to appear; false after `DAEMON_START`.
    pub(crate) fn wait_for_socket(&self, socket: &Path) -> bool {
        poll_until(DAEMON_START, || self.host_view(socket).exists().then_some(())).is_some()
    }

    /// `noexecd containers ARGS` in the namespace: its JSON lines.
    fn containers(&self, args: &[String]) -> Vec<Value> {
        let mut argv: Vec<OsString> = vec![bin().into_os_string(), "containers".into()];
        argv.extend(args.iter().map(OsString::from));
        let out = self.run(&argv);
        assert!(out.status.success(), "{}: noexecd containers failed\n{out}", self.test);
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: not a JSON line ({e}): {l}", self.test)))
            .collect()
    }

    /// The same, with `--table`.
    fn containers_table(&self, args: &[String]) -> String {
        let mut argv: Vec<OsString> = vec![bin().into_os_string(), "containers".into(), "--table".into()];
        argv.extend(args.iter().map(OsString::from));
        self.ok(&argv)
    }

    /// Polls `noexecd containers` until `done` holds (a stopped container may take a moment to go).
    fn containers_until(&self, args: &[String], what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let mut listed = Vec::new();
        if let Some(()) = poll_until(Duration::from_secs(15), || {
            listed = self.containers(args);
            done(&listed).then_some(())
        }) {
            return listed;
        }
        panic!("{}: {what}: still listed {listed:?}", self.test);
    }

    /// Asserts that `pid` is alive in the namespace and that its cgroup names container `id`.
    fn assert_first_process(&self, pid: i64, id: &str) {
        let cgroup = self.ok(&["cat".to_owned(), format!("/proc/{pid}/cgroup")]);
        assert!(cgroup.contains(id), "{}: /proc/{pid}/cgroup does not name container {id}:\n{cgroup}", self.test);
    }

    /// `<base>/img.tar`: a static busybox and the applets the tests run, as a root filesystem.
    pub(crate) fn build_image_tar(&self) {
        let busybox = which("busybox").unwrap();
        let file = run_bounded(Command::new("file").arg("-L").arg(&busybox), Duration::from_secs(20));
        assert!(
            file.stdout.contains("statically linked"),
            "{}: {} is not static (install busybox-static): {}",
            self.test,
            busybox.display(),
            file.stdout
        );
        self.sh(&format!(
            "cd {b}\nmkdir -p img/bin\ncp {bb} img/bin/busybox\n\
             for a in sh sleep true cat; do ln -s busybox img/bin/$a; done\ntar -C img -cf img.tar .\n",
            b = sh_quote(&self.base()),
            bb = sh_quote(&busybox)
        ));
    }

    /// podman's configuration for the test (`CONTAINERS_CONF`: read instead of the machine's): runc (crun
    /// refuses this kind of machine's hybrid cgroup layout), cgroupfs (no systemd), file events, ulimits under
    /// the hard limit, its temporary files below the test's directory.
    pub(crate) fn write_containers_conf(&self) {
        let tmp = self.base().join("tmp");
        let text = format!(
            "[containers]\ndefault_ulimits = [\"nofile=10000:10000\", \"nproc=4096:4096\"]\n\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nruntime = \"runc\"\n\
             tmp_dir = {t}\nimage_copy_tmp_dir = {t}\n",
            t = toml_str(&tmp)
        );
        fs::write(self.host_view(&self.base().join("containers.conf")), text).unwrap();
    }

    /// `podman --root <podman root> --runroot <podman runroot> ARGS` (`<base>/podman/root` and
    /// `<base>/podman/run` for [`SandboxLayout::Plain`]).
    pub(crate) fn podman_argv(&self, args: &[&str]) -> Vec<String> {
        let (root, run) = (&self.podman_root, &self.podman_runroot);
        let mut argv: Vec<String> = vec!["podman".into(), "--root".into(), path_str(root), "--runroot".into()];
        argv.push(path_str(run));
        argv.extend(["--storage-driver", "overlay", "--runtime", "runc"].map(String::from));
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        argv
    }

    pub(crate) fn podman(&self, args: &[&str]) -> String {
        self.ok(&self.podman_argv(args))
    }

    /// The flags that point `noexecd containers` at this sandbox's runtimes only (`none` for the others);
    /// `containerd` is its state directory and, optionally, its API socket.
    fn sources(
        &self,
        podman_socket: Option<&Path>,
        docker: Option<&Path>,
        containerd: Option<(&Path, Option<&Path>)>,
    ) -> Vec<String> {
        let none = self.base().join("none");
        let or_none = |p: Option<&Path>| path_str(p.unwrap_or(&none));
        vec![
            "--podman-socket".into(),
            or_none(podman_socket),
            "--docker-root".into(),
            or_none(docker),
            "--containerd-state".into(),
            or_none(containerd.map(|(state, _)| state)),
            "--containerd-socket".into(),
            or_none(containerd.and_then(|(_, socket)| socket)),
            // podman's storage is containers/storage too: CRI-O's reader must leave podman's containers alone.
            "--storage".into(),
            path_str(&self.podman_root),
        ]
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for (name, pid) in std::mem::take(&mut self.daemons).into_iter().rev() {
            let script =
                format!("kill {pid}; for i in $(seq 50); do kill -0 {pid} || exit 0; sleep 0.1; done; kill -9 {pid}");
            let out = self.run(&["sh", "-c", script.as_str()]);
            println!("{}: stopped {name} (pid {pid} in the namespace): {}", self.test, out.status);
        }
        // Killing unshare kills the namespace's pid 1 (--kill-child), and with it every process left inside.
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        poll_until(Duration::from_secs(10), || fs::metadata(format!("/proc/{}", self.init)).is_err().then_some(()));
        remove_cgroups(&self.cgroup);
    }
}

/// Removes `/sys/fs/cgroup/<hierarchy>/<name>` and what the runtimes left below it, in every hierarchy,
/// deepest first (the processes that were in them may take a moment to be gone).
pub(crate) fn remove_cgroups(name: &str) {
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else { return };
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut roots: Vec<PathBuf> = hierarchies.flatten().map(|h| h.path().join(name)).filter(|p| p.is_dir()).collect();
    if Path::new("/sys/fs/cgroup").join(name).is_dir() {
        roots.push(Path::new("/sys/fs/cgroup").join(name));
    }
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(entries) = fs::read_dir(d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
                }
            }
        }
        out.push(d.to_path_buf());
    }
    for r in &roots {
        walk(r, &mut dirs);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for d in dirs {
        poll_until(deadline.saturating_duration_since(Instant::now()), || {
            (fs::remove_dir(&d).is_ok() || !d.exists()).then_some(())
        });
        if d.exists() {
            eprintln!("warning: could not remove cgroup {}", d.display());
        }
    }
}

pub(crate) fn path_str(p: &Path) -> String {
    p.to_str().expect("test paths are UTF-8").to_owned()
}

fn indent(out: &Output) -> String {
    let mut s = String::new();
    for (what, text) in [("out", &out.stdout), ("err", &out.stderr)] {
        for line in text.lines().take(40) {
            s.push_str(&format!("    {what}| {line}\n"));
        }
    }
    s.push_str(&format!("    ({})", out.status));
    s
}

fn listed_ids(listed: &[Value]) -> Vec<&str> {
    listed.iter().map(|c| c["id"].as_str().unwrap_or("")).collect()
}

// ---------------------------------------------------------------------------------------------------------
// podman

#[test]
fn podman_containers_are_listed_with_their_labels_and_gone_once_stopped() {
    privileged!(needs: Needs::WritableCgroups);
    let name = test_name!();
    if !have_tools(&name, &["podman", "runc", "conmon", "busybox", "tar", "file"]) {
        return;
    }
    let mut sb = Sandbox::new(&name, "podman");
    sb.build_image_tar();
    sb.write_containers_conf();
    let tar = path_str(&sb.base().join("img.tar"));
    sb.podman(&["import", "-q", &tar, IMAGE]);
    let image_id = sb.podman(&["image", "inspect", "--format", "{{.Id}}", IMAGE]).trim().to_owned();
    let socket = sb.base().join("podman.sock");
    let service = sb.podman_argv(&["system", "service", "--time=0", &format!("unix://{}", socket.display())]);
    sb.start_daemon("podman-service", &service);
    assert!(
        sb.wait_for_socket(&socket),
        "{name}: podman's API socket did not appear:\n{}",
        sb.daemon_log("podman-service")
    );

    let cgroup_parent = format!("/{}", sb.cgroup);
    let run = |container: &str, labels: &[(&str, &str)]| -> String {
        let mut args: Vec<String> =
            ["run", "-d", "--name", container, "--network", "none", "--cgroup-parent"].map(String::from).to_vec();
        args.push(cgroup_parent.clone());
        args.extend(label_args(labels));
        args.extend([IMAGE, "/bin/sleep", "600"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        sb.podman(&args).trim().to_owned()
    };
    let wp = run("wp-1-wordpress", &WORDPRESS_LABELS);
    let plain = run("plain", &[("tier", "db"), ("pod-template-hash", "5d8f9c")]);
    let pid_of =
        |id: &str| -> i64 { sb.podman(&["inspect", "--format", "{{.State.Pid}}", id]).trim().parse().unwrap() };
    let (wp_pid, plain_pid) = (pid_of(&wp), pid_of(&plain));

    let sources = sb.sources(Some(&socket), None, None);
    let listed = sb.containers(&sources);
    let image = format!("{IMAGE}@sha256:{image_id}");
    let expected_wp = json!({
        "id": wp, "runtime": "podman", "name": "wordpress", "image": image,
        "namespace": "wordpress-mysql", "pod": "wp-1", "labels": label_json(&WORDPRESS_LABELS), "init_pid": wp_pid,
    });
    let expected_plain = json!({
        "id": plain, "runtime": "podman", "name": "plain", "image": image,
        "namespace": null, "pod": null, "labels": {"tier": "db"}, "init_pid": plain_pid,
    });
    assert_eq!(
        listed,
        vec![expected_plain.clone(), expected_wp],
        "{name}: both containers, sorted by name; the Kubernetes container name wins over podman's, and \
         pod-template-hash is dropped as KubeArmor drops it"
    );
    sb.assert_first_process(wp_pid, &wp);
    sb.assert_first_process(plain_pid, &plain);
    let table = sb.containers_table(&sources);
    let row =
        table.lines().find(|l| l.starts_with(&wp[..12])).unwrap_or_else(|| panic!("{name}: no row for {wp}:\n{table}"));
    for cell in ["podman", "wordpress", "wordpress-mysql", "wp-1", &wp_pid.to_string(), "app=wordpress,io.kubernetes"] {
        assert!(row.contains(cell), "{name}: the table row lacks {cell:?}: {row}");
    }

    sb.podman(&["stop", "-t", "0", &wp]);
    let listed = sb.containers_until(&sources, "the stopped container goes", |l| listed_ids(l) == [plain.as_str()]);
    assert_eq!(listed, vec![expected_plain], "{name}");
    sb.podman(&["stop", "-t", "0", &plain]);
    sb.containers_until(&sources, "no container runs", |l| l.is_empty());
    sb.podman(&["rm", "-f", &wp, &plain]);
}

// ---------------------------------------------------------------------------------------------------------
// containerd

#[test]
fn containerd_tasks_started_by_ctr_are_listed_with_their_labels_and_gone_once_killed() {
    privileged!(needs: Needs::WritableCgroups);
    let name = test_name!();
    if !have_tools(&name, &["containerd", "ctr", "containerd-shim-runc-v2", "runc", "podman", "busybox", "tar", "file"])
    {
        return;
    }
    let mut sb = Sandbox::new(&name, "containerd");
    sb.build_image_tar();
    sb.write_containers_conf();
    let base = sb.base();
    let tar = path_str(&base.join("img.tar"));
    let oci = path_str(&base.join("oci.tar"));
    sb.podman(&["import", "-q", &tar, IMAGE]);
    sb.podman(&["save", "-q", "--format", "oci-archive", "-o", &oci, IMAGE]);

    let ctd = base.join("containerd");
    let socket = ctd.join("containerd.sock");
    let state = ctd.join("state");
    fs::create_dir_all(sb.host_view(&ctd)).unwrap();
    let config = ctd.join("config.toml");
    // The CRI plugin is off: it would want CNI and a kubelet, and ctr does not need it.
    fs::write(
        sb.host_view(&config),
        format!(
            "version = 2\nroot = {}\nstate = {}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\n\
             [grpc]\n  address = {}\n\n[ttrpc]\n  address = {}\n",
            toml_str(&ctd.join("root")),
            toml_str(&state),
            toml_str(&socket),
            toml_str(&ctd.join("containerd.sock.ttrpc")),
        ),
    )
    .unwrap();
    sb.start_daemon("containerd", &["containerd".to_owned(), "--config".to_owned(), path_str(&config)]);
    assert!(
        sb.wait_for_socket(&socket),
        "{name}: containerd did not open its socket:\n{}",
        sb.daemon_log("containerd")
    );
    let ctr = |args: &[&str]| -> String {
        let mut argv = vec!["ctr".to_owned(), "-a".to_owned(), path_str(&socket), "-n".to_owned(), "k8s.io".to_owned()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        sb.ok(&argv)
    };
    ctr(&["images", "import", &oci]);

    let id = fresh_id();
    let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--cgroup".into(), format!("/{}/{id}", sb.cgroup)];
    args.extend(label_args(&WORDPRESS_LABELS));
    args.extend([IMAGE, &id, "/bin/sleep", "600"].map(String::from));
    ctr(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let init_pid_file = state.join("io.containerd.runtime.v2.task/k8s.io").join(&id).join("init.pid");
    let pid: i64 = fs::read_to_string(sb.host_view(&init_pid_file)).unwrap().trim().parse().unwrap();

    let sources = sb.sources(None, None, Some((&state, None)));
    let listed = sb.containers(&sources);
    // ctr records the image in containerd's metadata only: the bundle does not name it.
    let expected = json!({
        "id": id, "runtime": "containerd", "name": "wordpress", "image": null,
        "namespace": "wordpress-mysql", "pod": "wp-1", "labels": label_json(&WORDPRESS_LABELS), "init_pid": pid,
    });
    assert_eq!(listed, vec![expected], "{name}");
    sb.assert_first_process(pid, &id);

    // Killed but not deleted: the bundle stays, the task is gone.
    ctr(&["task", "kill", "-s", "KILL", &id]);
    sb.containers_until(&sources, "the killed task goes", |l| l.is_empty());
    assert!(sb.host_view(&init_pid_file).exists(), "{name}: the bundle of the killed task is still there");
    let deleted = sb.run(&["ctr", "-a", &path_str(&socket), "-n", "k8s.io", "task", "delete", &id]);
    println!("{name}: task delete: {}", deleted.status);
    ctr(&["containers", "rm", &id]);
    assert!(sb.containers(&sources).is_empty(), "{name}");

    // A Kubernetes pod as containerd's CRI plugin makes it: the pod's labels are the labels of its sandbox
    // container, in containerd's metadata only; the container's bundle names the sandbox. Read through the
    // API socket.
    let (sandbox, app) = (fresh_id(), fresh_id());
    let cgroup = |id: &str| format!("/{}/{id}", sb.cgroup);
    let sandbox_cgroup = cgroup(&sandbox);
    ctr(&[
        "run",
        "-d",
        "--cgroup",
        &sandbox_cgroup,
        "--label",
        "app=wordpress",
        "--label",
        "tier=frontend",
        "--label",
        "pod-template-hash=5d8f9c",
        "--label",
        "io.cri-containerd.kind=sandbox",
        "--annotation",
        "io.kubernetes.cri.container-type=sandbox",
        IMAGE,
        &sandbox,
        "/bin/sleep",
        "600",
    ]);
    let sandbox_annotation = format!("io.kubernetes.cri.sandbox-id={sandbox}");
    let app_cgroup = cgroup(&app);
    ctr(&[
        "run",
        "-d",
        "--cgroup",
        &app_cgroup,
        "--label",
        "io.kubernetes.container.name=wordpress",
        "--label",
        "io.cri-containerd.kind=container",
        "--annotation",
        "io.kubernetes.cri.container-type=container",
        "--annotation",
        &sandbox_annotation,
        "--annotation",
        "io.kubernetes.cri.sandbox-name=wp-1",
        "--annotation",
        "io.kubernetes.cri.sandbox-namespace=wordpress-mysql",
        IMAGE,
        &app,
        "/bin/sleep",
        "600",
    ]);
    let app_pid: i64 = fs::read_to_string(
        sb.host_view(&state.join("io.containerd.runtime.v2.task/k8s.io").join(&app).join("init.pid")),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    let pod_labels = json!({"app": "wordpress", "io.kubernetes.container.name": "wordpress", "tier": "frontend"});
    let through_api = sb.containers(&sb.sources(None, None, Some((&state, Some(&socket)))));
    // The image with the digest containerd's image record points at (`Images.Get`), as the CRI's `imageRef`.
    let image = through_api.first().and_then(|c| c["image"].as_str()).unwrap_or_default().to_owned();
    let digest = image.strip_prefix(&format!("{IMAGE}@sha256:")).unwrap_or_default();
    assert!(
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "{name}: the image with its digest: {through_api:?}"
    );
    assert_eq!(
        through_api,
        vec![json!({
            "id": app, "runtime": "containerd", "name": "wordpress", "image": image,
            "namespace": "wordpress-mysql", "pod": "wp-1", "labels": pod_labels, "init_pid": app_pid,
        })],
        "{name}: through containerd's API the pod's labels (its sandbox's) and the image are known"
    );
    // Without the socket, the bundle's annotations alone: no pod labels, no image.
    let files_only = sb.containers(&sources);
    assert_eq!(files_only.len(), 1, "{name}: {files_only:?}");
    assert_eq!(files_only[0]["labels"], json!({"io.kubernetes.container.name": "wordpress"}), "{name}");
    assert_eq!(files_only[0]["image"], Value::Null, "{name}");
    for id in [&app, &sandbox] {
        ctr(&["task", "kill", "-s", "KILL", id]);
    }
}

// ---------------------------------------------------------------------------------------------------------
// docker

#[test]
fn docker_containers_are_listed_with_their_labels_and_gone_once_stopped() {
    privileged!(needs: Needs::WritableCgroups);
    let name = test_name!();
    // Debian's docker.io. Not /usr/local/bin/docker: on these machines that is a client only.
    let (dockerd, client) = (Path::new("/usr/sbin/dockerd"), Path::new("/usr/bin/docker"));
    if !dockerd.is_file() || !client.is_file() {
        eprintln!(
            "SKIPPED {name}: Debian's dockerd is not installed ({} and {} are needed; `make test-deps` installs \
             docker.io). Not a failure, even under NOEXECD_REQUIRE_PRIVILEGED=1.",
            dockerd.display(),
            client.display()
        );
        return;
    }
    if !have_tools(&name, &["containerd", "runc", "busybox", "tar", "file"]) {
        return;
    }
    let mut sb = Sandbox::new(&name, "docker");
    sb.build_image_tar();
    let base = sb.base();
    let data = base.join("docker/data");
    let socket = base.join("docker/docker.sock");
    fs::create_dir_all(sb.host_view(&base.join("docker"))).unwrap();
    fs::write(sb.host_view(&base.join("docker/daemon.json")), "{}\n").unwrap();
    // No network of its own (no iptables, no bridge), everything below the test's directory.
    let argv: Vec<String> = [
        "/usr/sbin/dockerd",
        "--config-file",
        &path_str(&base.join("docker/daemon.json")),
        "--data-root",
        &path_str(&data),
        "--exec-root",
        &path_str(&base.join("docker/exec")),
        "--pidfile",
        &path_str(&base.join("docker/docker.pid")),
        "--host",
        &format!("unix://{}", socket.display()),
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "--cgroup-parent",
        &format!("/{}", sb.cgroup),
        "--default-ulimit",
        "nofile=10000:10000",
    ]
    .map(String::from)
    .to_vec();
    sb.start_daemon("dockerd", &argv);
    let docker_argv = |args: &[&str]| -> Vec<String> {
        let mut v = vec!["/usr/bin/docker".to_owned(), "-H".to_owned(), format!("unix://{}", socket.display())];
        v.extend(args.iter().map(|a| (*a).to_owned()));
        v
    };
    let up = sb.wait_for_socket(&socket) && sb.run(&docker_argv(&["version"])).status.success();
    if !up {
        eprintln!(
            "SKIPPED {name}: dockerd did not start in the test's private namespace (not a failure, even under \
             NOEXECD_REQUIRE_PRIVILEGED=1); its log:\n{}",
            sb.daemon_log("dockerd")
        );
        return;
    }
    let docker = |args: &[&str]| -> String { sb.ok(&docker_argv(args)) };
    docker(&["import", &path_str(&base.join("img.tar")), IMAGE]);
    let image_id = docker(&["image", "inspect", "--format", "{{.Id}}", IMAGE]).trim().to_owned();
    let mut args: Vec<String> =
        ["run", "-d", "--name", "wp-1-wordpress", "--network", "none"].map(String::from).to_vec();
    args.extend(label_args(&WORDPRESS_LABELS));
    args.extend([IMAGE, "/bin/sleep", "600"].map(String::from));
    let id = docker(&args.iter().map(String::as_str).collect::<Vec<_>>()).trim().to_owned();
    let pid: i64 = docker(&["inspect", "--format", "{{.State.Pid}}", &id]).trim().parse().unwrap();

    let sources = sb.sources(None, Some(&data), None);
    let listed = sb.containers(&sources);
    let expected = json!({
        "id": id, "runtime": "docker", "name": "wordpress", "image": format!("{IMAGE}@{image_id}"),
        "namespace": "wordpress-mysql", "pod": "wp-1", "labels": label_json(&WORDPRESS_LABELS), "init_pid": pid,
    });
    assert!(image_id.starts_with("sha256:"), "{name}: docker's image id: {image_id}");
    assert_eq!(listed, vec![expected], "{name}");
    sb.assert_first_process(pid, &id);

    docker(&["stop", "-t", "0", &id]);
    sb.containers_until(&sources, "the stopped container goes", |l| l.is_empty());
    docker(&["rm", "-f", &id]);
}
