//! Unprivileged: `check` (validation errors name file:line:col; what would be marked), `explain` exit statuses,
//! `version`, `--help`. Nothing here marks anything.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// The text after `<file>:` in the first line of `stderr`, where `<file>:` starts the line or follows ": ".
fn diagnostic<'a>(stderr: &'a str, file: &Path) -> Option<&'a str> {
    let first = stderr.lines().next()?;
    let needle = format!("{}:", file.display());
    let mut from = 0;
    while let Some(i) = first.get(from..)?.find(&needle) {
        let at = from + i;
        if at == 0 || first[..at].ends_with(": ") {
            return Some(&first[at + needle.len()..]);
        }
        from = at + 1;
    }
    None
}

fn noexecd(args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args).env_remove("RUST_LOG").env("NO_COLOR", "1");
    run_bounded(&mut cmd, Duration::from_secs(30))
}

fn noexecd_cfg(args: &[&str], cfg: &Path) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--config");
    all.push(cfg.to_str().unwrap());
    noexecd(&all)
}

struct Cfg {
    dir: tempfile::TempDir,
}

impl Cfg {
    fn new() -> Cfg {
        let dir = tempfile::Builder::new().prefix("noexecd-cli-").tempdir().unwrap();
        fs::create_dir(dir.path().join("prot")).unwrap();
        Cfg { dir }
    }
    fn d(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }
    /// A valid config; line numbers are fixed (see the comments).
    fn base(&self) -> String {
        let d = self.d();
        [
            "[daemon]",                                   // 1
            "mode = \"enforce\"",                         // 2
            &format!("alert_log = \"{d}/alerts.jsonl\""), // 3
            "cluster_name = \"default\"",                 // 4
            "host_name = \"cli-host\"",                   // 5
            "default_posture = \"audit\"",                // 6
            "max_alerts_per_sec = 100",                   // 7
            &format!("policy_dir = \"{d}/policy.d\""),    // 8
            "",                                           // 9
            "[[policy]]",                                 // 10
            "name = \"p1\"",                              // 11
            "action = \"Block\"",                         // 12
            "severity = 1",                               // 13
            "tags = [\"CIS\"]",                           // 14
            "message = \"m\"",                            // 15
            "",                                           // 16
            "[[policy.process.match_directories]]",       // 17
            &format!("dir = \"{d}/prot/\""),              // 18
            "recursive = true",                           // 19
            "",
        ]
        .join("\n")
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::write(&p, text).unwrap();
        p
    }
}

/// Replaces 1-based line `n` of `text` by `with` (which may hold several lines).
fn replace_line(text: &str, n: usize, with: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[n - 1] = with.to_owned();
    lines.join("\n") + "\n"
}

/// Asserts `check` rejects `cfg`: exit 1, nothing marked, and the first line of stderr holds the diagnostic
/// `<file>:<line>:<col>: <message>`, at its start or after a `noexecd: <context>: ` prefix, where line is one of
/// `lines` and col one of `cols` (None: any col >= 1). Returns the message.
fn assert_rejected(cfg: &Path, file: &Path, lines: &[usize], cols: Option<&[usize]>) -> String {
    let o = noexecd_cfg(&["check"], cfg);
    assert_eq!(o.code(), Some(1), "check on an invalid policy exits 1\n{o}");
    assert!(parse_marks(&o.stdout).is_empty(), "nothing to mark on an invalid policy\n{o}");
    let rest = diagnostic(&o.stderr, file)
        .unwrap_or_else(|| panic!("stderr must name `{}:<line>:<col>: `\n{o}", file.display()));
    let mut it = rest.splitn(3, ':');
    let line: usize = it.next().unwrap().parse().unwrap_or_else(|_| panic!("no line number\n{o}"));
    let col: usize = it.next().unwrap_or("").parse().unwrap_or_else(|_| panic!("no column number\n{o}"));
    let msg = it.next().unwrap_or("");
    assert!(lines.contains(&line), "error line {line}, expected one of {lines:?}\n{o}");
    assert!(col >= 1, "columns are 1-based\n{o}");
    if let Some(cols) = cols {
        assert!(cols.contains(&col), "error column {col}, expected one of {cols:?}\n{o}");
    }
    assert!(msg.starts_with(' ') && msg.trim().len() > 10, "`file:line:col: ` then a message\n{o}");
    msg.trim().to_owned()
}

