//! Shared harness for the integration tests.
//!
//! Privileged tests run the real `noexecd` binary (env `NOEXECD_BIN`, else `target/release/noexecd`) inside a
//! private mount namespace held open by a "holder" process:
//! `setpriv --pdeathsig KILL -- unshare --mount --propagation private -- sh -c '<mount tmpfs...>; exec sleep'`.
//! The daemon and every exec attempt enter that namespace with `nsenter -t <holder> -m`, each bounded by a
//! timeout. The test itself reads and writes files on those filesystems through `/proc/<holder>/root/...`.
//!
//! Safety: every policy handed to the daemon is first run through `noexecd check` inside the namespace, and
//! every `mark` line must name one of the filesystems this harness mounted (never the host's `/` or `/tmp`).
//! Once the daemon is READY its fanotify fdinfo is read back and checked the same way.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// How long one exec attempt (or helper command) may take before it is killed.
pub const CMD_TIMEOUT_SECS: u32 = 20;
/// How long to wait for READY=1.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to poll the alert log for an expected alert.
pub const ALERT_TIMEOUT: Duration = Duration::from_secs(5);
/// After the expected alerts arrived, how long to keep watching for unexpected extra ones.
pub const SETTLE: Duration = Duration::from_millis(500);

pub const POLICY_NAME: &str = "ksp-block-exec-inside-tmp";
pub const POLICY_MESSAGE: &str = "Alert! Execution attempted inside tmp folder";
pub const HOST_NAME: &str = "test-host";
pub const CLUSTER_NAME: &str = "it-cluster";
pub const EPERM_TEXT: &str = "Operation not permitted";

// ---------------------------------------------------------------------------------------------------------
// Binary, privileges, skipping

/// The noexecd binary under test.
pub fn bin() -> PathBuf {
    let p = match std::env::var_os("NOEXECD_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/noexecd"),
    };
    assert!(
        p.is_file(),
        "noexecd binary not found at {} (build it with `cargo build --release` or set NOEXECD_BIN)",
        p.display()
    );
    p
}

fn require_privileged() -> bool {
    std::env::var("NOEXECD_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1")
}

/// Returns true when the privileged tests can run here. Otherwise prints why and returns false (the caller
/// returns early), or panics when `NOEXECD_REQUIRE_PRIVILEGED=1`.
pub fn privileged(test: &str) -> bool {
    match why_not_privileged() {
        None => true,
        Some(why) => {
            if require_privileged() {
                panic!("{test}: cannot run the privileged test ({why}) and NOEXECD_REQUIRE_PRIVILEGED=1");
            }
            eprintln!("SKIPPED {test}: {why} (set NOEXECD_REQUIRE_PRIVILEGED=1 to make this a failure)");
            false
        }
    }
}

fn why_not_privileged() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root".into());
    }
    for tool in ["unshare", "nsenter", "setpriv", "timeout", "mount", "losetup", "mkfs.ext4", "bash", "dash", "env"] {
        if which(tool).is_none() {
            return Some(format!("`{tool}` not found on PATH (run `make test-deps`)"));
        }
    }
    let out = Command::new("timeout")
        .env("PATH", SYS_PATH)
        .args(["10", "unshare", "--mount", "--propagation", "private", "--", "true"])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "cannot create a mount namespace: `unshare --mount` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run unshare: {e}")),
    }
}

/// PATH for every command the harness runs (mkfs.ext4 and losetup live in /usr/sbin).
pub const SYS_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(SYS_PATH).map(|d| d.join(tool)).find(|p| p.is_file())
}

/// The real path of a system executable as `/proc/PID/exe` shows it (Debian: /bin/bash -> /usr/bin/bash).
pub fn real_exe(name: &str) -> String {
    let p = which(name).unwrap_or_else(|| panic!("{name} not found on PATH"));
    fs::canonicalize(&p).unwrap().to_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------------------------
// Bounded commands

/// Result of a finished command.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.status, self.stdout, self.stderr)
    }
}

