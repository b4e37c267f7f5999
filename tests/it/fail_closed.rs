//! fail_mode = "closed" without systemd: this test plays systemd's part. It receives the group the daemon
//! stores (`FDSTORE=1` over `$NOTIFY_SOCKET`), SIGKILLs the daemon, checks that an exec attempt made while
//! no daemon runs waits instead of running, then starts a new daemon with the group handed back through
//! `LISTEN_FDS` and checks that the waiting attempt is decided by the policy: denied.
//!
//! Everything runs as root in a private mount namespace over a fresh tmpfs; nothing marks the host's `/`.

use std::io::{BufRead, BufReader, IoSliceMut};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::unistd::Pid;

use crate::common::privileged;

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kills every process left in the test's mount namespace, whatever happens: `timeout` does not pass a
/// SIGKILL on to its child, so killing the wrapper alone would leave a daemon holding marks.
struct NamespaceReaper(Option<PathBuf>);

impl NamespaceReaper {
    fn processes(&self) -> Vec<i32> {
        let Some(ns) = &self.0 else { return Vec::new() };
        let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok().as_ref() == Some(ns))
            .collect()
    }
}

impl Drop for NamespaceReaper {
    fn drop(&mut self) {
        for _ in 0..3 {
            for pid in self.processes() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn bin() -> PathBuf {
    std::env::var_os("NOEXECD_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_noexecd")))
}

/// Receives one notify datagram; returns its text and any fds that came with it.
fn receive(sock: &UnixDatagram, deadline: Instant) -> Option<(String, Vec<RawFd>)> {
    sock.set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10))))
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()).ok()?;
    let mut fds = Vec::new();
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(r) = c {
            fds.extend(r);
        }
    }
    let n = msg.bytes;
    Some((String::from_utf8_lossy(&buf[..n]).into_owned(), fds))
}

fn wait_for(sock: &UnixDatagram, what: &str, limit: Duration) -> Vec<RawFd> {
    let deadline = Instant::now() + limit;
    let mut fds = Vec::new();
    while Instant::now() < deadline {
        if let Some((text, got)) = receive(sock, deadline) {
            fds.extend(got);
            if text.lines().any(|l| l == what) {
                return fds;
            }
        }
    }
    panic!("no {what} from the daemon within {limit:?}");
}

fn ns_command(holder: u32) -> Command {
    let mut c = Command::new("timeout");
    c.env("PATH", PATH).args(["-s", "KILL", "60", "nsenter", "-t", &holder.to_string(), "-m", "--"]);
    c
}

