//! Privileged: file names that are not UTF-8, paths of 4000 bytes, and paths longer than PATH_MAX.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::common::*;
use serde_json::Value;

fn join_bytes(dir: &Path, rest: &[u8]) -> PathBuf {
    let mut b = dir.as_os_str().as_bytes().to_vec();
    b.push(b'/');
    b.extend_from_slice(rest);
    path_from_bytes(b)
}

/// Block alert for a file whose name the JSON cannot carry as is: Resource must be a string that starts with
/// `prefix`; every other field is checked exactly.
fn assert_block_alert_with_prefix(a: &Value, prefix: &str, exec: &Exec, cwd: &Path) {
    let got = get_str(a, "Resource").to_owned();
    assert!(got.starts_with(prefix) && got.len() > prefix.len(), "Resource {got:?} not under {prefix:?}: {a}");
    let mut want = Expect::block(Path::new(prefix), exec, cwd);
    want.resource = got;
    assert_exec_alert(a, &want);
}

fn start(env: &mut Env, protected: &Path) {
    let cfg = env.write_config(&DaemonOpts::enforce(), &dir_policy("Block", protected, true));
    env.start_daemon(&cfg);
}

/// Exec path only: bash opening an ELF in scope for a redirect (`exec 3<`) is refused by the open guard (bash
/// is no ELF reader), before the exec these tests are about. tests/it/routes.rs covers the guard on unlinked files.
fn start_exec_only(env: &mut Env, protected: &Path) {
    let policy = format!("[open_guard]\nenabled = false\n\n{}", dir_policy("Block", protected, true));
    let cfg = env.write_config(&DaemonOpts::enforce(), &policy);
    env.start_daemon(&cfg);
}

fn prepare_ext4(env: &Env) -> PathBuf {
    env.sh(&format!("mkdir -p {}/tmp {}/usr", sh_quote(&env.img), sh_quote(&env.img)));
    env.img.join("tmp")
}

#[test]
fn non_utf8_file_name_on_tmpfs_is_blocked_with_an_alert() {
    let mut env = privileged!(Layout::Tmpfs);
    let fs = env.fs.clone();
    start(&mut env, &fs);
    let target = join_bytes(&env.fs, b"dir\xff\xfe/x\x80\xc3(name");
    env.put_elf(&target);
    let cwd = env.out.clone();

    let e = env.bash_exec(&target, &cwd);
    e.assert_denied_bash("non-UTF-8 name");
    let alerts = env.expect_alerts(1);
    assert_block_alert_with_prefix(&alerts[0], &format!("{}/dir", env.fs.display()), &e, &cwd);
    assert!(env.daemon().try_wait().is_none(), "daemon survived a non-UTF-8 name:\n{}", env.daemon_stderr());
}

#[test]
fn non_utf8_names_on_a_path_decided_ext4_are_decided_by_their_bytes() {
    let mut env = privileged!(Layout::WithExt4Image);
    let tmp = prepare_ext4(&env);
    start(&mut env, &tmp);
    let blocked = join_bytes(&tmp, b"\xff\xfe/x\x80");
    let outside = join_bytes(&env.img, b"usr/\xff\xfe/x\x80");
    env.put_elf(&blocked);
    env.put_elf(&outside);
    let cwd = env.out.clone();

    env.bash_exec(&outside, &cwd).assert_ran("non-UTF-8 name outside the protected dir");
    let e = env.bash_exec(&blocked, &cwd);
    e.assert_denied_bash("non-UTF-8 name inside the protected dir");
    let alerts = env.expect_alerts(1);
    assert_block_alert_with_prefix(&alerts[0], &format!("{}/", tmp.display()), &e, &cwd);
}

