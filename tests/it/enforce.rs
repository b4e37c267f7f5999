//! Privileged: what is blocked, what is audited, what runs, and the alert each writes.
//! Every test runs in its own private mount namespace over fresh tmpfs (see tests/it/common).

use std::os::unix::fs::symlink;

use crate::common::*;

/// A policy protecting the whole test tmpfs: one filesystem mark that decides with no path lookup.
fn protect_whole_tmpfs(env: &mut Env, opts: &DaemonOpts, action: &str) {
    let cfg = env.write_config(opts, &dir_policy(action, &env.fs, true));
    let marks = env.check(&cfg);
    assert_eq!(marks.len(), 1, "one filesystem to mark: {marks:?}");
    let m = &marks[0];
    assert_eq!(m.mount_point, env.fs.to_str().unwrap(), "mark line mount point: {m:?}");
    assert_eq!(m.fstype, "tmpfs", "mark line fstype: {m:?}");
    assert_eq!(m.decides, "filesystem", "a tmpfs holding only protected paths is decided by filesystem: {m:?}");
    assert!(
        m.protects.iter().any(|p| trim_slash(p) == env.fs.to_str().unwrap()),
        "mark line names the protected dir: {m:?}"
    );
    env.start_daemon(&cfg);
}

#[test]
fn elf_in_protected_dir_is_denied_with_eperm_and_one_block_alert() {
    let mut env = privileged!(Layout::Tmpfs);
    protect_whole_tmpfs(&mut env, &DaemonOpts::enforce(), "Block");
    let payload = env.fs.join("payload");
    env.put_elf(&payload);
    let cwd = env.out.clone();

    let e = env.bash_exec(&payload, &cwd);
    e.assert_denied_bash("ELF in a protected dir");

    let alerts = env.expect_alerts(1);
    assert_exec_alert(&alerts[0], &Expect::block(&payload, &e, &cwd));
    // The daemon is still there after answering.
    assert!(env.daemon().try_wait().is_none(), "daemon died:\n{}", env.daemon_stderr());
}

#[test]
fn shebang_script_in_protected_dir_is_denied_with_one_block_alert() {
    let mut env = privileged!(Layout::Tmpfs);
    protect_whole_tmpfs(&mut env, &DaemonOpts::enforce(), "Block");
    let script = env.fs.join("sub/run.sh");
    env.put_script(&script);
    let cwd = env.fs.join("sub");

    let e = env.bash_exec(&script, &cwd);
    e.assert_denied_bash("#! script in a protected dir");
    assert!(!e.out.stdout.contains("ran"), "the script must not have run:\n{}", e.out);

    let alerts = env.expect_alerts(1);
    assert_exec_alert(&alerts[0], &Expect::block(&script, &e, &cwd));
}

#[test]
fn audit_mode_turns_block_into_audit_runs_and_alerts() {
    let mut env = privileged!(Layout::Tmpfs);
    protect_whole_tmpfs(&mut env, &DaemonOpts::audit(), "Block");
    let payload = env.fs.join("payload");
    let script = env.fs.join("run.sh");
    env.put_elf(&payload);
    env.put_script(&script);
    let cwd = env.out.clone();

    let e1 = env.bash_exec(&payload, &cwd);
    e1.assert_ran("ELF in audit mode");
    let e2 = env.bash_exec(&script, &cwd);
    e2.assert_ran("script in audit mode");
    assert!(e2.out.stdout.contains("ran"), "the script ran:\n{}", e2.out);

    let alerts = env.expect_alerts(2);
    assert_exec_alert(&alerts[0], &Expect::audit(&payload, &e1, &cwd));
    assert_exec_alert(&alerts[1], &Expect::audit(&script, &e2, &cwd));
}

#[test]
fn audit_action_in_enforce_mode_runs_and_alerts() {
    let mut env = privileged!(Layout::Tmpfs);
    // Lower case: actions are accepted in any case.
    protect_whole_tmpfs(&mut env, &DaemonOpts::enforce(), "audit");
    let payload = env.fs.join("payload");
    env.put_elf(&payload);
    let cwd = env.out.clone();

    let e = env.bash_exec(&payload, &cwd);
    e.assert_ran("ELF under an Audit policy");
    let alerts = env.expect_alerts(1);
    assert_exec_alert(&alerts[0], &Expect::audit(&payload, &e, &cwd));
}

