//! Privileged: an Allow posture (Allow rules, `default_posture = "block"`) on the host's policies. The
//! interpreters the kernel opens within an allowed exec, an ELF's PT_INTERP and a `#!` line's interpreter, are
//! decided with that exec: they run although no Allow rule names them, while the same files executed on their
//! own are refused by the posture. Here both interpreters lie on the test's protected filesystem (on a real
//! host the loader sits on `/`, which the daemon marks only when a rule reaches it), outside the allowed
//! directory: a program built with `-Wl,--dynamic-linker=<fs>/other/ld.so` (a copy of the host's loader) and a
//! script whose `#!` names `<fs>/other/dash`.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

#[test]
fn an_allowed_execs_interpreters_run_under_a_block_posture_and_nothing_else_does() {
    let mut env = privileged!(Layout::Tmpfs);
    let ok = env.fs.join("ok");
    let other = env.fs.join("other");
    let policies = named_dir_policy("it-allow-ok", "Allow", &ok, true, "");
    let opts = DaemonOpts { default_posture: "block", ..DaemonOpts::enforce() };
    let cfg = env.write_config(&opts, &policies);

    // The host's loader (the one this test runs with) and dash, copied outside the allowed directory.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let loader = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.rsplit('/').next().is_some_and(|n| n.starts_with("ld-")))
        .expect("a dynamically linked test binary maps its loader")
        .to_owned();
    let ld = other.join("ld.so");
    let dash = other.join("dash");
    let prog = ok.join("prog");
    let script = ok.join("script");
    std::fs::create_dir_all(env.host_view(&other)).unwrap();
    std::fs::create_dir_all(env.host_view(&ok)).unwrap();
    for (from, to) in [(std::path::PathBuf::from(&loader), &ld), (which("dash").unwrap(), &dash)] {
        std::fs::copy(std::fs::canonicalize(from).unwrap(), env.host_view(to)).unwrap();
        std::fs::set_permissions(env.host_view(to), PermissionsExt::from_mode(0o755)).unwrap();
    }
    let src = env.host_view(&env.out.join("prog.c"));
    std::fs::write(&src, "#include <unistd.h>\nint main(void) { return write(1, \"ran\\n\", 4) == 4 ? 0 : 1; }\n")
        .unwrap();
    let mut cc = Command::new("cc");
    cc.env("PATH", SYS_PATH)
        .arg(format!("-Wl,--dynamic-linker={}", ld.display()))
        .arg("-o")
        .arg(env.host_view(&prog))
        .arg(&src);
    let o = run_bounded(&mut cc, Duration::from_secs(120));
    assert!(o.status.success(), "cc failed (gcc and libc6-dev: `make test-deps`)\n{o}");
    std::fs::write(env.host_view(&script), format!("#!{}\necho ran\n", dash.display())).unwrap();
    std::fs::set_permissions(env.host_view(&script), PermissionsExt::from_mode(0o755)).unwrap();
    env.start_daemon(&cfg);
    let cwd = env.out.clone();

    let e = env.bash_exec(&prog, &cwd);
    e.assert_ran("an allowed program whose PT_INTERP lies outside the Allow rule");
    assert!(e.out.stdout.contains("ran"), "{}", e.out);
    let e = env.bash_exec(&script, &cwd);
    e.assert_ran("an allowed script whose #! interpreter lies outside the Allow rule");
    assert!(e.out.stdout.contains("ran"), "{}", e.out);

    // The interpreters on their own are refused by the posture: `ld.so PROGRAM` is no way around it.
    let e1 = env.bash_exec(&ld, &cwd);
    e1.assert_denied_bash("the loader executed on its own");
    let e2 = env.bash_exec(&dash, &cwd);
    e2.assert_denied_bash("the script interpreter executed on its own");
    let alerts = env.expect_alerts(2);
    for (a, (e, file)) in alerts.iter().zip([(&e1, &ld), (&e2, &dash)]) {
        assert_eq!(get_str(a, "PolicyName"), "DefaultPosture", "{a}");
        assert_eq!(get_str(a, "Resource"), file.to_str().unwrap(), "{a}");
        assert_eq!(get_int(a, "PID"), e.pid, "{a}");
    }
}
