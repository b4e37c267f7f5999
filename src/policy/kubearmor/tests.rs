use std::path::{Path, PathBuf};

use super::*;
use crate::policy::matcher::{KnownSubject, Outcome, Scope};

/// `tests/kubearmor/`: each `X.yaml` with the `X.toml` it must convert to. `NOEXECD_BLESS=1` rewrites them.
fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kubearmor");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| is_yaml(p))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "corpus too small: {files:?}");
    files
}

fn convert(name: &str, text: &str) -> Conversion {
    convert_str(Path::new(name), text, crate::policy::validate_str).unwrap_or_else(|e| panic!("{e}"))
}

fn convert_err(text: &str) -> String {
    match convert_str(Path::new("x.yaml"), text, crate::policy::validate_str)
        .and_then(|c| crate::policy::check_imported(&c).map(|()| c))
    {
        Err(e) => e.to_string(),
        Ok(c) => panic!("expected an error, got:\n{}", c.toml()),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const HEAD: &str = "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: p\n";

#[test]
fn corpus_converts_to_its_golden_toml() {
    let bless = std::env::var_os("NOEXECD_BLESS").is_some();
    let mut failed = Vec::new();
    for yaml in corpus() {
        let name = yaml.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&yaml).unwrap();
        let got = convert(&name, &text).toml();
        let golden = yaml.with_extension("toml");
        if bless {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
        if got != want {
            failed.push(format!("=== {name}: got\n{got}\n=== want ({})\n{want}", golden.display()));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn every_golden_toml_loads() {
    for yaml in corpus() {
        let golden = yaml.with_extension("toml");
        let text = std::fs::read_to_string(&golden).unwrap();
        crate::policy::load_str(&golden, &text).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn every_field_reaches_the_compiled_rules() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kubearmor/every-field.yaml"))
        .unwrap();
    let c = convert("every-field.yaml", &text);
    let kinds: Vec<ReportKind> = c.reports.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, vec![ReportKind::Warning], "/opt/*/bin/*.sh leaves /opt/x/bin/a/x.sh open: {:?}", c.reports);
    let config = crate::policy::load_str(Path::new("every-field.toml"), &c.toml()).unwrap();
    let rules = config.matcher.rules();
    assert_eq!(rules.len(), 4 + 3 + 2);
    // Innermost level wins: process section over spec, rule over section.
    let wget = &rules[0];
    assert_eq!(wget.meta.action, crate::policy::matcher::Action::Block);
    assert_eq!((wget.meta.severity, wget.meta.tags.clone()), (4, vec!["process-tag".into(), "second".into()]));
    assert_eq!(wget.meta.message, "set on the process section");
    let nc = &rules[3];
    assert_eq!(nc.meta.action, crate::policy::matcher::Action::Audit);
    assert_eq!((nc.meta.severity, nc.meta.tags.clone()), (9, vec!["rule-tag".into()]));
    assert_eq!(nc.from_source, vec![b"/usr/sbin/nginx".to_vec(), b"/usr/bin/php-fpm8.2".to_vec()]);
    assert!(rules[1].owner_only && !nc.owner_only);
    let www = &rules[6];
    assert_eq!(www.meta.action, crate::policy::matcher::Action::Allow);
    assert!(www.meta.tags.is_empty() && www.meta.message.is_empty());
    let run_user = &rules[8];
    assert!(run_user.owner_only);
    assert_eq!(run_user.meta.severity, 10);
    let d = config.matcher.decide(Scope::Path(b"/home/u/x"), 0, &mut KnownSubject::default());
    assert_eq!(d.outcome, Outcome::Block);
}

#[test]
fn lower_case_actions_are_normalised() {
    let c = convert(
        "x.yaml",
        &format!(
            "{HEAD}spec:\n  action: allow\n  process:\n    matchPaths:\n    - path: /a\n      action: aUdIt\n    - path: /b\n"
        ),
    );
    let t = c.toml();
    assert!(t.contains("action = \"Allow\"") && t.contains("action = \"Audit\""), "{t}");
    let e = convert_err(&format!("{HEAD}spec:\n  action: Deny\n  process:\n    matchPaths:\n    - path: /a\n"));
    assert_eq!(
        e,
        "x.yaml:6:11: DOC#1 policy p: spec.action: action \"Deny\" is not known: write Block, Audit or Allow"
    );
}

#[test]
fn quoted_and_bad_severities() {
    let rule = "  process:\n    matchPaths:\n    - path: /a\n";
    for (sev, want) in
        [("\"5\"", "severity = 5"), ("'10'", "severity = 10"), ("1", "severity = 1"), ("3.0", "severity = 3")]
    {
        let t = convert("x.yaml", &format!("{HEAD}spec:\n  severity: {sev}\n{rule}")).toml();
        assert!(t.contains(want), "{sev}: {t}");
    }
    for sev in ["high", "0", "11", "\"-1\"", "[1]", "2.5"] {
        let e = convert_err(&format!("{HEAD}spec:\n  severity: {sev}\n{rule}"));
        assert!(
            e.starts_with("x.yaml:6:") && e.contains("spec.severity: severity") && e.contains("1 to 10"),
            "{sev}: {e}"
        );
    }
}

/// The reports of converting `text`, as `noexecd import` prints them.
fn report_lines(c: &Conversion) -> Vec<String> {
    c.reports.iter().map(ToString::to_string).collect()
}

#[test]
fn policy_level_value_errors_name_their_place_in_the_yaml() {
    let e = convert_err("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nspec: {}\n");
    assert!(e.contains("DOC#1: metadata.name: is missing"), "{e}");
    let e = convert_err(&format!("{HEAD}spec:\n  tags: CIS\n  process:\n    matchPaths:\n    - path: /a\n"));
    assert!(e.contains("spec.tags: expected a list of tags"), "{e}");
    let e = convert_err(&format!("{HEAD}spec:\n  process:\n    severity: high\n    matchPaths:\n    - path: /a\n"));
    assert!(e.starts_with("x.yaml:7:15: DOC#1 policy p: spec.process.severity: severity high"), "{e}");
}

/// A rule that cannot be read, or that the loader would refuse, is reported with its place and left out;
/// the rest of the policy is imported and loads.
#[test]
fn unusable_rules_are_reported_and_the_rest_imported() {
    let rules = [
        (
            "    matchPaths:\n    - path: /a\n      ownerOnly: maybe\n",
            "spec.process.matchPaths[0] not enforced by noexecd (spec.process.matchPaths[0].ownerOnly: maybe is not a boolean: write true or false; rule skipped) [line 9]",
        ),
        (
            "    matchPaths:\n    - ownerOnly: true\n",
            "spec.process.matchPaths[0] not enforced by noexecd (spec.process.matchPaths[0]: path is missing: write path: /usr/bin/apt or execname: apt; rule skipped) [line 8]",
        ),
        (
            "    matchPaths: /a\n",
            "spec.process.matchPaths not enforced by noexecd (expected a list of rules, found a string; skipped) [line 7]",
        ),
        (
            "    matchPaths:\n    - just-a-string\n",
            "spec.process.matchPaths[0] not enforced by noexecd (spec.process.matchPaths[0]: expected a rule (a mapping), found a string; rule skipped) [line 8]",
        ),
        (
            "    matchDirectories:\n    - dir: tmp/\n      recursive: true\n",
            "spec.process.matchDirectories[0] not enforced by noexecd (spec.process.matchDirectories[0].dir: dir \"tmp/\" is relative: write an absolute path such as \"/tmp/\"; rule skipped) [line 8]",
        ),
        (
            "    matchPaths:\n    - path: /a\n      fromSource:\n      - path: /bin/sh\n      - path: bin/bash\n",
            "spec.process.matchPaths[0] not enforced by noexecd (spec.process.matchPaths[0].fromSource[1].path: from_source \"bin/bash\" is relative: write an absolute path such as \"/usr/sbin/apache2\"; rule skipped) [line 11]",
        ),
        (
            "    matchPatterns:\n    - pattern: /tmp/[x\n",
            "spec.process.matchPatterns[0] not enforced by noexecd (spec.process.matchPatterns[0].pattern: pattern \"/tmp/[x\" is not a valid glob: unclosed character class; missing ']'; `*` stays within one path component, `**` must stand alone between slashes (\"/tmp/**/x\"); rule skipped) [line 8]",
        ),
        (
            "    matchPatterns:\n    - pattern: dbus-daemon\n",
            "spec.process.matchPatterns[0] not enforced by noexecd (spec.process.matchPatterns[0].pattern: pattern \"dbus-daemon\" is relative: write an absolute glob such as \"/tmp/**/*.sh\"; rule skipped) [line 8]",
        ),
    ];
    for (rule, want) in rules {
        // Alone, the rule leaves nothing to import.
        let c = convert("x.yaml", &format!("{HEAD}spec:\n  process:\n{rule}"));
        assert_eq!(report_lines(&c)[0], format!("x.yaml:DOC#1 policy p: {want}"), "{rule}");
        assert!(c.policies.is_empty(), "{rule}");
        // Next to a good rule, the good one is imported, and so is the next policy of the file.
        let good = if rule.contains("matchPatterns") {
            "    matchPaths:\n    - path: /ok/x\n"
        } else {
            "    matchPatterns:\n    - pattern: /ok/**\n"
        };
        let next = HEAD.replace("name: p", "name: q");
        let text = format!(
            "{HEAD}spec:\n  process:\n{rule}{good}---\n{next}spec:\n  process:\n    matchPaths:\n    - path: /q\n"
        );
        let c = convert("x.yaml", &text);
        assert_eq!(c.policies.len(), 2, "{rule}");
        assert_eq!(c.not_enforced(), 1, "{rule}: {:?}", report_lines(&c));
        crate::policy::check_imported(&c).unwrap_or_else(|e| panic!("{rule}: {e}"));
        let config = crate::policy::load_str(Path::new("x.toml"), &c.toml()).unwrap_or_else(|e| panic!("{e}"));
        let kept: Vec<&[u8]> = config.matcher.rules().iter().map(|r| r.target.scope_prefix()).collect();
        assert!(kept.len() == 2 && kept[0].starts_with(b"/ok/") && kept[1] == b"/q", "{rule}: {kept:?}");
    }
    // A refused rule among good ones: the others keep their order and their places in the YAML.
    let c = convert(
        "x.yaml",
        &format!(
            "{HEAD}spec:\n  process:\n    matchPatterns:\n    - pattern: /tmp/*.sh\n    - pattern: dbus-daemon\n    - pattern: /var/tmp/*\n"
        ),
    );
    let config = crate::policy::load_str(Path::new("x.yaml"), &c.toml()).unwrap();
    let kept: Vec<(&[u8], &str)> =
        config.matcher.rules().iter().map(|r| (r.target.scope_prefix(), r.meta.policy.as_str())).collect();
    assert_eq!(kept, vec![(&b"/tmp/"[..], "p"), (&b"/var/tmp/"[..], "p")]);
    assert_eq!(c.not_enforced(), 1);
    assert_eq!(c.reports.iter().filter(|r| r.kind == ReportKind::Warning).count(), 2, "/tmp/*.sh and /var/tmp/*");
    assert!(c.toml().contains("# spec.process.matchPatterns[1] not enforced by noexecd (spec.process.matchPatterns[1].pattern: pattern \"dbus-daemon\" is relative"), "{}", c.toml());
}

/// Kubernetes reads a key written twice as its last value; so does noexecd, and reports the earlier one
/// with both lines.
#[test]
fn duplicate_keys_the_last_one_wins_and_is_reported() {
    let text = format!(
        "{HEAD}spec:\n  action: Block\n  process:\n    matchPaths:\n    - path: /a\n    matchPaths:\n    - path: /b\n      ownerOnly: false\n      ownerOnly: true\n  action: Audit\n"
    );
    let c = convert("x.yaml", &text);
    assert_eq!(
        report_lines(&c),
        vec![
            "x.yaml:DOC#1 policy p: spec.action not enforced by noexecd (duplicate key: the one at line 14 replaces it; the last one wins, as Kubernetes reads YAML) [line 6]",
            "x.yaml:DOC#1 policy p: spec.process.matchPaths not enforced by noexecd (duplicate key: the one at line 10 replaces it; the last one wins, as Kubernetes reads YAML) [line 8]",
            "x.yaml:DOC#1 policy p: spec.process.matchPaths[0].ownerOnly not enforced by noexecd (duplicate key: the one at line 13 replaces it; the last one wins, as Kubernetes reads YAML) [line 12]",
        ]
    );
    let config = crate::policy::load_str(Path::new("x.toml"), &c.toml()).unwrap();
    let [rule] = config.matcher.rules() else { panic!("{}", c.toml()) };
    assert_eq!(rule.target.scope_prefix(), b"/b");
    assert!(rule.owner_only);
    assert_eq!(rule.meta.action, crate::policy::matcher::Action::Audit);
    // The same key as text and as a number is one key, as in JSON; a kind written twice reads the last.
    let c = convert(
        "x.yaml",
        "apiVersion: security.kubearmor.com/v1\nkind: ConfigMap\nkind: KubeArmorHostPolicy\nmetadata:\n  name: p\nspec:\n  process:\n    matchPaths:\n    - path: /a\n",
    );
    assert_eq!(c.policies.len(), 1);
    assert_eq!(
        c.reports[0].short(),
        "kind not enforced by noexecd (duplicate key: the one at line 3 replaces it; the last one wins, as Kubernetes reads YAML)"
    );
    let items = "apiVersion: v1\nkind: List\nitems: []\nitems:\n- apiVersion: security.kubearmor.com/v1\n  kind: KubeArmorHostPolicy\n  metadata:\n    name: p\n  spec:\n    process:\n      matchPaths:\n      - path: /a\n";
    let c = convert("x.yaml", items);
    assert_eq!(c.policies.len(), 1);
    assert_eq!(
        report_lines(&c),
        vec![
            "x.yaml:DOC#1: items not enforced by noexecd (duplicate key: the one at line 4 replaces it; the last one wins, as Kubernetes reads YAML) [line 3]"
        ]
    );
}

#[test]
fn yaml_syntax_errors_and_tab_indentation() {
    let e = convert_err(&format!("{HEAD}spec:\n\tprocess: {{}}\n"));
    assert!(e.starts_with("x.yaml:6:") && e.contains("not valid YAML") && e.contains("tabs for indentation"), "{e}");
    let e = convert_err("a: [1, 2\n");
    assert!(e.starts_with("x.yaml:") && e.contains("not valid YAML"), "{e}");
    // A key written twice is valid YAML as Kubernetes reads it: the last one wins.
    let docs = yaml::parse_documents("a: 1\nb: 0\na: 2\n").unwrap();
    let a = docs[0].get("a").unwrap();
    assert_eq!((&a.value, a.line), (&yaml::Value::Int(2), 3));
    let keys: Vec<String> = docs[0].entries().map(|(k, _)| k).collect();
    assert_eq!(keys, vec!["b", "a"]);
    let mut dups = Vec::new();
    yaml::duplicate_keys(&docs[0], "", true, &mut dups);
    assert_eq!(dups, vec![yaml::Duplicate { path: "a".into(), line: 1, col: 1, later_line: 3 }]);
}

#[test]
fn crlf_line_endings_and_a_byte_order_mark() {
    let text = format!("\u{feff}{HEAD}spec:\n  process:\n    matchPaths:\n    - path: /a\n").replace('\n', "\r\n");
    let t = convert("x.yaml", &text).toml();
    assert!(t.contains("path = \"/a\"\n"), "{t}");
}

#[test]
fn duplicate_names_are_refused() {
    let doc = format!("{HEAD}spec:\n  process:\n    matchPaths:\n    - path: /a\n");
    let e = convert_err(&format!("{doc}---\n{doc}"));
    assert!(
        e.starts_with("x.yaml:13:9: DOC#2 policy p: metadata.name: \"p\" is already the name of the policy in DOC#1"),
        "{e}"
    );
}

#[test]
fn names_and_strings_are_escaped_for_toml() {
    let c = convert(
        "x.yaml",
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: \"we\\\"ird\\nname\"\nspec:\n  message: \"back\\\\slash \\u0001\"\n  process:\n    matchPaths:\n    - path: \"/tmp/\\u00e9 x\"\n",
    );
    let t = c.toml();
    assert!(t.contains("name = \"we\\\"ird\\nname\""), "{t}");
    assert!(t.contains("message = \"back\\\\slash \\u0001\""), "{t}");
    assert!(t.contains("# KubeArmorHostPolicy \"we\\\"ird\\nname\""), "{t}");
    let config = crate::policy::load_str(Path::new("x.toml"), &t).unwrap();
    assert_eq!(config.matcher.rules()[0].meta.policy, "we\"ird\nname");
    assert_eq!(config.matcher.rules()[0].meta.message, "back\\slash \u{1}");
    assert_eq!(config.matcher.rules()[0].target.scope_prefix(), "/tmp/é x".as_bytes());
}

#[test]
fn reports_name_file_document_policy_path_and_line() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kubearmor/not-enforced.yaml"))
        .unwrap();
    let c = convert("policies/not-enforced.yaml", &text);
    let lines: Vec<String> = c.reports.iter().map(ToString::to_string).collect();
    let want = [
        "policies/not-enforced.yaml:DOC#1 policy ksp-mixed: spec.process.matchPaths[2] not enforced by noexecd (fromSource directories at spec.process.matchPaths[2].fromSource[1]; rule skipped) [line 15]",
        "policies/not-enforced.yaml:DOC#1 policy ksp-mixed: spec.process.matchPaths[3].readOnly not enforced by noexecd (unknown key) [line 21]",
        "policies/not-enforced.yaml:DOC#1 policy ksp-mixed: spec.process.matchPatterns[0] not enforced by noexecd (fromSource on a pattern rule at spec.process.matchPatterns[0].fromSource; rule skipped) [line 23]",
        "policies/not-enforced.yaml:DOC#1 policy ksp-mixed: spec.process.matchCommands not enforced by noexecd (unknown key) [line 27]",
        "policies/not-enforced.yaml:DOC#1 policy ksp-mixed: spec.network.matchProtocols[0] not enforced by noexecd (network rules) [line 39]",
        "policies/not-enforced.yaml:DOC#1 policy ksp-mixed: spec.network.matchProtocols[1] not enforced by noexecd (network rules) [line 40]",
        "policies/not-enforced.yaml:DOC#1 policy ksp-mixed: spec.capabilities.matchCapabilities[0] not enforced by noexecd (capabilities rules) [line 43]",
        "policies/not-enforced.yaml:DOC#1 policy ksp-mixed: spec.syscalls.matchSyscalls[0] not enforced by noexecd (syscalls rules) [line 46]",
        "policies/not-enforced.yaml:DOC#1 policy ksp-mixed: spec.syscalls.matchPaths[0] not enforced by noexecd (syscalls rules) [line 48]",
        "policies/not-enforced.yaml:DOC#1 policy ksp-mixed: spec.apparmor not enforced by noexecd (raw AppArmor profile) [line 51]",
        "policies/not-enforced.yaml:DOC#1 policy ksp-mixed: spec.presets not enforced by noexecd (unknown key) [line 53]",
    ];
    assert_eq!(lines, want);
    assert_eq!(c.not_enforced(), want.len());
    // The kept rules: /usr/bin/apt, the name apt-get (anywhere: its scope is /) and /usr/bin/unknown-key; the
    // file rules of both policies, written and loaded.
    assert_eq!(c.policies.len(), 2);
    let config = crate::policy::load_str(Path::new("x.toml"), &c.toml()).unwrap();
    assert!(config.matcher.rules().is_empty(), "a KubeArmorPolicy is a container policy");
    let host: Vec<(&[u8], bool)> =
        config.file_matcher.rules().iter().map(|r| (r.rule.target.scope_prefix(), r.read_only)).collect();
    assert_eq!(host, [(&b"/etc/"[..], true)]);
    let file_rules = &config.container_file_policies[0].rules;
    let kinds: Vec<(&[u8], bool)> = file_rules.iter().map(|r| (r.rule.target.scope_prefix(), r.read_only)).collect();
    assert_eq!(kinds, [(&b"/etc/shadow"[..], true), (&b"/etc/ssh/"[..], false), (&b"/root/"[..], false)]);
    let paths: Vec<&[u8]> = config.container_policies[0].rules.iter().map(|r| r.target.scope_prefix()).collect();
    assert_eq!(paths, vec![&b"/usr/bin/apt"[..], &b"/"[..], &b"/usr/bin/unknown-key"[..]]);
}

#[test]
fn skipped_documents_and_kinds() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kubearmor/multi-document.yaml"))
            .unwrap();
    let c = convert("m.yaml", &text);
    let kinds: Vec<(ReportKind, &str)> = c.reports.iter().map(|r| (r.kind, r.doc.as_str())).collect();
    assert_eq!(
        kinds,
        vec![
            (ReportKind::Skipped, "DOC#1"),
            // DOC#3 is the empty document.
            (ReportKind::Skipped, "DOC#4"),
            (ReportKind::NotEnforced, "DOC#6"),
            (ReportKind::Note, "DOC#7"),
            (ReportKind::Skipped, "DOC#8"),
        ]
    );
    let names: Vec<&str> = c.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["ksp-shop-block-pkg-mgmt", "csp-every-namespace", "hsp-no-api-version", "hsp-last"]);
}

/// `noexecd run`/`check`: `*.yaml` in policy_dir loads next to `*.toml`; rule origins and errors name the
/// YAML file and line; what is not enforced does not stop the load.
#[test]
fn policy_dir_yaml_is_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("policy.d");
    std::fs::create_dir(&dir).unwrap();
    let main = write(
        tmp.path(),
        "noexecd.toml",
        &format!(
            "[daemon]\npolicy_dir = \"{}\"\n[[policy]]\nname = \"main\"\n[[policy.process.match_paths]]\npath = \"/m\"\n",
            dir.display()
        ),
    );
    write(&dir, "a.toml", "[[policy]]\nname = \"toml-drop-in\"\n[[policy.process.match_paths]]\npath = \"/t\"\n");
    let yaml = write(
        &dir,
        "b.yaml",
        &format!(
            "{HEAD}spec:\n  file:\n    matchPaths:\n    - path: /etc/shadow\n  process:\n    matchDirectories:\n    - dir: /srv/x/\n      action: Audit\n"
        ),
    );
    write(&dir, "c.yml", "kind: ConfigMap\n");
    write(&dir, "README", "not loaded\n");
    let config = crate::policy::load(&main).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.policy_count, 3);
    assert_eq!(config.files.len(), 4);
    let rule = &config.matcher.rules()[2];
    assert_eq!(rule.meta.policy, "p");
    assert_eq!(rule.meta.origin, format!("{}:11:7", yaml.display()));
    let d = config.matcher.decide(Scope::Path(b"/srv/x/y"), 0, &mut KnownSubject::default());
    assert_eq!(d.outcome, Outcome::Audit);
    // A duplicate name across files is the loader's error, at the YAML's metadata.name.
    write(
        &dir,
        "d.yaml",
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: main\nspec:\n  process:\n    matchPaths:\n    - path: /a\n",
    );
    let e = crate::policy::load(&main).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}:4:9: metadata.name: duplicate policy name \"main\"", dir.join("d.yaml").display())),
        "{e}"
    );
    // A rule the loader refuses is left out (and logged); the rest of the file loads. A KubeArmorPolicy is
    // a container policy whose rules name their place in the YAML.
    std::fs::remove_file(dir.join("d.yaml")).unwrap();
    let ksp = "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata:\n  name: e\n  namespace: shop\nspec:\n  selector:\n    matchLabels:\n      app: web\n  process:\n    matchPaths:\n    - path: relative\n    - path: /bin/sh\n";
    let e_yaml = write(&dir, "e.yaml", ksp);
    let config = crate::policy::load(&main).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((config.policy_count, config.matcher.rules().len()), (3, 3), "the host keeps its own policies");
    let [c] = config.container_policies.as_slice() else { panic!("{:?}", config.container_policies.len()) };
    assert_eq!(c.selector.describe(), "labels:app=web;namespace:shop;containers:*");
    assert_eq!(c.origin, format!("{}:4:9", e_yaml.display()));
    let [rule] = c.rules.as_slice() else { panic!("{}", c.rules.len()) };
    assert_eq!(
        (rule.target.scope_prefix(), rule.meta.origin.clone()),
        (&b"/bin/sh"[..], format!("{}:13:7", e_yaml.display()))
    );
    // A YAML file that does not convert stops the load like a broken TOML file.
    write(&dir, "e.yaml", &ksp.replace("app: web", "\"app tier\": web"));
    let e = crate::policy::load(&main).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{}:9:7: DOC#1 policy e: spec.selector.matchLabels.app tier: label name \"app tier\" holds a space",
            e_yaml.display()
        )),
        "{e}"
    );
}