#[test]
fn check_accepts_the_base_config_and_prints_the_mark_line() {
    let c = Cfg::new();
    fs::create_dir(c.dir.path().join("prot2")).unwrap();
    let text = c.base() + &format!("\n[[policy.process.match_paths]]\npath = \"{}/prot2/tool\"\n", c.d());
    let cfg = c.write("ok.toml", &text);
    let o = noexecd_cfg(&["check"], &cfg);
    assert_eq!(o.code(), Some(0), "{o}");
    let marks = parse_marks(&o.stdout);
    assert_eq!(marks.len(), 1, "both paths are on one filesystem: one mark line\n{o}");
    let m = &marks[0];
    let dev = split_dev(fs::metadata(c.dir.path()).unwrap().dev());
    assert_eq!(m.dev, dev, "dev= is the st_dev of the protected path\n{o}");
    assert!(Path::new(&m.mount_point).is_absolute(), "{m:?}");
    assert!(c.d().starts_with(m.mount_point.as_str()), "mount point {m:?} contains {}", c.d());
    assert!(!m.fstype.is_empty(), "{m:?}");
    assert_eq!(m.decides, "path", "a directory below a mount point: the path decides\n{o}");
    let protects: Vec<&str> = m.protects.iter().map(|p| trim_slash(p)).collect();
    assert!(protects.contains(&format!("{}/prot", c.d()).as_str()), "{m:?}");
    assert!(protects.contains(&format!("{}/prot2/tool", c.d()).as_str()), "{m:?}");
}

/// Two rejects stand for all (the policy's unit tests hold every message): one the parser refuses (an
/// unknown key), one the validation refuses (a relative directory). Each exits 1, marks nothing and starts
/// stderr with `file:line:col: message`.
#[test]
fn check_rejects_an_unknown_key() {
    let c = Cfg::new();
    let cfg = c.write("c.toml", &replace_line(&c.base(), 13, "severity = 1\ncolour = \"red\""));
    assert_rejected(&cfg, &cfg, &[14], Some(&[1]));
}

#[test]
fn check_rejects_a_relative_dir() {
    let c = Cfg::new();
    let cfg = c.write("c.toml", &replace_line(&c.base(), 18, "dir = \"tmp/\""));
    assert_rejected(&cfg, &cfg, &[18], Some(&[1, 7]));
}

#[test]
fn check_names_the_drop_in_file_that_is_broken() {
    let c = Cfg::new();
    let cfg = c.write("main.toml", &c.base());
    let dropin_dir = c.dir.path().join("policy.d");
    fs::create_dir(&dropin_dir).unwrap();
    let good =
        format!("[[policy]]\nname = \"p2\"\n\n[[policy.process.match_directories]]\ndir = \"{}/prot/\"\n", c.d());
    fs::write(dropin_dir.join("10-good.toml"), &good).unwrap();
    fs::write(dropin_dir.join("README"), "not a toml file, ignored\n").unwrap();
    let bad = dropin_dir.join("20-bad.toml");
    fs::write(
        &bad,
        format!(
            "[[policy]]\nname = \"p3\"\nseverity = 42\n\n[[policy.process.match_directories]]\ndir = \"{}/prot/\"\n",
            c.d()
        ),
    )
    .unwrap();
    assert_rejected(&cfg, &bad, &[3], Some(&[1, 12]));

    // Without the bad file, the drop-in is loaded and valid.
    fs::remove_file(&bad).unwrap();
    let o = noexecd_cfg(&["check"], &cfg);
    assert_eq!(o.code(), Some(0), "{o}");
}

