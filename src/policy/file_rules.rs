//! The compiled file rules (`[policy.file]`, KubeArmor's `spec.file`): an immutable, pure matcher that
//! decides an open of a file from its canonical path, whether the open may write, the file's owner and
//! (lazily) who opens it.
//!
//! Semantics are KubeArmor's, as its AppArmor profile writes them:
//!
//! | rule | Block (Audit: the same opens, alerted and let through) | Allow |
//! |---|---|---|
//! | plain | every open | every open |
//! | `read_only` | opens that may write | opens for reading |
//! | `owner_only` | opens by anyone but the file's owner | opens by the owner |
//! | both | every open but the owner's for reading | the owner's opens for reading |
//!
//! `from_source` narrows a rule to openers running one of the listed executables. A Block rule wins over an
//! Allow rule; Allow rules switch on the default file posture (`[daemon] default_file_posture`) for every
//! other open of a file in the scope, host or container, whose policies hold them. When a fact cannot be read
//! (the opener's executable or uid, whether the open may write), a restricting rule applies and an Allow
//! rule does not: doubt never lets an open through.

use std::sync::Arc;

use crate::policy::matcher::{
    Action, DEFAULT_POSTURE_POLICY, Decision, Mode, Outcome, Posture, Rule, RuleMeta, Subject, Target,
};

/// Why this build does not enforce a file rule whose directory (see [`FileRule::directory`]: what would be
/// marked, with every directory below it) is `directory`; `None` when it does. Enforced: the Block and Audit
/// rules of host and container policies whose directory is not `/` (a file right below `/` included); a
/// container policy's directory is the container's, marked through its root.
pub fn not_enforced_reason(container: bool, action: Action, directory: &[u8]) -> Option<&'static str> {
    if action == Action::Allow && container {
        // The default file posture it turns on reaches every open in the container: every mount of the
        // container is marked for it, whatever directory the rule names.
        None
    } else if action == Action::Allow {
        Some("Allow file rules of host policies and the host's default file posture are not enforced by this build")
    } else if [&b"/proc"[..], b"/sys"].iter().any(|p| crate::host::mounts::is_path_prefix(p, directory)) {
        Some(
            "a file rule on /proc or /sys is not enforced (their files are made by the kernel, per process and per device)",
        )
    } else if directory == b"/" && container {
        Some(
            "a file rule reaching every directory from / is not enforced (it would send every open in the container to the daemon)",
        )
    } else if directory == b"/" {
        Some(
            "a file rule reaching every directory from / is not enforced (it would send every open on the host to the daemon)",
        )
    } else {
        None
    }
}

/// The directory a pattern's matches all lie below: its literal part up to the last `/` (`/var/log/` for
/// `/var/log/**/*.log`, `/` for `/**/*.pem`).
pub fn pattern_directory(pattern: &str) -> &str {
    let literal = pattern.split(['*', '?', '[', '{', '\\']).next().unwrap_or("/");
    match literal.rfind('/') {
        Some(i) => literal.get(..=i).unwrap_or("/"),
        None => "/",
    }
}

/// What the daemon and `check` say of the file rules this build does not enforce: how many, and why.
pub fn not_enforced_summary(count: usize) -> String {
    format!(
        "{count} file rule(s) loaded but not enforced by this build (Allow rules of host policies and the host's default file posture, rules reaching every directory from /, rules on /proc or /sys): `noexecd check` lists them"
    )
}

/// What an open asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `O_RDONLY`, no truncation.
    Read,
    /// `O_WRONLY`, `O_RDWR`, or `O_TRUNC`.
    Write,
    /// Not known (a caller whose open flags cannot be read): a read-only Block rule refuses it, a read-only
    /// Allow rule does not allow it.
    Unknown,
}

impl Access {
    /// From an open's flags (`open`, `openat`'s third argument, `openat2`'s `how.flags`): a write when it asks
    /// for write access or truncates; `None` (not readable) is [`Access::Unknown`].
    pub fn from_open_flags(flags: Option<u64>) -> Self {
        const ACCMODE: u64 = 0o3;
        const TRUNC: u64 = 0o1000;
        match flags {
            Some(f) if f & ACCMODE == 0 && f & TRUNC == 0 => Access::Read,
            Some(_) => Access::Write,
            None => Access::Unknown,
        }
    }
}