#[test]
fn toml_quoting() {
    assert_eq!(emit::quote("a\"b\\c\td\u{7f}é"), "\"a\\\"b\\\\c\\td\\u007Fé\"");
}

#[test]
fn patterns_rewritten_only_when_needed() {
    for (p, want) in [
        ("/tmp/**/*.sh", "/tmp/**/*.sh"),
        ("/tmp/**", "/tmp/**"),
        ("/**/x", "/**/x"),
        ("/srv/**.py", "/srv/**/*.py"),
        ("/a/**b/**c", "/a/**b/**c"),
    ] {
        assert_eq!(process::globset_form(p), want, "{p}");
    }
}

#[test]
fn documents_are_numbered_as_written_empty_ones_included() {
    let doc = |name: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
    let text = format!("---\n{}---\n# empty\n---\n{}...\n---\n\n---\n{}", doc("a"), doc("b"), doc("c"));
    let c = convert("x.yaml", &text);
    let docs: Vec<&str> = c.reports.iter().map(|r| r.doc.as_str()).collect();
    assert_eq!(docs, vec!["DOC#1", "DOC#3", "DOC#5"]);
    let c = convert("x.yaml", &doc("only"));
    assert_eq!(c.reports[0].doc, "DOC#1");
}

#[test]
fn a_kubearmor_policy_becomes_a_container_policy() {
    let seed = "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata:\n  name: ksp-block-exec-inside-tmp\n  namespace: wordpress-mysql\nspec:\n  tags:\n  - config-files\n  message: Alert! Execution attempted inside tmp folder\n  selector:\n    matchLabels:\n      app: wordpress\n  process:\n    matchPatterns:\n    - pattern: /tmp/*\n    - pattern: /var/tmp/*\n  action: Block\n";
    let c = convert("x.yaml", seed);
    // The seed's gap: /tmp/* leaves /tmp/a/x open, under KubeArmor as here.
    assert_eq!(
        report_lines(&c),
        vec![
            "x.yaml:DOC#1 policy ksp-block-exec-inside-tmp: warning: spec.process.matchPatterns[0].pattern: pattern \"/tmp/*\" leaves the deeper paths of its directory open (\"*\" stays within one path component: /tmp/a/x runs); write \"/tmp/**\" or a match_directories rule with dir \"/tmp/\" and recursive = true [line 15]",
            "x.yaml:DOC#1 policy ksp-block-exec-inside-tmp: warning: spec.process.matchPatterns[1].pattern: pattern \"/var/tmp/*\" leaves the deeper paths of its directory open (\"*\" stays within one path component: /var/tmp/a/x runs); write \"/var/tmp/**\" or a match_directories rule with dir \"/var/tmp/\" and recursive = true [line 16]",
        ]
    );
    assert_eq!(c.not_enforced(), 0, "a warning is no part left out");
    assert!(c.policies[0].container);
    let config = crate::policy::load_str(Path::new("x.toml"), &c.toml()).unwrap();
    assert!(config.matcher.rules().is_empty(), "nothing for the host");
    let [p] = config.container_policies.as_slice() else { panic!() };
    assert_eq!(p.selector.describe(), "labels:app=wordpress;namespace:wordpress-mysql;containers:*");
    let wp = crate::policy::Identity {
        labels: [("app", "wordpress"), ("io.kubernetes.pod.namespace", "wordpress-mysql")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        name: Some("wordpress".into()),
    };
    let m = config.container_matcher(&config.selecting(&wp));
    let d = m.decide(Scope::Path(b"/var/tmp/xvzf"), 0, &mut KnownSubject::default());
    assert_eq!((d.outcome, d.rule.unwrap().tags.clone()), (Outcome::Block, vec!["config-files".to_owned()]));
    assert!(config.selecting(&crate::policy::Identity::default()).is_empty(), "not a container of that pod");
    // No selector, no namespace: every container, with a note.
    let body = "spec:\n  process:\n    matchPaths:\n    - path: /a\n";
    let c = convert(
        "x.yaml",
        &format!("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata:\n  name: k\n{body}"),
    );
    assert_eq!(
        report_lines(&c),
        vec![
            "x.yaml:DOC#1 policy k: metadata.namespace: none given: the policy selects containers in every namespace (kubectl would apply it in its current namespace, usually default) [line 4]"
        ]
    );
    assert_eq!((c.not_enforced(), c.policies.len()), (0, 1));
    let config = crate::policy::load_str(Path::new("x.toml"), &c.toml()).unwrap();
    assert_eq!(config.container_policies[0].selector, crate::policy::Selector::default());
    // KubeArmor's container-name label narrows to those containers; label expressions hold with the labels.
    let c = convert(
        "x.yaml",
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata:\n  name: k\n  namespace: ns\nspec:\n  selector:\n    matchLabels:\n      kubearmor.io/container.name: \"[web, php]\"\n      tier: 1\n    matchExpressions:\n    - key: label\n      operator: In\n      values: [app=a]\n  process:\n    matchPaths:\n    - path: /a\n",
    );
    assert!(report_lines(&c).is_empty(), "{:?}", report_lines(&c));
    assert!(
        c.toml().contains(
            "[policy.selector.match_labels]\n\"kubearmor.io/container.name\" = \"[web, php]\"\ntier = \"1\"\n"
        ),
        "{}",
        c.toml()
    );
    let config = crate::policy::load_str(Path::new("x.toml"), &c.toml()).unwrap();
    assert_eq!(
        config.container_policies[0].selector.describe(),
        "labels:tier=1;namespace:ns;containers:web,php;expressions:label In (app=a)"
    );
    // A host policy's empty node selector selects every node: nothing to report.
    let c = convert(
        "x.yaml",
        &format!("{HEAD}spec:\n  nodeSelector:\n    matchLabels: {{}}\n  process:\n    matchPaths:\n    - path: /a\n"),
    );
    assert!(c.reports.is_empty(), "{:?}", c.reports);
    assert!(!c.policies[0].container);
    let c = convert(
        "x.yaml",
        &format!(
            "{HEAD}spec:\n  nodeSelector:\n    matchLabels: {{role: web}}\n  process:\n    matchPaths:\n    - path: /a\n"
        ),
    );
    assert_eq!(
        c.reports[0].short(),
        "spec.nodeSelector not enforced by noexecd (Kubernetes node selector; noexecd applies the rules on this host whatever its labels)"
    );
    let config = crate::policy::load_str(Path::new("x.toml"), &c.toml()).unwrap();
    assert!(config.container_policies.is_empty() && config.matcher.rules().len() == 1);
}

/// Every `*.yaml`/`*.yml` below `dir`, sorted.
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if is_yaml(&path) {
            out.push(path);
        }
    }
    out.sort();
}