#[test]
fn run_refuses_an_invalid_policy() {
    let c = Cfg::new();
    // A syntax error: nothing can be marked whatever the privileges.
    let cfg = c.write("c.toml", &replace_line(&c.base(), 11, "name = \"p1"));
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--config"]).arg(&cfg).env_remove("RUST_LOG").env_remove("NOTIFY_SOCKET").env("NO_COLOR", "1");
    let o = run_bounded(&mut cmd, Duration::from_secs(20));
    assert_eq!(o.code(), Some(1), "run on an invalid policy exits 1\n{o}");
    assert!(diagnostic(&o.stderr, &cfg).is_some_and(|r| r.starts_with("11:")), "names file:line:col\n{o}");
}

// ---------------------------------------------------------------------------------------------------------
// explain

fn explain_config(c: &Cfg, mode: &str) -> PathBuf {
    let d = c.d();
    let dash = real_exe("dash");
    let text = format!(
        "[daemon]\nmode = \"{mode}\"\nalert_log = \"{d}/alerts.jsonl\"\nhost_name = \"cli-host\"\npolicy_dir = \"{d}/policy.d\"\n\n\
         [[policy]]\nname = \"it-block\"\naction = \"Block\"\nseverity = 3\ntags = [\"T1\", \"T2\"]\nmessage = \"blocked exec\"\n\
         [[policy.process.match_directories]]\ndir = \"{d}/blk/\"\nrecursive = true\n\n\
         [[policy]]\nname = \"it-audit\"\naction = \"audit\"\n\
         [[policy.process.match_directories]]\ndir = \"{d}/aud/\"\nrecursive = true\n\n\
         [[policy]]\nname = \"it-from-dash\"\n\
         [[policy.process.match_paths]]\npath = \"{d}/src/x\"\nfrom_source = [\"{dash}\"]\n\n\
         [[policy]]\nname = \"it-owner\"\naction = \"Block\"\n\
         [[policy.process.match_directories]]\ndir = \"{d}/own/\"\nowner_only = true\n\n\
         [[policy]]\nname = \"it-pattern\"\naction = \"Block\"\n\
         [[policy.process.match_patterns]]\npattern = \"{d}/pat/**/*.sh\"\n"
    );
    c.write(&format!("explain-{mode}.toml"), &text)
}

fn explain(cfg: &Path, path: &str, extra: &[&str]) -> Output {
    let mut args = vec!["explain", path];
    args.extend_from_slice(extra);
    noexecd_cfg(&args, cfg)
}

/// The first JSON object printed on stdout (the alert explain would write).
fn alert_in(o: &Output) -> serde_json::Value {
    let mut from = 0;
    while let Some(i) = o.stdout[from..].find('{') {
        let start = from + i;
        let mut stream = serde_json::Deserializer::from_str(&o.stdout[start..]).into_iter::<serde_json::Value>();
        if let Some(Ok(v)) = stream.next() {
            if v.get("PolicyName").is_some() {
                return v;
            }
        }
        from = start + 1;
    }
    panic!("explain printed no alert JSON\n{o}");
}