/// Runs `cmd` to completion, killing it after `limit`. Panics on a timeout.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let desc = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {desc}: {e}"));
    let out_reader = reader_thread(child.stdout.take().unwrap());
    let err_reader = reader_thread(child.stderr.take().unwrap());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command did not finish within {limit:?}: {desc}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    Output {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

fn reader_thread<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

// ---------------------------------------------------------------------------------------------------------
// Devices

/// (major, minor) of a st_dev value.
pub fn split_dev(dev: u64) -> (u64, u64) {
    (nix::sys::stat::major(dev), nix::sys::stat::minor(dev))
}

/// The kernel-internal encoding used in /proc/PID/fdinfo (`sdev:%x`): major << 20 | minor.
pub fn kernel_dev(dev: u64) -> u64 {
    let (maj, min) = split_dev(dev);
    (maj << 20) | min
}

/// Devices of the host's real `/` and `/tmp`: a test must never mark these.
pub fn forbidden_devs() -> BTreeSet<(u64, u64)> {
    let mut s = BTreeSet::new();
    for p in ["/", "/tmp", "/usr/bin"] {
        if let Ok(m) = fs::metadata(p) {
            s.insert(split_dev(m.dev()));
        }
    }
    s
}

/// One `mark` line of `noexecd check`.
#[derive(Debug, Clone)]
pub struct MarkLine {
    pub mount_point: String,
    pub dev: (u64, u64),
    pub fstype: String,
    pub decides: String,
    pub protects: Vec<String>,
}

/// Parses `mark\t<mount point>\tdev=M:m\tfstype=T\tdecides=D\tprotects=a,b` lines; other lines are ignored.
pub fn parse_marks(stdout: &str) -> Vec<MarkLine> {
    let mut marks = Vec::new();
    for line in stdout.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.first() != Some(&"mark") {
            continue;
        }
        assert_eq!(fields.len(), 6, "a mark line has 6 tab-separated fields: {line:?}");
        let dev = fields[2].strip_prefix("dev=").unwrap_or_else(|| panic!("no dev= in {line:?}"));
        let (maj, min) = dev.split_once(':').unwrap_or_else(|| panic!("dev is not major:minor in {line:?}"));
        let fstype = fields[3].strip_prefix("fstype=").unwrap_or_else(|| panic!("no fstype= in {line:?}"));
        let decides = fields[4].strip_prefix("decides=").unwrap_or_else(|| panic!("no decides= in {line:?}"));
        let protects = fields[5].strip_prefix("protects=").unwrap_or_else(|| panic!("no protects= in {line:?}"));
        assert!(decides == "path" || decides == "filesystem", "decides must be path|filesystem: {line:?}");
        marks.push(MarkLine {
            mount_point: fields[1].to_owned(),
            dev: (maj.parse().unwrap(), min.parse().unwrap()),
            fstype: fstype.to_owned(),
            decides: decides.to_owned(),
            protects: protects.split(',').map(str::to_owned).collect(),
        });
    }
    marks
}

/// Strips one trailing '/' (but keeps "/").
pub fn trim_slash(s: &str) -> &str {
    if s.len() > 1 { s.strip_suffix('/').unwrap_or(s) } else { s }
}

// ---------------------------------------------------------------------------------------------------------
// The namespace

/// Which filesystems the holder mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `fs` and `out`: two tmpfs.
    Tmpfs,
    /// Also a tmpfs at `scratch` holding an ext4 image loop-mounted at `img`.
    WithExt4Image,
}

/// A private mount namespace with fresh test filesystems, and optionally a running daemon.
pub struct Env {
    pub name: String,
    /// Host scratch dir (a plain directory on the host): config, notify socket, alert log, daemon stderr.
    pub dir: tempfile::TempDir,
    /// Mount point of a fresh tmpfs (inside the namespace).
    pub fs: PathBuf,
    /// Mount point of a second fresh tmpfs, never protected unless a test says so.
    pub out: PathBuf,
    /// Mount point of a loop-mounted ext4 image (Layout::WithExt4Image).
    pub img: PathBuf,
    holder: Child,
    pub holder_pid: u32,
    /// st_dev of the filesystems this harness mounted (the only ones a policy may mark).
    pub test_devs: BTreeSet<(u64, u64)>,
    pub daemon: Option<Daemon>,
    /// Bound at `<base>/notify.sock`, the daemon's `$NOTIFY_SOCKET`: tests read STATUS= datagrams from it.
    pub notify: UnixDatagram,
    daemon_runs: u32,
}