/// `tests/kubearmor/templates/`: every template with process rules that KubeArmor publishes. Each imports
/// as `noexecd import` does (whatever it holds that noexecd does not enforce is reported, never fatal),
/// and what it writes loads, as `noexecd check` loads it: a KubeArmorPolicy as a container policy, a
/// KubeArmorHostPolicy as a host policy.
#[test]
fn every_published_template_imports_and_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kubearmor/templates");
    let mut files = Vec::new();
    yaml_files(&dir, &mut files);
    let (mut policies, mut containers, mut not_enforced, mut rules_skipped, mut duplicates) = (0, 0, 0, 0, 0);
    let (mut shallow, mut kubearmor_only) = (0, Vec::new());
    let mut without_policy = Vec::new();
    let (mut file_rules, mut file_skipped, mut file_other, mut file_loaded) = (0, 0, 0, 0);
    let mut file_why: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for file in &files {
        let name = file.strip_prefix(&dir).unwrap().display().to_string();
        let c = convert_file(file, crate::policy::validate_str).unwrap_or_else(|e| panic!("{name}: {e}"));
        crate::policy::check_imported(&c).unwrap_or_else(|e| panic!("{name}: {e}"));
        let config = crate::policy::load_str(file, &c.toml()).unwrap_or_else(|e| panic!("{name}: {e}\n{}", c.toml()));
        let ksp = c.policies.iter().filter(|p| p.container).count();
        let selected: std::collections::BTreeSet<&str> = config
            .container_policies
            .iter()
            .map(|p| p.name.as_str())
            .chain(config.container_file_policies.iter().map(|p| p.name.as_str()))
            .collect();
        assert_eq!(selected.len(), ksp, "{name}");
        assert_eq!(config.policy_count, c.policies.len() - ksp, "{name}");
        let hosts: Vec<&str> = c.policies.iter().filter(|p| !p.container).map(|p| p.name.as_str()).collect();
        assert!(config.matcher.rules().iter().all(|r| hosts.contains(&r.meta.policy.as_str())), "{name}");
        assert!(config.file_matcher.rules().iter().all(|r| hosts.contains(&r.rule.meta.policy.as_str())), "{name}");
        if c.policies.is_empty() {
            without_policy.push(name);
        }
        policies += c.policies.len();
        containers += ksp;
        not_enforced += c.not_enforced();
        rules_skipped += c.reports.iter().filter(|r| r.detail.ends_with("rule skipped")).count();
        for r in c.reports.iter().filter(|r| r.detail.starts_with("file rule: converted")) {
            file_rules += 1;
            *file_why.entry(r.detail.clone()).or_insert(0) += 1;
        }
        file_skipped +=
            c.reports.iter().filter(|r| r.path.starts_with("spec.file") && r.detail.ends_with("rule skipped")).count();
        file_other += c
            .reports
            .iter()
            .filter(|r| r.kind == ReportKind::NotEnforced && r.path.starts_with("spec.file"))
            .filter(|r| !r.detail.starts_with("file rule: converted") && !r.detail.ends_with("rule skipped"))
            .inspect(|r| eprintln!("{r}"))
            .count();
        let loaded = config.file_matcher.rules().len()
            + config.container_file_policies.iter().map(|p| p.rules.len()).sum::<usize>();
        file_loaded += loaded;
        duplicates += c.reports.iter().filter(|r| r.detail.starts_with("duplicate key")).count();
        shallow += c.reports.iter().filter(|r| r.kind == ReportKind::Warning).count();
        kubearmor_only.extend(
            c.reports
                .iter()
                .filter(|r| r.kind == ReportKind::NotEnforced)
                .filter(|r| {
                    r.path.contains("execname")
                        || r.path.contains("matchExpressions")
                        || r.detail.contains("ClusterPolicy")
                })
                .map(ToString::to_string),
        );
    }
    assert!(
        kubearmor_only.is_empty(),
        "execname, matchExpressions and cluster policies are enforced: {kubearmor_only:?}"
    );
    eprintln!("{shallow} Block or Audit patterns leave deeper paths of their directory open");
    eprintln!(
        "{} files, {policies} policies ({containers} container, {} host), {not_enforced} parts not enforced, of them {rules_skipped} rules left out and {duplicates} keys written twice",
        files.len(),
        policies - containers
    );
    eprintln!(
        "file rules: {file_rules} converted and loaded ({file_loaded}), {file_skipped} left out, {file_other} other parts not read"
    );
    assert_eq!(files.len(), 473);
    assert_eq!((policies, containers), (472, 401));
    // Every file rule but two converts and loads: the two write `path:` in a matchPatterns entry, which
    // KubeArmor's CRD refuses too (its `pattern` is required). The 8 other parts: a misspelt `recursive`,
    // those two `path` keys, and 5 section keys written twice.
    assert_eq!((file_loaded, file_skipped, file_other), (1121, 2, 8));
    // Enforced: the Block and Audit rules, host and container, whose directory is neither `/` nor on /proc
    // or /sys, and the container policies' Allow rules (every one of the corpus's 83): 876 of 1121.
    let why = |w: &str| file_why.iter().filter(|(k, _)| k.contains(w)).map(|(_, n)| *n).sum::<usize>();
    let (allow, root, proc) = (why("Allow file rules"), why("from /"), why("/proc or /sys"));
    assert_eq!((file_rules, allow, root, proc), (245, 0, 224, 21), "{file_why:?}");
    // Besides the file rules this build does not enforce: network rules, node selectors,
    // 15 rules left out (13 with a relative pattern, process names such as `dbus-daemon` and regular
    // expressions, and the two file patterns above), 18 keys written twice, 3 unknown keys.
    assert_eq!((not_enforced - file_rules, rules_skipped, duplicates), (165, 15, 18));
    // Its only process rules are regular expressions (`^/proc/\*/maps$`), which no path matches.
    assert_eq!(without_policy, vec!["mitre/system/hsp-mitre-process-injection-proc-mem.yaml"]);
}

