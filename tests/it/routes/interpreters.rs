//! Privileged: the interpreter family of the open guard (SECURITY.md's route table): multi-call binaries judged
//! by their applet, startup files named by the environment or options, modules found through a search path
//! into protected scope, a directory or archive run as a program, a shell sourcing a `#!` script; and the
//! data reads by the same interpreters that keep working.

use std::path::Path;

use super::*;

const STARTUP: &str = "fanotify=FAN_OPEN_PERM route=startup-file";
const MODULE: &str = "fanotify=FAN_OPEN_PERM route=module-path";
const SOURCED: &str = "fanotify=FAN_OPEN_PERM route=sourced";

/// Skips (loudly) when `tool` is missing, as `interpreter_route` does.
fn have(test: &str, tool: &str) -> bool {
    if which(tool).is_some() {
        return true;
    }
    eprintln!("SKIPPED {test}: {tool} is not installed (scripts/install-deps.sh test installs it)");
    assert!(!require_privileged(), "{test}: {tool} is not installed and NOEXECD_REQUIRE_PRIVILEGED=1");
    false
}

/// Runs `script` (bash, `$F` and `$O` set) and checks that its payload did not run, that it saw EPERM when
/// `eperm` says it reports one, and that every alert it raised is `data` on `resource` by `source`.
fn refused(env: &Env, script: &str, eperm: bool, resource: &Path, data: &str, source: &str) {
    let before = env.alerts().len();
    let o = run(env, script);
    assert!(!o.stdout.contains("PAYLOAD RAN"), "{script}: the payload ran\n{o}");
    if eperm {
        assert!(format!("{}{}", o.stdout, o.stderr).contains(EPERM_TEXT), "{script}: expected EPERM\n{o}");
    }
    let alerts = env.wait_alerts(before + 1);
    for a in alerts.get(before..).unwrap_or_default() {
        assert_route_alert(a, resource, data, source);
    }
}

#[test]
fn busybox_applets_are_judged_as_the_applet_they_run() {
    let mut env = privileged!(Layout::Tmpfs);
    if !have(&test_name!(), "busybox") {
        return;
    }
    let x = env.fs.join("x");
    put_text(&env, &x, "echo PAYLOAD RAN\n");
    env.sh(&format!("ln -s {} {}/sh", sh_quote(&which("busybox").unwrap()), sh_quote(&env.out)));
    start(&mut env, "");
    let bb = real_exe("busybox");
    // The applet in argv[1], in argv[0] through a symlink, and by a path in argv[1].
    refused(&env, "busybox sh \"$F/x\"", true, &x, INTERPRETER, &bb);
    refused(&env, "\"$O/sh\" \"$F/x\"", true, &x, INTERPRETER, &bb);
    refused(&env, "busybox /bin/ash -e \"$F/x\"", true, &x, INTERPRETER, &bb);
    // busybox's other applets read the same file as data.
    let before = env.alerts().len();
    let o = run(&env, "busybox cat \"$F/x\" && busybox grep -c PAYLOAD \"$F/x\" && busybox sh -c 'echo ok'");
    assert!(o.status.success() && o.stdout.contains("echo PAYLOAD RAN"), "{o}");
    assert_eq!(env.wait_alerts(before).len(), before, "no alert for busybox cat/grep");
}

#[test]
fn shell_startup_files_named_by_the_environment_or_options_are_denied() {
    let mut env = privileged!(Layout::Tmpfs);
    let x = env.fs.join("x");
    put_text(&env, &x, "echo PAYLOAD RAN\n");
    let home = env.fs.join("home");
    put_text(&env, &home.join(".bashrc"), "echo PAYLOAD RAN\n");
    start(&mut env, "");
    let (bash, dash) = (real_exe("bash"), real_exe("dash"));
    refused(&env, "BASH_ENV=\"$F/x\" bash -c 'echo ok'", true, &x, STARTUP, &bash);
    refused(&env, "ENV=\"$F/x\" dash -i < /dev/null", false, &x, STARTUP, &dash);
    refused(&env, "bash --rcfile \"$F/x\" -i < /dev/null", false, &x, STARTUP, &bash);
    refused(&env, "HOME=\"$F/home\" bash -i < /dev/null", false, &home.join(".bashrc"), STARTUP, &bash);
}

