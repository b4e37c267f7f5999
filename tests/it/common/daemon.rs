//! The daemon: its config (`DaemonOpts`, test policies), `noexecd check` with the safety check on its mark
//! lines, `noexecd run` started in the namespace up to READY=1, the kernel's view of its marks, and stopping it.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::unistd::Pid;
use noexecd::daemon::FD_NAME;

use super::{Env, STATUS_EVERY_MS, SYS_PATH, bin, forbidden_devs, poll_until};

/// How long to wait for READY=1.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

pub const POLICY_NAME: &str = "ksp-block-exec-inside-tmp";
pub const POLICY_MESSAGE: &str = "Alert! Execution attempted inside tmp folder";
pub const HOST_NAME: &str = "test-host";
pub const CLUSTER_NAME: &str = "it-cluster";

// ---------------------------------------------------------------------------------------------------------
// Config and policies

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

impl Env {
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
}

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

// ---------------------------------------------------------------------------------------------------------
// check, start, READY, marks, stop

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

impl Env {
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
        self.start_daemon_with_env(config, &[])
    }

    /// [`Env::start_daemon`] with these environment variables set for the daemon (systemd's, for instance).
    pub fn start_daemon_with_env(&mut self, config: &Path, vars: &[(&str, &str)]) -> &Daemon {
        self.spawn_daemon(config, vars, None, false, &[])
    }

    /// [`Env::start_daemon`] without these capabilities (setpriv's names: `sys_ptrace`), taken out of the
    /// daemon's inheritable and bounding sets, so root's exec does not give them back.
    pub fn start_daemon_without_caps(&mut self, config: &Path, caps: &[&str]) -> &Daemon {
        self.spawn_daemon(config, &[], None, false, caps)
    }

    /// [`Env::start_daemon`], keeping what the daemon stores with "systemd" in [`Daemon::stored`] (else it is
    /// closed at once, as systemd without an FD store would: a killed daemon's group goes with it).
    pub fn start_daemon_keeping_stored(&mut self, config: &Path) -> &Daemon {
        self.spawn_daemon(config, &[], None, true, &[])
    }

    /// [`Env::start_daemon`] handing the daemon `group` (a fanotify group an earlier daemon stored, see
    /// [`Daemon::stored`]) as systemd does from its FD store: fd 3, `LISTEN_FDS`, `LISTEN_FDNAMES`.
    pub fn start_daemon_with_group(&mut self, config: &Path, group: &ReceivedFd) -> &Daemon {
        self.spawn_daemon(config, &[], Some(group.raw()), false, &[])
    }

    fn spawn_daemon(
        &mut self,
        config: &Path,
        vars: &[(&str, &str)],
        group: Option<RawFd>,
        keep_stored: bool,
        drop_caps: &[&str],
    ) -> &Daemon {
        assert!(self.daemon.is_none(), "a daemon is already running");
        self.check(config);
        self.daemon_runs += 1;
        let stderr_path = self.base().join(format!("daemon-{}.stderr", self.daemon_runs));
        let stderr = fs::File::create(&stderr_path).unwrap();
        let status_path = self.base().join(format!("daemon-{}.status", self.daemon_runs));
        let child = Command::new("nsenter")
            .env("PATH", SYS_PATH)
            .arg("-t")
            .arg(self.holder_pid.to_string())
            .args(["-m", "--", "setpriv", "--pdeathsig", "KILL"])
            .args(caps_dropped(drop_caps))
            .arg("--")
            .args(group.map(|fd| {
                // The shell execs the daemon: $$ is its pid. The group's fd is inherited (no CLOEXEC). bash, not
                // sh: dash takes only one-digit fds in a redirection, and the test process may hold ten or more.
                let script = format!(
                    "exec 3<&{fd}; export LISTEN_FDS=1 LISTEN_FDNAMES={FD_NAME} LISTEN_PID=$$; exec \"$0\" \"$@\""
                );
                ["bash".to_owned(), "-c".to_owned(), script]
            }).into_iter().flatten())
            .arg(bin())
            .args(["--log-level", "debug", "run", "--status-file"])
            .arg(&status_path)
            .arg("--config")
            .arg(config)
            .env("NOEXECD_STATUS_EVERY_MS", STATUS_EVERY_MS)
            .env("NOTIFY_SOCKET", self.base().join("notify.sock"))
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().unwrap())
            .stderr(stderr)
            .spawn()
            .expect("spawn noexecd");
        let pid = child.id() as i32;
        let mut daemon = Daemon { child, pid, stderr_path, status_path, stored: Vec::new(), exited: None };
        // Drain old datagrams (none expected), then wait for READY=1.
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let ready = loop {
            match receive(&self.notify, &mut buf) {
                Ok((n, fds)) => {
                    if keep_stored {
                        daemon.stored.extend(fds);
                    }
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
        let (sdevs, bad) = marks_outside(pid, &self.test_devs);
        if !bad.is_empty() {
            if let Some(d) = self.daemon.as_mut() {
                d.kill_hard();
            }
            panic!("SAFETY: noexecd marked a filesystem outside the test: {bad:?} (allowed {:x?})", self.test_devs);
        }
        sdevs
    }

    pub fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("daemon running")
    }

    pub fn daemon_stderr(&self) -> String {
        self.daemon.as_ref().map(Daemon::stderr).unwrap_or_default()
    }
}

