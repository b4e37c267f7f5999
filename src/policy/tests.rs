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
    let scopes = |rules: &[Rule]| -> Vec<String> {
        rules.iter().map(|r| String::from_utf8_lossy(r.target.scope_prefix()).into_owned()).collect()
    };
    assert_eq!(scopes(c.matcher.rules()), vec!["/tmp/", "/var/tmp/", "/dev/shm/", "/run/lock/"]);
    assert_eq!(c.policy_count, 1);
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
    // The origin names the rule's own table, wherever the shipped file puts it: the host policy's first
    // rule table, then the container policy's.
    let tables: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("[[policy.process.match_directories]]"))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(tables.len(), 7, "four rule tables in the host policy, three in the container policy");
    assert_eq!(rule.origin, format!("p.toml:{}:1", tables[0]));
    // The same policy audits inside every container, and only there.
    let [container] = c.container_policies.as_slice() else { panic!("{:?}", c.container_policies) };
    assert_eq!(container.name, "ksp-block-exec-inside-tmp");
    assert_eq!(container.selector, Selector::default(), "an empty selector: every container");
    assert_eq!(scopes(&container.rules), vec!["/tmp/", "/var/tmp/", "/dev/shm/"]);
    let any = Identity { labels: [("io.kubernetes.pod.namespace".to_owned(), "shop".to_owned())].into(), name: None };
    let m = c.container_matcher(&c.selecting(&any));
    let d = m.decide(Scope::Path(b"/var/tmp/lib.so"), 0, &mut KnownSubject::default());
    assert_eq!(d.outcome, Outcome::Audit);
    let rule = d.rule.unwrap();
    assert_eq!((rule.policy.as_str(), rule.action), ("ksp-block-exec-inside-tmp", Action::Audit));
    assert_eq!(rule.origin, format!("p.toml:{}:1", tables[5]));
    assert_eq!(c.selecting(&Identity::default()), vec![0], "a plain docker container too");
}

const CONTAINER: &str = "[[policy]]\nname = \"c\"\n[policy.selector]\nmatch_labels = { app = \"wordpress\" }\nnamespace = \"wordpress-mysql\"\n[[policy.process.match_paths]]\npath = \"/bin/bash\"\n";

fn identity(labels: &[(&str, &str)], name: Option<&str>) -> Identity {
    Identity {
        labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        name: name.map(str::to_owned),
    }
}

fn decide_in(c: &Config, id: &Identity, path: &str) -> Outcome {
    c.container_matcher(&c.selecting(id)).decide(Scope::Path(path.as_bytes()), 0, &mut KnownSubject::default()).outcome
}

#[test]
fn a_selector_makes_a_container_policy_whose_rules_never_reach_the_host() {
    let c = ok(&format!("{RULE}{CONTAINER}"));
    assert_eq!(c.policy_count, 1);
    assert_eq!(scopes_of(c.matcher.rules()), vec!["/tmp/"], "the host matcher holds the host policy only");
    let [p] = c.container_policies.as_slice() else { panic!() };
    assert_eq!(p.name, "c");
    assert_eq!(p.origin, "p.toml:7:8");
    assert_eq!(p.selector.describe(), "labels:app=wordpress;namespace:wordpress-mysql;containers:*");
    assert_eq!(scopes_of(&p.rules), vec!["/bin/bash"]);
    let wp = identity(&[("app", "wordpress"), ("io.kubernetes.pod.namespace", "wordpress-mysql")], Some("wp"));
    assert_eq!(c.selecting(&wp), vec![0]);
    assert_eq!(decide_in(&c, &wp, "/bin/bash"), Outcome::Block);
    // A host policy never applies inside a container, selected or not.
    assert_eq!(decide_in(&c, &wp, "/tmp/x"), Outcome::Allow);
    let other = identity(&[("app", "wordpress"), ("io.kubernetes.pod.namespace", "default")], None);
    assert!(c.selecting(&other).is_empty());
    assert_eq!(decide_in(&c, &other, "/bin/bash"), Outcome::Allow);
    // A container policy never applies to the host.
    let host = c.matcher.decide(Scope::Path(b"/bin/bash"), 0, &mut KnownSubject::default());
    assert_eq!(host.outcome, Outcome::Allow);
}