impl Env {
    /// Sets up the namespace, or returns None after printing why the test is skipped.
    pub fn new(test: &str, layout: Layout) -> Option<Env> {
        if !privileged(test) {
            return None;
        }
        let _ = bin();
        let dir = tempfile::Builder::new().prefix("noexecd-it-").tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let fs_dir = base.join("fs");
        let out = base.join("out");
        let scratch = base.join("scratch");
        let img = base.join("img");
        for d in [&fs_dir, &out, &scratch, &img] {
            fs::create_dir(d).unwrap();
        }
        let mut script = String::from("set -eu\n");
        script += &format!("mount -t tmpfs -o size=64m,mode=0755 noexecd-test-fs {}\n", sh_quote(&fs_dir));
        script += &format!("mount -t tmpfs -o size=64m,mode=0755 noexecd-test-out {}\n", sh_quote(&out));
        if layout == Layout::WithExt4Image {
            let image = scratch.join("ext4.img");
            script += &format!("mount -t tmpfs -o size=128m,mode=0700 noexecd-test-scratch {}\n", sh_quote(&scratch));
            script += &format!("truncate -s 64M {}\n", sh_quote(&image));
            script += &format!("mkfs.ext4 -q -F {} >/dev/null\n", sh_quote(&image));
            script += &format!("mount -o loop {} {}\n", sh_quote(&image), sh_quote(&img));
        }
        // Bounded even if the test process is SIGKILLed (then pdeathsig ends it anyway).
        script += "echo ready\nexec sleep 1800 >/dev/null 2>&1 </dev/null\n";

        let mut holder = Command::new("setpriv")
            .env("PATH", SYS_PATH)
            .args(["--pdeathsig", "KILL", "--", "unshare", "--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the namespace holder");
        let holder_pid = holder.id();
        let stdout = holder.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        if line.trim() != "ready" {
            let _ = holder.kill();
            let _ = holder.wait();
            let mut err = String::new();
            if let Some(mut e) = holder.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("{test}: the namespace holder did not come up (got {line:?}); stderr: {err}");
        }

        let notify_path = base.join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify.set_read_timeout(Some(Duration::from_millis(100))).unwrap();

        let mut env = Env {
            name: test.to_owned(),
            dir,
            fs: fs_dir,
            out,
            img,
            holder,
            holder_pid,
            test_devs: BTreeSet::new(),
            daemon: None,
            notify,
            daemon_runs: 0,
        };
        // The test filesystems must really be mounted (else a policy would name the host's disk).
        let forbidden = forbidden_devs();
        let mut mounted = vec![env.fs.clone(), env.out.clone()];
        if layout == Layout::WithExt4Image {
            mounted.push(env.img.clone());
        }
        for m in mounted {
            let dev = split_dev(fs::metadata(env.host_view(&m)).unwrap().dev());
            assert!(!forbidden.contains(&dev), "{}: {} is not a fresh filesystem in the namespace", test, m.display());
            assert!(env.test_devs.insert(dev), "{test}: two test mounts share device {dev:?}");
        }
        Some(env)
    }

    pub fn base(&self) -> &Path {
        self.dir.path()
    }

    pub fn alert_log(&self) -> PathBuf {
        self.base().join("alerts.jsonl")
    }

    pub fn config_path(&self) -> PathBuf {
        self.base().join("noexecd.toml")
    }

    /// Where the test process sees a path of the namespace.
    pub fn host_view(&self, p: &Path) -> PathBuf {
        let mut v = OsString::from(format!("/proc/{}/root", self.holder_pid));
        v.push(p.as_os_str());
        PathBuf::from(v)
    }

    /// Runs `argv` inside the namespace, bounded by `timeout`.
    pub fn run_in_ns<S: AsRef<OsStr>>(&self, argv: &[S]) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.env("PATH", SYS_PATH)
            .arg("-t")
            .arg(self.holder_pid.to_string())
            .args(["-m", "--", "timeout", "-k", "2"])
            .arg(CMD_TIMEOUT_SECS.to_string())
            .args(argv);
        run_bounded(&mut cmd, Duration::from_secs(u64::from(CMD_TIMEOUT_SECS) + 10))
    }

    /// Runs a shell snippet (setup: mounts, mkdir, ...) in the namespace; asserts success.
    pub fn sh(&self, script: &str) -> Output {
        let o = self.run_in_ns(&["sh", "-ec", script]);
        assert!(o.status.success(), "{}: setup command failed: {script}\n{o}", self.name);
        o
    }

