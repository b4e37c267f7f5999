//! Privileged: an Allow posture (Allow rules, `default_posture = "block"`) on the host's policies. The
//! interpreters the kernel opens within an allowed exec, an ELF's PT_INTERP and a `#!` line's interpreter, are
//! decided with that exec: they run although no Allow rule names them, while the same files executed on their
//! own are refused by the posture. Here both interpreters lie on the test's protected filesystem (on a real
//! host the loader sits on `/`, which the daemon marks only when a rule reaches it), outside the allowed
//! directory: a program built with `-Wl,--dynamic-linker=<fs>/other/ld.so` (a copy of the host's loader) and a
//! script whose `#!` names `<fs>/other/dash`.
//!
//! Then in a podman container of a dynamically linked image (the host's bash, env, cp and dash with their
//! libraries and loader, imported) on both host layouts of `container_enforce`: KubeArmor's
//! `ksp-ubuntu-3-allow-proc-dir` widened to `/usr/bin/`, posture block. The container's first program (exec'd
//! by runc), bash, env and an allowed `#!/bin/sh` script run; a program outside (`/opt/bash`) and a copy in
//! `/tmp` are refused, and they alone raise alerts.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use crate::container_enforce::{Guarded, setup};
use crate::containers::{SandboxLayout, WORDPRESS_LABELS, path_str};

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

    // The daemon may read the caller's kernel stack before the caller sleeps waiting for the answer: tried
    // many times at once, every allowed program and script runs.
    let runs = "for j in 1 2 3 4; do (for i in $(seq 150); do \"$P\" >/dev/null && \"$S\" >/dev/null || echo FAILED; done) & \
                done; wait";
    let o = env.run_in_ns(&[
        "env".to_owned(),
        format!("P={}", prog.display()),
        format!("S={}", script.display()),
        "bash".to_owned(),
        "-c".to_owned(),
        runs.to_owned(),
    ]);
    let failed = o.stdout.lines().filter(|l| *l == "FAILED").count();
    assert!(o.status.success() && failed == 0, "{failed} of 600 allowed runs (program and script) failed\n{o}");
}

// ---------------------------------------------------------------------------------------------------------
// In a podman container of a dynamically linked image, on both host layouts

/// KubeArmor's `ksp-ubuntu-3-allow-proc-dir` widened to `/usr/bin/`: Allow `/bin/` and `/usr/bin/`, the
/// posture block, for the WordPress containers.
pub(crate) const ALLOW_YAML: &str = "\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: ksp-allow-bin-dirs
  namespace: wordpress-mysql
spec:
  severity: 8
  selector:
    matchLabels:
      app: wordpress
  process:
    matchDirectories:
    - dir: /bin/
      recursive: true
    - dir: /usr/bin/
      recursive: true
  action: Allow
";

pub(crate) const DYN_IMAGE: &str = "localhost/noexecd-it-dynamic:1";

/// An image of the host's own dynamically linked bash, env, cp and dash with their libraries and loader
/// (`ldd`), `/bin/script` (`#!/bin/sh`) and `/opt/bash` (a copy of bash outside the allowed directories).
fn build_dynamic_image(g: &Guarded) {
    let base = g.sb.base();
    g.sb.sh(&format!(
        "cd {b}\nrm -rf dyn\nmkdir -p dyn/bin dyn/usr/bin dyn/opt dyn/tmp\nchmod 1777 dyn/tmp\n\
         for p in /bin/bash /usr/bin/env /bin/cp /bin/sh; do\n  cp -L --parents \"$p\" dyn/\n\
           for l in $(ldd \"$p\" | grep -o '/[^ ]*'); do cp -L --parents \"$l\" dyn/; done\ndone\n\
         printf '#!/bin/sh\\necho script-ran\\n' > dyn/bin/script\nchmod 755 dyn/bin/script\n\
         cp -L /bin/bash dyn/opt/bash\ntar -C dyn -cf dyn.tar .\n",
        b = crate::common::sh_quote(&base)
    ));
    g.sb.podman(&["import", "-q", &path_str(&base.join("dyn.tar")), DYN_IMAGE]);
}

fn allow_posture_in_a_container(name: &str, layout: SandboxLayout) {
    let Some(mut g) = setup(name, layout) else { return };
    build_dynamic_image(&g);
    std::fs::write(g.sb.host_view(&g.sb.base().join("policy.d/ksp-allow-bin-dirs.yaml")), ALLOW_YAML).unwrap();
    // KubeArmor's posture for the namespace (`kubearmor-file-posture: block`) is the daemon's here.
    let config = g.sb.host_view(&g.config);
    let text =
        std::fs::read_to_string(&config).unwrap().replacen("[daemon]\n", "[daemon]\ndefault_posture = \"block\"\n", 1);
    std::fs::write(&config, text).unwrap();
    let o = g.sb.run(&[bin().into_os_string(), "check".into(), "--config".into(), g.config.clone().into()]);
    assert_eq!(o.code(), Some(0), "{name}: `noexecd check` failed\n{o}");
    let marks = parse_marks(&o.stdout);
    let want: Vec<(String, &str, Vec<String>)> =
        marks.iter().map(|m| (m.mount_point.clone(), m.decides.as_str(), m.protects.clone())).collect();
    g.start(&want);

    let script = "/bin/bash -c 'echo bash-ran'; /usr/bin/env /bin/bash -c 'echo env-ran'; /bin/script; \
                  /bin/cp /bin/bash /tmp/b; /opt/bash -c 'echo opt-ran'; /tmp/b -c 'echo tmp-ran'; exit 0";
    let o = g.run_container(&WORDPRESS_LABELS, &["--rm"], DYN_IMAGE, &["/bin/bash", "-c", script]);
    for ran in ["bash-ran", "env-ran", "script-ran"] {
        assert!(o.stdout.contains(ran), "{name}: an allowed program did not run ({ran})\n{o}\n{}", g.log_text());
    }
    for refused in ["opt-ran", "tmp-ran"] {
        assert!(!o.stdout.contains(refused), "{name}: a program outside the allowed directories ran\n{o}");
    }
    // One alert each. `/tmp/b`, the container's own copy of a PIE program, is refused at its exec through the
    // overlay's `/tmp`, whose marks carry execs too (the overlay's exec event comes before its open event and
    // the layer's); bash's look at it afterwards raises no second alert.
    let alerts = g.expect_alerts(2, "the two programs outside refused");
    let got: Vec<(&str, &str)> = alerts.iter().map(|a| (get_str(a, "Resource"), get_str(a, "Data"))).collect();
    assert_eq!(
        got,
        [("/opt/bash", "fanotify=FAN_OPEN_EXEC_PERM"), ("/tmp/b", "fanotify=FAN_OPEN_EXEC_PERM")],
        "{name}: only the programs outside were refused, once each\n{}",
        g.log_text()
    );
    g.verify();
}

#[test]
fn allow_posture_in_a_container_tmp_tmpfs() {
    allow_posture_in_a_container("allow_posture_in_a_container_tmp_tmpfs", SandboxLayout::TmpTmpfs);
}

#[test]
fn allow_posture_in_a_container_ext4_root() {
    allow_posture_in_a_container("allow_posture_in_a_container_ext4_root", SandboxLayout::Ext4Root);
}