/// `dir/<components>/payload`, exactly `total` bytes long, components at most 200 bytes.
fn long_path(dir: &Path, total: usize) -> PathBuf {
    let mut p = dir.to_str().unwrap().to_owned();
    let tail = "/payload";
    let mut i = 0;
    while total - p.len() - tail.len() > 201 {
        p.push('/');
        p.push_str(&format!("{i:03}").repeat(67)[..200]);
        i += 1;
    }
    let rest = total - p.len() - tail.len();
    assert!(rest >= 2, "cannot pad {p:?} to {total}");
    p.push('/');
    p.push_str(&"z".repeat(rest - 1));
    p.push_str(tail);
    assert_eq!(p.len(), total);
    PathBuf::from(p)
}

#[test]
fn path_of_4000_bytes_on_tmpfs_is_blocked_with_an_alert() {
    let mut env = privileged!(Layout::Tmpfs);
    let fs = env.fs.clone();
    start(&mut env, &fs);
    let target = long_path(&env.fs, 4000);
    env.put_elf(&target);
    let cwd = env.out.clone();

    let e = env.bash_exec(&target, &cwd);
    e.assert_denied_bash("4000-byte path");
    let alerts = env.expect_alerts(1);
    assert_exec_alert(&alerts[0], &Expect::block(&target, &e, &cwd));
}

#[test]
fn path_of_4000_bytes_on_a_path_decided_ext4_is_blocked_inside_and_runs_outside() {
    let mut env = privileged!(Layout::WithExt4Image);
    let tmp = prepare_ext4(&env);
    start(&mut env, &tmp);
    let blocked = long_path(&tmp, 4000);
    let outside = long_path(&env.img.join("usr"), 4000);
    env.put_elf(&blocked);
    env.put_elf(&outside);
    let cwd = env.out.clone();

    env.bash_exec(&outside, &cwd).assert_ran("4000-byte path outside the protected dir");
    let e = env.bash_exec(&blocked, &cwd);
    e.assert_denied_bash("4000-byte path inside the protected dir");
    let alerts = env.expect_alerts(1);
    assert_exec_alert(&alerts[0], &Expect::block(&blocked, &e, &cwd));
}

/// Makes `dir/<24 components of 200 bytes>/payload` (about 4800 bytes, beyond PATH_MAX) with relative mkdir/cd,
/// then execs `./payload` from there with a relative path (bash would make the path absolute, and fail with
/// ENAMETOOLONG before any exec: `env` calls execve("./payload") as given).
fn exec_beyond_path_max(env: &Env, dir: &Path) -> Exec {
    let comp = "p".repeat(200);
    // bash's `cd -P` chdirs to the relative component (dash's cd builds an absolute path and fails).
    let walk = format!("cd {} && for i in $(seq 24); do mkdir -p {comp} && cd -P {comp}; done", sh_quote(dir));
    let setup = env.run_in_ns(&["bash", "-ec", &format!("{walk} && cp /bin/true payload && chmod 755 payload && pwd")]);
    assert!(setup.status.success(), "deep path setup failed\n{setup}");
    assert!(setup.stdout.trim().len() > 4096, "the path is beyond PATH_MAX\n{setup}");
    let script = format!("{walk} || exit 99\necho \"$$ $PPID\"\nexec env ./payload");
    Exec::from_output(env.run_in_ns(&["bash", "-c", &script]))
}

/// The alert of an exec whose path the daemon cannot resolve: the fields that do not depend on the path.
/// `policy`: the PolicyName expected, when the decision does not need the path (filesystem-decided).
fn assert_unresolvable_block_alert(a: &Value, e: &Exec, policy: Option<&str>) {
    assert_eq!(get_str(a, "Action"), "Block", "{a}");
    assert_eq!(get_str(a, "Result"), EPERM_TEXT, "{a}");
    let name = get_str(a, "PolicyName");
    if let Some(p) = policy {
        assert_eq!(name, p, "{a}");
    }
    assert_eq!(get_str(a, "Type"), "MatchedHostPolicy", "{a}");
    assert_eq!(get_str(a, "Operation"), "Process", "{a}");
    assert_eq!(get_str(a, "Enforcer"), "fanotify", "{a}");
    assert_eq!(get_str(a, "Source"), real_exe("env"), "{a}");
    assert_eq!(get_int(a, "PID"), e.pid, "{a}");
    assert_eq!(get_int(a, "PPID"), e.ppid, "{a}");
    assert_eq!(get_int(a, "UID"), 0, "{a}");
    // The path cannot be known: Resource is left out (or a string, never another type).
    if let Some(r) = a.get("Resource") {
        assert!(r.is_string(), "Resource: {a}");
    }
}

