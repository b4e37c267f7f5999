//! Privileged: reload (SIGHUP) with a good and a bad policy, and shutdown (SIGTERM/SIGINT).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;

const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn sighup_with_a_good_policy_takes_effect_moves_the_marks_and_reopens_the_log() {
    let mut env = privileged!(Layout::Tmpfs);
    let cfg = env.write_config(&DaemonOpts::enforce(), &dir_policy("Block", &env.fs, true));
    env.start_daemon(&cfg);
    let fs_dev = kernel_dev_of(&env, &env.fs);
    let out_dev = kernel_dev_of(&env, &env.out);
    assert_eq!(env.verify_kernel_marks(), vec![fs_dev], "one superblock mark, on the protected tmpfs");

    let x = env.fs.join("x");
    let y = env.out.join("y");
    env.put_elf(&x);
    env.put_elf(&y);
    let cwd = env.out.clone();
    env.bash_exec(&x, &cwd).assert_denied_bash("before reload: fs/x");
    env.bash_exec(&y, &cwd).assert_ran("before reload: out/y");
    env.expect_alerts(1);

    // logrotate: move the log away, then reload with a policy that protects `out` instead of `fs`.
    let rotated = env.base().join("alerts.jsonl.1");
    fs::rename(env.alert_log(), &rotated).unwrap();
    env.write_config(&DaemonOpts::enforce(), &dir_policy("Block", &env.out, true));
    env.check(&cfg);
    reload(&env);
    let first = env.bash_exec(&y, &cwd);
    first.assert_denied_bash("after reload: out/y");
    assert!(env.daemon().try_wait().is_none(), "daemon still running after SIGHUP");
    env.bash_exec(&x, &cwd).assert_ran("after reload: fs/x is no longer protected");
    let second = env.bash_exec(&y, &cwd);
    second.assert_denied_bash("after reload: out/y again");

    let alerts = env.expect_alerts(2);
    assert_exec_alert(&alerts[0], &Expect::block(&y, &first, &cwd));
    assert_exec_alert(&alerts[1], &Expect::block(&y, &second, &cwd));
    // The old file kept its one alert and got nothing after the reopen.
    let old = Env::read_alerts_at(&rotated);
    assert_eq!(old.len(), 1, "rotated log: {old:?}");
    assert_eq!(get_str(&old[0], "Resource"), x.to_str().unwrap());

    // Marks follow the new scope (the old mark may go a moment after the new policy is in force).
    let mut marks = Vec::new();
    poll_until(RELOAD_TIMEOUT, || {
        marks = env.verify_kernel_marks();
        (marks == vec![out_dev]).then_some(())
    })
    .unwrap_or_else(|| panic!("after reload only the new scope is marked: {marks:x?}, want [{out_dev:x}]"));
}

/// SIGHUP, then waits until the daemon has finished that reload (applied or rejected).
fn reload(env: &Env) {
    let before = env.fresh_status().get("reloads");
    env.daemon.as_ref().expect("daemon running").signal(Signal::SIGHUP);
    env.wait_status(format_args!("reloads > {before} after SIGHUP"), |s| s.get("reloads") > before);
}

#[test]
fn sighup_with_a_bad_policy_keeps_the_old_one_and_keeps_running() {
    let mut env = privileged!(Layout::Tmpfs);
    let cfg = env.write_config(&DaemonOpts::enforce(), &dir_policy("Block", &env.fs, true));
    env.start_daemon(&cfg);
    let x = env.fs.join("x");
    let y = env.out.join("y");
    env.put_elf(&x);
    env.put_elf(&y);
    let cwd = env.out.clone();

    // A policy that would protect `out` instead, with an unknown key in it: it must be rejected whole.
    let policies = dir_policy("Block", &env.out, true);
    let text = format!(
        "[daemon]\nmode = \"enforce\"\nalert_log = {}\nbogus_key = 1\n\n{policies}",
        toml_str(&env.alert_log())
    );
    fs::write(&cfg, text).unwrap();
    let before = env.daemon_stderr().len();
    reload(&env);

    // The error on stderr names the file and line of the bad key.
    let where_ = format!("{}:4:", cfg.display());
    let err = env.daemon_stderr();
    assert!(
        err.get(before..).is_some_and(|new| new.contains(&where_)),
        "SIGHUP with a bad policy: no error naming {where_:?} on stderr:\n{err}"
    );
    assert!(env.daemon().try_wait().is_none(), "daemon keeps running after a bad reload");

    let e = env.bash_exec(&x, &cwd);
    e.assert_denied_bash("old policy still in force: fs/x");
    env.bash_exec(&y, &cwd).assert_ran("the rejected policy is not in force: out/y");
    let alerts = env.expect_alerts(1);
    assert_exec_alert(&alerts[0], &Expect::block(&x, &e, &cwd));
    assert!(env.daemon().try_wait().is_none(), "daemon still running");
}

