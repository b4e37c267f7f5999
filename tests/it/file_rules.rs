//! The host's file rules (`[policy.file]`) enforced by the real daemon: an open a Block rule covers fails
//! with EPERM and writes one KubeArmor file alert, field by field; `read_only` lets reads through and refuses
//! writes; `owner_only`, `from_source`; an Audit rule on a recursive directory reaches a subdirectory made
//! after the daemon started; opens no rule covers, and a script run from a ruled directory, are untouched.
//! On both host layouts: the rules' directory on a tmpfs of its own (the process rules on another), and
//! inside an ext4 "root" whose `tmp` the process rules protect.

use std::path::{Path, PathBuf};

use crate::common::*;

const NOBODY: &str = "setpriv --reuid=65534 --regid=65534 --clear-groups --";

/// Runs `cmd` (a shell snippet) in the namespace after printing the shell's pid: (exit code, pid, stderr).
fn attempt(env: &Env, cmd: &str) -> (Option<i32>, i64, String) {
    let o = env.run_in_ns(&["sh", "-c", &format!("echo $$; exec {cmd}")]);
    let pid = o.stdout.lines().next().and_then(|l| l.trim().parse().ok()).unwrap_or(-1);
    (o.code(), pid, o.stderr.clone())
}

fn policy(dir: &Path, tmp: Option<&Path>) -> String {
    let d = dir.display();
    let cat = real_exe("cat");
    let mut text = format!(
        "[[policy]]\nname = \"hsp-file-block\"\nseverity = 7\ntags = [\"FILE\"]\nmessage = \"file access refused\"\n\
         [[policy.file.match_paths]]\npath = \"{d}/secret\"\n\
         [[policy.file.match_paths]]\npath = \"{d}/shadow\"\nread_only = true\n\
         [[policy.file.match_paths]]\npath = \"{d}/owned\"\nowner_only = true\n\
         [[policy.file.match_paths]]\npath = \"{d}/by-cat\"\nfrom_source = [\"{cat}\"]\n\n\
         [[policy]]\nname = \"hsp-file-audit\"\naction = \"Audit\"\n\
         [[policy.file.match_directories]]\ndir = \"{d}/ssh/\"\nrecursive = true\n"
    );
    if let Some(tmp) = tmp {
        text += &format!("\n{}", dir_policy("Block", tmp, true));
    }
    text
}

fn file_alerts(env: &Env, resource: &Path) -> Vec<serde_json::Value> {
    env.alerts().into_iter().filter(|a| get_str(a, "Resource") == resource.to_str().unwrap()).collect()
}

