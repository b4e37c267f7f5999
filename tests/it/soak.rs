//! Privileged soak: 200 000 exec attempts, half denied and half allowed, from 2 concurrent spawners through
//! the daemon (both kinds of file on one marked, path-decided tmpfs, so every attempt is an event it decides).
//! No hang (every process is bounded), no wrong decision (every EPERM is the protected file, every allowed
//! attempt ran and exited 0), and the daemon's books balance: blocked == denied attempts, allowed == allowed
//! attempts, and alerts written + alerts dropped (queue, throttle, write) == denied attempts, with exactly
//! `alerts written` exec alerts in the log. The test never reads the daemon's notify socket: the daemon's
//! STATUS= datagrams must not stall it when the receiver's queue is full (they once blocked its tokio side).

use std::time::{Duration, Instant};

use crate::common::*;
use crate::execloop::{self, status_number};

const SPAWNERS: usize = 2;
const PER_SPAWNER: u64 = 100_000;

/// `NOEXECD_SOAK_PER_SPAWNER` shortens a run while investigating; `make test` runs the full count.
fn per_spawner() -> u64 {
    std::env::var("NOEXECD_SOAK_PER_SPAWNER").ok().and_then(|v| v.parse().ok()).unwrap_or(PER_SPAWNER)
}
/// Every second attempt is the protected file.
const DENY_EVERY: u64 = 2;

#[test]
fn soak_200k_execs_from_2_spawners_decided_right_and_every_alert_accounted_for() {
    let mut env = privileged!(Layout::Tmpfs);
    let tools = execloop::build(&env);
    let deny_dir = env.fs.join("deny");
    let allowed = env.fs.join("allow/t");
    let denied = deny_dir.join("t");
    for p in [&allowed, &denied] {
        std::fs::create_dir_all(env.host_view(p.parent().unwrap())).unwrap();
        std::fs::copy(&tools.tiny_true, env.host_view(p)).unwrap();
    }
    // A rate limit well below the denial rate: throttle drops are part of what must add up.
    let opts = DaemonOpts { max_alerts_per_sec: 300, ..DaemonOpts::enforce() };
    let cfg = env.write_config(&opts, &dir_policy("Block", &deny_dir, true));
    // Every attempt, allowed ones too, must go through the daemon: no kernel-side exec cache here.
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("[daemon]\n", "[daemon]\nexec_cache = false\n", 1);
    std::fs::write(&cfg, text).unwrap();
    env.start_daemon(&cfg);
    let cwd = env.out.clone();

    let started = Instant::now();
    let runs: Vec<Output> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..SPAWNERS)
            .map(|_| {
                let args = [
                    "soak",
                    allowed.to_str().unwrap(),
                    denied.to_str().unwrap(),
                    &per_spawner().to_string(),
                    &DENY_EVERY.to_string(),
                ]
                .map(str::to_owned);
                let (env, tools, cwd) = (&env, &tools, &cwd);
                s.spawn(move || {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    execloop::run(env, tools, cwd, &args, Duration::from_secs(600))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();

    let per_denied = per_spawner().div_ceil(DENY_EVERY);
    let per_allowed = per_spawner() - per_denied;
    for out in &runs {
        assert!(out.status.success(), "spawner\n{out}");
        assert_eq!(execloop::count(out, "wrong_ran"), 0, "a protected file ran\n{out}");
        assert_eq!(execloop::count(out, "wrong_denied"), 0, "an allowed file was denied\n{out}");
        assert_eq!(execloop::count(out, "allowed_failed"), 0, "an allowed file did not exit 0\n{out}");
        assert_eq!(execloop::count(out, "other"), 0, "an attempt failed otherwise\n{out}");
        assert_eq!(execloop::count(out, "denied_eperm"), per_denied, "{out}");
        assert_eq!(execloop::count(out, "allowed_ok"), per_allowed, "{out}");
    }
    let denied_total = per_denied * SPAWNERS as u64;
    let allowed_total = per_allowed * SPAWNERS as u64;
    eprintln!(
        "soak: {} attempts ({denied_total} denied, {allowed_total} allowed) in {elapsed:.1?}: {:.0} attempts/s",
        per_spawner() * SPAWNERS as u64,
        (per_spawner() * SPAWNERS as u64) as f64 / elapsed.as_secs_f64()
    );

    // Stop the daemon: it drains the alert queue, then logs its final counters.
    let status = env.daemon().stop(Duration::from_secs(30));
    let stderr = env.daemon_stderr();
    assert!(status.is_some_and(|s| s.success()), "clean exit on SIGTERM: {status:?}\n{}", tail(&stderr));
    let last = stderr
        .lines()
        .rfind(|l| l.contains("final_counters="))
        .unwrap_or_else(|| panic!("no final_counters line at exit\n{}", tail(&stderr)));
    eprintln!("{last}");
    assert_eq!(status_number(last, "blocked "), denied_total, "{last}");
    assert_eq!(status_number(last, "allowed "), allowed_total, "{last}");
    assert_eq!(status_number(last, "audited "), 0, "{last}");
    let written = status_number(last, "alerts written ");
    let dropped = status_number(last, "dropped ");
    let (queue, throttle, write) =
        (status_number(last, "queue "), status_number(last, "throttle "), status_number(last, "write "));
    assert_eq!(dropped, queue + throttle + write, "{last}");
    assert_eq!(written + dropped, denied_total, "alerts written + dropped == denied attempts: {last}");
    assert!(throttle > 0, "the rate limit was reached: {last}");

    // The log holds exactly the written exec alerts (plus AlertThreshold notices), each for the protected file.
    let alerts = env.alerts();
    let exec_alerts: Vec<_> =
        alerts.iter().filter(|a| a.get("Operation").and_then(|o| o.as_str()) == Some("Process")).collect();
    assert_eq!(exec_alerts.len() as u64, written, "{last}");
    let source = std::fs::canonicalize(&tools.execloop).unwrap();
    for a in &exec_alerts {
        assert_eq!(get_str(a, "Resource"), denied.to_str().unwrap(), "{a}");
        assert_eq!(get_str(a, "Action"), "Block", "{a}");
        assert_eq!(get_str(a, "Source"), source.to_str().unwrap(), "{a}");
    }
    assert!(!stderr.contains("panicked"), "no panic\n{}", tail(&stderr));
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
