use super::*;
use crate::policy::matcher::{KnownSubject, Outcome, Scope};

fn err(text: &str) -> PolicyError {
    match load_str(Path::new("p.toml"), text) {
        Err(Error::Policy(e)) => e,
        Err(other) => panic!("expected a policy error, got {other}"),
        Ok(_) => panic!("expected an error for:\n{text}"),
    }
}

fn ok(text: &str) -> Config {
    load_str(Path::new("p.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}

const RULE: &str =
    "[[policy]]\nname = \"p\"\n[[policy.process.match_directories]]\ndir = \"/tmp/\"\nrecursive = true\n";

#[test]
fn shipped_default_config_is_valid_and_protects_tmp_var_tmp_dev_shm_run_lock() {
    let text = include_str!("../../config/noexecd.toml");
    let c = ok(text);
    assert_eq!(c.daemon, DaemonConfig::default());
    let dirs: Vec<_> =
        c.matcher.rules().iter().map(|r| String::from_utf8_lossy(r.target.scope_prefix()).into_owned()).collect();
    assert_eq!(dirs, vec!["/tmp/", "/var/tmp/", "/dev/shm/", "/run/lock/"]);
    for p in [&b"/run/lock/x"[..], b"/run/lock/sub/x"] {
        let d = c.matcher.decide(Scope::Path(p), 1000, &mut KnownSubject { exe: None, uid: Some(1000) });
        assert_eq!(d.outcome, Outcome::Block, "{}", String::from_utf8_lossy(p));
        assert_eq!(d.rule.unwrap().policy, "ksp-block-exec-inside-tmp", "the same policy as /tmp");
    }
    let d = c.matcher.decide(Scope::Path(b"/run/x"), 0, &mut KnownSubject::default());
    assert_eq!(d.outcome, Outcome::Allow, "the rest of /run is not protected");
    let d = c.matcher.decide(Scope::Path(b"/tmp/x"), 0, &mut KnownSubject::default());
    assert_eq!(d.outcome, Outcome::Block);
    let rule = d.rule.unwrap();
    assert_eq!(rule.policy, "ksp-block-exec-inside-tmp");
    assert_eq!(rule.tags, vec!["CIS", "CIS_Linux", "CIS-1.1.5", "CIS-1.1.10"]);
    assert_eq!(rule.message, "Alert! Execution attempted inside tmp folder");
    // The origin names the rule's own table, wherever the shipped file puts it.
    let line = text.lines().position(|l| l.starts_with("[[policy.process.match_directories]]")).unwrap() + 1;
    assert_eq!(rule.origin, format!("p.toml:{line}:1"));
}

#[test]
fn unknown_key_names_its_place() {
    let e = err("[daemon]\nmode = \"enforce\"\nmodee = \"audit\"\n");
    assert_eq!((e.line, e.col), (3, 1));
    assert!(e.message.contains("unknown field `modee`"), "{}", e.message);
    let e = err(&format!("{RULE}ownerOnly = true\n"));
    assert_eq!((e.line, e.col), (6, 1));
    assert!(e.message.contains("snake_case"), "{}", e.message);
}

#[test]
fn wrong_type() {
    let e = err(&format!("{RULE}owner_only = \"yes\"\n"));
    assert_eq!((e.line, e.col), (6, 14));
    assert!(e.message.contains("invalid type"), "{}", e.message);
    let e = err("[[policy]]\nname = \"p\"\nseverity = \"high\"\n");
    assert_eq!(e.line, 3);
}

#[test]
fn relative_paths() {
    let e = err("[[policy]]\nname = \"p\"\n[[policy.process.match_paths]]\npath = \"tmp/x\"\n");
    assert_eq!((e.line, e.col), (4, 8));
    assert!(e.message.contains("relative") && e.message.contains("absolute"), "{}", e.message);
    let e = err("[daemon]\nalert_log = \"alerts.jsonl\"\n");
    assert_eq!((e.line, e.col), (2, 13));
    let e =
        err("[[policy]]\nname = \"p\"\n[[policy.process.match_paths]]\npath = \"/tmp/x\"\nfrom_source = [\"bash\"]\n");
    assert_eq!((e.line, e.col), (5, 16));
}

#[test]
fn dir_without_trailing_slash_says_what_to_write() {
    let e = err("[[policy]]\nname = \"p\"\n[[policy.process.match_directories]]\ndir = \"/tmp\"\n");
    assert_eq!((e.line, e.col), (4, 7));
    assert!(e.message.contains("write \"/tmp/\""), "{}", e.message);
}

#[test]
fn path_with_trailing_slash_or_dot_components() {
    let e = err("[[policy]]\nname = \"p\"\n[[policy.process.match_paths]]\npath = \"/tmp/x/\"\n");
    assert!(e.message.contains("match_directories"), "{}", e.message);
    let e = err("[[policy]]\nname = \"p\"\n[[policy.process.match_directories]]\ndir = \"/tmp/../etc/\"\n");
    assert!(e.message.contains("normalized"), "{}", e.message);
}

#[test]
fn invalid_glob() {
    let e = err("[[policy]]\nname = \"p\"\n[[policy.process.match_patterns]]\npattern = \"/tmp/[a-\"\n");
    assert_eq!((e.line, e.col), (4, 11));
    assert!(e.message.contains("not a valid glob"), "{}", e.message);
}

#[test]
fn severity_out_of_range() {
    let e = err("[[policy]]\nname = \"p\"\nseverity = 11\n[[policy.process.match_paths]]\npath = \"/tmp/x\"\n");
    assert_eq!((e.line, e.col), (3, 12));
    assert!(e.message.contains("1 to 10"), "{}", e.message);
    let e = err("[[policy]]\nname = \"p\"\n[[policy.process.match_paths]]\npath = \"/tmp/x\"\nseverity = 0\n");
    assert_eq!(e.line, 5);
}

#[test]
fn duplicate_policy_names() {
    let e = err(&format!("{RULE}{RULE}"));
    assert_eq!((e.line, e.col), (7, 8));
    assert!(e.message.contains("duplicate policy name \"p\" (first defined at p.toml:2:8)"), "{}", e.message);
}

#[test]
fn empty_rules() {
    let e = err("[[policy]]\nname = \"p\"\n");
    assert_eq!((e.line, e.col), (1, 1));
    assert!(e.message.contains("has no rules") && e.message.contains("match_directories"), "{}", e.message);
    let e = err("[[policy]]\nname = \"p\"\n[policy.process]\naction = \"Block\"\n");
    assert!(e.message.contains("has no rules"), "{}", e.message);
}

#[test]
fn unknown_values_of_enumerations() {
    assert!(err("[daemon]\nmode = \"permissive\"\n").message.contains("\"enforce\" or \"audit\""));
    assert!(err("[daemon]\ndefault_posture = \"allow\"\n").message.contains("\"audit\" or \"block\""));
    assert!(err("[daemon]\nfail_mode = \"maybe\"\n").message.contains("\"closed\" or \"open\""));
    assert!(err("[daemon]\nmax_alerts_per_sec = 0\n").message.contains("out of range"));
    assert!(err(&format!("{RULE}action = \"Deny\"\n")).message.contains("\"Block\", \"Audit\" or \"Allow\""));
}

#[test]
fn innermost_meta_wins_and_actions_are_case_insensitive() {
    let c = ok(r#"
[[policy]]
name = "p"
action = "audit"
severity = 3
tags = ["outer"]
message = "outer"
[policy.process]
severity = 4
message = "section"
[[policy.process.match_directories]]
dir = "/tmp/"
recursive = true
tags = ["inner"]
[[policy.process.match_paths]]
path = "/opt/x"
action = "BLOCK"
severity = 9
"#);
    let rules = c.matcher.rules();
    let (b, a) = (&rules[0].meta, &rules[1].meta);
    assert_eq!(
        (a.action, a.severity, a.tags.clone(), a.message.as_str()),
        (Action::Audit, 4, vec!["inner".to_owned()], "section")
    );
    assert_eq!(
        (b.action, b.severity, b.tags.clone(), b.message.as_str()),
        (Action::Block, 9, vec!["outer".to_owned()], "section")
    );
}

#[test]
fn daemon_settings_are_read() {
    let c = ok(
        "[daemon]\nmode = \"audit\"\nalert_log = \"/x/a.jsonl\"\ncluster_name = \"c\"\nhost_name = \"h\"\ndefault_posture = \"block\"\nmax_alerts_per_sec = 7\npolicy_dir = \"/x/p.d\"\nfail_mode = \"open\"\nalert_socket = \"\"\nalert_socket_group = \"adm\"\nexec_cache = false\n",
    );
    assert_eq!(
        c.daemon,
        DaemonConfig {
            mode: Mode::Audit,
            alert_log: "/x/a.jsonl".into(),
            cluster_name: "c".into(),
            host_name: Some("h".into()),
            default_posture: Posture::Block,
            max_alerts_per_sec: 7,
            policy_dir: "/x/p.d".into(),
            fail_mode: FailMode::Open,
            alert_socket: None,
            alert_socket_group: Some("adm".into()),
            exec_cache: false,
        }
    );
}

#[test]
fn drop_in_files_load_in_name_order_and_may_not_hold_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let pd = dir.path().join("policy.d");
    std::fs::create_dir(&pd).unwrap();
    let main = dir.path().join("main.toml");
    std::fs::write(&main, format!("[daemon]\npolicy_dir = \"{}\"\n{RULE}", pd.display())).unwrap();
    std::fs::write(
        pd.join("20-b.toml"),
        "[[policy]]\nname = \"b\"\n[[policy.process.match_paths]]\npath = \"/opt/b\"\n",
    )
    .unwrap();
    std::fs::write(
        pd.join("10-a.toml"),
        "[[policy]]\nname = \"a\"\n[[policy.process.match_paths]]\npath = \"/opt/a\"\n",
    )
    .unwrap();
    std::fs::write(pd.join("ignored.conf"), "not toml").unwrap();
    let c = load(&main).unwrap();
    let names: Vec<_> = c.matcher.rules().iter().map(|r| r.meta.policy.clone()).collect();
    assert_eq!(names, vec!["p", "a", "b"]);
    assert_eq!(c.files.len(), 3);
    std::fs::write(pd.join("30-c.toml"), "[daemon]\nmode = \"audit\"\n").unwrap();
    let Err(Error::Policy(e)) = load(&main) else { panic!("a [daemon] table in policy.d must be refused") };
    assert!(e.file.ends_with("30-c.toml") && e.line == 1, "{e}");
    // A duplicate across files names both places.
    std::fs::write(
        pd.join("30-c.toml"),
        "[[policy]]\nname = \"a\"\n[[policy.process.match_paths]]\npath = \"/opt/c\"\n",
    )
    .unwrap();
    let Err(Error::Policy(e)) = load(&main) else { panic!("duplicate across files") };
    assert!(e.message.contains("10-a.toml:2:8"), "{e}");
}

#[test]
fn missing_config_file_is_an_error_naming_it() {
    let e = load(Path::new("/nonexistent/noexecd.toml")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/noexecd.toml"), "{e}");
}

#[test]
fn open_guard_defaults_on_with_the_shipped_lists() {
    let c = ok(RULE);
    assert!(c.open_guard.enabled);
    let shipped = ok(include_str!("../../config/noexecd.toml"));
    assert!(shipped.open_guard.enabled);
    assert!(shipped.open_guard.is_elf_reader(b"/usr/bin/tar"));
    assert!(c.open_guard.interpreter(b"/usr/bin/python3.11").is_some());
    assert!(c.open_guard.is_elf_reader(b"/usr/bin/cat"));
}

#[test]
fn open_guard_table_is_read_and_validated() {
    let c = ok(&format!(
        "[open_guard]\nenabled = false\ninterpreters = [\"bash\"]\nelf_readers = [\"cat\", \"*-ld\"]\n{RULE}"
    ));
    assert!(!c.open_guard.enabled);
    assert!(c.open_guard.interpreter(b"/bin/python3").is_none());
    assert!(c.open_guard.interpreter(b"/bin/bash").is_some());
    assert!(c.open_guard.is_elf_reader(b"/usr/bin/x86_64-linux-gnu-ld"));
    assert!(!c.open_guard.is_elf_reader(b"/usr/bin/cp"));

    let e = err(&format!("[open_guard]\nelf_readers = [\"cat\", \"/usr/bin/cp\"]\n{RULE}"));
    assert_eq!((e.line, e.col), (2, 23), "{e}");
    assert!(e.message.contains("is a path"), "{e}");
    let e = err(&format!("[open_guard]\ninterpreters = [\"\"]\n{RULE}"));
    assert_eq!((e.line, e.col), (2, 17), "{e}");
    let e = err(&format!("[open_guard]\nelf_readers = [\"[cat\"]\n{RULE}"));
    assert!(e.message.contains("not a valid glob"), "{e}");
    let e = err(&format!("[open_guard]\nenable = true\n{RULE}"));
    assert_eq!(e.line, 2, "{e}");
}