#[test]
fn explain_exit_statuses_allowed_blocked_audited_error() {
    let c = Cfg::new();
    let cfg = explain_config(&c, "enforce");
    let d = c.d();

    let o = explain(&cfg, &format!("{d}/elsewhere/x"), &[]);
    assert_eq!(o.code(), Some(0), "a path no rule matches is allowed\n{o}");

    let blocked = format!("{d}/blk/a/b/x");
    let o = explain(&cfg, &blocked, &[]);
    assert_eq!(o.code(), Some(2), "blocked\n{o}");
    assert!(o.stdout.contains("it-block"), "names the policy\n{o}");
    let a = alert_in(&o);
    assert_eq!(get_str(&a, "PolicyName"), "it-block", "{a}");
    assert_eq!(get_str(&a, "Action"), "Block", "{a}");
    assert_eq!(get_str(&a, "Result"), EPERM_TEXT, "{a}");
    assert_eq!(get_str(&a, "Resource"), blocked, "{a}");
    assert_eq!(get_str(&a, "ProcessName"), blocked, "{a}");
    assert_eq!(get_str(&a, "Severity"), "3", "{a}");
    assert_eq!(get_str(&a, "Tags"), "T1,T2", "{a}");
    assert_eq!(get_str(&a, "Message"), "blocked exec", "{a}");
    assert_eq!(get_str(&a, "Type"), "MatchedHostPolicy", "{a}");
    assert_eq!(get_str(&a, "Operation"), "Process", "{a}");
    assert_eq!(get_str(&a, "HostName"), "cli-host", "{a}");
    assert_eq!(get_str(&a, "ClusterName"), "default", "cluster_name defaults to \"default\": {a}");

    let audited = format!("{d}/aud/x");
    let o = explain(&cfg, &audited, &[]);
    assert_eq!(o.code(), Some(3), "audited\n{o}");
    let a = alert_in(&o);
    assert_eq!(get_str(&a, "PolicyName"), "it-audit", "{a}");
    assert_eq!(get_str(&a, "Action"), "Audit", "{a}");
    assert_eq!(get_str(&a, "Result"), "Passed", "{a}");

    let o = explain(&c.dir.path().join("missing.toml"), &blocked, &[]);
    assert_eq!(o.code(), Some(1), "a missing config is an error\n{o}");
    let broken = c.write("broken.toml", &replace_line(&c.base(), 13, "severity = 11"));
    let o = explain(&broken, &blocked, &[]);
    assert_eq!(o.code(), Some(1), "an invalid config is an error\n{o}");
    assert!(diagnostic(&o.stderr, &broken).is_some_and(|r| r.starts_with("13:12: ")), "names file:line:col\n{o}");
    // A relative PATH is an error, or is taken from the working directory: never silently "allowed".
    let mut cmd = Command::new(bin());
    cmd.args(["explain", "blk/x", "--config"]).arg(&cfg).current_dir(c.dir.path()).env("NO_COLOR", "1");
    let o = run_bounded(&mut cmd, Duration::from_secs(30));
    assert!(matches!(o.code(), Some(1 | 2)), "relative PATH blk/x in {d}: an error (1) or blocked (2)\n{o}");
}

#[test]
fn explain_leaves_out_a_drop_in_that_does_not_load_as_the_daemon_does_and_says_so() {
    let c = Cfg::new();
    let cfg = explain_config(&c, "enforce");
    let d = c.d();
    fs::create_dir_all(c.dir.path().join("policy.d")).unwrap();
    c.write("policy.d/10-drop.toml", &format!(
        "[[policy]]\nname = \"it-drop\"\naction = \"Block\"\n[[policy.process.match_directories]]\ndir = \"{d}/drop/\"\n"
    ));
    c.write("policy.d/20-broken.toml", "[[policy]]\nname = \"it-broken\"\nseverity = 11\n");
    let o = explain(&cfg, &format!("{d}/drop/x"), &[]);
    assert_eq!(o.code(), Some(2), "the drop-in that loads still decides\n{o}");
    assert!(o.stdout.contains("it-drop"), "{o}");
    assert!(
        o.stdout
            .lines()
            .any(|l| l.starts_with("warning: ") && l.contains("20-broken.toml") && l.contains("leaves it out")),
        "the drop-in left out is named\n{o}"
    );
    let o = noexecd_cfg(&["check"], &cfg);
    assert_eq!(o.code(), Some(1), "check still fails on it\n{o}");
}

#[test]
fn explain_in_audit_mode_audits_what_enforce_blocks() {
    let c = Cfg::new();
    let cfg = explain_config(&c, "audit");
    let o = explain(&cfg, &format!("{}/blk/x", c.d()), &[]);
    assert_eq!(o.code(), Some(3), "audit mode turns Block into Audit\n{o}");
    let a = alert_in(&o);
    assert_eq!(get_str(&a, "Action"), "Audit", "{a}");
    assert_eq!(get_str(&a, "Result"), "Passed", "{a}");
}

