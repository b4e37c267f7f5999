//! A hand-over to the binary now installed (SIGUSR1, what `noexecd handover` sends on a package upgrade),
//! without systemd: this test plays systemd's FD store, as `fail_closed.rs` does. A binary that refuses the
//! configuration leaves the daemon guarding; otherwise the daemon exits 0 with its marks in place and the
//! group stored, an exec attempted meanwhile waits, and the daemon started with the group denies it.

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
fn a_handover_keeps_the_marks_and_the_group_for_the_next_daemon_and_a_refused_one_keeps_guarding() {
    let mut env = privileged!(Layout::Tmpfs);
    let cfg = env.write_config(&DaemonOpts::enforce(), &dir_policy("Block", &env.fs, true));
    let good = std::fs::read_to_string(&cfg).unwrap().replacen("[daemon]\n", "[daemon]\nfail_mode = \"closed\"\n", 1);
    std::fs::write(&cfg, &good).unwrap();
    let payload = env.fs.join("payload");
    env.put_elf(&payload);
    let cwd = env.out.clone();

    env.start_daemon_keeping_stored(&cfg);
    let mut first = env.daemon.take().unwrap();
    assert_eq!(first.stored.len(), 1, "exactly one fd is stored before READY=1");
    let stored = first.stored.pop().unwrap();
    env.daemon = Some(first);
    env.bash_exec(&payload, &cwd).assert_denied_bash("blocked before any hand-over");
    env.expect_alerts(1);

    // The binary refuses the configuration now on disk: the daemon keeps guarding with the policy it has.
    std::fs::write(&cfg, format!("{good}\nthis line is not TOML\n")).unwrap();
    env.daemon().signal(Signal::SIGUSR1);
    wait_until("the hand-over is refused", Duration::from_secs(30), || {
        env.daemon_stderr().contains("hand-over refused").then_some(())
    });
    let alerts = env.expect_alerts(2);
    assert_eq!(get_str(&alerts[1], "Operation"), "HandOverRefused", "{alerts:?}");
    env.bash_exec(&payload, &cwd).assert_denied_bash("still blocked after a refused hand-over");
    env.expect_alerts(3);

    // Accepted: the daemon exits 0 and leaves the marks and the stored group to the next one.
    std::fs::write(&cfg, &good).unwrap();
    env.daemon().signal(Signal::SIGUSR1);
    let mut first = env.daemon.take().unwrap();
    let status = first.wait_exit(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "the daemon exits 0 for the hand-over: {status:?}");
    env.daemon = Some(first);
    assert!(env.daemon_stderr().contains("handed over"), "{}", env.daemon_stderr());
    env.daemon = None;

    // An attempt now waits in the group's queue, not runs.
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
    assert!(waiting.0.try_wait().unwrap().is_none(), "an exec ran (or failed) between the two daemons");

    // "systemd" starts the new binary with the group; it decides the waiting attempt.
    env.start_daemon_with_group(&cfg, &stored);
    let out = wait_until("the waiting exec answered by the new daemon", Duration::from_secs(10), || {
        waiting.0.try_wait().unwrap()
    });
    assert_eq!(out.code(), Some(126), "the exec that waited was denied by policy");
    let alerts = env.expect_alerts(4);
    assert_eq!(get_str(&alerts[3], "Action"), "Block", "{alerts:?}");

    let st = env.daemon().stop(Duration::from_secs(10));
    assert!(st.is_some(), "SIGTERM: the daemon stops\n{}", env.daemon_stderr());
    env.bash_exec(&payload, &cwd).assert_ran("exec runs after a clean stop");
    drop(stored);
}