fn enforce_on(layout: Layout, env: &mut Env) {
    let (dir, tmp): (PathBuf, Option<PathBuf>) = match layout {
        // The process rules on the other tmpfs: the rules' own filesystem carries no mark but theirs.
        Layout::Tmpfs => (env.fs.join("etc"), Some(env.out.join("tmp"))),
        _ => (env.img.join("etc"), Some(env.img.join("tmp"))),
    };
    let d = sh_quote(&dir);
    env.sh(&format!(
        "mkdir -p {d}/ssh/old {d}/other && for f in secret shadow owned by-cat plain; do echo data > {d}/$f; done && \
         chmod 0644 {d}/* 2>/dev/null; chmod 0666 {d}/shadow && echo old > {d}/ssh/old/key && \
         printf 'echo ran\\n' > {d}/other/run.sh"
    ));
    if let Some(t) = &tmp {
        env.sh(&format!("mkdir -p {}", sh_quote(t)));
    }
    let cfg = env.write_config(&DaemonOpts::enforce(), &policy(&dir, tmp.as_deref()));
    env.start_daemon(&cfg);
    let status = env.daemon().watch().fresh_status();
    assert!(!status.line.contains("FILE RULES NOT ENFORCED"), "every rule here is enforced: {status:?}");

    // Block: EPERM, one alert in KubeArmor's form for a file event.
    let secret = dir.join("secret");
    let (code, pid, stderr) = attempt(env, &format!("cat {}", sh_quote(&secret)));
    assert_eq!(code, Some(1), "cat of a blocked file fails: {stderr}");
    assert!(stderr.contains("Operation not permitted"), "EPERM: {stderr}");
    env.settle();
    let alerts = file_alerts(env, &secret);
    assert_eq!(alerts.len(), 1, "one alert: {alerts:?}");
    let a = &alerts[0];
    assert_eq!(get_str(a, "Operation"), "File", "{a}");
    assert_eq!(get_str(a, "Data"), "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY", "{a}");
    assert_eq!(get_str(a, "ProcessName"), real_exe("cat"), "{a}");
    assert_eq!(get_str(a, "Source"), real_exe("cat"), "{a}");
    assert_eq!(get_str(a, "Action"), "Block", "{a}");
    assert_eq!(get_str(a, "Result"), EPERM_TEXT, "{a}");
    assert_eq!(get_str(a, "PolicyName"), "hsp-file-block", "{a}");
    assert_eq!(get_str(a, "Severity"), "7", "{a}");
    assert_eq!(get_str(a, "Tags"), "FILE", "{a}");
    assert_eq!(get_str(a, "Message"), "file access refused", "{a}");
    assert_eq!(get_str(a, "Type"), "MatchedHostPolicy", "{a}");
    assert_eq!(get_str(a, "Enforcer"), "fanotify", "{a}");
    assert_eq!(get_int(a, "HostPID"), pid, "{a}");
    assert_eq!(get_int(a, "UID"), 0, "{a}");

    // read_only: reading goes through, writing is refused, with the flags as KubeArmor writes them.
    let shadow = dir.join("shadow");
    let (code, _, stderr) = attempt(env, &format!("{NOBODY} cat {}", sh_quote(&shadow)));
    assert_eq!(code, Some(0), "a read of a read_only file: {stderr}");
    let (code, _, stderr) = attempt(env, &format!("{NOBODY} sh -c 'echo x >> {}'", sh_quote(&shadow)));
    assert_ne!(code, Some(0), "a write of a read_only file is refused: {stderr}");
    assert!(stderr.contains("Operation not permitted") || stderr.contains("Permission denied"), "{stderr}");
    env.settle();
    let alerts = file_alerts(env, &shadow);
    assert_eq!(alerts.len(), 1, "the write alone is alerted: {alerts:?}");
    assert_eq!(
        get_str(&alerts[0], "Data"),
        "syscall=SYS_OPENAT fd=-100 flags=O_WRONLY|O_CREAT|O_APPEND",
        "{}",
        alerts[0]
    );
    assert_eq!(get_int(&alerts[0], "UID"), 65534);
    assert_eq!(std::fs::read_to_string(env.host_view(&shadow)).unwrap(), "data\n", "nothing was written");

    // owner_only: the owner (root) opens it; anyone else is refused.
    let owned = dir.join("owned");
    assert_eq!(attempt(env, &format!("cat {}", sh_quote(&owned))).0, Some(0), "the owner");
    assert_eq!(attempt(env, &format!("{NOBODY} cat {}", sh_quote(&owned))).0, Some(1), "not the owner");

    // from_source: cat is refused, head is not.
    let by_cat = dir.join("by-cat");
    assert_eq!(attempt(env, &format!("cat {}", sh_quote(&by_cat))).0, Some(1), "cat is the source named");
    assert_eq!(attempt(env, &format!("head {}", sh_quote(&by_cat))).0, Some(0), "head is not");

    // Audit on a recursive directory: a subdirectory made after the start is reached; the open goes through.
    env.sh(&format!("mkdir -p {d}/ssh/new/deeper && echo k > {d}/ssh/new/deeper/key"));
    let key = dir.join("ssh/new/deeper/key");
    let tracked = poll_until(STATUS_TIMEOUT, || {
        let (code, _, _) = attempt(env, &format!("head -c1 {}", sh_quote(&key)));
        assert_eq!(code, Some(0), "an audited open goes through");
        env.settle();
        file_alerts(env, &key).iter().any(|a| get_str(a, "ProcessName") == real_exe("head")).then_some(())
    });
    assert!(tracked.is_some(), "the new subdirectory is marked (by the directory tracker) within {STATUS_TIMEOUT:?}");
    let a = file_alerts(env, &key).into_iter().find(|a| get_str(a, "ProcessName") == real_exe("head")).unwrap();
    assert_eq!((get_str(&a, "Action"), get_str(&a, "Result")), ("Audit", "Passed"), "{a}");
    assert_eq!(get_str(&a, "PolicyName"), "hsp-file-audit", "{a}");

    // Untouched: a file no rule names, in the same directory, and a script run from a ruled directory.
    let plain = dir.join("plain");
    assert_eq!(attempt(env, &format!("{NOBODY} cat {}", sh_quote(&plain))).0, Some(0));
    let o = env.run_in_ns(&["sh", dir.join("other/run.sh").to_str().unwrap()]);
    assert!(o.status.success() && o.stdout.contains("ran"), "{o}");
    env.settle();
    assert!(file_alerts(env, &plain).is_empty(), "no alert for a file no rule names");
    if let Some(t) = &tmp {
        // The process rules beside the file rules still block.
        let payload = t.join("payload");
        env.put_elf(&payload);
        env.bash_exec(&payload, &env.out.clone()).assert_denied_bash("a process rule on the same filesystem");
    }
}