#[test]
fn explain_from_source_owner_only_and_patterns() {
    let c = Cfg::new();
    let cfg = explain_config(&c, "enforce");
    let d = c.d();
    let src = format!("{d}/src/x");
    let dash = real_exe("dash");
    let bash = real_exe("bash");

    let o = explain(&cfg, &src, &["--source", &dash]);
    assert_eq!(o.code(), Some(2), "from_source caller is blocked\n{o}");
    assert_eq!(get_str(&alert_in(&o), "Source"), dash);
    let o = explain(&cfg, &src, &["--source", &bash]);
    assert_eq!(o.code(), Some(0), "another caller is not\n{o}");

    let own = format!("{d}/own/x");
    let o = explain(&cfg, &own, &["--uid", "1000", "--owner", "0"]);
    assert_eq!(o.code(), Some(2), "owner_only: someone else is blocked\n{o}");
    let o = explain(&cfg, &own, &["--uid", "1000", "--owner", "1000"]);
    assert_eq!(o.code(), Some(0), "owner_only: the owner may run it\n{o}");

    let o = explain(&cfg, &format!("{d}/pat/a/b/run.sh"), &[]);
    assert_eq!(o.code(), Some(2), "** crosses directories\n{o}");
    let o = explain(&cfg, &format!("{d}/pat/run.sh"), &[]);
    assert_eq!(o.code(), Some(2), "**/ matches zero directories too\n{o}");
    let o = explain(&cfg, &format!("{d}/pat/a/run.py"), &[]);
    assert_eq!(o.code(), Some(0), "*.sh does not match run.py\n{o}");
}

#[test]
fn explain_block_wins_over_allow() {
    let c = Cfg::new();
    let d = c.d();
    let text = format!(
        "[daemon]\nalert_log = \"{d}/alerts.jsonl\"\npolicy_dir = \"{d}/policy.d\"\n\n\
         [[policy]]\nname = \"it-allow\"\naction = \"Allow\"\n\
         [[policy.process.match_directories]]\ndir = \"{d}/mix/\"\nrecursive = true\n\n\
         [[policy]]\nname = \"it-deny-one\"\naction = \"block\"\n\
         [[policy.process.match_paths]]\npath = \"{d}/mix/evil\"\n"
    );
    let cfg = c.write("mix.toml", &text);
    let o = explain(&cfg, &format!("{d}/mix/evil"), &[]);
    assert_eq!(o.code(), Some(2), "Block wins over Allow\n{o}");
    assert_eq!(get_str(&alert_in(&o), "PolicyName"), "it-deny-one");
    let o = explain(&cfg, &format!("{d}/mix/good"), &[]);
    assert_eq!(o.code(), Some(0), "matched by Allow only\n{o}");
}

#[test]
fn version_and_help() {
    let o = noexecd(&["version"]);
    assert_eq!(o.code(), Some(0), "{o}");
    assert!(o.stdout.contains(env!("CARGO_PKG_VERSION")), "{o}");
    for sub in [&["--help"][..], &["run", "--help"], &["check", "--help"], &["explain", "--help"]] {
        let o = noexecd(sub);
        assert_eq!(o.code(), Some(0), "{sub:?}\n{o}");
        assert!(o.stdout.contains("--config") || sub == ["--help"], "{sub:?}\n{o}");
    }
}

/// This host's value of a sysctl, trimmed; None when the kernel does not have it.
fn sysctl(name: &str) -> Option<String> {
    fs::read_to_string(Path::new("/proc/sys").join(name.replace('.', "/"))).ok().map(|s| s.trim().to_owned())
}