#[test]
fn python_startup_module_paths_directories_and_archives_in_scope_are_denied() {
    let mut env = privileged!(Layout::Tmpfs);
    let payload = "print('PAYLOAD RAN')\n";
    let (startup, module, main) = (env.fs.join("s.py"), env.fs.join("evil.py"), env.fs.join("app/__main__.py"));
    for f in [&startup, &module, &main] {
        put_text(&env, f, payload);
    }
    env.sh(&format!(
        "cd {o} && printf \"print('PAYLOAD RAN')\\n\" > __main__.py && printf \"print('PAYLOAD RAN')\\n\" > zm.py && \
         python3 -m zipfile -c {f}/app.pyz __main__.py && python3 -m zipfile -c {f}/lib.zip zm.py",
        o = sh_quote(&env.out),
        f = sh_quote(&env.fs)
    ));
    start(&mut env, "");
    let py = real_exe("python3");
    refused(&env, "PYTHONSTARTUP=\"$F/s.py\" python3 -i < /dev/null", false, &startup, STARTUP, &py);
    refused(&env, "PYTHONPATH=\"$O:$F\" python3 -c 'import evil'", false, &module, MODULE, &py);
    refused(&env, "cd \"$F\" && python3 -m evil", false, &module, MODULE, &py);
    refused(&env, "cd \"$F\" && python3 -c 'import evil'", false, &module, MODULE, &py);
    refused(&env, "PYTHONPATH=\"$F/lib.zip\" python3 -c 'import zm'", false, &env.fs.join("lib.zip"), MODULE, &py);
    refused(&env, "python3 \"$F/app\"", true, &main, INTERPRETER, &py);
    refused(&env, "python3 \"$F/app.pyz\"", false, &env.fs.join("app.pyz"), INTERPRETER, &py);
}

#[test]
fn perl_ruby_node_startup_files_and_module_paths_in_scope_are_denied() {
    let mut env = privileged!(Layout::Tmpfs);
    put_text(&env, &env.fs.join("Evil.pm"), "print \"PAYLOAD RAN\\n\"; 1;\n");
    put_text(&env, &env.fs.join("evil.rb"), "puts 'PAYLOAD RAN'\n");
    put_text(&env, &env.fs.join("evil.js"), "console.log('PAYLOAD RAN')\n");
    start(&mut env, "");
    let pm = env.fs.join("Evil.pm");
    if have(&test_name!(), "perl") {
        let perl = real_exe("perl");
        refused(&env, "PERL5OPT=\"-I$F\" perl -MEvil -e 1", false, &pm, MODULE, &perl);
        refused(&env, "PERL5LIB=\"$F\" perl -e 'require Evil'", false, &pm, MODULE, &perl);
        refused(&env, "perl -I \"$F\" -MEvil -e 1", false, &pm, MODULE, &perl);
        refused(&env, "perl \"-Mlib=$F\" -MEvil -e 1", false, &pm, MODULE, &perl);
    }
    let rb = env.fs.join("evil.rb");
    if have(&test_name!(), "ruby") {
        let ruby = real_exe("ruby");
        refused(&env, "RUBYOPT=\"-r$F/evil.rb\" ruby -e 1", false, &rb, STARTUP, &ruby);
        refused(&env, "ruby -r \"$F/evil\" -e 1", false, &rb, MODULE, &ruby);
        refused(&env, "RUBYLIB=\"$F\" ruby -e 'require \"evil\"'", false, &rb, MODULE, &ruby);
        refused(&env, "ruby -I \"$F\" -revil -e 1", false, &rb, MODULE, &ruby);
    }
    let js = env.fs.join("evil.js");
    if have(&test_name!(), "node") {
        let node = real_exe("node");
        refused(&env, "NODE_OPTIONS=\"--require $F/evil.js\" node -e 1", false, &js, STARTUP, &node);
        refused(&env, "node -r \"$F/evil.js\" -e 1", false, &js, STARTUP, &node);
        refused(&env, "NODE_PATH=\"$F\" node -e 'require(\"evil\")'", false, &js, MODULE, &node);
    }
}