#[test]
fn path_beyond_path_max_on_tmpfs_is_blocked() {
    let mut env = privileged!(Layout::Tmpfs);
    let fs = env.fs.clone();
    start(&mut env, &fs);
    let e = exec_beyond_path_max(&env, &env.fs);
    e.assert_denied_bash("exec of a file whose path exceeds PATH_MAX (env exits 126 too)");
    let alerts = env.expect_alerts(1);
    assert_unresolvable_block_alert(&alerts[0], &e, Some(POLICY_NAME));
    assert!(env.daemon().try_wait().is_none(), "daemon still running:\n{}", env.daemon_stderr());
}

#[test]
fn path_beyond_path_max_inside_a_protected_dir_on_a_path_decided_ext4_is_blocked() {
    // The path cannot be resolved on a filesystem that holds protected paths: deny (fail closed).
    let mut env = privileged!(Layout::WithExt4Image);
    let tmp = prepare_ext4(&env);
    start(&mut env, &tmp);
    let e = exec_beyond_path_max(&env, &tmp);
    e.assert_denied_bash("exec beyond PATH_MAX inside <img>/tmp");
    let alerts = env.expect_alerts(1);
    assert_unresolvable_block_alert(&alerts[0], &e, None);
}

/// bash opens `target` on fd 3, unlinks it, then execs it through /proc/self/fd/3 (what fexecve does).
fn exec_deleted(env: &Env, target: &Path, cwd: &Path) -> Exec {
    let script = "exec 3<\"$1\" && rm -f \"$1\" && cd \"$2\" || exit 99\necho \"$$ $PPID\"\nexec /proc/self/fd/3";
    let mut argv: Vec<std::ffi::OsString> = vec!["bash".into(), "-c".into(), script.into(), "noexecd-test".into()];
    argv.push(target.as_os_str().to_owned());
    argv.push(cwd.as_os_str().to_owned());
    Exec::from_output(env.run_in_ns(&argv))
}

#[test]
fn deleted_files_and_names_ending_in_deleted_on_a_path_decided_ext4() {
    let mut env = privileged!(Layout::WithExt4Image);
    let tmp = prepare_ext4(&env);
    start_exec_only(&mut env, &tmp);
    let cwd = env.out.clone();

    // An unlinked file executed through its fd: the kernel names it "<path> (deleted)".
    let gone_outside = env.img.join("usr/gone");
    let gone_inside = tmp.join("gone");
    env.put_elf(&gone_outside);
    env.put_elf(&gone_inside);
    exec_deleted(&env, &gone_outside, &cwd).assert_ran("deleted file outside the protected dir");
    let e1 = exec_deleted(&env, &gone_inside, &cwd);
    e1.assert_denied_bash("deleted file inside the protected dir");

    // Live files whose names really end in " (deleted)".
    let literal_outside = env.img.join("usr/x (deleted)");
    let literal_inside = tmp.join("y (deleted)");
    env.put_elf(&literal_outside);
    env.put_elf(&literal_inside);
    env.bash_exec(&literal_outside, &cwd).assert_ran("a live file named '... (deleted)' outside");
    let e2 = env.bash_exec(&literal_inside, &cwd);
    e2.assert_denied_bash("a live file named '... (deleted)' inside");

    let alerts = env.expect_alerts(2);
    assert_exec_alert(&alerts[0], &Expect::block(&gone_inside, &e1, &cwd));
    assert_exec_alert(&alerts[1], &Expect::block(&literal_inside, &e2, &cwd));
}