/// One compiled file rule: a process rule's target, conditions and meta, and `read_only`.
#[derive(Debug, Clone)]
pub struct FileRule {
    pub rule: Rule,
    pub read_only: bool,
}

impl FileRule {
    /// Why this build does not enforce it (see [`not_enforced_reason`]); `container`: a container policy's.
    pub fn not_enforced(&self, container: bool) -> Option<&'static str> {
        not_enforced_reason(container, self.rule.meta.action, self.directory())
    }

    /// The directory whose files (and subdirectories) the rule can match, without its trailing `/`: what
    /// the daemon marks. A file's own directory for a path, so that a file put in its place is seen too.
    pub fn directory(&self) -> &[u8] {
        let scope = match &self.rule.target {
            Target::Path(p) => match p.iter().rposition(|&b| b == b'/') {
                Some(0) | None => &b"/"[..],
                Some(i) => p.get(..i).unwrap_or(b"/"),
            },
            t => t.scope_prefix(),
        };
        match scope {
            b"/" => scope,
            s => s.strip_suffix(b"/").unwrap_or(s),
        }
    }

    /// The directory itself is a file of a `match_directories` rule, as in KubeArmor's `dir{,*}`.
    fn matches(&self, path: &[u8]) -> bool {
        match &self.rule.target {
            Target::Dir { dir, .. } if dir.len() > 1 && dir.strip_suffix(b"/") == Some(path) => true,
            t => t.matches(path),
        }
    }

    /// What the rule lets through of the opens it matches: none (no `read_only`, no `owner_only`), or those
    /// that pass each condition it has. `None` when a fact it needs cannot be read.
    fn permits(&self, access: Access, owner: u32, subject: &mut dyn Subject) -> Option<bool> {
        if !self.read_only && !self.rule.owner_only {
            return Some(false);
        }
        if self.read_only {
            match access {
                Access::Read => {}
                Access::Write => return Some(false),
                Access::Unknown => return None,
            }
        }
        if self.rule.owner_only {
            return subject.uid().map(|uid| uid == owner);
        }
        Some(true)
    }

    /// Whether the rule takes part in deciding this open: its `from_source` holds, and for a restricting
    /// rule the open is not one it lets through, for an Allow rule it is.
    fn applies(&self, access: Access, owner: u32, subject: &mut dyn Subject) -> bool {
        let restricting = self.rule.meta.action != Action::Allow;
        if !self.rule.from_source.is_empty() {
            let holds = match subject.exe() {
                Some(exe) => self.rule.from_source.iter().any(|s| s.as_slice() == exe),
                None => restricting,
            };
            if !holds {
                return false;
            }
        }
        match self.permits(access, owner, subject) {
            Some(permitted) if restricting => !permitted,
            Some(permitted) => permitted || (!self.read_only && !self.rule.owner_only),
            None => restricting,
        }
    }
}

/// The file rules of one scope (the host's, or a container's selected policies'), with the default file
/// posture and the mode.
#[derive(Debug, Clone)]
pub struct FileMatcher {
    rules: Vec<FileRule>,
    whitelist: bool,
    posture: Posture,
    mode: Mode,
    posture_meta: Arc<RuleMeta>,
}

impl FileMatcher {
    pub fn new(rules: Vec<FileRule>, posture: Posture, mode: Mode) -> Self {
        let whitelist = rules.iter().any(|r| r.rule.meta.action == Action::Allow);
        let posture_meta = Arc::new(RuleMeta {
            policy: DEFAULT_POSTURE_POLICY.to_owned(),
            action: match posture {
                Posture::Audit => Action::Audit,
                Posture::Block => Action::Block,
            },
            severity: 1,
            tags: Vec::new(),
            message: "File access not allowed by any Allow rule (default file posture)".to_owned(),
            origin: "[daemon] default_file_posture".to_owned(),
        });
        Self { rules, whitelist, posture, mode, posture_meta }
    }