#[test]
fn check_warns_about_this_hosts_open_sysctls_on_stderr_and_still_exits_0() {
    let c = Cfg::new();
    let cfg = c.write("ok.toml", &c.base());
    let o = noexecd_cfg(&["check"], &cfg);
    assert_eq!(o.code(), Some(0), "warnings do not change the exit status\n{o}");
    assert!(!o.stdout.contains("warning:"), "warnings go to stderr\n{o}");
    let warnings: Vec<&str> = o.stderr.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(
        warnings.len(),
        o.stderr.lines().filter(|l| l.contains("warning")).count(),
        "each warning is one line starting with `warning: `\n{o}"
    );

    let memfd = sysctl("vm.memfd_noexec");
    let memfd_lines: Vec<&&str> = warnings.iter().filter(|l| l.contains("vm.memfd_noexec")).collect();
    match memfd.as_deref() {
        Some("2") => assert!(memfd_lines.is_empty(), "memfd exec is refused here: no warning\n{o}"),
        Some(v) => {
            assert_eq!(memfd_lines.len(), 1, "vm.memfd_noexec = {v}: one warning\n{o}");
            assert!(memfd_lines[0].starts_with(&format!("warning: vm.memfd_noexec = {v}: ")), "{o}");
            assert!(memfd_lines[0].contains("fix: sysctl -w vm.memfd_noexec=2"), "{o}");
        }
        None => {
            assert_eq!(memfd_lines.len(), 1, "no vm.memfd_noexec: one warning\n{o}");
            assert!(memfd_lines[0].contains("not available"), "{o}");
        }
    }

    let max = sysctl("user.max_user_namespaces");
    let open = max.as_deref().is_some_and(|v| v.parse::<u64>().map_or(true, |n| n > 0))
        && sysctl("kernel.unprivileged_userns_clone").as_deref() != Some("0")
        && sysctl("kernel.apparmor_restrict_unprivileged_userns").as_deref() != Some("1");
    let userns_lines: Vec<&&str> = warnings.iter().filter(|l| l.contains("user namespaces")).collect();
    if open {
        assert_eq!(userns_lines.len(), 1, "user namespaces are open here (max {max:?}): one warning\n{o}");
        let want = format!("(user.max_user_namespaces = {})", max.unwrap());
        assert!(
            userns_lines[0].contains(&want) && userns_lines[0].contains("fix: sysctl -w user.max_user_namespaces=0")
        );
    } else {
        assert!(userns_lines.is_empty(), "user namespaces are closed here: no warning\n{o}");
    }
    let writable_lines = warnings.iter().filter(|l| l.contains("writable director")).count();
    // Where the protected directory is a plain directory of this host's `/` (not of a tmpfs /tmp), the bind
    // that gives it a mount of its own is offered, on one line.
    let open_lines: Vec<&&str> = warnings.iter().filter(|l| l.starts_with("warning: open guard: ")).collect();
    assert!(open_lines.len() <= 1, "{o}");
    assert!(open_lines.iter().all(|l| l.contains("mount --bind ") && l.contains(" none bind 0 0")), "{o}");
    assert_eq!(
        warnings.len(),
        memfd_lines.len() + userns_lines.len() + writable_lines + open_lines.len(),
        "no other warnings\n{o}"
    );
}

#[test]
fn check_warns_about_a_block_pattern_that_leaves_deeper_paths_open() {
    let c = Cfg::new();
    let d = c.d();
    let base = c.base();
    let text = format!(
        "{base}\n[[policy]]\nname = \"shallow\"\n[[policy.process.match_patterns]]\npattern = \"{d}/prot/*\"\n\
         [[policy.process.match_patterns]]\npattern = \"{d}/prot/**\"\n"
    );
    let line = text.lines().position(|l| l.starts_with("pattern = ") && l.ends_with("/*\"")).unwrap();
    let cfg = c.write("shallow.toml", &text);
    let o = noexecd_cfg(&["check"], &cfg);
    assert_eq!(o.code(), Some(0), "a warning does not change the exit status\n{o}");
    let want = format!(
        "warning: {}:{line}:1: pattern \"{d}/prot/*\" leaves the deeper paths of its directory open (\"*\" stays within one path component: {d}/prot/a/x runs); write \"{d}/prot/**\" or a match_directories rule with dir \"{d}/prot/\" and recursive = true",
        cfg.display()
    );
    let shallow: Vec<&str> = o.stderr.lines().filter(|l| l.contains("leaves the deeper paths")).collect();
    assert_eq!(shallow, vec![want.as_str()], "one warning, for the pattern without **\n{o}");
}