    /// Writes a copy of /bin/true (an ELF) at `p` (a path in the namespace), mode 0755, creating parents.
    pub fn put_elf(&self, p: &Path) {
        let hv = self.host_view(p);
        fs::create_dir_all(hv.parent().unwrap()).unwrap();
        fs::copy(fs::canonicalize(which("true").unwrap()).unwrap(), &hv).unwrap();
        fs::set_permissions(&hv, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Writes a `#!/bin/sh` script at `p` that prints `ran` and exits 0, mode 0755.
    pub fn put_script(&self, p: &Path) {
        let hv = self.host_view(p);
        fs::create_dir_all(hv.parent().unwrap()).unwrap();
        fs::write(&hv, "#!/bin/sh\necho ran\nexit 0\n").unwrap();
        fs::set_permissions(&hv, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// bash execs `target` itself (`exec "$1"`) from working directory `cwd`.
    pub fn bash_exec(&self, target: &Path, cwd: &Path) -> Exec {
        self.shell_exec("bash", &[], target, cwd)
    }

    /// dash execs `target` itself.
    pub fn dash_exec(&self, target: &Path, cwd: &Path) -> Exec {
        self.shell_exec("dash", &[], target, cwd)
    }

    /// `prefix` (e.g. `unshare -m --propagation private --`) then `shell -c 'cd; echo $$ $PPID; exec "$1"'`.
    pub fn shell_exec(&self, shell: &str, prefix: &[&str], target: &Path, cwd: &Path) -> Exec {
        self.shell_exec_with_setup(shell, prefix, "", target, cwd)
    }

    /// Like `shell_exec`, with `setup` shell code run first (in the same process, e.g. a mount after unshare).
    pub fn shell_exec_with_setup(&self, shell: &str, prefix: &[&str], setup: &str, target: &Path, cwd: &Path) -> Exec {
        let script = format!("{setup}\ncd \"$2\" || exit 99\necho \"$$ $PPID\"\nexec \"$1\"");
        let mut argv: Vec<OsString> = prefix.iter().map(OsString::from).collect();
        argv.extend([shell, "-c", &script, "noexecd-test"].iter().map(OsString::from));
        argv.push(target.as_os_str().to_owned());
        argv.push(cwd.as_os_str().to_owned());
        let out = self.run_in_ns(&argv);
        Exec::from_output(out)
    }

    // ----- daemon ------------------------------------------------------------------------------------------

    /// Writes the config (daemon section from `DaemonOpts` + `policies`) at `path` and returns it.
    pub fn write_config_at(&self, path: &Path, opts: &DaemonOpts, policies: &str) -> PathBuf {
        let text = format!(
            "[daemon]\nmode = \"{}\"\nalert_log = {}\ncluster_name = \"{CLUSTER_NAME}\"\nhost_name = \"{HOST_NAME}\"\n\
             default_posture = \"{}\"\nmax_alerts_per_sec = {}\npolicy_dir = {}\n\n{}",
            opts.mode,
            toml_str(&self.alert_log()),
            opts.default_posture,
            opts.max_alerts_per_sec,
            toml_str(&self.base().join("policy.d")),
            policies
        );
        fs::write(path, text).unwrap();
        path.to_path_buf()
    }

    pub fn write_config(&self, opts: &DaemonOpts, policies: &str) -> PathBuf {
        self.write_config_at(&self.config_path(), opts, policies)
    }

    /// `noexecd check` inside the namespace; asserts exit 0, that it marks only test filesystems, and returns
    /// the mark lines.
    pub fn check(&self, config: &Path) -> Vec<MarkLine> {
        let mut argv: Vec<OsString> = vec![bin().into(), "check".into(), "--config".into()];
        argv.push(config.as_os_str().to_owned());
        let o = self.run_in_ns(&argv);
        assert_eq!(o.code(), Some(0), "{}: `noexecd check` failed\n{o}", self.name);
        let marks = parse_marks(&o.stdout);
        assert!(!marks.is_empty(), "{}: `noexecd check` printed no mark line\n{o}", self.name);
        let forbidden = forbidden_devs();
        for m in &marks {
            assert!(
                !forbidden.contains(&m.dev),
                "SAFETY: the test policy would mark the host's root or /tmp filesystem: {m:?}"
            );
            assert!(
                self.test_devs.contains(&m.dev),
                "SAFETY: the test policy would mark a filesystem this test did not create: {m:?} (test devs {:?})",
                self.test_devs
            );
        }
        marks
    }

    /// Safety check, then starts `noexecd run` in the namespace and waits for READY=1.
    pub fn start_daemon(&mut self, config: &Path) -> &Daemon {
        assert!(self.daemon.is_none(), "a daemon is already running");
        self.check(config);
        self.daemon_runs += 1;
        let stderr_path = self.base().join(format!("daemon-{}.stderr", self.daemon_runs));
        let stderr = fs::File::create(&stderr_path).unwrap();
        let child = Command::new("nsenter")
            .env("PATH", SYS_PATH)
            .arg("-t")
            .arg(self.holder_pid.to_string())
            .args(["-m", "--", "setpriv", "--pdeathsig", "KILL", "--"])
            .arg(bin())
            .args(["--log-level", "debug", "run", "--config"])
            .arg(config)
            .env("NOTIFY_SOCKET", self.base().join("notify.sock"))
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().unwrap())
            .stderr(stderr)
            .spawn()
            .expect("spawn noexecd");
        let pid = child.id() as i32;
        let mut daemon = Daemon { child, pid, stderr_path, exited: None };
        // Drain old datagrams (none expected), then wait for READY=1.
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let ready = loop {
            match self.notify.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let is_ready = msg.lines().any(|l| l == "READY=1");
                    got.push(msg);
                    if is_ready {
                        break true;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("notify socket: {e}"),
            }
            if let Some(st) = daemon.child.try_wait().unwrap() {
                panic!(
                    "{}: noexecd exited ({st}) before READY=1; datagrams {got:?}; stderr:\n{}",
                    self.name,
                    daemon.stderr()
                );
            }
            if Instant::now() > deadline {
                break false;
            }
        };
        if !ready {
            let err = daemon.stderr();
            daemon.kill_hard();
            panic!("{}: no READY=1 within {READY_TIMEOUT:?}; datagrams {got:?}; stderr:\n{err}", self.name);
        }
        // nsenter (mount namespace only) and setpriv exec without forking: the child is the daemon.
        let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert_eq!(exe, fs::canonicalize(bin()).unwrap(), "the spawned pid is not noexecd");
        self.daemon = Some(daemon);
        self.verify_kernel_marks();
        self.daemon.as_ref().unwrap()
    }

    /// Reads the running daemon's fanotify marks from /proc/PID/fdinfo: every mark (superblock, inode or mount)
    /// must be on a test filesystem; kills the daemon at once otherwise. Returns the superblock marks' devices
    /// (kernel encoding, see `kernel_dev`).
    pub fn verify_kernel_marks(&mut self) -> Vec<u64> {
        let pid = self.daemon.as_ref().expect("daemon running").pid;
        let allowed: BTreeSet<u64> = self.test_devs.iter().map(|&(a, b)| (a << 20) | b).collect();
        let forbidden: BTreeSet<u64> = forbidden_devs().iter().map(|&(a, b)| (a << 20) | b).collect();
        let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
        // mountinfo: "<id> <parent> <major>:<minor> ..."
        let mount_dev = |id: &str| -> Option<u64> {
            mountinfo.lines().find_map(|l| {
                let mut f = l.split(' ');
                if f.next()? != id {
                    return None;
                }
                let (maj, min) = f.nth(1)?.split_once(':')?;
                Some((maj.parse::<u64>().ok()? << 20) | min.parse::<u64>().ok()?)
            })
        };
        let mut sdevs = Vec::new();
        let mut bad = Vec::new();
        for ent in fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
            let Ok(text) = fs::read_to_string(ent.unwrap().path()) else { continue };
            // Mark lines; "fanotify flags:... event-flags:..." is the group's own line.
            for line in text.lines().filter(|l| l.starts_with("fanotify ") && !l.starts_with("fanotify flags:")) {
                let field = |name: &str| line.split_whitespace().find_map(|t| t.strip_prefix(name)).map(str::to_owned);
                // An ignore-only mark (mask 0, e.g. the daemon exempting its own executable and libraries for
                // fail_mode = "closed") raises no event anywhere: it cannot affect the host.
                if field("mask:").is_some_and(|m| u64::from_str_radix(&m, 16) == Ok(0)) {
                    continue;
                }
                let dev = if let Some(id) = field("mnt_id:") {
                    // Mount mark: mnt_id is hex.
                    u64::from_str_radix(&id, 16).ok().and_then(|id| mount_dev(&id.to_string()))
                } else {
                    field("sdev:").and_then(|h| u64::from_str_radix(&h, 16).ok())
                };
                match dev {
                    Some(d) if !forbidden.contains(&d) && allowed.contains(&d) => {}
                    _ => bad.push(line.to_owned()),
                }
                if line.starts_with("fanotify sdev:") {
                    sdevs.extend(dev);
                }
            }
        }
        if !bad.is_empty() {
            if let Some(d) = self.daemon.as_mut() {
                d.kill_hard();
            }
            panic!("SAFETY: noexecd marked a filesystem outside the test: {bad:?} (allowed {allowed:x?})");
        }
        sdevs
    }

    pub fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("daemon running")
    }

    // ----- alerts ------------------------------------------------------------------------------------------

    /// Every alert in `path` so far (each line must be one JSON object).
    pub fn read_alerts_at(path: &Path) -> Vec<Value> {
        let Ok(bytes) = fs::read(path) else {
            return Vec::new();
        };
        let text = String::from_utf8(bytes).expect("the alert log is UTF-8");
        // A line still being written has no newline yet: only complete lines count.
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("alert line is not JSON ({e}): {l}"));
                assert!(v.is_object(), "alert line is not a JSON object: {l}");
                v
            })
            .collect()
    }

    pub fn alerts(&self) -> Vec<Value> {
        Self::read_alerts_at(&self.alert_log())
    }

    /// Waits until `path` holds at least `n` alerts, then a little longer, and asserts it holds exactly `n`.
    pub fn expect_alerts_at(&self, path: &Path, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + ALERT_TIMEOUT;
        loop {
            let a = Self::read_alerts_at(path);
            if a.len() >= n || Instant::now() > deadline {
                break;
            }
            thread::sleep(Duration::from_millis(25));
        }
        thread::sleep(SETTLE);
        let a = Self::read_alerts_at(path);
        assert_eq!(
            a.len(),
            n,
            "{}: expected exactly {n} alert(s) in {}, got {}:\n{}\n--- daemon stderr ---\n{}",
            self.name,
            path.display(),
            a.len(),
            a.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n"),
            self.daemon.as_ref().map(Daemon::stderr).unwrap_or_default()
        );
        a
    }

    pub fn expect_alerts(&self, n: usize) -> Vec<Value> {
        self.expect_alerts_at(&self.alert_log(), n)
    }

    pub fn daemon_stderr(&self) -> String {
        self.daemon.as_ref().map(Daemon::stderr).unwrap_or_default()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.stop(Duration::from_secs(5));
        }
        let _ = kill(Pid::from_raw(self.holder_pid as i32), Signal::SIGKILL);
        let _ = self.holder.wait();
    }
}

