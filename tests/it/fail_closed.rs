//! fail_mode = "closed" without systemd: this test plays systemd's part. It receives the group the daemon
//! stores (`FDSTORE=1` over `$NOTIFY_SOCKET`), SIGKILLs the daemon, checks that an exec attempt made while
//! no daemon runs waits instead of running, then starts a new daemon with the group handed back through
//! `LISTEN_FDS` and checks that the waiting attempt is decided by the policy: denied.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common::*;

/// A process killed and reaped when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_exec_attempted_while_the_daemon_is_dead_waits_and_is_then_denied() {
    let mut env = privileged!(Layout::Tmpfs);
    let cfg = env.write_config(&DaemonOpts::enforce(), &dir_policy("Block", &env.fs, true));
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("[daemon]\n", "[daemon]\nfail_mode = \"closed\"\n", 1);
    std::fs::write(&cfg, text).unwrap();
    let payload = env.fs.join("payload");
    env.put_elf(&payload);
    let cwd = env.out.clone();

    // The first daemon stores its group with "systemd" (us).
    env.start_daemon_keeping_stored(&cfg);
    let mut first = env.daemon.take().unwrap();
    assert_eq!(first.stored.len(), 1, "exactly one fd is stored before READY=1");
    let stored = first.stored.pop().unwrap();
    env.daemon = Some(first);
    let denied = env.bash_exec(&payload, &cwd);
    denied.assert_denied_bash("blocked while the daemon runs");
    // Its alert is written before the crash.
    env.expect_alerts(1);

    // Crash: SIGKILL.
    let mut first = env.daemon.take().unwrap();
    first.signal(Signal::SIGKILL);
    assert!(first.wait_exit(Duration::from_secs(10)).is_some(), "the first daemon died");

    // An attempt now must wait, not run.
    let mut attempt = Command::new("timeout");
    attempt
        .env("PATH", SYS_PATH)
        .args(["-s", "KILL", "60", "nsenter", "-t", &env.holder_pid.to_string(), "-m", "--", "bash", "-c"])
        .arg(&payload)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut waiting = Killed(attempt.spawn().unwrap());
    // A process that must stay stalled: only the clock can say it did for a while.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(waiting.0.try_wait().unwrap().is_none(), "an exec ran (or failed) while no daemon was running");

    // "systemd" restarts the daemon and hands the group back as fd 3.
    env.start_daemon_with_group(&cfg, &stored);
    let out = wait_until("the waiting exec answered after the restart", Duration::from_secs(10), || {
        waiting.0.try_wait().unwrap()
    });
    let mut err = String::new();
    std::io::Read::read_to_string(&mut waiting.0.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(out.code(), Some(126), "the exec that waited was denied by policy: {err}");
    assert!(err.contains("Operation not permitted"), "{err}");

    // The alert of the waiting attempt is written by the second daemon.
    let alerts = env.expect_alerts(2);
    assert!(alerts.iter().all(|a| get_str(a, "Action") == "Block"), "{alerts:?}");

    // A clean stop removes the marks: exec works again even though we still hold a copy of the group.
    let st = env.daemon().stop(Duration::from_secs(10));
    assert!(st.is_some(), "SIGTERM: the daemon stops\n{}", env.daemon_stderr());
    env.bash_exec(&payload, &cwd).assert_ran("exec runs after a clean stop");
    drop(stored);
}