/// File rules through the binary: `check` lists what they protect and which this build does not enforce
/// (a container policy's file right below `/`); `explain --open` decides an open for reading and for writing, with the file alert and the exit
/// statuses of an exec's explanation.
#[test]
fn file_rules_are_listed_by_check_and_decided_by_explain_open() {
    let c = Cfg::new();
    let d = c.d();
    fs::write(c.dir.path().join("secret"), "s").unwrap();
    let text = format!(
        "[daemon]\nalert_log = \"{d}/alerts.jsonl\"\nhost_name = \"cli-host\"\npolicy_dir = \"{d}/policy.d\"\n\n\
         [[policy]]\nname = \"it-file\"\nseverity = 6\nmessage = \"secret written\"\n\
         [[policy.file.match_paths]]\npath = \"{d}/secret\"\nread_only = true\n\n\
         [[policy]]\nname = \"it-file-audit\"\naction = \"Audit\"\n\
         [[policy.file.match_directories]]\ndir = \"{d}/logs/\"\nrecursive = true\n\n\
         [[policy]]\nname = \"it-file-ctr\"\n[policy.selector]\nnamespace = \"ns\"\n\
         [[policy.file.match_paths]]\npath = \"/etc/shadow\"\n\
         [[policy.file.match_paths]]\npath = \"/secret.txt\"\n"
    );
    let cfg = c.write("file-rules.toml", &text);
    let o = noexecd_cfg(&["check"], &cfg);
    assert_eq!(o.code(), Some(0), "{o}");
    assert!(o.stdout.contains("4 file rules (1 not enforced by this build), default file posture audit"), "{o}");
    let line = format!("file-rule\thost\tpath\t{d}/secret\tBlock\tread_only\tpolicy=it-file\t{}:", cfg.display());
    assert!(o.stdout.lines().any(|l| l.starts_with(&line) && l.ends_with("\tenforced")), "{o}");
    assert!(o.stdout.contains("container-file-policy\tit-file-ctr\t"), "{o}");
    let ctr = |path: &str, end: &str| {
        o.stdout
            .lines()
            .any(|l| l.starts_with(&format!("file-rule\tcontainer\tpath\t{path}\tBlock")) && l.ends_with(end))
    };
    assert!(ctr("/etc/shadow", "\tenforced"), "a container policy's rule is enforced in its containers\n{o}");
    let root = "not-enforced: a file rule reaching every directory from / is not enforced (it would send every open in the container to the daemon)";
    assert!(ctr("/secret.txt", root), "{o}");
    assert!(
        o.stdout.contains(&format!("file-rule\thost\tdir-recursive\t{d}/logs/\tAudit\tpolicy=it-file-audit")),
        "{o}"
    );
    assert!(o.stderr.contains("warning: 1 file rule(s) loaded but not enforced by this build"), "{o}");

    let secret = format!("{d}/secret");
    let o = noexecd_cfg(&["explain", "--open", &secret], &cfg);
    assert_eq!(o.code(), Some(0), "a read of a read_only file is allowed\n{o}");
    assert!(!o.stdout.contains("note:"), "an enforced rule has no note\n{o}");
    let o = noexecd_cfg(&["explain", "--open", "--write", &secret, "--source", "/usr/bin/tee"], &cfg);
    assert_eq!(o.code(), Some(2), "a write is blocked\n{o}");
    let a = alert_in(&o);
    assert_eq!(get_str(&a, "PolicyName"), "it-file", "{a}");
    assert_eq!(get_str(&a, "Operation"), "File", "{a}");
    assert_eq!(get_str(&a, "Resource"), secret, "{a}");
    assert_eq!(get_str(&a, "Data"), "syscall=SYS_OPENAT fd=-100 flags=O_WRONLY", "{a}");
    assert_eq!(get_str(&a, "ProcessName"), "/usr/bin/tee", "{a}");
    assert_eq!(get_str(&a, "Source"), "/usr/bin/tee", "{a}");
    assert_eq!(get_str(&a, "Action"), "Block", "{a}");
    assert_eq!(get_str(&a, "Result"), EPERM_TEXT, "{a}");
    assert_eq!(get_str(&a, "Severity"), "6", "{a}");
    assert_eq!(get_str(&a, "Message"), "secret written", "{a}");
    let o = noexecd_cfg(&["explain", "--open", &format!("{d}/logs/a/b.log")], &cfg);
    assert_eq!(o.code(), Some(3), "an Audit rule audits\n{o}");
    assert_eq!(get_str(&alert_in(&o), "Action"), "Audit");
    let o = noexecd_cfg(&["explain", "--write", &secret], &cfg);
    assert!(o.code() != Some(0) && o.stderr.contains("--open"), "--write without --open is a usage error\n{o}");
}