#[test]
fn sigterm_flushes_alerts_exits_zero_and_exec_works_again() {
    let mut env = privileged!(Layout::Tmpfs);
    let cfg = env.write_config(&DaemonOpts::enforce(), &dir_policy("Block", &env.fs, true));
    env.start_daemon(&cfg);
    let x = env.fs.join("x");
    env.put_elf(&x);
    let cwd = env.out.clone();

    let e = env.bash_exec(&x, &cwd);
    e.assert_denied_bash("while running");
    // No waiting for the alert: SIGTERM must flush it.
    env.daemon().signal(Signal::SIGTERM);
    let st = env.daemon().wait_exit(Duration::from_secs(10));
    let err = env.daemon_stderr();
    let st = st.unwrap_or_else(|| panic!("noexecd did not exit within 10 s of SIGTERM:\n{err}"));
    assert_eq!(st.code(), Some(0), "exit status after SIGTERM ({st}):\n{err}");

    let alerts = Env::read_alerts_at(&env.alert_log());
    assert_eq!(alerts.len(), 1, "the pending alert was flushed before exit:\n{alerts:?}\n{err}");
    assert_exec_alert(&alerts[0], &Expect::block(&x, &e, &cwd));

    env.bash_exec(&x, &cwd).assert_ran("after SIGTERM the marks are gone");
    // No daemon runs that could still write one.
    assert_eq!(Env::read_alerts_at(&env.alert_log()).len(), 1, "no alert after exit");
}

/// The decision thread sleeps in read(2) while nothing happens: the watchdog must count that as alive (and
/// not withhold WATCHDOG=1 from an idle host, which systemd would answer by killing the guard).
#[test]
fn an_idle_daemon_keeps_telling_the_watchdog_it_is_alive() {
    let mut env = privileged!(Layout::Tmpfs);
    let cfg = env.write_config(&DaemonOpts::enforce(), &dir_policy("Block", &env.fs, true));
    // A 400 ms watchdog: the daemon checks every 200 ms.
    env.start_daemon_with_env(&cfg, &[("WATCHDOG_USEC", "400000")]);
    let count_pings = |env: &Env, during: Duration| {
        let deadline = Instant::now() + during;
        let mut buf = [0u8; 4096];
        let mut pings = 0;
        while Instant::now() < deadline {
            if let Ok(n) = env.notify.recv(&mut buf) {
                pings += String::from_utf8_lossy(&buf[..n]).lines().filter(|l| *l == "WATCHDOG=1").count();
            }
        }
        pings
    };
    let idle = count_pings(&env, Duration::from_secs(2));
    assert!(idle >= 5, "WATCHDOG=1 {idle} times in 2 s idle (one per 200 ms expected)\n{}", env.daemon_stderr());
    assert!(!env.daemon_stderr().contains("withholding WATCHDOG=1"), "{}", env.daemon_stderr());
    // The daemon's own wake-up signal, sent from outside: it neither stops the daemon nor its decisions.
    for _ in 0..3 {
        env.daemon().signal(Signal::SIGUSR2);
        // Its status moves on: the control loop runs and the decision thread is alive.
        env.fresh_status();
    }
    assert!(env.daemon().try_wait().is_none(), "SIGUSR2 from outside ended the daemon:\n{}", env.daemon_stderr());
    let x = env.fs.join("x");
    env.put_elf(&x);
    let cwd = env.out.clone();
    env.bash_exec(&x, &cwd).assert_denied_bash("after the idle time: fs/x");
    let st = env.daemon().stop(Duration::from_secs(10));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "SIGTERM of the idle daemon:\n{}", env.daemon_stderr());
}

