//! Privileged: input the daemon must survive under load. Thousands of short-lived processes that exit right
//! after their denied exec (before the daemon writes their alert), and files unlinked while their exec event
//! is being decided. Every decision must be the policy's, every alert must carry what was gathered while the
//! caller was alive, and the daemon must still be running. (Non-UTF-8 names, long paths and " (deleted)"
//! names: tests/it/hostile_names.rs.)

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::common::*;
use crate::execloop;

fn start_guard(env: &mut Env, protected: &Path, max_alerts_per_sec: u32) {
    let opts = DaemonOpts { max_alerts_per_sec, ..DaemonOpts::enforce() };
    let cfg = env.write_config(&opts, &dir_policy("Block", protected, true));
    env.start_daemon(&cfg);
}

#[test]
fn thousands_of_short_lived_processes_each_get_a_denial_and_a_complete_alert() {
    const CHILDREN: usize = 3000;
    let mut env = privileged!(Layout::Tmpfs);
    let tools = execloop::build(&env);
    let deny_dir = env.fs.join("deny");
    let target = deny_dir.join("payload");
    std::fs::create_dir_all(env.host_view(&deny_dir)).unwrap();
    std::fs::copy(&tools.tiny_true, env.host_view(&target)).unwrap();
    // Path-decided: the protected dir is below the mount point, so every event resolves a path.
    start_guard(&mut env, &deny_dir, 100_000);
    let cwd = env.out.clone();

    let out = execloop::run(&env, &tools, &cwd, &["flood", target.to_str().unwrap(), &CHILDREN.to_string()], {
        Duration::from_secs(300)
    });
    assert!(out.status.success(), "execloop flood\n{out}");
    assert_eq!(execloop::count(&out, "eperm"), CHILDREN as u64, "every child's exec was denied with EPERM\n{out}");
    assert_eq!(execloop::count(&out, "other"), 0, "{out}");
    let parent = execloop::count(&out, "pid") as i64;
    let children: BTreeSet<i64> =
        out.stdout.lines().filter_map(|l| l.strip_prefix("child ")).map(|p| p.parse().unwrap()).collect();
    assert_eq!(children.len(), CHILDREN, "distinct child pids");

    // Each child exited as soon as its exec failed, mostly before its alert was written: the alert still
    // names it, its parent, its executable and its working directory (read while the kernel held it).
    let alerts = env.expect_alerts(CHILDREN);
    let mut seen = BTreeSet::new();
    let source = std::fs::canonicalize(&tools.execloop).unwrap();
    for a in &alerts {
        let want = Expect {
            source: source.to_str().unwrap().to_owned(),
            pid: None,
            ppid: Some(parent),
            ..Expect::block(&target, &Exec { out: empty_output(), pid: 0, ppid: 0 }, &cwd)
        };
        assert_exec_alert(a, &want);
        let pid = get_int(a, "PID");
        assert!(children.contains(&pid), "PID {pid} is one of the children: {a}");
        assert!(seen.insert(pid), "one alert per child: {a}");
    }
    assert!(env.daemon().try_wait().is_none(), "daemon survived the flood:\n{}", env.daemon_stderr());
}

fn empty_output() -> Output {
    use std::os::unix::process::ExitStatusExt;
    Output { status: std::process::ExitStatus::from_raw(0), stdout: String::new(), stderr: String::new() }
}

#[test]
fn files_unlinked_while_their_exec_is_decided_get_the_policys_decision() {
    const ROUNDS: &str = "1500";
    let mut env = privileged!(Layout::Tmpfs);
    let tools = execloop::build(&env);
    let deny_dir = env.fs.join("deny");
    let allow_dir = env.fs.join("allow");
    for d in [&deny_dir, &allow_dir] {
        std::fs::create_dir_all(env.host_view(d)).unwrap();
    }
    start_guard(&mut env, &deny_dir, 100_000);
    let cwd = env.out.clone();
    let template = tools.tiny_true.to_str().unwrap().to_owned();
    let limit = Duration::from_secs(300);

    // Outside the protected dir: an exec either runs or finds no file; never EPERM.
    let allowed = execloop::run(&env, &tools, &cwd, &["race", allow_dir.to_str().unwrap(), &template, ROUNDS], limit);
    assert!(allowed.status.success(), "{allowed}");
    assert_eq!(
        execloop::count(&allowed, "eperm"),
        0,
        "an unlinked file outside the protected dir is not denied\n{allowed}"
    );
    assert_eq!(execloop::count(&allowed, "other"), 0, "{allowed}");
    assert!(execloop::count(&allowed, "ran") > 0, "some execs won the race\n{allowed}");

    // Inside: an exec is denied or finds no file; never runs.
    let denied = execloop::run(&env, &tools, &cwd, &["race", deny_dir.to_str().unwrap(), &template, ROUNDS], limit);
    assert!(denied.status.success(), "{denied}");
    assert_eq!(execloop::count(&denied, "ran"), 0, "an unlinked file in the protected dir never runs\n{denied}");
    assert_eq!(execloop::count(&denied, "other"), 0, "{denied}");
    let eperm = execloop::count(&denied, "eperm");
    assert!(eperm > 0, "some execs reached the daemon\n{denied}");
    eprintln!("race outcomes: allowed dir {}, protected dir {}", allowed.stdout.trim(), denied.stdout.trim());

    // One alert per denial, naming the file by its name before the unlink (no " (deleted)" suffix).
    let alerts = env.expect_alerts(eperm as usize);
    let prefix = format!("{}/r", deny_dir.display());
    for a in &alerts {
        let r = get_str(a, "Resource");
        let n = r.strip_prefix(&prefix).unwrap_or_else(|| panic!("Resource {r:?} is not {prefix}<n>: {a}"));
        assert!(n.parse::<u32>().is_ok(), "Resource {r:?} is {prefix}<n>: {a}");
        assert_eq!(get_str(a, "Action"), "Block", "{a}");
        assert_eq!(get_str(a, "PolicyName"), POLICY_NAME, "{a}");
    }
    let stderr = env.daemon_stderr();
    assert!(!stderr.contains("panicked"), "no panic:\n{stderr}");
    assert!(env.daemon().try_wait().is_none(), "daemon still running:\n{stderr}");
}