/// Options of the `[daemon]` table.
#[derive(Debug, Clone)]
pub struct DaemonOpts {
    pub mode: &'static str,
    pub default_posture: &'static str,
    pub max_alerts_per_sec: u32,
}

impl DaemonOpts {
    pub fn enforce() -> Self {
        DaemonOpts { mode: "enforce", default_posture: "audit", max_alerts_per_sec: 1000 }
    }
    pub fn audit() -> Self {
        DaemonOpts { mode: "audit", ..Self::enforce() }
    }
}

/// A running `noexecd run`.
pub struct Daemon {
    child: Child,
    pub pid: i32,
    pub stderr_path: PathBuf,
    exited: Option<ExitStatus>,
}

impl Daemon {
    pub fn stderr(&self) -> String {
        fs::read(&self.stderr_path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid), sig).unwrap();
    }

    /// None while running.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().unwrap();
        }
        self.exited
    }

    /// Waits for exit up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.try_wait().is_some() {
            return self.exited;
        }
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
        if let Some(st) = self.wait_exit(grace) {
            return Some(st);
        }
        self.kill_hard();
        None
    }

    pub fn kill_hard(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

// ---------------------------------------------------------------------------------------------------------
// Exec attempts

/// One exec attempt made by `sh -c 'echo "$$ $PPID"; exec "$1"'`.
#[derive(Debug)]
pub struct Exec {
    pub out: Output,
    /// The pid of the shell that called execve (and its parent), as it printed them.
    pub pid: i64,
    pub ppid: i64,
}

impl Exec {
    pub fn from_output(out: Output) -> Exec {
        let first = out.stdout.lines().next().unwrap_or("");
        let mut it = first.split_whitespace().map(|s| s.parse::<i64>());
        match (it.next(), it.next()) {
            (Some(Ok(pid)), Some(Ok(ppid))) => Exec { out, pid, ppid },
            _ => panic!("the exec helper did not print its pid (setup failed?)\n{out}"),
        }
    }

    /// Asserts the exec was denied with EPERM (the shell reports "Operation not permitted").
    pub fn assert_denied(&self, what: &str) {
        assert!(
            !self.out.status.success() && self.out.stderr.contains(EPERM_TEXT),
            "{what}: expected the exec to fail with EPERM ({EPERM_TEXT:?})\n{}",
            self.out
        );
    }

    /// Asserts bash's exec was denied with EPERM: bash exits 126 and prints the errno text.
    pub fn assert_denied_bash(&self, what: &str) {
        self.assert_denied(what);
        assert_eq!(self.out.code(), Some(126), "{what}: bash exits 126 on a denied exec\n{}", self.out);
    }

    /// Asserts the exec ran and exited 0.
    pub fn assert_ran(&self, what: &str) {
        assert!(
            self.out.status.success() && !self.out.stderr.contains(EPERM_TEXT),
            "{what}: expected the exec to run and exit 0\n{}",
            self.out
        );
    }
}

// ---------------------------------------------------------------------------------------------------------
// Alert checks

/// What an exec alert must say.
#[derive(Debug, Clone)]
pub struct Expect {
    pub policy: String,
    pub severity: String,
    pub tags: Vec<String>,
    pub message: String,
    /// "Block" or "Audit".
    pub action: String,
    /// The executed file (ProcessName and Resource).
    pub resource: String,
    /// The executable that called exec (Source and ParentProcessName).
    pub source: String,
    pub pid: Option<i64>,
    pub ppid: Option<i64>,
    pub uid: i64,
    pub cwd: Option<String>,
}

impl Expect {
    /// The default test policy (name, severity 1, tags CIS/CIS_Linux, message), Block, by bash.
    pub fn block(resource: &Path, exec: &Exec, cwd: &Path) -> Expect {
        Expect {
            policy: POLICY_NAME.into(),
            severity: "1".into(),
            tags: vec!["CIS".into(), "CIS_Linux".into()],
            message: POLICY_MESSAGE.into(),
            action: "Block".into(),
            resource: resource.to_str().expect("UTF-8 path").to_owned(),
            source: real_exe("bash"),
            pid: Some(exec.pid),
            ppid: Some(exec.ppid),
            uid: 0,
            cwd: Some(cwd.to_str().unwrap().to_owned()),
        }
    }

    pub fn audit(resource: &Path, exec: &Exec, cwd: &Path) -> Expect {
        Expect { action: "Audit".into(), ..Expect::block(resource, exec, cwd) }
    }
}

pub fn get_str<'a>(a: &'a Value, key: &str) -> &'a str {
    match a.get(key) {
        Some(Value::String(s)) => s,
        other => panic!("alert field {key} must be a string, got {other:?} in {a}"),
    }
}