#[test]
fn a_shell_sourcing_a_shebang_script_in_scope_is_denied() {
    let mut env = privileged!(Layout::Tmpfs);
    let x = env.fs.join("x.sh");
    put_text(&env, &x, "#!/bin/sh\necho PAYLOAD RAN\n");
    let runner = env.out.join("runner.sh");
    put_text(&env, &runner, "#!/bin/bash\n. \"$F/x.sh\"\necho runner done\n");
    start(&mut env, "");
    refused(&env, ". \"$F/x.sh\"", true, &x, SOURCED, &real_exe("bash"));
    refused(&env, "dash -c '. \"$F/x.sh\"'", true, &x, SOURCED, &real_exe("dash"));
    // From a script outside scope that the guard allowed to run.
    refused(&env, "\"$O/runner.sh\"", true, &x, SOURCED, &real_exe("bash"));
}

#[test]
fn the_same_interpreters_reading_data_in_scope_work() {
    let mut env = privileged!(Layout::Tmpfs);
    put_text(&env, &env.fs.join("x.sh"), "#!/bin/sh\necho PAYLOAD RAN\n");
    put_text(&env, &env.fs.join("data.csv"), "x,y\n1,2\n");
    put_text(&env, &env.fs.join("data.txt"), "b\na\n");
    put_text(&env, &env.fs.join("d.json"), "{\"a\": 1}\n");
    start(&mut env, "");
    // Search paths and startup variables into scope do not make data files code: only module files below a
    // search directory, and the named startup files, are refused.
    let o = run(
        &env,
        "set -e; cat \"$F/x.sh\"; grep -c PAYLOAD \"$F/x.sh\"; cp \"$F/x.sh\" \"$O/copy.sh\"; sort \"$F/data.txt\"; \
         jq .a \"$F/d.json\"; sort < \"$F/data.txt\"; \
         PYTHONPATH=\"$F\" python3 -c \"import os; print(open(os.environ['F'] + '/data.csv').read())\"; \
         cd \"$F\" && python3 -c \"print(open('data.csv').read())\"; \
         NODE_PATH=\"$F\" node -e \"console.log(require('fs').readFileSync(process.env.F + '/data.txt', 'utf8'))\"; \
         PERL5LIB=\"$F\" perl -ne 'print' \"$F/data.txt\"; BASH_ENV=/dev/null bash -c 'wc -l < \"$F/data.csv\"'",
    );
    assert_ok_quiet(&env, &o, "cat, grep, cp, sort, jq, python3/node/perl reading data with a search path in scope");
    assert!(o.stdout.contains("echo PAYLOAD RAN") && o.stdout.contains("x,y"), "{o}");
}

#[test]
fn the_interpreter_family_on_a_protected_directory_of_a_shared_filesystem_is_denied() {
    // /tmp as a directory of a shared filesystem: inode marks, the file named by its path (the module search
    // compares the directories above that name).
    let mut env = privileged!(Layout::WithExt4Image);
    let tmp = start_img_tmp(&mut env);
    let (x, module) = (tmp.join("x"), tmp.join("sub/evil.py"));
    // sub/ was made before the start: the walk before READY=1 marked it.
    put_text(&env, &x, "echo PAYLOAD RAN\n");
    put_text(&env, &module, "print('PAYLOAD RAN')\n");
    let t = sh_quote(&tmp);
    refused(&env, &format!("BASH_ENV={t}/x bash -c :"), true, &x, STARTUP, &real_exe("bash"));
    refused(
        &env,
        &format!("PYTHONPATH={t}/sub python3 -c 'import evil'"),
        false,
        &module,
        MODULE,
        &real_exe("python3"),
    );
    if have(&test_name!(), "busybox") {
        refused(&env, &format!("busybox sh {t}/x"), true, &x, INTERPRETER, &real_exe("busybox"));
    }
}