#[test]
fn file_rules_on_a_tmpfs_of_their_own() {
    let mut env = privileged!(Layout::Tmpfs);
    enforce_on(Layout::Tmpfs, &mut env);
}

#[test]
fn file_rules_inside_an_ext4_root_whose_tmp_is_a_directory() {
    let mut env = privileged!(Layout::WithExt4Image);
    enforce_on(Layout::WithExt4Image, &mut env);
}

/// A file rule added by a reload is enforced at once, its directory marked by the reload; one removed by a
/// reload no longer refuses.
#[test]
fn a_reload_adds_and_removes_file_rules() {
    let mut env = privileged!(Layout::Tmpfs);
    let dir = env.fs.join("etc");
    env.sh(&format!("mkdir -p {d} && echo data > {d}/secret", d = sh_quote(&dir)));
    let secret = dir.join("secret");
    let process_only = dir_policy("Block", &env.out.join("tmp"), true);
    let cfg = env.write_config(&DaemonOpts::enforce(), &process_only);
    env.start_daemon(&cfg);
    let cat = format!("cat {}", sh_quote(&secret));
    assert_eq!(attempt(&env, &cat).0, Some(0), "no file rule yet");

    let reload = |env: &mut Env| {
        let before = env.daemon().watch().fresh_status().get("reloads");
        env.daemon().signal(nix::sys::signal::Signal::SIGHUP);
        env.daemon().watch().wait_status("the reload after SIGHUP", |s| s.get("reloads") > before);
    };
    let with_rule = format!(
        "{process_only}\n[[policy]]\nname = \"hsp-file-block\"\n[[policy.file.match_paths]]\npath = \"{}\"\n",
        secret.display()
    );
    env.write_config(&DaemonOpts::enforce(), &with_rule);
    reload(&mut env);
    // The reload's walk of the new directory follows the reload's status: wait on the refusal itself.
    let refused = poll_until(STATUS_TIMEOUT, || (attempt(&env, &cat).0 == Some(1)).then_some(()));
    assert!(refused.is_some(), "the rule a reload added refuses within {STATUS_TIMEOUT:?}");

    env.write_config(&DaemonOpts::enforce(), &process_only);
    reload(&mut env);
    assert_eq!(attempt(&env, &cat).0, Some(0), "the rule a reload removed no longer refuses");
}