/// The shipped configuration with KubeArmor's example in its policy_dir, as `noexecd check` loads them: the
/// host keeps its policy; a WordPress container gets the example's Block and the shipped Audit.
#[test]
fn the_shipped_config_with_kubearmors_example_as_a_drop_in() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("policy.d");
    std::fs::create_dir(&dir).unwrap();
    let shipped = include_str!("../../../config/noexecd.toml");
    assert!(shipped.contains("\npolicy_dir = \"/etc/noexecd/policy.d\"\n"));
    let main = write(
        tmp.path(),
        "noexecd.toml",
        &shipped
            .replace("\npolicy_dir = \"/etc/noexecd/policy.d\"\n", &format!("\npolicy_dir = \"{}\"\n", dir.display())),
    );
    let seed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kubearmor/container-policy.yaml"))
            .unwrap();
    let doc1 = seed.split("\n---\n").next().unwrap();
    let c = convert("seed.yaml", doc1);
    write(&dir, "50-kubearmor.toml", &c.toml());
    let config = crate::policy::load(&main).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((config.policy_count, config.matcher.rules().len()), (1, 4));
    let names: Vec<&str> = config.container_policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["ksp-block-exec-inside-tmp", "ksp-block-exec-inside-tmp"]);
    let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let wp = crate::policy::Identity {
        labels: labels(&[("app", "wordpress"), ("io.kubernetes.pod.namespace", "wordpress-mysql")]),
        name: Some("wordpress".into()),
    };
    assert_eq!(config.selecting(&wp), vec![0, 1]);
    let m = config.container_matcher(&config.selecting(&wp));
    let decide = |p: &str| {
        let d = m.decide(Scope::Path(p.as_bytes()), 0, &mut KnownSubject::default());
        (d.outcome, d.rule.map(|r| r.origin.clone()))
    };
    let text = c.toml();
    let line = text.lines().position(|l| l == "[[policy.process.match_patterns]]").unwrap() + 1;
    let origin = format!("{}:{line}:1", dir.join("50-kubearmor.toml").display());
    assert_eq!(decide("/tmp/x"), (Outcome::Block, Some(origin)), "the example's rule decides");
    assert_eq!(decide("/dev/shm/x").0, Outcome::Audit);
    let other = crate::policy::Identity { labels: labels(&[("app", "db")]), name: None };
    assert_eq!(config.selecting(&other), vec![0]);
}