    pub fn rules(&self) -> &[FileRule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a rule, or the default file posture its Allow rules turn on, may decide an open of `path`,
    /// whatever the open and the opener.
    pub fn reaches(&self, path: &[u8]) -> bool {
        self.whitelist || self.rules.iter().any(|r| r.matches(path))
    }

    /// Whether Allow rules turn the default file posture on: every open in the scope is then decided.
    pub fn whitelist(&self) -> bool {
        self.whitelist
    }

    /// Whether a `read_only` rule matches `path`: only then does deciding an open of it need the open's
    /// flags.
    pub fn needs_access(&self, path: &[u8]) -> bool {
        self.rules.iter().any(|r| r.read_only && r.matches(path))
    }

    /// The directories to mark, each once, without their trailing `/`.
    pub fn directories(&self) -> Vec<std::path::PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        let mut out: Vec<std::path::PathBuf> = Vec::new();
        for r in &self.rules {
            let d = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(r.directory()));
            if !out.contains(&d) {
                out.push(d);
            }
        }
        out
    }

    /// Decides an open of the file at canonical `path`, owned by `owner`.
    pub fn decide(&self, path: &[u8], access: Access, owner: u32, subject: &mut dyn Subject) -> Decision<'_> {
        let mut audit: Option<&Arc<RuleMeta>> = None;
        let mut allowed = false;
        for rule in &self.rules {
            if !rule.matches(path) || !rule.applies(access, owner, subject) {
                continue;
            }
            match rule.rule.meta.action {
                Action::Block => return self.apply_mode(Outcome::Block, &rule.rule.meta),
                Action::Audit => audit = audit.or(Some(&rule.rule.meta)),
                Action::Allow => allowed = true,
            }
        }
        if let Some(meta) = audit {
            return Decision { outcome: Outcome::Audit, rule: Some(meta) };
        }
        if allowed || !self.whitelist {
            return Decision { outcome: Outcome::Allow, rule: None };
        }
        match self.posture {
            Posture::Block => self.apply_mode(Outcome::Block, &self.posture_meta),
            Posture::Audit => Decision { outcome: Outcome::Audit, rule: Some(&self.posture_meta) },
        }
    }

    fn apply_mode<'m>(&self, outcome: Outcome, meta: &'m Arc<RuleMeta>) -> Decision<'m> {
        let outcome = match (self.mode, outcome) {
            (Mode::Audit, Outcome::Block) => Outcome::Audit,
            (_, o) => o,
        };
        Decision { outcome, rule: Some(meta) }
    }

    /// What a rule protects, one line each for `check`: `<kind> <target> <action>[ read_only][ owner_only]
    /// [ from_source=a,b] <origin>`.
    pub fn describe(rule: &FileRule) -> String {
        let r = &rule.rule;
        let (kind, target) = match &r.target {
            Target::Path(p) => ("path", String::from_utf8_lossy(p).into_owned()),
            Target::Dir { dir, recursive } => {
                (if *recursive { "dir-recursive" } else { "dir" }, String::from_utf8_lossy(dir).into_owned())
            }
            Target::Pattern { glob, .. } => ("pattern", glob.glob().glob().to_owned()),
            Target::Name(n) => ("name", String::from_utf8_lossy(n).into_owned()),
        };
        let mut out = format!("{kind}\t{target}\t{}", r.meta.action.as_str());
        if rule.read_only {
            out.push_str("\tread_only");
        }
        if r.owner_only {
            out.push_str("\towner_only");
        }
        if !r.from_source.is_empty() {
            let sources: Vec<String> = r.from_source.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect();
            out.push_str(&format!("\tfrom_source={}", sources.join(",")));
        }
        out.push_str(&format!("\tpolicy={}\t{}", r.meta.policy, r.meta.origin));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::matcher::KnownSubject;

    fn rule(target: Target, action: Action, read_only: bool, owner_only: bool) -> FileRule {
        let meta = RuleMeta {
            policy: "p".into(),
            action,
            severity: 5,
            tags: vec![],
            message: String::new(),
            origin: String::new(),
        };
        FileRule { rule: Rule { target, owner_only, from_source: vec![], meta: Arc::new(meta) }, read_only }
    }

    fn path(p: &str) -> Target {
        Target::Path(p.as_bytes().to_vec())
    }

    fn dir(d: &str, recursive: bool) -> Target {
        Target::Dir { dir: d.as_bytes().to_vec(), recursive }
    }

    const OWNER: u32 = 1000;

    fn decide(m: &FileMatcher, p: &str, access: Access, uid: Option<u32>) -> Outcome {
        let mut s = KnownSubject { exe: Some(b"/usr/bin/cat".to_vec()), uid };
        m.decide(p.as_bytes(), access, OWNER, &mut s).outcome
    }

    fn enforce(rules: Vec<FileRule>) -> FileMatcher {
        FileMatcher::new(rules, Posture::Audit, Mode::Enforce)
    }

    use Access::{Read, Unknown, Write};

    #[test]
    fn an_open_writes_when_it_asks_for_write_access_or_truncates() {
        assert_eq!(Access::from_open_flags(Some(0)), Read);
        assert_eq!(Access::from_open_flags(Some(0o2000000 | 0o400)), Read, "O_CLOEXEC, O_NOCTTY");
        assert_eq!(Access::from_open_flags(Some(0o1 | 0o100)), Write);
        assert_eq!(Access::from_open_flags(Some(0o2)), Write);
        assert_eq!(Access::from_open_flags(Some(0o3)), Write, "O_ACCMODE itself (ioctl-only opens) is not a read");
        assert_eq!(Access::from_open_flags(Some(0o1000)), Write, "O_RDONLY|O_TRUNC truncates");
        assert_eq!(Access::from_open_flags(None), Unknown);
    }
    use Outcome::{Allow as A, Audit as U, Block as B};

    /// KubeArmor's AppArmor file section, case by case: `deny owner klw, deny other klmrw` and the rest.
    #[test]
    fn block_rules_follow_kubearmors_apparmor_profile() {
        let cases: [(bool, bool, [Outcome; 6]); 4] = [
            // (read_only, owner_only, [owner read, owner write, owner unknown, other read, other write, other unknown])
            (false, false, [B, B, B, B, B, B]),
            (true, false, [A, B, B, A, B, B]),
            (false, true, [A, A, A, B, B, B]),
            (true, true, [A, B, B, B, B, B]),
        ];
        for (read_only, owner_only, want) in cases {
            let m = enforce(vec![rule(path("/etc/shadow"), Action::Block, read_only, owner_only)]);
            let got = [
                decide(&m, "/etc/shadow", Read, Some(OWNER)),
                decide(&m, "/etc/shadow", Write, Some(OWNER)),
                decide(&m, "/etc/shadow", Unknown, Some(OWNER)),
                decide(&m, "/etc/shadow", Read, Some(7)),
                decide(&m, "/etc/shadow", Write, Some(7)),
                decide(&m, "/etc/shadow", Unknown, Some(7)),
            ];
            assert_eq!(got, want, "read_only={read_only} owner_only={owner_only}");
            assert_eq!(decide(&m, "/etc/passwd", Write, Some(7)), A, "another file");
            assert_eq!(decide(&m, "/etc/shadow", Read, None), if owner_only || !read_only { B } else { A });
        }
    }

    #[test]
    fn allow_rules_permit_what_they_name_and_the_posture_takes_the_rest() {
        let cases: [(bool, bool, [Outcome; 6]); 4] = [
            (false, false, [A, A, A, A, A, A]),
            (true, false, [A, B, B, A, B, B]),
            (false, true, [A, A, A, B, B, B]),
            (true, true, [A, B, B, B, B, B]),
        ];
        for (read_only, owner_only, want) in cases {
            let m = FileMatcher::new(
                vec![rule(dir("/app/", true), Action::Allow, read_only, owner_only)],
                Posture::Block,
                Mode::Enforce,
            );
            let got = [
                decide(&m, "/app/x", Read, Some(OWNER)),
                decide(&m, "/app/x", Write, Some(OWNER)),
                decide(&m, "/app/x", Unknown, Some(OWNER)),
                decide(&m, "/app/x", Read, Some(7)),
                decide(&m, "/app/x", Write, Some(7)),
                decide(&m, "/app/x", Unknown, Some(7)),
            ];
            assert_eq!(got, want, "read_only={read_only} owner_only={owner_only}");
            assert_eq!(decide(&m, "/etc/passwd", Read, Some(OWNER)), B, "outside every Allow rule");
        }
        let audit = FileMatcher::new(
            vec![rule(dir("/app/", true), Action::Allow, false, false)],
            Posture::Audit,
            Mode::Enforce,
        );
        let mut s = KnownSubject::default();
        let d = audit.decide(b"/etc/passwd", Read, 0, &mut s);
        assert_eq!(d.outcome, U);
        assert_eq!(d.rule.map(|r| r.policy.as_str()), Some(DEFAULT_POSTURE_POLICY));
    }

    #[test]
    fn audit_rules_alert_on_the_opens_a_block_rule_would_refuse() {
        let m = enforce(vec![rule(path("/etc/passwd"), Action::Audit, true, false)]);
        assert_eq!(decide(&m, "/etc/passwd", Read, Some(7)), A);
        assert_eq!(decide(&m, "/etc/passwd", Write, Some(7)), U);
    }

    #[test]
    fn block_wins_and_audit_mode_only_alerts() {
        let rules = || {
            vec![
                rule(dir("/etc/", true), Action::Allow, false, false),
                rule(path("/etc/shadow"), Action::Block, false, false),
            ]
        };
        assert_eq!(decide(&enforce(rules()), "/etc/shadow", Read, Some(0)), B);
        let audit = FileMatcher::new(rules(), Posture::Block, Mode::Audit);
        assert_eq!(decide(&audit, "/etc/shadow", Read, Some(0)), U);
        assert_eq!(decide(&audit, "/usr/x", Read, Some(0)), U, "the posture, alerted only");
    }

    #[test]
    fn a_directory_rule_covers_the_directory_itself_and_its_files() {
        let m = enforce(vec![rule(dir("/etc/ssh/", false), Action::Block, false, false)]);
        assert_eq!(decide(&m, "/etc/ssh", Read, Some(0)), B);
        assert_eq!(decide(&m, "/etc/ssh/sshd_config", Read, Some(0)), B);
        assert_eq!(decide(&m, "/etc/ssh/d/x", Read, Some(0)), A, "not recursive");
        assert_eq!(decide(&m, "/etc/sshx", Read, Some(0)), A);
        let root = enforce(vec![rule(dir("/", false), Action::Block, false, false)]);
        assert_eq!(decide(&root, "/x", Read, Some(0)), B);
    }

    #[test]
    fn what_this_build_enforces_and_the_directories_it_marks() {
        let block = |t| rule(t, Action::Block, false, false);
        assert_eq!(block(path("/etc/shadow")).not_enforced(false), None);
        assert_eq!(block(path("/etc/shadow")).not_enforced(true), None, "a container policy's too");
        assert!(block(dir("/", true)).not_enforced(true).is_some(), "every directory of a container");
        assert_eq!(rule(path("/etc/shadow"), Action::Allow, false, false).not_enforced(true), None);
        assert_eq!(rule(dir("/", true), Action::Allow, false, false).not_enforced(true), None, "no mark of its own");
        assert!(rule(path("/etc/shadow"), Action::Allow, false, false).not_enforced(false).is_some());
        assert!(block(dir("/", true)).not_enforced(false).is_some());
        assert!(block(path("/shadow")).not_enforced(false).is_some(), "its directory is /: never marked");
        assert!(block(path("/proc/1/maps")).not_enforced(false).is_some());
        assert!(block(dir("/sys/", true)).not_enforced(false).is_some());
        assert_eq!(block(dir("/system/", true)).not_enforced(false), None);
        assert_eq!(block(path("/etc/shadow")).directory(), b"/etc");
        assert_eq!(block(path("/shadow")).directory(), b"/");
        assert_eq!(block(dir("/etc/ssh/", true)).directory(), b"/etc/ssh");
        assert_eq!(pattern_directory("/var/log/**/*.log"), "/var/log/");
        assert_eq!(pattern_directory("/**/*.pem"), "/");
        assert_eq!(pattern_directory("/etc/passwd"), "/etc/");
        let m = enforce(vec![
            block(path("/etc/shadow")),
            block(dir("/etc/ssh/", false)),
            rule(path("/etc/gshadow"), Action::Block, true, false),
        ]);
        assert_eq!(m.directories(), [std::path::PathBuf::from("/etc"), "/etc/ssh".into()]);
        assert!(m.needs_access(b"/etc/gshadow"));
        assert!(!m.needs_access(b"/etc/shadow"), "no read_only rule: the flags are not read");
    }

    #[test]
    fn from_source_narrows_and_an_unreadable_opener_is_refused() {
        let mut r = rule(path("/etc/shadow"), Action::Block, false, false);
        r.rule.from_source = vec![b"/usr/bin/cat".to_vec()];
        let m = enforce(vec![r]);
        assert_eq!(decide(&m, "/etc/shadow", Read, Some(0)), B, "decide() opens as /usr/bin/cat");
        let mut other = KnownSubject { exe: Some(b"/usr/bin/head".to_vec()), uid: Some(0) };
        assert_eq!(m.decide(b"/etc/shadow", Read, 0, &mut other).outcome, A);
        let mut gone = KnownSubject::default();
        assert_eq!(m.decide(b"/etc/shadow", Read, 0, &mut gone).outcome, B);
    }
}