#[test]
fn sigint_exits_zero_and_exec_works_again() {
    let mut env = privileged!(Layout::Tmpfs);
    let cfg = env.write_config(&DaemonOpts::enforce(), &dir_policy("Block", &env.fs, true));
    env.start_daemon(&cfg);
    let x = env.fs.join("x");
    env.put_elf(&x);
    let cwd = env.out.clone();
    env.bash_exec(&x, &cwd).assert_denied_bash("while running");
    env.expect_alerts(1);

    env.daemon().signal(Signal::SIGINT);
    let st = env.daemon().wait_exit(Duration::from_secs(10));
    let err = env.daemon_stderr();
    let st = st.unwrap_or_else(|| panic!("noexecd did not exit within 10 s of SIGINT:\n{err}"));
    assert_eq!(st.code(), Some(0), "exit status after SIGINT ({st}):\n{err}");
    env.bash_exec(&x, &cwd).assert_ran("after SIGINT the marks are gone");
}

fn kernel_dev_of(env: &Env, p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    kernel_dev(fs::metadata(env.host_view(p)).unwrap().dev())
}

/// Every file the daemon opens lies on the protected filesystem (open guard on, a filesystem mark there):
/// the alert log and its directory, the configuration and its drop-ins, the live socket's directory. It must
/// never wait on its own group: READY comes, execs are decided, a SIGHUP reloads and reopens, SIGTERM stops.
#[test]
fn the_daemon_never_waits_on_files_of_its_own_in_protected_scope() {
    let mut env = privileged!(Layout::Tmpfs);
    let own = env.fs.join("noexecd");
    let (cfg, log, drop_ins, socket) =
        (own.join("noexecd.toml"), own.join("log/alerts.jsonl"), own.join("policy.d"), own.join("run/alerts.sock"));
    fs::create_dir_all(env.host_view(&drop_ins)).unwrap();
    fs::write(
        env.host_view(&drop_ins.join("extra.toml")),
        format!(
            "[[policy]]\nname = \"extra\"\n[[policy.process.match_paths]]\npath = {}\n",
            toml_str(&env.out.join("z"))
        ),
    )
    .unwrap();
    let text = format!(
        "[daemon]\nalert_log = {}\npolicy_dir = {}\nalert_socket = {}\ncluster_name = \"{CLUSTER_NAME}\"\nhost_name = \"{HOST_NAME}\"\n\n{}",
        toml_str(&log),
        toml_str(&drop_ins),
        toml_str(&socket),
        dir_policy("Block", &env.fs, true)
    );
    fs::write(env.host_view(&cfg), &text).unwrap();
    // `check` says the alerts would live where the policy protects (where attackers write).
    let out = env.run_in_ns(&[bin().as_os_str(), "check".as_ref(), "--config".as_ref(), cfg.as_os_str()]);
    assert!(out.status.success(), "{out}");
    assert!(out.stderr.contains("alert_log") && out.stderr.contains("protected"), "check warns: {out}");
    env.start_daemon(&cfg);

    let (x, z) = (env.fs.join("x"), env.out.join("z"));
    env.put_elf(&x);
    env.put_elf(&z);
    let cwd = env.out.clone();
    let e1 = env.bash_exec(&x, &cwd);
    e1.assert_denied_bash("fs/x");
    let e2 = env.bash_exec(&z, &cwd);
    e2.assert_denied_bash("out/z, from the drop-in in protected scope");
    let alerts = env.expect_alerts_at(&env.host_view(&log), 2);
    assert_exec_alert(&alerts[0], &Expect::block(&x, &e1, &cwd));
    assert_eq!(get_str(&alerts[1], "PolicyName"), "extra");

    // Reload (config, drop-ins and the log reopened, all in protected scope), then decide again.
    reload(&env);
    assert!(env.daemon().try_wait().is_none(), "daemon still running after SIGHUP:\n{}", env.daemon_stderr());
    env.bash_exec(&x, &cwd).assert_denied_bash("fs/x after the reload");
    env.expect_alerts_at(&env.host_view(&log), 3);
    let status = env.daemon().stop(Duration::from_secs(5));
    assert!(status.is_some_and(|s| s.success()), "SIGTERM: clean exit: {status:?}\n{}", env.daemon_stderr());
    assert!(!env.daemon_stderr().contains("cannot"), "{}", env.daemon_stderr());
}