#[test]
fn an_exec_attempted_while_the_daemon_is_dead_waits_and_is_then_denied() {
    privileged!();
    let scratch = tempfile::Builder::new().prefix("noexecd-fail-closed").tempdir_in("/run").unwrap();
    let base = scratch.path().join("fs");
    std::fs::create_dir(&base).unwrap();
    let notify_path = scratch.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();

    // The namespace: a tmpfs over `base`, held open by a sleeping shell.
    let mut holder = Command::new("timeout");
    holder
        .env("PATH", PATH)
        .args(["-s", "KILL", "120", "unshare", "--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(format!("mount -t tmpfs tmpfs '{}' && echo ready && exec sleep 110", base.display()))
        .stdout(Stdio::piped());
    let mut holder = Killed(holder.spawn().unwrap());
    let mut ready = String::new();
    BufReader::new(holder.0.stdout.take().unwrap()).read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "ready");
    let hpid = holder.0.id();
    // The unshare process is timeout's child: find the process that owns the namespace.
    let ns_pid = (0..50)
        .find_map(|_| {
            let kids = std::fs::read_to_string(format!("/proc/{hpid}/task/{hpid}/children")).unwrap_or_default();
            let pid = kids.split_whitespace().next().map(|p| p.parse::<u32>().unwrap());
            if pid.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            pid
        })
        .expect("holder has no child");
    let view = |p: &Path| PathBuf::from(format!("/proc/{ns_pid}/root{}", p.display()));
    let ns = std::fs::read_link(format!("/proc/{ns_pid}/ns/mnt")).unwrap();
    assert_ne!(Some(&ns), std::fs::read_link("/proc/self/ns/mnt").ok().as_ref(), "the test runs in its own namespace");
    // Declared after `holder`, so dropped before it: the daemons die while the namespace still exists.
    let reaper = NamespaceReaper(Some(ns));

    let protected = base.join("tmp");
    std::fs::create_dir_all(view(&protected)).unwrap();
    std::fs::copy("/bin/true", view(&protected.join("payload"))).unwrap();
    let config = base.join("noexecd.toml");
    std::fs::write(
        view(&config),
        format!(
            "[daemon]\nalert_log = \"{log}\"\nalert_socket = \"\"\npolicy_dir = \"{pd}\"\nfail_mode = \"closed\"\n\
             [[policy]]\nname = \"tmp\"\n[[policy.process.match_directories]]\ndir = \"{dir}/\"\nrecursive = true\n",
            log = base.join("alerts.jsonl").display(),
            pd = base.join("policy.d").display(),
            dir = protected.display()
        ),
    )
    .unwrap();
    let check = ns_command(ns_pid).arg(bin()).args(["check", "--config"]).arg(&config).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let marks = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(
        marks.lines().filter(|l| l.starts_with("mark")).all(|l| l.contains(&format!("\t{}\t", base.display()))),
        "{marks}"
    );

    // The first daemon stores its group with "systemd" (us).
    let mut first = ns_command(ns_pid);
    first.env("NOTIFY_SOCKET", &notify_path).arg(bin()).args(["run", "--config"]).arg(&config);
    let mut first = Killed(first.stderr(Stdio::null()).spawn().unwrap());
    let mut stored = wait_for(&notify, "FDSTORE=1", Duration::from_secs(10));
    stored.extend(wait_for(&notify, "READY=1", Duration::from_secs(10)));
    assert_eq!(stored.len(), 1, "exactly one fd is stored");
    let stored = stored[0];

    let attempt = || {
        let mut c = ns_command(ns_pid);
        c.args(["bash", "-c"]).arg(protected.join("payload")).stdout(Stdio::null()).stderr(Stdio::piped());
        c
    };
    let denied = attempt().output().unwrap();
    assert_eq!(denied.status.code(), Some(126), "blocked while the daemon runs");
    // Its alert is written before the crash, so the count below is not a race with the writer.
    let log = view(&base.join("alerts.jsonl"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&log).unwrap_or_default().lines().count() < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }

    // Crash: SIGKILL the daemon itself (the process inside timeout and nsenter).
    let daemon_pid = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with(bin().as_os_str().as_encoded_bytes()) && c.windows(3).any(|w| w == b"run"))
                && std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()
                    == std::fs::read_link(format!("/proc/{ns_pid}/ns/mnt")).ok()
        })
        .expect("the first daemon's pid");
    kill(Pid::from_raw(daemon_pid), Signal::SIGKILL).unwrap();
    let _ = first.0.wait();

    // An attempt now must wait, not run.
    let mut waiting = attempt().spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(waiting.try_wait().unwrap().is_none(), "an exec ran (or failed) while no daemon was running");

    // "systemd" restarts the daemon and hands the group back as fd 3.
    let mut second = ns_command(ns_pid);
    second
        .args(["bash", "-c"])
        .arg(format!(
            "exec 3<&{stored}; export LISTEN_FDS=1 LISTEN_FDNAMES={name} LISTEN_PID=$$; exec \"$0\" run --config \"$1\"",
            name = noexecd::daemon::FD_NAME
        ))
        .arg(bin())
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify_path)
        .stderr(Stdio::piped());
    let mut second = Killed(second.spawn().unwrap());
    wait_for(&notify, "READY=1", Duration::from_secs(10));
    let started = Instant::now();
    let out = loop {
        if let Some(status) = waiting.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the waiting exec was not answered after the restart");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut waiting.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(out.code(), Some(126), "the exec that waited was denied by policy: {err}");
    assert!(err.contains("Operation not permitted"), "{err}");

    // The alert of the waiting attempt is written by the second daemon.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&log).unwrap_or_default().lines().count() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let alerts = std::fs::read_to_string(&log).unwrap();
    assert_eq!(alerts.lines().count(), 2, "{alerts}");
    assert!(alerts.lines().all(|l| l.contains("\"Action\":\"Block\"")), "{alerts}");

    // A clean stop removes the marks: exec works again even though we still hold a copy of the group.
    kill(Pid::from_raw(second.0.id() as i32), Signal::SIGTERM).unwrap();
    let _ = second.0.wait();
    let after = {
        let mut c = ns_command(ns_pid);
        c.args(["bash", "-c"]).arg(protected.join("payload"));
        c.output().unwrap()
    };
    assert_eq!(after.status.code(), Some(0), "exec runs after a clean stop");
    drop(reaper);
    drop(notify);
}