/// One of KubeArmor's test policies (`tests/fixtures/kubearmor/`, unchanged) loaded as a `policy_dir`
/// drop-in, and whether the program at `path` is blocked in each pod.
/// A pod of KubeArmor's test deployments: (namespace, labels, container name, whether `path` is blocked).
type Pod<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, bool);

fn kubearmor_suite(file: &str, path: &str, pods: &[Pod<'_>]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubearmor");
    let yaml = dir.join(file);
    let text = std::fs::read_to_string(&yaml).unwrap();
    let config = crate::policy::load_with_drop_ins(Path::new("main.toml"), "", &[(yaml, text)])
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    assert!(config.matcher.rules().is_empty(), "{file}: nothing for the host");
    for (namespace, labels, name, blocked) in pods {
        let mut all: std::collections::BTreeMap<String, String> =
            labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        all.insert(crate::policy::selector::NAMESPACE_LABEL.to_owned(), (*namespace).to_owned());
        let id = crate::policy::Identity { labels: all, name: Some((*name).to_owned()) };
        let m = config.container_matcher(&config.selecting(&id));
        let d = m.decide(Scope::Path(path.as_bytes()), 0, &mut KnownSubject::default());
        let want = if *blocked { Outcome::Block } else { Outcome::Allow };
        assert_eq!(d.outcome, want, "{file}: {path} in {namespace}/{name} {labels:?}");
    }
}

const NGINX: &[(&str, &str)] = &[("app", "nginx")];
const DEBIAN: &[(&str, &str)] = &[("app", "debian-app")];
const UBUNTU_1: &[(&str, &str)] = &[("group", "group-1"), ("container", "ubuntu-1")];
const UBUNTU_3: &[(&str, &str)] = &[("group", "group-1"), ("container", "ubuntu-3")];
const MULTI: &[(&str, &str)] = &[("container", "multicontainer")];

/// KubeArmor's `tests/k8s_env/csp`: cluster policies by namespace and label expressions, on apt.
#[test]
fn kubearmor_suite_cluster_policies() {
    let apt = "/usr/bin/apt";
    kubearmor_suite(
        "csp-in-operator-block-process.yaml",
        apt,
        &[("nginx1", NGINX, "nginx", true), ("nginx-later", NGINX, "nginx", true), ("nginx2", NGINX, "nginx", false)],
    );
    kubearmor_suite(
        "csp-not-in-operator-block-process.yaml",
        apt,
        &[("nginx2", NGINX, "nginx", true), ("nginx1", NGINX, "nginx", false)],
    );
    kubearmor_suite(
        "csp-matchlabels-in-block-process.yaml",
        apt,
        &[
            ("nginx1", NGINX, "nginx", true),
            ("nginx2", NGINX, "nginx", false),
            ("nginx1", DEBIAN, "debian-container", false),
        ],
    );
    kubearmor_suite(
        "csp-matchlabels-not-in-block-process.yaml",
        apt,
        &[
            ("nginx1", NGINX, "nginx", false),
            ("nginx2", NGINX, "nginx", false),
            ("nginx1", DEBIAN, "debian-container", true),
        ],
    );
}

/// KubeArmor's `tests/k8s_env/ksp`: execname and label expressions in a KubeArmorPolicy.
#[test]
fn kubearmor_suite_exec_names_and_label_expressions() {
    let apt = "/usr/bin/apt";
    kubearmor_suite("ksp-ubuntu-1-block-proc-execname.yaml", apt, &[("multiubuntu", UBUNTU_1, "ubuntu-1", true)]);
    kubearmor_suite(
        "ksp-ubuntu-1-block-proc-execname.yaml",
        "/tmp/copied/apt",
        &[("multiubuntu", UBUNTU_1, "ubuntu-1", true), ("multiubuntu", UBUNTU_3, "ubuntu-3", false)],
    );
    kubearmor_suite(
        "ksp-ubuntu-1-block-proc-execname.yaml",
        "/usr/bin/apt-get",
        &[("multiubuntu", UBUNTU_1, "ubuntu-1", false)],
    );
    kubearmor_suite(
        "ksp-match-expression-in-notin-block-process.yaml",
        apt,
        &[("multiubuntu", UBUNTU_1, "ubuntu-1", true), ("multiubuntu", UBUNTU_3, "ubuntu-3", false)],
    );
    kubearmor_suite(
        "ksp-match-expression-notin-block-process.yaml",
        apt,
        &[
            ("multiubuntu", UBUNTU_1, "ubuntu-1", false),
            ("multiubuntu", UBUNTU_3, "ubuntu-3", true),
            ("other", UBUNTU_3, "ubuntu-3", false),
        ],
    );
}

/// KubeArmor's `tests/k8s_env/multicontainer`: `kubearmor.io/container.name` lists, empty and malformed.
#[test]
fn kubearmor_suite_container_name_lists() {
    let ls = "/bin/ls";
    let both = |one: bool, two: bool| {
        [("multicontainer", MULTI, "container-1", one), ("multicontainer", MULTI, "container-2", two)]
    };
    kubearmor_suite("container-1-ls-block.yaml", ls, &both(true, false));
    kubearmor_suite("empty-array-ls-block.yaml", ls, &both(true, true));
    kubearmor_suite("empty-label-ls-block.yaml", ls, &both(true, true));
    kubearmor_suite("malformated-array-ls-block.yaml", ls, &both(true, false));
}

/// Every fixture imports with nothing reported as not enforced.
#[test]
fn kubearmor_suite_imports_with_nothing_left_out() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubearmor");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !is_yaml(&path) {
            continue;
        }
        let c = convert_file(&path, crate::policy::validate_str).unwrap();
        crate::policy::check_imported(&c).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.not_enforced(), 0, "{}: {:?}", path.display(), c.reports);
        assert_eq!(c.policies.len(), 1, "{}", path.display());
    }
}