fn scopes_of(rules: &[Rule]) -> Vec<String> {
    rules.iter().map(|r| String::from_utf8_lossy(r.target.scope_prefix()).into_owned()).collect()
}

#[test]
fn container_matchers_take_the_selected_policies_in_order_with_the_host_posture_and_mode() {
    let c = ok(r#"
[daemon]
mode = "audit"
default_posture = "block"
[[policy]]
name = "web"
[policy.selector]
match_labels = { app = "web" }
[[policy.process.match_directories]]
dir = "/tmp/"
[[policy]]
name = "allow-app"
action = "Allow"
[policy.selector]
containers = ["app"]
[[policy.process.match_directories]]
dir = "/app/"
recursive = true
"#);
    assert!(c.matcher.rules().is_empty());
    let both = identity(&[("app", "web")], Some("app"));
    assert_eq!(c.selecting(&both), vec![0, 1]);
    let m = c.container_matcher(&[1, 0, 1, 7]);
    assert_eq!(scopes_of(m.rules()), vec!["/tmp/", "/app/"], "policy order, once each, unknown indexes ignored");
    assert_eq!((m.mode(), m.posture(), m.whitelist()), (Mode::Audit, Posture::Block, true));
    let d = m.decide(Scope::Path(b"/tmp/x"), 0, &mut KnownSubject::default());
    assert_eq!((d.outcome, d.rule.unwrap().policy.as_str()), (Outcome::Audit, "web"), "audit mode");
    // Allow rules of one container's policies turn on the posture for that container only.
    let web_only = c.container_matcher(&c.selecting(&identity(&[("app", "web")], Some("web"))));
    assert!(!web_only.whitelist());
    assert!(c.container_matcher(&[]).rules().is_empty());
}

#[test]
fn selector_forms() {
    // `[policy.selector]` with nothing, and `match_labels = {}`: every container.
    for sel in ["[policy.selector]\n", "[policy.selector]\nmatch_labels = {}\n"] {
        let c = ok(&format!("[[policy]]\nname = \"p\"\n{sel}[[policy.process.match_paths]]\npath = \"/x\"\n"));
        assert_eq!(c.container_policies[0].selector, Selector::default(), "{sel}");
        assert_eq!(c.selecting(&Identity::default()), vec![0]);
    }
    // KubeArmor's container-name label is read as `containers`, one name or a list.
    let c = ok(
        "[[policy]]\nname = \"p\"\n[policy.selector]\nmatch_labels = { app = \"wp\", \"kubearmor.io/container.name\" = \"[wordpress, php]\" }\n[[policy.process.match_paths]]\npath = \"/x\"\n",
    );
    let s = &c.container_policies[0].selector;
    assert_eq!(s.describe(), "labels:app=wp;namespace:*;containers:wordpress,php");
    assert_eq!(c.selecting(&identity(&[("app", "wp")], Some("php"))), vec![0]);
    assert!(c.selecting(&identity(&[("app", "wp")], Some("sidecar"))).is_empty());
    let c = ok(
        "[[policy]]\nname = \"p\"\n[policy.selector]\nmatch_labels = { \"kubearmor.io/container.name\" = \"one\" }\n[[policy.process.match_paths]]\npath = \"/x\"\n",
    );
    assert_eq!(c.container_policies[0].selector.containers, vec!["one"]);
    // A host policy and a container policy may share a name, and so may container policies of different
    // namespaces, as KubeArmor's may; two of one scope and namespace may not.
    let c = ok(&format!("{RULE}{}", RULE.replace("[[policy.process", "[policy.selector]\n[[policy.process")));
    assert_eq!((c.policy_count, c.container_policies.len()), (1, 1));
    let e = err(&format!("{CONTAINER}{CONTAINER}"));
    assert_eq!((e.line, e.col), (9, 8));
    assert!(
        e.message.contains(
            "duplicate container policy name \"c\" in namespace \"wordpress-mysql\" (first defined at p.toml:2:8)"
        ),
        "{e}"
    );
    let everywhere = CONTAINER.replace("namespace = \"wordpress-mysql\"\n", "");
    let c = ok(&format!("{everywhere}{CONTAINER}{}", CONTAINER.replace("wordpress-mysql", "other")));
    assert_eq!(c.container_policies.len(), 3);
    let e = err(&format!("{everywhere}{everywhere}"));
    assert!(e.message.contains("duplicate container policy name \"c\" (first defined at p.toml:2:8)"), "{e}");
}

#[test]
fn selector_errors_name_their_place() {
    let pol = |sel: &str| {
        format!("[[policy]]\nname = \"p\"\n[policy.selector]\n{sel}\n[[policy.process.match_paths]]\npath = \"/x\"\n")
    };
    let e = err(&pol("labels = { app = \"x\" }"));
    assert_eq!((e.line, e.col), (4, 1));
    assert!(e.message.contains("unknown field `labels`"), "{e}");
    let e = err(&pol("match_labels = { app = 1 }"));
    assert_eq!(e.line, 4);
    assert!(e.message.contains("invalid type"), "{e}");
    let e = err(&pol("match_labels = { \"\" = \"x\" }"));
    assert_eq!((e.line, e.col), (4, 18));
    assert!(e.message.contains("label name is empty"), "{e}");
    let e = err(&pol("match_labels = { \"app=x\" = \"y\" }"));
    assert!(e.message.contains("holds a space or '='"), "{e}");
    let e = err(&pol("namespace = \"\""));
    assert_eq!((e.line, e.col), (4, 13));
    assert!(e.message.contains("namespace is empty"), "{e}");
    let e = err(&pol("containers = []"));
    assert_eq!((e.line, e.col), (4, 14));
    assert!(e.message.contains("containers is empty"), "{e}");
    let e = err(&pol("containers = [\"a\", \" \"]"));
    assert_eq!((e.line, e.col), (4, 20));
    let e = err(&pol("containers = [\"a\"]\nmatch_labels = { \"kubearmor.io/container.name\" = \"b\" }"));
    assert_eq!(e.line, 5);
    assert!(e.message.contains("containers are named twice"), "{e}");
    let e = err(&pol("namespace = [\"a\"]"));
    assert!(e.message.contains("invalid type"), "{e}");
    // A container policy needs rules like any other.
    let e = err("[[policy]]\nname = \"p\"\n[policy.selector]\n");
    assert!(e.message.contains("container policy \"p\" has no rules"), "{e}");
}

#[test]
fn unknown_key_names_its_place() {
    let e = err("[daemon]\nmode = \"enforce\"\nmodee = \"audit\"\n");
    assert_eq!((e.line, e.col), (3, 1));
    assert!(e.message.contains("unknown field `modee`"), "{}", e.message);
    let e = err(&format!("{RULE}ownerOnly = true\n"));
    assert_eq!((e.line, e.col), (6, 1));
    assert!(e.message.contains("snake_case"), "{}", e.message);
    let e = err("[[policy]]\nname = \"p\"\ncolour = \"red\"\n[[policy.process.match_paths]]\npath = \"/tmp/x\"\n");
    assert_eq!((e.line, e.col), (3, 1));
    assert!(e.message.contains("colour"), "{}", e.message);
}

#[test]
fn wrong_type() {
    let e = err(&format!("{RULE}owner_only = \"yes\"\n"));
    assert_eq!((e.line, e.col), (6, 14));
    assert!(e.message.contains("invalid type"), "{}", e.message);
    let e = err("[[policy]]\nname = \"p\"\nseverity = \"high\"\n");
    assert_eq!(e.line, 3);
    let e =
        err("[[policy]]\nname = \"p\"\n[[policy.process.match_directories]]\ndir = \"/tmp/\"\nrecursive = \"yes\"\n");
    assert_eq!((e.line, e.col), (5, 13));
    assert!(e.message.contains("invalid type"), "{}", e.message);
}

#[test]
fn toml_syntax_error_names_its_line() {
    let e = err("[[policy]]\nname = \"p\n");
    assert_eq!(e.line, 2);
    assert!(!e.message.is_empty());
}

#[test]
fn relative_paths() {
    let e = err("[[policy]]\nname = \"p\"\n[[policy.process.match_paths]]\npath = \"tmp/x\"\n");
    assert_eq!((e.line, e.col), (4, 8));
    assert!(e.message.contains("relative") && e.message.contains("absolute"), "{}", e.message);
    let e = err("[daemon]\nalert_log = \"alerts.jsonl\"\n");
    assert_eq!((e.line, e.col), (2, 13));
    let e = err("[[policy]]\nname = \"p\"\n[[policy.process.match_directories]]\ndir = \"tmp/\"\n");
    assert_eq!((e.line, e.col), (4, 7));
    assert!(e.message.contains("absolute"), "{}", e.message);
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
    // A rule table with nothing in it.
    let e = err("[[policy]]\nname = \"p\"\n[[policy.process.match_paths]]\n");
    assert_eq!(e.line, 3);
    assert!(e.message.contains("path"), "{}", e.message);
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
        "[daemon]\nmode = \"audit\"\nalert_log = \"/x/a.jsonl\"\ncluster_name = \"c\"\nhost_name = \"h\"\ndefault_posture = \"block\"\ndefault_file_posture = \"block\"\nmax_alerts_per_sec = 7\npolicy_dir = \"/x/p.d\"\nfail_mode = \"open\"\nalert_socket = \"\"\nalert_socket_group = \"adm\"\nexec_cache = false\n",
    );
    assert_eq!(
        c.daemon,
        DaemonConfig {
            mode: Mode::Audit,
            alert_log: "/x/a.jsonl".into(),
            cluster_name: "c".into(),
            host_name: Some("h".into()),
            default_posture: Posture::Block,
            default_file_posture: Posture::Block,
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

    let c = ok(&format!("[open_guard]\nmulti_call = [\"mybox*\"]\n{RULE}"));
    assert!(c.open_guard.is_multi_call(b"/opt/bin/mybox-2") && !c.open_guard.is_multi_call(b"/bin/busybox"));
    let e = err(&format!("[open_guard]\nmulti_call = [\"/bin/busybox\"]\n{RULE}"));
    assert!(e.message.contains("multi_call entry") && e.message.contains("is a path"), "{e}");
}

#[test]
fn open_guard_max_directories_has_a_default_and_a_range() {
    assert_eq!(ok(RULE).open_guard.max_directories, 262_144);
    assert_eq!(ok(&format!("[open_guard]\nmax_directories = 1000\n{RULE}")).open_guard.max_directories, 1000);
    for bad in ["0", "-5", "4194305"] {
        let e = err(&format!("[open_guard]\nmax_directories = {bad}\n{RULE}"));
        assert_eq!((e.line, e.col), (2, 19), "{e}");
        assert!(e.message.contains("out of range") && e.message.contains("262144"), "{e}");
    }
}

fn names_in(c: &Config) -> Vec<String> {
    let host = c.matcher.rules().iter().map(|r| r.meta.policy.clone());
    host.chain(c.container_policies.iter().map(|p| p.name.clone())).collect()
}

#[test]
fn each_drop_in_loads_on_its_own_and_keeps_its_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let pd = dir.path().join("policy.d");
    std::fs::create_dir(&pd).unwrap();
    let main = dir.path().join("main.toml");
    std::fs::write(&main, format!("[daemon]\npolicy_dir = \"{}\"\n{RULE}", pd.display())).unwrap();
    let policy = |name: &str, path: &str| {
        format!("[[policy]]\nname = \"{name}\"\n[[policy.process.match_paths]]\npath = \"{path}\"\n")
    };
    std::fs::write(pd.join("10-a.toml"), policy("a", "/opt/a")).unwrap();
    std::fs::write(
        pd.join("20-b.yaml"),
        "kind: KubeArmorHostPolicy\nmetadata:\n  name: b\nspec:\n  process:\n    matchPaths:\n    - path: /opt/b\n",
    )
    .unwrap();
    std::fs::write(pd.join("30-c.toml"), policy("c", "/opt/c")).unwrap();
    let root = |p: &Path| p.to_path_buf();
    let first = load_each(&main, &root, None).unwrap();
    assert_eq!(names_in(&first), vec!["p", "a", "b", "c"]);
    assert!(first.refused.is_empty());
    assert_eq!(first.drop_in_texts.len(), 3);

    // b breaks (a YAML error), c changes: c's new version applies, b's last good one stays.
    std::fs::write(
        pd.join("20-b.yaml"),
        "kind: KubeArmorHostPolicy\nmetadata:\n  name: b\nspec:\n  process:\n    matchPaths:\n    - path: [oops\n",
    )
    .unwrap();
    std::fs::write(pd.join("30-c.toml"), policy("c", "/opt/c2")).unwrap();
    let second = load_each(&main, &root, Some(&first)).unwrap();
    assert_eq!(names_in(&second), vec!["p", "a", "b", "c"]);
    let paths: Vec<&[u8]> = second.matcher.rules().iter().map(|r| r.target.scope_prefix()).collect();
    assert_eq!(paths, vec![&b"/tmp/"[..], b"/opt/a", b"/opt/b", b"/opt/c2"]);
    let [r] = second.refused.as_slice() else { panic!("{:?}", second.refused) };
    assert!(r.kept_previous && r.file.ends_with("20-b.yaml"), "{r:?}");
    assert!(r.place.ends_with("20-b.yaml:7:13") || r.place.contains("20-b.yaml:7:"), "{r:?}");
    assert!(r.error.starts_with(&r.place), "{r:?}");
    assert!(second.drop_in_texts[&pd.join("20-b.yaml")].contains("/opt/b"), "the text in force is the previous one");

    // Without a previous version (a start, or a new file), a broken file is left out and the rest load.
    std::fs::write(pd.join("40-d.toml"), "[[policy]]\nname = \"d\"\n[[policy.process.match_paths]]\npath = \"rel\"\n")
        .unwrap();
    let third = load_each(&main, &root, Some(&second)).unwrap();
    assert_eq!(names_in(&third), vec!["p", "a", "b", "c"]);
    let d = third.refused.iter().find(|r| r.file.ends_with("40-d.toml")).unwrap();
    assert!(!d.kept_previous);
    assert_eq!(d.place, format!("{}:4:8", pd.join("40-d.toml").display()));
    let at_start = load_each(&main, &root, None).unwrap();
    assert_eq!(names_in(&at_start), vec!["p", "a", "c"]);
    assert_eq!(at_start.refused.len(), 2);
    assert!(at_start.refused.iter().all(|r| !r.kept_previous));

    // A file that fails half way leaves nothing of itself: its first policy is not loaded either.
    std::fs::write(pd.join("40-d.toml"), format!("{}{}", policy("d1", "/opt/d1"), policy("a", "/opt/dup"))).unwrap();
    let fourth = load_each(&main, &root, None).unwrap();
    assert!(!names_in(&fourth).contains(&"d1".to_owned()), "{:?}", names_in(&fourth));
    let d = fourth.refused.iter().find(|r| r.file.ends_with("40-d.toml")).unwrap();
    assert!(d.error.contains("duplicate policy name \"a\""), "{d:?}");

    // `check` (load) still fails on any drop-in that does not load.
    assert!(load(&main).is_err());
    // The main file still fails the load as a whole.
    std::fs::write(&main, "[daemon]\nmode = \"sometimes\"\n").unwrap();
    assert!(load_each(&main, &root, Some(&fourth)).is_err());
}

#[test]
fn exec_names_in_toml() {
    let c = ok(
        "[[policy]]\nname = \"n\"\n[[policy.process.match_paths]]\nexecname = \"apt\"\nfrom_source = [\"/bin/bash\"]\n",
    );
    let mut bash = KnownSubject { exe: Some(b"/bin/bash".to_vec()), uid: Some(0) };
    assert_eq!(c.matcher.decide(Scope::Path(b"/usr/bin/apt"), 0, &mut bash).outcome, Outcome::Block);
    assert_eq!(c.matcher.decide(Scope::Path(b"/opt/x/apt"), 0, &mut bash).outcome, Outcome::Block);
    assert_eq!(c.matcher.decide(Scope::Path(b"/usr/bin/apt-get"), 0, &mut bash).outcome, Outcome::Allow);
    let mut sh = KnownSubject { exe: Some(b"/bin/sh".to_vec()), uid: Some(0) };
    assert_eq!(c.matcher.decide(Scope::Path(b"/usr/bin/apt"), 0, &mut sh).outcome, Outcome::Allow);
    let pol = |entry: &str| format!("[[policy]]\nname = \"n\"\n[[policy.process.match_paths]]\n{entry}\n");
    for (entry, col, says) in [
        ("execname = \"bin/apt\"", 12, "is not a file name"),
        ("execname = \"\"", 12, "is not a file name"),
        ("execname = \"..\"", 12, "is not a file name"),
        ("path = \"/x\"\nexecname = \"x\"", 12, "has path and execname"),
    ] {
        let e = err(&pol(entry));
        assert!(e.message.contains(says), "{entry}: {e}");
        assert_eq!(e.col, col, "{entry}: {e}");
    }
    let e = err(&pol("owner_only = true"));
    assert!(e.message.contains("needs path = \"/usr/bin/apt\" or execname = \"apt\""), "{e}");
}

#[test]
fn match_expressions_in_toml() {
    let pol = |exprs: &str| {
        format!("[[policy]]\nname = \"e\"\n[policy.selector]\n{exprs}\n[[policy.process.match_paths]]\npath = \"/x\"\n")
    };
    let c = ok(&pol(
        "[[policy.selector.match_expressions]]\nkey = \"namespace\"\noperator = \"In\"\nvalues = [\"nginx1\"]\n[[policy.selector.match_expressions]]\nkey = \"label\"\noperator = \"NotIn\"\nvalues = [\"app=nginx\"]",
    ));
    let id = |ns: &str, app: &str| Identity {
        labels: [(selector::NAMESPACE_LABEL, ns), ("app", app)].map(|(k, v)| (k.to_owned(), v.to_owned())).into(),
        name: None,
    };
    assert_eq!(c.selecting(&id("nginx1", "web")), vec![0]);
    assert!(c.selecting(&id("nginx1", "nginx")).is_empty());
    assert!(c.selecting(&id("nginx2", "web")).is_empty());
    let expr = |key: &str, op: &str, values: &str| {
        pol(&format!("[[policy.selector.match_expressions]]\nkey = \"{key}\"\noperator = \"{op}\"\nvalues = {values}"))
    };
    for (text, line, col, says) in [
        (expr("app", "In", "[\"x\"]"), 5, 7, "key \"app\" is not known"),
        (expr("label", "Exists", "[\"app=x\"]"), 6, 12, "KubeArmor's CRDs refuse Exists and DoesNotExist"),
        (expr("label", "DoesNotExist", "[\"app=x\"]"), 6, 12, "write \"In\" or \"NotIn\""),
        (expr("label", "In", "[\"app\"]"), 7, 11, "is not name=value"),
        (expr("label", "In", "[]"), 7, 10, "values is empty"),
        (expr("namespace", "In", "[\"\"]"), 7, 11, "namespace is empty"),
    ] {
        let e = err(&text);
        assert!(e.message.contains(says), "{text}: {e}");
        assert_eq!((e.line, e.col), (line, col), "{text}: {e}");
    }
    // An empty NotIn list of namespaces: any namespace, but one.
    let c = ok(&expr("namespace", "NotIn", "[]"));
    assert_eq!(c.selecting(&id("default", "x")), vec![0]);
    assert!(c.selecting(&Identity::default()).is_empty());
}

#[test]
fn kubearmor_container_name_lists_as_kubearmor_reads_them() {
    let pol = |value: &str| {
        format!(
            "[[policy]]\nname = \"p\"\n[policy.selector]\nmatch_labels = {{ \"kubearmor.io/container.name\" = \"{value}\" }}\n[[policy.process.match_paths]]\npath = \"/x\"\n"
        )
    };
    for (value, want) in
        [("[]", vec![]), ("", vec![]), ("[container-1,,]", vec!["container-1"]), ("[a, b]", vec!["a", "b"])]
    {
        assert_eq!(ok(&pol(value)).container_policies[0].selector.containers, want, "{value}");
    }
}

#[test]
fn lints_name_shallow_block_and_audit_patterns_only() {
    let text = "[[policy]]\nname = \"b\"\n[[policy.process.match_patterns]]\npattern = \"/tmp/*\"\n\
                [[policy]]\nname = \"a\"\naction = \"Allow\"\n[[policy.process.match_patterns]]\npattern = \"/opt/*\"\n\
                [[policy]]\nname = \"c\"\naction = \"Audit\"\n[policy.selector]\n[[policy.process.match_patterns]]\npattern = \"/var/tmp/*\"\n";
    let found: Vec<String> = ok(text).lints().iter().map(|l| l.origin.clone()).collect();
    assert_eq!(found, vec!["p.toml:3:1", "p.toml:14:1"]);
}

const FILE_RULES: &str = r#"[[policy]]
name = "f"
action = "Block"

[[policy.file.match_paths]]
path = "/etc/shadow"
read_only = true
from_source = ["/usr/bin/cat"]

[[policy.file.match_directories]]
dir = "/etc/ssh/"
recursive = true
owner_only = true
action = "Audit"

[[policy.file.match_patterns]]
pattern = "/root/**/*.key"
read_only = true
owner_only = true
"#;

#[test]
fn file_rules_load_into_a_matcher_of_their_own() {
    use crate::policy::file_rules::Access;
    let c = ok(FILE_RULES);
    assert!(c.matcher.rules().is_empty(), "no process rule");
    assert_eq!(c.policy_count, 1);
    let rules = c.file_matcher.rules();
    assert_eq!(rules.len(), 3);
    assert_eq!(
        rules.iter().map(|r| (r.read_only, r.rule.owner_only)).collect::<Vec<_>>(),
        [(true, false), (false, true), (true, true)]
    );
    assert_eq!(rules[0].rule.from_source, [b"/usr/bin/cat".to_vec()]);
    assert_eq!(rules[1].rule.meta.action, Action::Audit);
    assert_eq!(rules[1].rule.meta.origin, "p.toml:10:1");
    let mut cat = KnownSubject { exe: Some(b"/usr/bin/cat".to_vec()), uid: Some(1000) };
    let d = c.file_matcher.decide(b"/etc/shadow", Access::Write, 0, &mut cat);
    assert_eq!((d.outcome, d.rule.map(|r| r.policy.as_str())), (Outcome::Block, Some("f")));
    assert_eq!(c.file_matcher.decide(b"/etc/shadow", Access::Read, 0, &mut cat).outcome, Outcome::Allow);
    assert_eq!(c.file_matcher.decide(b"/etc/ssh/a/b", Access::Read, 0, &mut cat).outcome, Outcome::Audit);
    assert_eq!(c.file_matcher.decide(b"/root/x/id.key", Access::Read, 1000, &mut cat).outcome, Outcome::Allow);
    assert_eq!(c.file_matcher.decide(b"/root/x/id.key", Access::Write, 1000, &mut cat).outcome, Outcome::Block);
    assert_eq!((c.file_enforced.rules().len(), c.file_rules_not_enforced()), (3, 0));
    assert_eq!(ok(RULE).file_rules_not_enforced(), 0);
}

#[test]
fn a_container_policy_with_file_rules_only_adds_no_exec_policy() {
    let text =
        FILE_RULES.replace("action = \"Block\"\n", "action = \"Block\"\n[policy.selector]\nnamespace = \"ns\"\n");
    let c = ok(&text);
    assert!(c.container_policies.is_empty(), "the exec guard sees no container policy");
    assert_eq!(c.container_file_policies.len(), 1);
    assert!(c.file_matcher.is_empty());
    let both = format!("{text}[[policy.process.match_paths]]\npath = \"/bin/sh\"\n");
    let c = ok(&both);
    assert_eq!((c.container_policies.len(), c.container_file_policies.len()), (1, 1));
    let id = Identity { labels: [(selector::NAMESPACE_LABEL.to_owned(), "ns".to_owned())].into(), name: None };
    assert_eq!(c.selecting_files(&id), [0]);
    assert_eq!(c.container_file_matcher(&[0]).rules().len(), 3);
    assert!(c.selecting_files(&Identity::default()).is_empty());
}

#[test]
fn file_rules_are_refused_where_they_stand() {
    let file = |body: &str| format!("[[policy]]\nname = \"f\"\n[[policy.file.match_paths]]\n{body}\n");
    let e = err(&file("path = \"etc/shadow\""));
    assert_eq!((e.line, e.message.contains("relative")), (4, true), "{e}");
    let e = err(&file("path = \"/etc/\""));
    assert!(e.message.contains("match_directories"), "{e}");
    let e = err(&file("path = \"/etc/shadow\"\nreadOnly = true"));
    assert_eq!(e.line, 5);
    assert!(e.message.contains("snake_case"), "{e}");
    let e = err(&file("path = \"/etc/shadow\"\nread_only = \"yes\""));
    assert_eq!((e.line, e.message.contains("invalid type")), (5, true), "{e}");
    let e = err(&file("execname = \"cat\""));
    assert!(e.message.contains("execname"), "{e}");
    let e = err("[[policy]]\nname = \"f\"\n[[policy.file.match_directories]]\ndir = \"/etc\"\n");
    assert!(e.message.contains("must end with '/'"), "{e}");
    let e = err(
        "[[policy]]\nname = \"f\"\n[[policy.file.match_patterns]]\npattern = \"/etc/*\"\nfrom_source = [\"/bin/cat\"]\n",
    );
    assert!(e.message.contains("from_source"), "{e}");
    let e = err("[[policy]]\nname = \"f\"\n[[policy.file.match_patterns]]\npattern = \"/etc/[a-\"\n");
    assert!(e.message.contains("not a valid glob"), "{e}");
    let e =
        err("[[policy]]\nname = \"f\"\n[policy.file]\naction = \"Deny\"\n[[policy.file.match_paths]]\npath = \"/x\"\n");
    assert_eq!(e.line, 4, "{e}");
    let e = err("[[policy]]\nname = \"f\"\n[policy.file]\n");
    assert!(e.message.contains("has no rules"), "{e}");
    let e = err("[daemon]\ndefault_file_posture = \"allow\"\n");
    assert!(e.message.contains("default_file_posture \"allow\" is not known"), "{e}");
}
