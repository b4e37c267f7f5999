//! Privileged: the alert log cannot be written. Decisions go on unchanged (execs still denied with EPERM); lost
//! alerts are counted in the status line and reported in the daemon's log at
//! most once a minute; a removed log is recreated without losing the alerts written after the removal; a full
//! filesystem never leaves half a JSON line in the log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use crate::execloop::status_number;

const DROP_LINE: &str = "alerts dropped since the last report";

/// Waits for a status line (of the status file) that satisfies `want`; returns it.
fn wait_status(env: &Env, limit: Duration, want: impl Fn(&str) -> bool) -> String {
    env.wait_status_within(limit, "a matching status line", |s| want(&s.line)).line
}

/// Waits until the daemon's stderr says `what`.
fn wait_stderr(env: &Env, what: &str) {
    wait_until(format_args!("{what:?} on the daemon's stderr"), Duration::from_secs(10), || {
        env.daemon_stderr().contains(what).then_some(())
    });
}

fn start(env: &mut Env, alert_log: Option<&Path>) {
    let fs = env.fs.clone();
    let cfg = env.write_config(&DaemonOpts::enforce(), &dir_policy("Block", &fs, true));
    if let Some(log) = alert_log {
        let text = std::fs::read_to_string(&cfg).unwrap();
        let old = format!("alert_log = {}", toml_str(&env.alert_log()));
        assert!(text.contains(&old));
        std::fs::write(&cfg, text.replace(&old, &format!("alert_log = {}", toml_str(log)))).unwrap();
    }
    env.start_daemon(&cfg);
}

#[test]
fn removed_alert_log_is_recreated_and_keeps_the_alerts_written_after_the_removal() {
    let mut env = privileged!(Layout::Tmpfs);
    start(&mut env, None);
    let target = env.fs.join("x");
    env.put_elf(&target);
    let cwd = env.out.clone();

    env.bash_exec(&target, &cwd).assert_denied_bash("before the removal");
    env.expect_alerts(1);
    // Past the writer's once-a-second look at the log's inode, so that the first line is not written again:
    // that look runs on the clock.
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::remove_file(env.alert_log()).unwrap();
    // Written to the removed file at first: the daemon notices within a second and writes it again.
    let e2 = env.bash_exec(&target, &cwd);
    e2.assert_denied_bash("right after the removal");
    wait_stderr(&env, "the alert log was removed while open");
    let e3 = env.bash_exec(&target, &cwd);
    e3.assert_denied_bash("after the log was recreated");

    let alerts = env.expect_alerts(2);
    assert_exec_alert(&alerts[0], &Expect::block(&target, &e2, &cwd));
    assert_exec_alert(&alerts[1], &Expect::block(&target, &e3, &cwd));
    let stderr = env.daemon_stderr();
    assert_eq!(stderr.matches("the alert log was removed while open").count(), 1, "one notice\n{stderr}");
    let status = wait_status(&env, Duration::from_secs(12), |s| s.contains("blocked 3,"));
    assert_eq!(status_number(&status, "alerts written "), 3, "{status}");
    assert_eq!(status_number(&status, "dropped "), 0, "{status}");
}

/// A 64 KiB tmpfs for the alert log, mounted inside the test's namespace.
fn tiny_log_fs(env: &Env) -> PathBuf {
    let dir = env.base().join("logfs");
    std::fs::create_dir(&dir).unwrap();
    env.sh(&format!("mount -t tmpfs -o size=64k,mode=0755 noexecd-test-logfs {}", sh_quote(&dir)));
    dir
}

/// Execs of the first round on the full alert filesystem: their alerts (about 700 bytes each) outgrow the
/// rest of the log's last page (at most 4095 bytes).
const FIRST_ROUND: u64 = 8;
/// Every exec the test makes: one before the filesystem is full, the first round, a second round of 5.
const BLOCKED: u64 = 1 + FIRST_ROUND + 5;

#[test]
fn full_alert_filesystem_costs_alerts_not_decisions_and_drops_are_reported_once_a_minute() {
    let mut env = privileged!(Layout::Tmpfs);
    let logfs = tiny_log_fs(&env);
    let log = logfs.join("alerts.jsonl");
    start(&mut env, Some(&log));
    let target = env.fs.join("x");
    env.put_elf(&target);
    let cwd = env.out.clone();
    let log_view = env.host_view(&log);

    env.bash_exec(&target, &cwd).assert_denied_bash("before the filesystem is full");
    env.expect_alerts_at(&log_view, 1);
    // Fill the filesystem: what is left is the rest of the log's last page, so a few lines may still fit and
    // one is cut short by the kernel.
    env.sh(&format!("dd if=/dev/zero of={} bs=4096 2>/dev/null || true", sh_quote(&logfs.join("filler"))));

    // The first round writes more than a page: whatever room the log's last page had left, some of its alerts
    // are dropped, so the first drop report is due within a second of it.
    for (round, execs) in [(0, FIRST_ROUND), (1, 5)] {
        for i in 0..execs {
            env.bash_exec(&target, &cwd).assert_denied_bash(&format!("full alert fs, round {round}, exec {i}"));
        }
        if round == 0 {
            // Past the first drop report (due within a second), well within its minute.
            wait_stderr(&env, DROP_LINE);
        }
    }

    let status = wait_status(&env, Duration::from_secs(15), |s| {
        s.contains(&format!("blocked {BLOCKED},"))
            && status_number(s, "alerts written ") + status_number(s, "dropped ") == BLOCKED
    });
    let written = status_number(&status, "alerts written ");
    let dropped_write = status_number(&status, "write ");
    assert!(dropped_write >= 1, "the full filesystem cost alerts: {status}");
    assert_eq!(status_number(&status, "queue "), 0, "{status}");
    assert_eq!(status_number(&status, "throttle "), 0, "{status}");
    assert_eq!(status_number(&status, "dropped "), dropped_write, "{status}");

    // Only whole lines in the log: exactly the alerts counted as written.
    let bytes = std::fs::read(&log_view).unwrap();
    assert_eq!(bytes.last(), Some(&b'\n'), "the log ends with a whole line");
    assert_eq!(Env::read_alerts_at(&log_view).len() as u64, written, "{status}");

    // The daemon's log: one drop report in this minute (the second round's drops wait for the next one).
    let stderr = env.daemon_stderr();
    let reports: Vec<&str> = stderr.lines().filter(|l| l.contains(DROP_LINE)).collect();
    assert_eq!(reports.len(), 1, "one drop report per minute at most\n{stderr}");
    let first_batch = status_number(reports[0], &format!("{DROP_LINE}: "));
    assert!((1..=FIRST_ROUND).contains(&first_batch), "the report counts the first round's drops: {}", reports[0]);
    assert_eq!(status_number(reports[0], "write "), first_batch, "{}", reports[0]);
    assert!(stderr.matches("cannot write the alert log").count() <= 1, "error line once a minute\n{stderr}");

    // Space again: the next alert is written, as a line of its own.
    env.sh(&format!("rm -f {}", sh_quote(&logfs.join("filler"))));
    let e = env.bash_exec(&target, &cwd);
    e.assert_denied_bash("after space was freed");
    let alerts = env.expect_alerts_at(&log_view, written as usize + 1);
    assert_exec_alert(alerts.last().unwrap(), &Expect::block(&target, &e, &cwd));
    assert!(env.daemon().try_wait().is_none(), "daemon still running\n{}", env.daemon_stderr());
}