/// `dir: /usr/bin` without its '/' is the directory, as KubeArmor reads it, in a host policy too.
#[test]
fn a_dir_without_its_slash_is_the_directory() {
    let c = convert(
        "x.yaml",
        &format!("{HEAD}spec:\n  process:\n    matchDirectories:\n    - dir: /usr/bin\n  action: Block\n"),
    );
    assert_eq!(
        report_lines(&c),
        vec![
            "x.yaml:DOC#1 policy p: spec.process.matchDirectories[0].dir: \"/usr/bin\" read as the directory \"/usr/bin/\" [line 8]"
        ]
    );
    let config = crate::policy::load_str(Path::new("x.toml"), &c.toml()).unwrap();
    let decide = |p: &str| config.matcher.decide(Scope::Path(p.as_bytes()), 0, &mut KnownSubject::default()).outcome;
    assert_eq!(decide("/usr/bin/ls"), Outcome::Block);
    assert_eq!(decide("/usr/bin2/ls"), Outcome::Allow);
    assert_eq!(decide("/usr/bin/sub/ls"), Outcome::Allow, "not recursive");
}

/// execname with fromSource, as KubeArmor's enforcers take it; path and execname in one rule are two rules.
#[test]
fn exec_names_with_from_source() {
    let c = convert(
        "x.yaml",
        &format!(
            "{HEAD}spec:\n  process:\n    matchPaths:\n    - execname: apt\n      fromSource:\n      - path: /bin/bash\n    - path: /usr/bin/x\n      execname: x\n  action: Block\n"
        ),
    );
    assert!(
        c.toml().contains("[[policy.process.match_paths]]\nexecname = \"apt\"\nfrom_source = [\"/bin/bash\"]\n"),
        "{}",
        c.toml()
    );
    assert_eq!(
        report_lines(&c),
        vec![
            "x.yaml:DOC#1 policy p: spec.process.matchPaths[1] not enforced by noexecd (spec.process.matchPaths[1].execname: a rule with both path and execname: write them as two rules; rule skipped) [line 12]"
        ]
    );
    let config = crate::policy::load_str(Path::new("x.toml"), &c.toml()).unwrap();
    let mut bash = KnownSubject { exe: Some(b"/bin/bash".to_vec()), uid: None };
    assert_eq!(config.matcher.decide(Scope::Path(b"/opt/apt"), 0, &mut bash).outcome, Outcome::Block);
    let mut sh = KnownSubject { exe: Some(b"/bin/sh".to_vec()), uid: None };
    assert_eq!(config.matcher.decide(Scope::Path(b"/opt/apt"), 0, &mut sh).outcome, Outcome::Allow);
}