pub fn get_int(a: &Value, key: &str) -> i64 {
    match a.get(key) {
        Some(Value::Number(n)) if n.is_i64() => n.as_i64().unwrap(),
        other => panic!("alert field {key} must be an integer, got {other:?} in {a}"),
    }
}

/// Checks every field of an exec alert: values and JSON types.
pub fn assert_exec_alert(a: &Value, e: &Expect) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let ts = get_int(a, "Timestamp");
    assert!((now - 120..=now + 5).contains(&ts), "Timestamp {ts} is not now ({now}): {a}");
    let updated = get_str(a, "UpdatedTime");
    let parsed = parse_updated_time(updated)
        .unwrap_or_else(|| panic!("UpdatedTime {updated:?} is not in the 2006-01-02T15:04:05.000000Z layout: {a}"));
    assert!((parsed - ts).abs() <= 1, "UpdatedTime {updated} disagrees with Timestamp {ts}: {a}");

    assert_eq!(get_str(a, "ClusterName"), CLUSTER_NAME, "ClusterName: {a}");
    assert_eq!(get_str(a, "HostName"), HOST_NAME, "HostName: {a}");
    let pid = get_int(a, "PID");
    let ppid = get_int(a, "PPID");
    assert_eq!(get_int(a, "HostPID"), pid, "HostPID == PID for a host event: {a}");
    assert_eq!(get_int(a, "HostPPID"), ppid, "HostPPID == PPID for a host event: {a}");
    if let Some(p) = e.pid {
        assert_eq!(pid, p, "PID = the process that called exec: {a}");
    }
    if let Some(p) = e.ppid {
        assert_eq!(ppid, p, "PPID = its parent: {a}");
    }
    assert!(pid > 0 && ppid > 0, "PID/PPID filled: {a}");
    assert_eq!(get_int(a, "UID"), e.uid, "UID: {a}");
    assert_eq!(get_str(a, "Source"), e.source, "Source = the executable that called exec: {a}");
    assert_eq!(get_str(a, "ParentProcessName"), e.source, "ParentProcessName = Source: {a}");
    assert_eq!(get_str(a, "ProcessName"), e.resource, "ProcessName = the executed file: {a}");
    assert_eq!(get_str(a, "Resource"), e.resource, "Resource = the executed file: {a}");
    assert_eq!(get_str(a, "PolicyName"), e.policy, "PolicyName: {a}");
    assert_eq!(get_str(a, "Severity"), e.severity, "Severity is a string: {a}");
    assert_eq!(get_str(a, "Tags"), e.tags.join(","), "Tags is comma-joined: {a}");
    let atags: Vec<&str> = match a.get("ATags") {
        Some(Value::Array(v)) => v.iter().map(|t| t.as_str().expect("ATags holds strings")).collect(),
        other => panic!("ATags must be an array, got {other:?}: {a}"),
    };
    assert_eq!(atags, e.tags.iter().map(String::as_str).collect::<Vec<_>>(), "ATags: {a}");
    assert_eq!(get_str(a, "Message"), e.message, "Message: {a}");
    assert_eq!(get_str(a, "Type"), "MatchedHostPolicy", "Type: {a}");
    assert_eq!(get_str(a, "Operation"), "Process", "Operation: {a}");
    assert_eq!(get_str(a, "Enforcer"), "fanotify", "Enforcer: {a}");
    assert_eq!(get_str(a, "Data"), "fanotify=FAN_OPEN_EXEC_PERM", "Data: {a}");
    assert_eq!(get_str(a, "Action"), e.action, "Action: {a}");
    let result = if e.action == "Block" { EPERM_TEXT } else { "Passed" };
    assert_eq!(get_str(a, "Result"), result, "Result: {a}");
    if let Some(cwd) = &e.cwd {
        let got = get_str(a, "Cwd");
        assert!(trim_slash(got) == trim_slash(cwd), "Cwd = the caller's working directory {cwd:?}, got {got:?}: {a}");
    }
}