#[test]
fn exec_outside_protected_paths_is_untouched() {
    let mut env = privileged!(Layout::Tmpfs);
    protect_whole_tmpfs(&mut env, &DaemonOpts::enforce(), "Block");
    let tool = env.out.join("tool");
    let script = env.out.join("tool.sh");
    env.put_elf(&tool);
    env.put_script(&script);
    let cwd = env.fs.clone(); // running from a protected cwd changes nothing

    env.bash_exec(&tool, &cwd).assert_ran("ELF on an unprotected tmpfs");
    let s = env.bash_exec(&script, &cwd);
    s.assert_ran("script on an unprotected tmpfs");
    assert!(s.out.stdout.contains("ran"), "{}", s.out);
    let t = env.bash_exec(std::path::Path::new(&real_exe("true")), &cwd);
    t.assert_ran("/usr/bin/true");
    let o = env.run_in_ns(&["bash", "-c", "ls / >/dev/null && uname -r"]);
    assert!(o.status.success(), "ordinary commands work: {o}");

    // Sentinel: alerts are written in order, so a blocked exec after them proves they wrote none.
    let payload = env.fs.join("payload");
    env.put_elf(&payload);
    let e = env.bash_exec(&payload, &cwd);
    e.assert_denied_bash("sentinel");
    let alerts = env.expect_alerts(1);
    assert_exec_alert(&alerts[0], &Expect::block(&payload, &e, &cwd));
}

#[test]
fn from_source_rule_blocks_only_the_named_caller() {
    let mut env = privileged!(Layout::Tmpfs);
    let dash = real_exe("dash");
    let bash = real_exe("bash");
    assert_ne!(dash, bash);
    let policy = named_dir_policy(POLICY_NAME, "Block", &env.fs, true, &format!("from_source = [\"{dash}\"]"));
    let cfg = env.write_config(&DaemonOpts::enforce(), &policy);
    env.check(&cfg);
    env.start_daemon(&cfg);
    let payload = env.fs.join("payload");
    env.put_elf(&payload);
    let cwd = env.out.clone();

    let by_bash = env.bash_exec(&payload, &cwd);
    by_bash.assert_ran("exec by bash (not the from_source caller)");
    let by_dash = env.dash_exec(&payload, &cwd);
    by_dash.assert_denied("exec by dash (the from_source caller)");

    let alerts = env.expect_alerts(1);
    let mut want = Expect::block(&payload, &by_dash, &cwd);
    want.source = dash;
    assert_exec_alert(&alerts[0], &want);
}

#[test]
fn nested_directories_recursive_and_not() {
    let mut env = privileged!(Layout::Tmpfs);
    let rec = env.fs.join("rec");
    let flat = env.fs.join("flat");
    let policies = named_dir_policy("it-recursive", "Block", &rec, true, "")
        + &named_dir_policy("it-flat", "Block", &flat, false, "");
    let cfg = env.write_config(&DaemonOpts::enforce(), &policies);
    let marks = env.check(&cfg);
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(marks[0].decides, "path", "protected dirs below the mount point: the path decides: {marks:?}");
    env.start_daemon(&cfg);

    let deep = rec.join("a/b/c/x");
    let direct = flat.join("x");
    let below_flat = flat.join("sub/x");
    let unprotected = env.fs.join("x");
    let lookalike = env.fs.join("recx/x"); // "rec" is a prefix of "recx" but not a parent
    for p in [&deep, &direct, &below_flat, &unprotected, &lookalike] {
        env.put_elf(p);
    }
    let cwd = env.out.clone();

    env.bash_exec(&below_flat, &cwd).assert_ran("recursive=false does not cover sub-directories");
    env.bash_exec(&unprotected, &cwd).assert_ran("the unprotected root of the filesystem");
    env.bash_exec(&lookalike, &cwd).assert_ran("a sibling whose name starts with the protected name");
    let e1 = env.bash_exec(&deep, &cwd);
    e1.assert_denied_bash("recursive=true covers a/b/c/x");
    let e2 = env.bash_exec(&direct, &cwd);
    e2.assert_denied_bash("recursive=false covers direct children");

    let alerts = env.expect_alerts(2);
    let mut w1 = Expect::block(&deep, &e1, &cwd);
    w1.policy = "it-recursive".into();
    assert_exec_alert(&alerts[0], &w1);
    let mut w2 = Expect::block(&direct, &e2, &cwd);
    w2.policy = "it-flat".into();
    assert_exec_alert(&alerts[1], &w2);
}