/// KubeArmor's CRDs take In and NotIn only; a policy with another operator is refused whole, never
/// loaded selecting more than it says.
#[test]
fn other_expression_operators_refuse_the_policy() {
    let text = "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata:\n  name: k\n  namespace: ns\nspec:\n  selector:\n    matchExpressions:\n    - key: label\n      operator: Exists\n      values: [app=x]\n  process:\n    matchPaths:\n    - path: /a\n";
    let e = convert_err(text);
    assert!(e.starts_with("x.yaml:10:17: DOC#1 policy k: spec.selector.matchExpressions[0].operator: operator \"Exists\" is not one KubeArmor has"), "{e}");
}

/// Hostile values in `spec.file`: each is a report with its line or an error naming its place, never a
/// panic, and what is written loads.
#[test]
fn hostile_file_sections_are_reported_or_refused_where_they_stand() {
    let reported = [
        (
            "    matchPaths:\n    - path: /etc/shadow\n      readOnly: maybe\n",
            "spec.file.matchPaths[0].readOnly: maybe is not a boolean",
        ),
        ("    matchPaths:\n    - path: [a, b]\n", "spec.file.matchPaths[0]"),
        (
            "    matchPaths:\n    - execname: cat\n",
            "spec.file.matchPaths[0].execname not enforced by noexecd (unknown key)",
        ),
        ("    matchPaths:\n    - path: etc/shadow\n", "is relative"),
        ("    matchPaths:\n    - path: \"/etc/\\0x\"\n", "NUL"),
        ("    matchPaths:\n    - path: /etc/../shadow\n", "not a normalized path"),
        (
            "    matchDirectories:\n    - dir: /etc/ssh/\n      fromSource:\n      - dir: /bin/\n",
            "fromSource directories",
        ),
        ("    matchPatterns:\n    - pattern: \"/etc/[a-\"\n", "not a valid glob"),
        (
            "    matchPatterns:\n    - pattern: /etc/*\n      fromSource:\n      - path: /bin/cat\n",
            "fromSource on a pattern rule",
        ),
        ("    matchPaths: 7\n", "expected a list of rules"),
        ("    matchPaths:\n    - 7\n", "expected a rule (a mapping)"),
        ("    matchPaths:\n    - path: /etc/shadow\n      pts: true\n", "pts not enforced by noexecd (unknown key)"),
    ];
    for (section, want) in reported {
        let text = format!("{HEAD}spec:\n  file:\n{section}");
        let c = convert("x.yaml", &text);
        let lines: Vec<String> = c.reports.iter().map(ToString::to_string).collect();
        assert!(lines.iter().any(|l| l.contains(want) && l.contains("[line ")), "{section}: {lines:?}");
        crate::policy::check_imported(&c).unwrap_or_else(|e| panic!("{section}: {e}"));
    }
    let e = convert_err(&format!("{HEAD}spec:\n  file: [1, 2]\n"));
    assert!(e.contains("x.yaml:6:") && e.contains("spec.file: expected a mapping"), "{e}");
    let e = convert_err(&format!("{HEAD}spec:\n  file:\n    severity: 11\n    matchPaths:\n    - path: /x\n"));
    assert!(e.contains("x.yaml:7:"), "{e}");
    let e = convert_err(&format!("{HEAD}spec:\n  file:\n    action: Deny\n    matchPaths:\n    - path: /x\n"));
    assert!(e.contains("x.yaml:7:"), "{e}");
}