/// The mark lines of every fanotify group process `pid` holds, from /proc/PID/fdinfo: `fanotify sdev:...`
/// (a filesystem), `fanotify ino:... sdev:...` (an inode) and `fanotify mnt_id:...` (a mount); not the groups'
/// own `fanotify flags:` lines.
pub fn fanotify_mark_lines(pid: i32) -> Vec<String> {
    let mut lines = Vec::new();
    for ent in fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let Ok(text) = fs::read_to_string(ent.unwrap().path()) else { continue };
        lines.extend(
            text.lines().filter(|l| l.starts_with("fanotify ") && !l.starts_with("fanotify flags:")).map(str::to_owned),
        );
    }
    lines
}

/// The marks of a daemon that lie outside the filesystems the test mounted, less those on anonymous
/// superblocks (major 0) that the machine's own mount namespace does not show: the tmpfs and overlays of
/// the test's containers, created inside its sandbox. The host's `/` and `/tmp` are never tolerated.
pub fn marks_outside_but_sandbox_superblocks(pid: i32, allowed: &BTreeSet<(u64, u64)>) -> Vec<String> {
    let machine: BTreeSet<u64> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (maj, min) = l.split(' ').nth(2)?.split_once(':')?;
            Some((maj.parse::<u64>().ok()? << 20) | min.parse::<u64>().ok()?)
        })
        .collect();
    let forbidden: BTreeSet<u64> = forbidden_devs().iter().map(|&(a, b)| (a << 20) | b).collect();
    let (_, bad) = marks_outside(pid, allowed);
    bad.into_iter()
        .filter(|l| {
            let field = |name: &str| l.split_whitespace().find_map(|t| t.strip_prefix(name));
            let dev = match field("mnt_id:") {
                // A mount of a container's namespace (its rootfs, under a default file posture). One no process
                // shows any more is a container's mount being torn down: none of the machine's mounts.
                Some(id) => match u64::from_str_radix(id, 16).ok().map(mount_dev_anywhere) {
                    Some(None) => return false,
                    found => found.flatten(),
                },
                None => field("sdev:").and_then(|h| u64::from_str_radix(h, 16).ok()),
            };
            !dev.is_some_and(|d| d >> 20 == 0 && !machine.contains(&d) && !forbidden.contains(&d))
        })
        .collect()
}

/// The device (kernel encoding) of mount `id`, from the mountinfo of any process that shows it (mount ids
/// are unique on the machine).
fn mount_dev_anywhere(id: u64) -> Option<u64> {
    let want = id.to_string();
    fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let name = e.file_name();
        if !name.to_str()?.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        mount_dev_in(&fs::read_to_string(e.path().join("mountinfo")).ok()?, &want)
    })
}

