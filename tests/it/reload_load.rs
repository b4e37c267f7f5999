//! Privileged: reload under load. 100 SIGHUPs, each waited for (RELOADING=1 then READY=1 on the notify
//! socket), while two spawner processes exec without pause: one a file on the protected tmpfs (`env.fs`,
//! every attempt must fail with EPERM), one a file on the unprotected tmpfs (`env.out`, every attempt must run
//! and exit 0). The config alternates between two equivalent valid policies (same scope, policy names
//! `reload-a` / `reload-b`), so a reload really swaps the policy in.
//!
//! What catches a bad reload: a reload that let a protected exec through is `ran > 0` in the denied stream
//! (and `allowed > 0` in the daemon's final counters, since nothing on the marked tmpfs is ever allowed); one
//! that marked or denied the unprotected side is `eperm > 0` in the allowed stream; one that stalled the
//! decision path is `max_ns >= 2 s`; one that lost an alert on the log reopen breaks `written + dropped ==
//! blocked == denied attempts`. The spawner's own classification is checked too: the same helper pointed at
//! the wrong file (a deliberately wrong expectation) must report every attempt as wrong.
//!
//! `execloop soak` (tests/helpers/execloop.c) runs a fixed count and does not time single attempts, so this
//! module compiles its own small spawner (`EXECSTREAM_C`): it runs until a stop file appears and reports the
//! slowest single attempt (posix_spawn to waitpid, CLOCK_MONOTONIC).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::execloop::{self, Tools, status_number};
use nix::sys::signal::Signal;

const SIGHUPS: u32 = 100;
/// No single exec may take this long, reloads or not.
const SLOWEST_ALLOWED: Duration = Duration::from_secs(2);
/// How long one reload (SIGHUP to READY=1) may take.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The spawners stop on their own after this, whatever happens to the test.
const SPAWNER_MAX_SECS: u64 = 45;

const EXECSTREAM_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* execstream <path> <stop_file> <ready_file> <max_attempts> <max_seconds>: posix_spawn <path> and wait for it,
 * again and again, until <stop_file> exists, <max_attempts> or <max_seconds> is reached; creates <ready_file>
 * after the first attempt. Prints one line of counts and the slowest single attempt. */
int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: execstream <path> <stop_file> <ready_file> <max_attempts> <max_seconds>\n");
        return 2;
    }
    const char *path = argv[1], *stop = argv[2], *ready = argv[3];
    long max_attempts = atol(argv[4]);
    long long limit = atoll(argv[5]) * 1000000000LL;
    long attempts = 0, ran = 0, ran_failed = 0, eperm = 0, other = 0, slow = 0, max_at = -1;
    long long max_ns = 0, start = now_ns();
    while (attempts < max_attempts && access(stop, F_OK) != 0 && now_ns() - start < limit) {
        char *av[] = {(char *)path, NULL};
        pid_t pid;
        int st = 0;
        long long t0 = now_ns();
        int rc = posix_spawn(&pid, path, NULL, NULL, av, environ);
        if (rc == 0)
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
        long long dt = now_ns() - t0;
        if (dt > max_ns) {
            max_ns = dt;
            max_at = attempts;
        }
        if (dt >= 2000000000LL)
            slow++;
        if (rc == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
            ran++;
        else if (rc == 0)
            ran_failed++;
        else if (rc == EPERM)
            eperm++;
        else {
            if (other < 5)
                fprintf(stderr, "attempt %ld: %s\n", attempts, strerror(rc));
            other++;
        }
        attempts++;
        if (attempts == 1) {
            int fd = open(ready, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            if (fd >= 0)
                close(fd);
        }
    }
    printf("attempts=%ld ran=%ld ran_failed=%ld eperm=%ld other=%ld max_ns=%lld max_at=%ld slow=%ld elapsed_ms=%lld\n",
           attempts, ran, ran_failed, eperm, other, max_ns, max_at, slow, (now_ns() - start) / 1000000);
    return 0;
}
"#;

/// Compiles the spawner into the env's host scratch dir (not a guarded filesystem) and pairs it with
/// `tiny_true` from `execloop::build`.
fn build(env: &Env) -> Tools {
    let tools = execloop::build(env);
    let src = env.base().join("execstream.c");
    let bin = env.base().join("execstream");
    fs::write(&src, EXECSTREAM_C).unwrap();
    let mut cmd = Command::new("cc");
    cmd.env("PATH", SYS_PATH).args(["-O2", "-Wall", "-o"]).arg(&bin).arg(&src);
    let o = run_bounded(&mut cmd, Duration::from_secs(120));
    assert!(o.status.success(), "cc execstream.c failed\n{o}");
    Tools { execloop: bin, tiny_true: tools.tiny_true }
}

/// Runs the spawner on `target` from `cwd` in the namespace, bounded.
fn stream(env: &Env, tools: &Tools, cwd: &Path, target: &Path, stop: &Path, ready: &Path, max: u64) -> Output {
    let args = [
        target.to_str().unwrap().to_owned(),
        stop.to_str().unwrap().to_owned(),
        ready.to_str().unwrap().to_owned(),
        max.to_string(),
        SPAWNER_MAX_SECS.to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    execloop::run(env, tools, cwd, &args, Duration::from_secs(SPAWNER_MAX_SECS + 15))
}

/// Creates the stop file when dropped: the spawners stop even when the test panics mid-storm.
struct StopOnDrop(PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = fs::write(&self.0, "");
    }
}

/// Reads notify datagrams until one holds `line`, up to `limit`; returns whether it came.
fn wait_notify(env: &Env, line: &str, limit: Duration, last_status: &mut String) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = env.notify.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]);
            if let Some(s) = msg.lines().rev().find_map(|l| l.strip_prefix("STATUS=")) {
                s.clone_into(last_status);
            }
            if msg.lines().any(|l| l == line) {
                return true;
            }
        }
    }
    false
}