/// Parses "2006-01-02T15:04:05.000000Z" into Unix seconds.
pub fn parse_updated_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 27 {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) { part.parse().ok() } else { None }
    };
    let seps = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (26, b'Z')];
    if seps.iter().any(|&(i, c)| b.get(i) != Some(&c)) {
        return None;
    }
    let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (h, mi, se) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    digits(20..26)?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

// ---------------------------------------------------------------------------------------------------------
// Small helpers

/// A TOML basic string for a path.
pub fn toml_str(p: &Path) -> String {
    let s = p.to_str().expect("test paths are UTF-8");
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Single-quotes a path for sh.
pub fn sh_quote(p: &Path) -> String {
    let bytes = p.as_os_str().as_bytes();
    let s = String::from_utf8_lossy(bytes);
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A path from raw bytes.
pub fn path_from_bytes(b: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(b))
}

/// `dir/` as the policy spells a directory.
pub fn dir_slash(p: &Path) -> String {
    format!("{}/", p.to_str().expect("UTF-8 path").trim_end_matches('/'))
}

/// A `[[policy]]` with the default test name/severity/tags/message, `action`, and one directory rule.
pub fn dir_policy(action: &str, dir: &Path, recursive: bool) -> String {
    named_dir_policy(POLICY_NAME, action, dir, recursive, "")
}

/// A `[[policy]]` named `name` (severity 1, tags CIS/CIS_Linux, the test message) with one directory rule;
/// `extra` is appended to the rule (e.g. `from_source = ["/usr/bin/dash"]`).
pub fn named_dir_policy(name: &str, action: &str, dir: &Path, recursive: bool, extra: &str) -> String {
    format!(
        "[[policy]]\nname = \"{name}\"\naction = \"{action}\"\nseverity = 1\ntags = [\"CIS\", \"CIS_Linux\"]\n\
         message = \"{POLICY_MESSAGE}\"\n\n[[policy.process.match_directories]]\ndir = {}\nrecursive = {recursive}\n{extra}\n\n",
        toml_str(Path::new(&dir_slash(dir)))
    )
}