/// The device (kernel encoding) of mount `id` in a mountinfo `text` ("<id> <parent> <major>:<minor> ...").
fn mount_dev_in(text: &str, id: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut f = l.split(' ');
        if f.next()? != id {
            return None;
        }
        let (maj, min) = f.nth(1)?.split_once(':')?;
        Some((maj.parse::<u64>().ok()? << 20) | min.parse::<u64>().ok()?)
    })
}

/// The marks of process `pid` that raise events on a filesystem outside `allowed` (devices as (major, minor))
/// or on the host's `/` or `/tmp` (`forbidden_devs`), and the devices of its superblock marks (kernel
/// encoding, see `kernel_dev`).
pub fn marks_outside(pid: i32, allowed: &BTreeSet<(u64, u64)>) -> (Vec<u64>, Vec<String>) {
    let allowed: BTreeSet<u64> = allowed.iter().map(|&(a, b)| (a << 20) | b).collect();
    let forbidden: BTreeSet<u64> = forbidden_devs().iter().map(|&(a, b)| (a << 20) | b).collect();
    let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let mount_dev = |id: &str| mount_dev_in(&mountinfo, id);
    let mut sdevs = Vec::new();
    let mut bad = Vec::new();
    for line in fanotify_mark_lines(pid) {
        let field = |name: &str| line.split_whitespace().find_map(|t| t.strip_prefix(name)).map(str::to_owned);
        // An ignore-only mark (mask 0, e.g. the daemon exempting its own executable and libraries for
        // fail_mode = "closed") raises no event anywhere: it cannot affect the host.
        if field("mask:").is_some_and(|m| u64::from_str_radix(&m, 16) == Ok(0)) {
            continue;
        }
        let dev = if let Some(id) = field("mnt_id:") {
            // Mount mark: mnt_id is hex. A mount of a container's namespace is not in the daemon's table.
            u64::from_str_radix(&id, 16)
                .ok()
                .and_then(|id| mount_dev(&id.to_string()).or_else(|| mount_dev_anywhere(id)))
        } else {
            field("sdev:").and_then(|h| u64::from_str_radix(&h, 16).ok())
        };
        match dev {
            Some(d) if !forbidden.contains(&d) && allowed.contains(&d) => {}
            _ => bad.push(line.clone()),
        }
        if line.starts_with("fanotify sdev:") {
            sdevs.extend(dev);
        }
    }
    (sdevs, bad)
}

/// An fd received over the notify socket, closed when dropped.
#[derive(Debug)]
pub struct ReceivedFd(RawFd);

impl ReceivedFd {
    pub fn raw(&self) -> RawFd {
        self.0
    }
}

impl Drop for ReceivedFd {
    fn drop(&mut self) {
        let _ = nix::unistd::close(self.0);
    }
}

/// One datagram of the notify socket into `buf`: its length and the fds that came with it.
fn receive(sock: &UnixDatagram, buf: &mut [u8]) -> std::io::Result<(usize, Vec<ReceivedFd>)> {
    let (n, fds) = {
        let mut iov = [IoSliceMut::new(buf)];
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())?;
        let mut fds = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(got) = c {
                fds.extend(got.into_iter().map(ReceivedFd));
            }
        }
        (msg.bytes, fds)
    };
    Ok((n, fds))
}

/// A running `noexecd run`.
pub struct Daemon {
    child: Child,
    pub pid: i32,
    pub stderr_path: PathBuf,
    /// The status file it rewrites every [`STATUS_EVERY_MS`] ms (see `wait`).
    pub status_path: PathBuf,
    /// The fds it stored with "systemd" (`FDSTORE=1` on the notify socket) before READY=1, its fanotify group
    /// with `fail_mode = "closed"`, when started by [`Env::start_daemon_keeping_stored`].
    pub stored: Vec<ReceivedFd>,
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
        poll_until(limit, || self.try_wait())
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

/// setpriv's options taking `caps` out of the inheritable and bounding sets (none when `caps` is empty).
fn caps_dropped(caps: &[&str]) -> Vec<String> {
    if caps.is_empty() {
        return Vec::new();
    }
    let minus: Vec<String> = caps.iter().map(|c| format!("-{c}")).collect();
    let list = minus.join(",");
    vec!["--inh-caps".to_owned(), list.clone(), "--bounding-set".to_owned(), list]
}