#[test]
fn symlink_from_outside_to_protected_file_is_blocked_with_the_real_path() {
    let mut env = privileged!(Layout::Tmpfs);
    protect_whole_tmpfs(&mut env, &DaemonOpts::enforce(), "Block");
    let real = env.fs.join("dir/real");
    env.put_elf(&real);
    let abs_link = env.out.join("abs-link");
    let rel_link = env.out.join("rel-link");
    symlink(&real, env.host_view(&abs_link)).unwrap();
    let rel_target = std::path::Path::new("..").join(env.fs.file_name().unwrap()).join("dir/real");
    symlink(&rel_target, env.host_view(&rel_link)).unwrap();
    let cwd = env.out.clone();

    let e1 = env.bash_exec(&abs_link, &cwd);
    e1.assert_denied_bash("absolute symlink from an unprotected fs");
    let e2 = env.bash_exec(&rel_link, &cwd);
    e2.assert_denied_bash("relative symlink from an unprotected fs");

    let alerts = env.expect_alerts(2);
    assert_exec_alert(&alerts[0], &Expect::block(&real, &e1, &cwd));
    assert_exec_alert(&alerts[1], &Expect::block(&real, &e2, &cwd));
}

#[test]
fn owner_only_lets_only_the_files_owner_run_it() {
    let mut env = privileged!(Layout::Tmpfs);
    let cfg = env.write_config(
        &DaemonOpts::enforce(),
        &named_dir_policy(POLICY_NAME, "Block", &env.fs, true, "owner_only = true"),
    );
    env.start_daemon(&cfg);
    let owned = env.fs.join("owned-by-1000");
    env.put_elf(&owned);
    std::os::unix::fs::chown(env.host_view(&owned), Some(1000), Some(1000)).unwrap();
    let cwd = env.out.clone();

    // uid 1000 owns it: runs.
    let as_owner =
        env.shell_exec("bash", &["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "--"], &owned, &cwd);
    as_owner.assert_ran("the owner runs an owner_only file");
    // root does not own it: blocked.
    let as_root = env.bash_exec(&owned, &cwd);
    as_root.assert_denied_bash("someone else runs an owner_only file");

    let alerts = env.expect_alerts(1);
    assert_exec_alert(&alerts[0], &Expect::block(&owned, &as_root, &cwd));
}

#[test]
fn alert_throttling_drops_alerts_but_never_enforcement() {
    let mut env = privileged!(Layout::Tmpfs);
    let opts = DaemonOpts { max_alerts_per_sec: 3, ..DaemonOpts::enforce() };
    let cfg = env.write_config(&opts, &dir_policy("Block", &env.fs, true));
    env.start_daemon(&cfg);
    let payload = env.fs.join("payload");
    env.put_elf(&payload);

    // 40 denied execs in a burst from one shell (a fork each).
    let script = format!("for i in $(seq 40); do {} 2>&1; echo \"rc=$?\"; done", sh_quote(&payload));
    let o = env.run_in_ns(&["bash", "-c", &script]);
    assert!(o.status.success(), "{o}");
    let denied = o.stdout.lines().filter(|l| l.contains(EPERM_TEXT)).count();
    let rc126 = o.stdout.lines().filter(|l| *l == "rc=126").count();
    assert_eq!((denied, rc126), (40, 40), "every exec is denied, alerts or not:\n{o}");

    // Wait for the threshold alert, then look at what was written.
    let is_threshold = |a: &serde_json::Value| {
        a.get("Type").and_then(|t| t.as_str()) == Some("SystemEvent")
            && a.get("Operation").and_then(|t| t.as_str()) == Some("AlertThreshold")
    };
    poll_until(ALERT_TIMEOUT, || env.alerts().iter().any(is_threshold).then_some(()));
    env.settle();
    let alerts = env.alerts();
    let exec_alerts = alerts.iter().filter(|a| get_str(a, "Type") == "MatchedHostPolicy").count();
    let thresholds: Vec<_> = alerts.iter().filter(|a| is_threshold(a)).collect();
    assert!(!thresholds.is_empty(), "one SystemEvent/AlertThreshold alert per interval when throttling:\n{alerts:#?}");
    assert!(exec_alerts >= 3, "alerts up to the limit are written: {exec_alerts}");
    assert!(exec_alerts < 40, "above max_alerts_per_sec alerts are dropped: {exec_alerts} written");
    for t in &thresholds {
        assert!(get_int(t, "Timestamp") > 0, "{t}");
        assert_eq!(get_str(t, "HostName"), HOST_NAME, "{t}");
        assert_eq!(get_str(t, "ClusterName"), CLUSTER_NAME, "{t}");
    }
    assert!(env.daemon().try_wait().is_none(), "daemon still running:\n{}", env.daemon_stderr());
}

#[test]
fn script_outside_whose_interpreter_is_protected_is_blocked() {
    let mut env = privileged!(Layout::Tmpfs);
    protect_whole_tmpfs(&mut env, &DaemonOpts::enforce(), "Block");
    let interp = env.fs.join("interp");
    let hv = env.host_view(&interp);
    std::fs::copy(std::fs::canonicalize(which("dash").unwrap()).unwrap(), &hv).unwrap();
    std::fs::set_permissions(&hv, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = env.out.join("uses-protected-interp.sh");
    let shv = env.host_view(&script);
    std::fs::write(&shv, format!("#!{}\necho ran\n", interp.display())).unwrap();
    std::fs::set_permissions(&shv, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cwd = env.out.clone();

    let e = env.bash_exec(&script, &cwd);
    e.assert_denied_bash("a script whose #! interpreter lives in a protected dir");
    assert!(!e.out.stdout.contains("ran"), "{}", e.out);
    let alerts = env.expect_alerts(1);
    assert_exec_alert(&alerts[0], &Expect::block(&interp, &e, &cwd));
}

#[test]
fn allow_rules_with_default_posture_block_whitelist_the_filesystem() {
    let mut env = privileged!(Layout::Tmpfs);
    let ok = env.fs.join("ok");
    let policies = named_dir_policy("it-allow", "Allow", &ok, true, "")
        + &named_dir_policy("it-block-evil", "Block", &ok.join("evil"), true, "");
    let opts = DaemonOpts { default_posture: "block", ..DaemonOpts::enforce() };
    let cfg = env.write_config(&opts, &policies);
    env.start_daemon(&cfg);
    let allowed = ok.join("tool");
    let evil = ok.join("evil/tool");
    let unlisted = env.fs.join("other/tool");
    for p in [&allowed, &evil, &unlisted] {
        env.put_elf(p);
    }
    let cwd = env.out.clone();

    env.bash_exec(&allowed, &cwd).assert_ran("matched by the Allow rule");
    let e1 = env.bash_exec(&evil, &cwd);
    e1.assert_denied_bash("Block wins over Allow");
    let e2 = env.bash_exec(&unlisted, &cwd);
    e2.assert_denied_bash("no Allow rule matches: default posture block");

    let alerts = env.expect_alerts(2);
    let mut w1 = Expect::block(&evil, &e1, &cwd);
    w1.policy = "it-block-evil".into();
    assert_exec_alert(&alerts[0], &w1);
    assert_eq!(get_str(&alerts[1], "Action"), "Block", "{}", alerts[1]);
    assert_eq!(get_str(&alerts[1], "Resource"), unlisted.to_str().unwrap(), "{}", alerts[1]);
    assert_eq!(get_int(&alerts[1], "PID"), e2.pid, "{}", alerts[1]);
}

/// File rules this build does not enforce (an Allow rule, whose default file posture is not enforced) load
/// beside process rules, and the daemon says so: in its log at start and on its status line. The process
/// rules beside them still block.
#[test]
fn file_rules_not_enforced_are_said_so_by_the_daemon() {
    let mut env = privileged!(Layout::Tmpfs);
    let file_policy = "\n[[policy]]\nname = \"it-file\"\naction = \"Allow\"\n[[policy.file.match_paths]]\npath = \"/etc/shadow\"\nread_only = true\n";
    let cfg = env.write_config(&DaemonOpts::enforce(), &(dir_policy("Block", &env.fs, true) + file_policy));
    env.start_daemon(&cfg);
    let status = env.daemon().watch().fresh_status();
    assert!(status.line.contains("; 1 FILE RULES NOT ENFORCED by this build"), "{status:?}");
    let log = env.daemon_stderr();
    assert!(log.contains("1 file rule(s) loaded but not enforced by this build"), "{log}");
    let payload = env.fs.join("payload");
    env.put_elf(&payload);
    let e = env.bash_exec(&payload, &env.out.clone());
    e.assert_denied_bash("the process rule beside the file rule");
}