#[test]
fn hundred_sighups_under_two_exec_streams_decide_every_exec_right_within_2s() {
    let mut env = privileged!(Layout::Tmpfs);
    let tools = build(&env);
    let denied = env.fs.join("t");
    let allowed = env.out.join("t");
    for p in [&denied, &allowed] {
        fs::copy(&tools.tiny_true, env.host_view(p)).unwrap();
    }

    // Two equivalent configs: the same scope, only the policy name differs. Every attempt on the marked tmpfs
    // goes through the daemon (no kernel-side exec cache), so the counters are exact.
    let cfg = env.config_path();
    let variant = |name: &str| {
        let path = env.base().join(format!("{name}.toml"));
        env.write_config_at(&path, &DaemonOpts::enforce(), &named_dir_policy(name, "Block", &env.fs, true, ""));
        let text = fs::read_to_string(&path).unwrap().replacen("[daemon]\n", "[daemon]\nexec_cache = false\n", 1);
        fs::write(&path, text).unwrap();
        env.check(&path);
        path
    };
    let variants = [variant("reload-a"), variant("reload-b")];
    fs::copy(&variants[0], &cfg).unwrap();
    env.start_daemon(&cfg);
    let cwd = env.out.clone();
    let daemon_pid = env.daemon().pid;

    let stop = env.base().join("stop");
    let ready = [env.base().join("ready-denied"), env.base().join("ready-allowed")];
    let mut reloads_done = 0u32;
    let mut last_status = String::new();
    let started = Instant::now();
    let (denied_run, allowed_run, storm) = thread::scope(|s| {
        let _stop_guard = StopOnDrop(stop.clone());
        let (env_r, tools_r, cwd_r, stop_r, ready_r) = (&env, &tools, &cwd, &stop, &ready);
        let (denied_r, allowed_r) = (&denied, &allowed);
        let d = s.spawn(move || stream(env_r, tools_r, cwd_r, denied_r, stop_r, &ready_r[0], u64::MAX >> 1));
        let a = s.spawn(move || stream(env_r, tools_r, cwd_r, allowed_r, stop_r, &ready_r[1], u64::MAX >> 1));
        // Both streams are running before the first SIGHUP.
        wait_until("both spawners started", Duration::from_secs(10), || ready.iter().all(|r| r.exists()).then_some(()));
        // Drain what the daemon sent so far (READY at start, STATUS ticks).
        wait_notify(env_r, "\u{0}never", Duration::from_millis(100), &mut last_status);
        let storm_start = Instant::now();
        for i in 0..SIGHUPS {
            let next = &variants[(i as usize + 1) % 2];
            let tmp = env_r.base().join("noexecd.toml.new");
            fs::copy(next, &tmp).unwrap();
            fs::rename(&tmp, &cfg).unwrap();
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon_pid), Signal::SIGHUP).unwrap();
            let got = wait_notify(env_r, "RELOADING=1", RELOAD_TIMEOUT, &mut last_status)
                && wait_notify(env_r, "READY=1", RELOAD_TIMEOUT, &mut last_status);
            assert!(got, "SIGHUP {}: no RELOADING=1 then READY=1 within {RELOAD_TIMEOUT:?}", i + 1);
            reloads_done += 1;
            // 20..50 ms between reloads, varied: the storm's shape in time is what is tested.
            thread::sleep(Duration::from_millis(20 + u64::from(i * 7 % 31)));
        }
        let storm = storm_start.elapsed();
        // A little more load after the last reload (a hundred more decisions), then stop both streams.
        env_r.wait_decided(&env_r.fresh_status(), 100);
        fs::write(&stop, "").unwrap();
        (d.join().unwrap(), a.join().unwrap(), storm)
    });
    let elapsed = started.elapsed();
    assert_eq!(reloads_done, SIGHUPS);

    fn report(name: &str, out: &Output) {
        assert!(out.status.success(), "{name} spawner\n{out}");
        let c = |k: &str| execloop::count(out, k);
        let slowest = Duration::from_nanos(c("max_ns"));
        eprintln!(
            "reload_load: {name} stream: {} attempts in {} ms (ran {}, EPERM {}, ran_failed {}, other {}), slowest {slowest:.1?} (attempt {})",
            c("attempts"),
            c("elapsed_ms"),
            c("ran"),
            c("eperm"),
            c("ran_failed"),
            c("other"),
            c("max_at")
        );
        assert_eq!(c("other"), 0, "{name}: an attempt failed otherwise\n{out}");
        assert_eq!(c("ran_failed"), 0, "{name}: a run did not exit 0\n{out}");
        assert!(slowest < SLOWEST_ALLOWED, "{name}: slowest single exec {slowest:?} >= {SLOWEST_ALLOWED:?}\n{out}");
        assert_eq!(c("slow"), 0, "{name}\n{out}");
        // Enough attempts that the streams overlapped the whole storm.
        assert!(c("attempts") >= u64::from(SIGHUPS), "{name}: only {} attempts\n{out}", c("attempts"));
    }
    report("denied", &denied_run);
    let d = |k: &str| execloop::count(&denied_run, k);
    assert_eq!(d("ran"), 0, "a protected exec ran during the reloads\n{denied_run}");
    assert_eq!(d("eperm"), d("attempts"), "{denied_run}");
    report("allowed", &allowed_run);
    let a = |k: &str| execloop::count(&allowed_run, k);
    assert_eq!(a("eperm"), 0, "an unprotected exec was denied during the reloads\n{allowed_run}");
    assert_eq!(a("ran"), a("attempts"), "{allowed_run}");
    eprintln!(
        "reload_load: {reloads_done} SIGHUPs delivered, each answered by READY=1, over {storm:.1?} (test {elapsed:.1?})"
    );

    // Still running and READY, with the last policy in force: one more exec denied, one allowed.
    assert!(env.daemon().try_wait().is_none(), "daemon exited during the storm:\n{}", env.daemon_stderr());
    env.bash_exec(&denied, &cwd).assert_denied_bash("after the storm: fs/t");
    env.bash_exec(&allowed, &cwd).assert_ran("after the storm: out/t");

    // The spawner's classification catches a wrong decision: a wrong expectation is reported as wrong.
    let (never, canary_ready) = (env.base().join("stop-never"), env.base().join("canary-ready"));
    let canary = stream(&env, &tools, &cwd, &denied, &never, &canary_ready, 5);
    assert_eq!(
        (execloop::count(&canary, "ran"), execloop::count(&canary, "eperm")),
        (0, 5),
        "expecting fs/t to run is wrong 5 times out of 5\n{canary}"
    );
    let canary = stream(&env, &tools, &cwd, &allowed, &never, &canary_ready, 5);
    assert_eq!(
        (execloop::count(&canary, "ran"), execloop::count(&canary, "eperm")),
        (5, 0),
        "expecting out/t to be denied is wrong 5 times out of 5\n{canary}"
    );
    let denied_total = d("eperm") + 1 + 5;

    // The books: stop the daemon (it drains the alert queue), then read its final counters.
    let stderr_before_stop = env.daemon_stderr();
    let reloaded = stderr_before_stop.matches("policy reloaded").count();
    let rejected = stderr_before_stop.matches("reload rejected").count();
    let status = env.daemon().stop(Duration::from_secs(30));
    let stderr = env.daemon_stderr();
    assert!(status.is_some_and(|s| s.success()), "clean exit on SIGTERM: {status:?}\n{}", tail(&stderr));
    assert_eq!((reloaded, rejected), (SIGHUPS as usize, 0), "every SIGHUP reloaded\n{}", tail(&stderr));
    let last = stderr
        .lines()
        .rfind(|l| l.contains("final_counters="))
        .unwrap_or_else(|| panic!("no final_counters line at exit\n{}", tail(&stderr)));
    eprintln!("reload_load: last STATUS during the run: {last_status}");
    eprintln!("reload_load: {last}");
    assert_eq!(status_number(last, "blocked "), denied_total, "every denied attempt was blocked by the daemon: {last}");
    assert_eq!(status_number(last, "allowed "), 0, "nothing on the protected tmpfs was ever allowed: {last}");
    assert_eq!(status_number(last, "audited "), 0, "{last}");
    let written = status_number(last, "alerts written ");
    let dropped = status_number(last, "dropped ");
    let (queue, throttle, write) =
        (status_number(last, "queue "), status_number(last, "throttle "), status_number(last, "write "));
    assert_eq!(dropped, queue + throttle + write, "{last}");
    assert_eq!(written + dropped, denied_total, "alerts written + dropped == denied attempts: {last}");
    assert_eq!(write, 0, "no alert lost to a write error across the log reopens: {last}");

    // The log (reopened on every reload) holds exactly the written exec alerts, each a Block of fs/t under one
    // of the two policy names, and both names occur: the reloads swapped the policy while the streams ran.
    let alerts = env.alerts();
    let exec_alerts: Vec<_> =
        alerts.iter().filter(|a| a.get("Operation").and_then(|o| o.as_str()) == Some("Process")).collect();
    assert_eq!(exec_alerts.len() as u64, written, "{last}");
    let mut names = std::collections::BTreeSet::new();
    for a in &exec_alerts {
        assert_eq!(get_str(a, "Resource"), denied.to_str().unwrap(), "{a}");
        assert_eq!(get_str(a, "Action"), "Block", "{a}");
        names.insert(get_str(a, "PolicyName").to_owned());
    }
    let want: std::collections::BTreeSet<String> = ["reload-a", "reload-b"].map(String::from).into();
    assert_eq!(names, want, "alerts under both policy names");
    assert!(!stderr.contains("panicked"), "no panic\n{}", tail(&stderr));
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Each file of `policy_dir` loads on its own on every reload (as at start: the same loader, tested in the
/// unit tests; the harness's safety check refuses to start a daemon on a configuration `check` fails): one
/// that does not is named with its `file:line:col` in the log and in the status, the previous version of a
/// file that stops loading stays in force, the others apply; `noexecd check` still fails on it, and a broken
/// main file still fails the whole reload.
#[test]
fn a_drop_in_that_does_not_load_is_left_out_alone() {
    let mut env = privileged!(Layout::Tmpfs);
    let tools = execloop::build(&env);
    let [a, b, c] = ["a", "b", "c"].map(|n| env.fs.join(n));
    for p in [&a, &b, &c] {
        fs::copy(&tools.tiny_true, env.host_view(p)).unwrap();
    }
    let block = |name: &str, path: &Path| {
        format!("[[policy]]\nname = \"{name}\"\n[[policy.process.match_paths]]\npath = {path:?}\n")
    };
    let pd = env.base().join("policy.d");
    fs::create_dir_all(&pd).unwrap();
    fs::write(pd.join("10-a.toml"), block("a", &a)).unwrap();
    fs::write(pd.join("20-b.toml"), block("b", &b)).unwrap();
    // The main file guards a directory nothing runs from, so that the test's tmpfs is marked whatever loads.
    let main = named_dir_policy("main", "Block", &env.fs.join("none"), true, "");
    let cfg = env.write_config(&DaemonOpts::enforce(), &main);
    let text = fs::read_to_string(&cfg).unwrap().replacen("[daemon]\n", "[daemon]\nexec_cache = false\n", 1);
    fs::write(&cfg, text).unwrap();
    env.start_daemon(&cfg);
    let cwd = env.out.clone();
    env.bash_exec(&a, &cwd).assert_denied_bash("start: a.toml loaded");
    env.bash_exec(&b, &cwd).assert_denied_bash("start: b.toml loaded");
    env.bash_exec(&c, &cwd).assert_ran("start: c is in no policy");

    // A new file that does not load, a.toml changed (now c instead of a), b.toml broken: the new file is left
    // out, a's new version applies, b's last one stays.
    fs::write(
        pd.join("00-broken.toml"),
        "[[policy]]\nname = \"x\"\n[[policy.process.match_paths]]\npath = \"relative\"\n",
    )
    .unwrap();
    fs::write(pd.join("10-a.toml"), block("a", &c)).unwrap();
    fs::write(pd.join("20-b.toml"), "[[policy]]\nname = \"b\"\n[[policy.process.match_paths]]\npath = [\n").unwrap();
    // `check` fails on them, naming the place.
    let check = |env: &Env| env.run_in_ns(&[bin().as_os_str(), "check".as_ref(), "--config".as_ref(), cfg.as_os_str()]);
    let o = check(&env);
    assert_ne!(o.code(), Some(0), "check must fail on a drop-in that does not load\n{o}");
    let broken_at = format!("{}:4:8", pd.join("00-broken.toml").display());
    assert!(o.stderr.contains(&broken_at), "{o}");

    let mut status = String::new();
    wait_notify(&env, "\u{0}never", Duration::from_millis(100), &mut status);
    env.daemon().signal(Signal::SIGHUP);
    assert!(wait_notify(&env, "READY=1", RELOAD_TIMEOUT, &mut status), "no READY=1 after SIGHUP");
    env.bash_exec(&a, &cwd).assert_ran("reload: a.toml's new version no longer names a");
    env.bash_exec(&c, &cwd).assert_denied_bash("reload: a.toml's new version names c");
    env.bash_exec(&b, &cwd).assert_denied_bash("reload: b.toml's previous version stays in force");
    let log = env.daemon_stderr();
    let b_at = format!("{}:4:", pd.join("20-b.toml").display());
    assert!(
        log.contains("policy file does not load; its previous version stays in force") && log.contains(&b_at),
        "{}",
        tail(&log)
    );
    assert!(
        log.contains("policy file does not load; left out, the other files apply") && log.contains(&broken_at),
        "{}",
        tail(&log)
    );
    assert!(log.contains("policy reloaded"), "the reload went through\n{}", tail(&log));
    // The status names both files (every STATUS tick carries it).
    let deadline = Instant::now() + Duration::from_secs(15);
    while !status.contains("POLICY FILES NOT LOADED") && Instant::now() < deadline {
        wait_notify(&env, "\u{0}never", Duration::from_millis(500), &mut status);
    }
    assert!(status.contains(&broken_at) && status.contains(&b_at), "STATUS: {status}");
    assert!(status.contains("(previous version in force)") && status.contains("(left out)"), "STATUS: {status}");

    // A broken main file still fails the reload as a whole: everything stays as it was.
    let good_main = fs::read_to_string(&cfg).unwrap();
    fs::write(&cfg, good_main.replacen("mode = \"enforce\"", "mode = \"sometimes\"", 1)).unwrap();
    env.daemon().signal(Signal::SIGHUP);
    assert!(wait_notify(&env, "READY=1", RELOAD_TIMEOUT, &mut status), "no READY=1 after SIGHUP");
    assert!(env.daemon_stderr().contains("reload rejected"), "{}", tail(&env.daemon_stderr()));
    env.bash_exec(&c, &cwd).assert_denied_bash("rejected reload: c still blocked");
    env.bash_exec(&a, &cwd).assert_ran("rejected reload: a still runs");
    env.bash_exec(&b, &cwd).assert_denied_bash("rejected reload: b still blocked");

    // Fixed: everything loads, `check` passes.
    fs::write(&cfg, good_main).unwrap();
    fs::remove_file(pd.join("00-broken.toml")).unwrap();
    fs::write(pd.join("20-b.toml"), block("b", &b)).unwrap();
    env.daemon().signal(Signal::SIGHUP);
    assert!(wait_notify(&env, "READY=1", RELOAD_TIMEOUT, &mut status), "no READY=1 after SIGHUP");
    let o = check(&env);
    assert_eq!(o.code(), Some(0), "{o}");
    env.bash_exec(&b, &cwd).assert_denied_bash("fixed: b");
    env.bash_exec(&a, &cwd).assert_ran("fixed: a");
    let stopped = env.daemon().stop(Duration::from_secs(30));
    assert!(stopped.is_some_and(|s| s.success()), "{}", tail(&env.daemon_stderr()));
}
