//! The compiled policy: an immutable, pure matcher. Given the canonical path of the file being executed, the
//! file's owner and (lazily) who executes it, it returns what to do and which rule said so. No I/O here: the
//! facts about the calling process come through [`Subject`], which the daemon backs with /proc and the
//! tests with plain values.
//!
//! Semantics follow KubeArmor's process rules (`spec.process` of KubeArmorPolicy/KubeArmorHostPolicy): an
//! `execname` rule ([`Target::Name`]) matches the last component of the path, `from_source` narrows a rule to
//! callers that run one of the listed executables, `owner_only` exempts the file's owner, Allow rules switch
//! on the default posture for everything else. Where KubeArmor leaves it open, a Block rule wins over an
//! Allow rule.

use std::path::Path;
use std::sync::Arc;

use std::os::unix::ffi::OsStrExt;

use crate::host::mounts::is_path_prefix;

/// What a rule asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Block,
    Audit,
    Allow,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block => "Block",
            Action::Audit => "Audit",
            Action::Allow => "Allow",
        }
    }
}

/// What an exec gets when Allow rules exist and none of them matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posture {
    Audit,
    Block,
}

/// `enforce` blocks; `audit` reports what it would have blocked and lets it run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Audit,
}

/// What goes into an alert about a rule: the innermost action, severity, tags and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMeta {
    pub policy: String,
    pub action: Action,
    pub severity: u8,
    pub tags: Vec<String>,
    pub message: String,
    /// `file:line:col` of the rule, for `explain` and logs.
    pub origin: String,
}

/// What a rule matches.
#[derive(Debug, Clone)]
pub enum Target {
    /// One file, by its absolute path.
    Path(Vec<u8>),
    /// Files in a directory (`dir` ends in `/`); with `recursive`, in its subdirectories too.
    Dir { dir: Vec<u8>, recursive: bool },
    /// An AppArmor-style glob: `*` within one path component, `**` across them.
    Pattern { glob: globset::GlobMatcher, literal_prefix: Vec<u8> },
    /// A file of this name (KubeArmor's `execname`: the last path component) in any directory.
    Name(Vec<u8>),
}

impl Target {
    pub fn matches(&self, path: &[u8]) -> bool {
        match self {
            Target::Path(p) => p == path,
            Target::Dir { dir, recursive } => match path.strip_prefix(dir.as_slice()) {
                Some(rest) => !rest.is_empty() && (*recursive || !rest.contains(&b'/')),
                None => false,
            },
            Target::Pattern { glob, .. } => glob.is_match(Path::new(std::ffi::OsStr::from_bytes(path))),
            Target::Name(name) => path.rsplit(|&b| b == b'/').next() == Some(name.as_slice()),
        }
    }

    /// The directory (or file) under which every path this target matches lies.
    pub fn scope_prefix(&self) -> &[u8] {
        match self {
            Target::Path(p) => p,
            Target::Dir { dir, .. } => dir,
            Target::Pattern { literal_prefix, .. } => literal_prefix,
            Target::Name(_) => b"/",
        }
    }

    /// How this target relates to "every file below directory `under`".
    fn relation(&self, under: &[u8]) -> Relation {
        match self {
            Target::Dir { dir, recursive: true } if is_path_prefix(dir, under) => Relation::Covers,
            _ => {
                let p = self.scope_prefix();
                if is_path_prefix(p, under) || is_path_prefix(under, p) {
                    Relation::Partial
                } else {
                    Relation::Disjoint
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    /// Matches every file below the directory.
    Covers,
    /// Matches none of them.
    Disjoint,
    /// Matches some: only the path can tell.
    Partial,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub target: Target,
    pub owner_only: bool,
    /// Executables (absolute paths) the rule is limited to; empty means any caller.
    pub from_source: Vec<Vec<u8>>,
    pub meta: Arc<RuleMeta>,
}

/// The facts about the calling process a rule may need, fetched only when one does.
pub trait Subject {
    /// The executable of the process that called exec (`/proc/PID/exe`), if it can be read.
    fn exe(&mut self) -> Option<&[u8]>;
    /// Its user id, if it can be read.
    fn uid(&mut self) -> Option<u32>;
}

/// Which file is being decided.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// The file at this canonical path.
    Path(&'a [u8]),
    /// Some file below this directory, on a filesystem where [`Matcher::path_independent_below`] holds.
    Below(&'a [u8]),
}

/// The outcome for the kernel and the alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Block,
    Audit,
}

impl Outcome {
    /// How strict an outcome is: a block over an audit over an allow. Where two scopes decide one file (the
    /// host's policies and a container's), the stricter decision stands.
    pub fn strictness(self) -> u8 {
        match self {
            Outcome::Allow => 0,
            Outcome::Audit => 1,
            Outcome::Block => 2,
        }
    }
}

/// A decision and the rule (or the default posture) that made it. `rule` is `None` for a silent allow.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'m> {
    pub outcome: Outcome,
    pub rule: Option<&'m Arc<RuleMeta>>,
}

/// The policy name alerts carry when the default posture decided, as KubeArmor writes it.
pub const DEFAULT_POSTURE_POLICY: &str = "DefaultPosture";

/// The compiled policy.
#[derive(Debug, Clone)]
pub struct Matcher {
    rules: Vec<Rule>,
    whitelist: bool,
    posture: Posture,
    mode: Mode,
    posture_meta: Arc<RuleMeta>,
    /// The rules by the directory their scope starts at; `None` past [`INDEXED_RULES`] rules.
    index: Option<PrefixIndex>,
}

/// How many rules the prefix index takes (the candidate set is a fixed bitset: no allocation per decision).
const INDEXED_RULES: usize = 256;
type RuleSet = [u64; INDEXED_RULES / 64];

/// The compiled form of the rule list: a trie over path components, each node holding the rules whose scope
/// (directory, file, or a pattern's literal directory) starts there. Deciding a path walks its components
/// down the trie and evaluates only the rules met on the way, in load order. Those are a superset of the
/// rules that can match it: a rule matches a path only if its scope is a prefix of the path (policy
/// validation keeps scopes normalised: absolute, no empty or `.` components).
#[derive(Debug, Clone)]
struct PrefixIndex {
    nodes: Vec<IndexNode>,
}

#[derive(Debug, Clone, Default)]
struct IndexNode {
    /// Sorted by component, for binary search.
    children: Vec<(Vec<u8>, usize)>,
    rules: Vec<usize>,
}

/// A path's non-empty components.
fn components(p: &[u8]) -> impl Iterator<Item = &[u8]> {
    p.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

impl PrefixIndex {
    fn build(rules: &[Rule]) -> Option<Self> {
        if rules.len() > INDEXED_RULES {
            return None;
        }
        let mut nodes = vec![IndexNode::default()];
        for (i, rule) in rules.iter().enumerate() {
            let mut at = 0;
            for comp in components(rule.target.scope_prefix()) {
                let next = nodes.len();
                let node = nodes.get_mut(at)?;
                at = match node.children.binary_search_by(|(c, _)| c.as_slice().cmp(comp)) {
                    Ok(found) => node.children.get(found)?.1,
                    Err(slot) => {
                        node.children.insert(slot, (comp.to_vec(), next));
                        nodes.push(IndexNode::default());
                        next
                    }
                };
            }
            nodes.get_mut(at)?.rules.push(i);
        }
        Some(Self { nodes })
    }

    /// The rules anchored on the way down `path`, as a bitset of rule indices.
    fn candidates(&self, path: &[u8]) -> RuleSet {
        let mut set: RuleSet = [0; INDEXED_RULES / 64];
        let mut comps = components(path);
        let mut node = self.nodes.first();
        while let Some(n) = node {
            for &i in &n.rules {
                if let Some(word) = set.get_mut(i / 64) {
                    *word |= 1 << (i % 64);
                }
            }
            node = comps
                .next()
                .and_then(|c| n.children.binary_search_by(|(k, _)| k.as_slice().cmp(c)).ok())
                .and_then(|found| n.children.get(found))
                .and_then(|&(_, child)| self.nodes.get(child));
        }
        set
    }
}

/// The indices in `set`, ascending.
fn members(set: RuleSet) -> impl Iterator<Item = usize> {
    set.into_iter().enumerate().flat_map(|(w, mut word)| {
        std::iter::from_fn(move || {
            if word == 0 {
                return None;
            }
            let bit = word.trailing_zeros() as usize;
            word &= word - 1;
            Some(w * 64 + bit)
        })
    })
}

impl Matcher {
    pub fn new(rules: Vec<Rule>, posture: Posture, mode: Mode) -> Self {
        let whitelist = rules.iter().any(|r| r.meta.action == Action::Allow);
        let posture_meta = Arc::new(RuleMeta {
            policy: DEFAULT_POSTURE_POLICY.to_owned(),
            action: match posture {
                Posture::Audit => Action::Audit,
                Posture::Block => Action::Block,
            },
            severity: 1,
            tags: Vec::new(),
            message: "Execution not allowed by any Allow rule (default posture)".to_owned(),
            origin: "[daemon] default_posture".to_owned(),
        });
        let index = PrefixIndex::build(&rules);
        Self { rules, whitelist, posture, mode, posture_meta, index }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn posture(&self) -> Posture {
        self.posture
    }

    /// Whether Allow rules turned on the default posture.
    pub fn whitelist(&self) -> bool {
        self.whitelist
    }

    /// Decides an exec. `owner` is the file's owner uid.
    pub fn decide(&self, scope: Scope<'_>, owner: u32, subject: &mut dyn Subject) -> Decision<'_> {
        match (scope, &self.index) {
            (Scope::Path(p), Some(index)) => {
                let rules = members(index.candidates(p)).filter_map(|i| self.rules.get(i));
                self.decide_over(rules, scope, owner, subject)
            }
            _ => self.decide_over(self.rules.iter(), scope, owner, subject),
        }
    }

    /// `decide` by walking every rule: the reference the compiled index must agree with.
    #[cfg(test)]
    fn decide_by_list(&self, scope: Scope<'_>, owner: u32, subject: &mut dyn Subject) -> Decision<'_> {
        self.decide_over(self.rules.iter(), scope, owner, subject)
    }

    fn decide_over<'m>(
        &'m self,
        rules: impl Iterator<Item = &'m Rule>,
        scope: Scope<'_>,
        owner: u32,
        subject: &mut dyn Subject,
    ) -> Decision<'m> {
        let mut audit: Option<&Arc<RuleMeta>> = None;
        let mut allowed = false;
        for rule in rules {
            let hit = match scope {
                Scope::Path(p) => rule.target.matches(p),
                Scope::Below(dir) => rule.target.relation(dir) == Relation::Covers,
            };
            if !hit || !self.conditions_hold(rule, owner, subject) {
                continue;
            }
            match rule.meta.action {
                Action::Block => return self.apply_mode(Outcome::Block, &rule.meta),
                Action::Audit => audit = audit.or(Some(&rule.meta)),
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

    pub fn apply_mode<'m>(&self, outcome: Outcome, meta: &'m Arc<RuleMeta>) -> Decision<'m> {
        let outcome = match (self.mode, outcome) {
            (Mode::Audit, Outcome::Block) => Outcome::Audit,
            (_, o) => o,
        };
        Decision { outcome, rule: Some(meta) }
    }

    /// `from_source` and `owner_only`. When a fact cannot be read, a restricting rule (Block, Audit)
    /// applies and a permitting one (Allow) does not: doubt never lets an exec through.
    fn conditions_hold(&self, rule: &Rule, owner: u32, subject: &mut dyn Subject) -> bool {
        let restricting = rule.meta.action != Action::Allow;
        if !rule.from_source.is_empty() {
            let holds = match subject.exe() {
                Some(exe) => rule.from_source.iter().any(|s| s.as_slice() == exe),
                None => restricting,
            };
            if !holds {
                return false;
            }
        }
        if rule.owner_only {
            let is_owner = subject.uid().map(|uid| uid == owner);
            return match is_owner {
                Some(is_owner) => is_owner != restricting,
                None => restricting,
            };
        }
        true
    }

    /// True when every file below `dir` gets the same decision whatever its name, so a filesystem mounted
    /// there can be decided without looking up the path: each rule covers the whole directory or none of it.
    pub fn path_independent_below(&self, dir: &[u8]) -> bool {
        self.rules.iter().all(|r| r.target.relation(dir) != Relation::Partial)
    }

    /// True when no rule can apply to the file at `path` whoever executes it and whoever owns it: no Allow
    /// rule is loaded (so no default posture), and `path` lies outside every rule's scope. Such a file is
    /// always allowed silently; the exec cache relies on this.
    pub fn untouched_by_rules(&self, path: &[u8]) -> bool {
        !self.whitelist && self.rules.iter().all(|r| !is_path_prefix(r.target.scope_prefix(), path))
    }
}

/// A [`Subject`] with known values: `explain`, and tests.
#[derive(Debug, Clone, Default)]
pub struct KnownSubject {
    pub exe: Option<Vec<u8>>,
    pub uid: Option<u32>,
}

impl Subject for KnownSubject {
    fn exe(&mut self) -> Option<&[u8]> {
        self.exe.as_deref()
    }
    fn uid(&mut self) -> Option<u32> {
        self.uid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(policy: &str, action: Action) -> Arc<RuleMeta> {
        Arc::new(RuleMeta {
            policy: policy.into(),
            action,
            severity: 5,
            tags: vec![],
            message: String::new(),
            origin: String::new(),
        })
    }

    fn dir(d: &str, recursive: bool, action: Action) -> Rule {
        Rule {
            target: Target::Dir { dir: d.as_bytes().to_vec(), recursive },
            owner_only: false,
            from_source: vec![],
            meta: meta(d, action),
        }
    }

    fn pattern(p: &str, action: Action) -> Rule {
        let glob = globset::GlobBuilder::new(p).literal_separator(true).build().unwrap().compile_matcher();
        let lit = p.split(['*', '?', '[', '{']).next().unwrap();
        let lit = &lit[..=lit.rfind('/').unwrap()];
        Rule {
            target: Target::Pattern { glob, literal_prefix: lit.as_bytes().to_vec() },
            owner_only: false,
            from_source: vec![],
            meta: meta(p, action),
        }
    }

    fn path(p: &str, action: Action) -> Rule {
        Rule {
            target: Target::Path(p.as_bytes().to_vec()),
            owner_only: false,
            from_source: vec![],
            meta: meta(p, action),
        }
    }

    fn decide(m: &Matcher, p: &str) -> (Outcome, Option<String>) {
        let mut s = KnownSubject { exe: Some(b"/usr/bin/bash".to_vec()), uid: Some(1000) };
        let d = m.decide(Scope::Path(p.as_bytes()), 1000, &mut s);
        (d.outcome, d.rule.map(|r| r.policy.clone()))
    }

    fn enforce(rules: Vec<Rule>) -> Matcher {
        Matcher::new(rules, Posture::Audit, Mode::Enforce)
    }

    #[test]
    fn exact_paths_match_only_themselves() {
        let m = enforce(vec![path("/opt/tool", Action::Block)]);
        assert_eq!(decide(&m, "/opt/tool").0, Outcome::Block);
        assert_eq!(decide(&m, "/opt/tool2").0, Outcome::Allow);
        assert_eq!(decide(&m, "/opt/tool/x").0, Outcome::Allow);
    }

    #[test]
    fn directories_recursive_and_not() {
        let m = enforce(vec![dir("/tmp/", true, Action::Block), dir("/srv/", false, Action::Block)]);
        assert_eq!(decide(&m, "/tmp/x").0, Outcome::Block);
        assert_eq!(decide(&m, "/tmp/a/b/c").0, Outcome::Block);
        assert_eq!(decide(&m, "/tmpx/a").0, Outcome::Allow);
        assert_eq!(decide(&m, "/srv/x").0, Outcome::Block);
        assert_eq!(decide(&m, "/srv/a/x").0, Outcome::Allow);
        assert_eq!(decide(&m, "/usr/bin/true").0, Outcome::Allow);
    }

    #[test]
    fn single_star_stays_in_one_component_double_star_crosses() {
        let m = enforce(vec![pattern("/tmp/*.sh", Action::Block), pattern("/var/**/run*", Action::Audit)]);
        assert_eq!(decide(&m, "/tmp/a.sh").0, Outcome::Block);
        assert_eq!(decide(&m, "/tmp/sub/a.sh").0, Outcome::Allow);
        assert_eq!(decide(&m, "/var/a/b/runme").0, Outcome::Audit);
        assert_eq!(decide(&m, "/var/runme").0, Outcome::Audit);
        assert_eq!(decide(&m, "/var/a/norun").0, Outcome::Allow);
    }

    #[test]
    fn from_source_limits_the_rule_to_those_callers() {
        let mut r = dir("/tmp/", true, Action::Block);
        r.from_source = vec![b"/usr/sbin/apache2".to_vec()];
        let m = enforce(vec![r]);
        let mut apache = KnownSubject { exe: Some(b"/usr/sbin/apache2".to_vec()), uid: Some(33) };
        let mut bash = KnownSubject { exe: Some(b"/usr/bin/bash".to_vec()), uid: Some(33) };
        let mut gone = KnownSubject { exe: None, uid: None };
        assert_eq!(m.decide(Scope::Path(b"/tmp/x"), 0, &mut apache).outcome, Outcome::Block);
        assert_eq!(m.decide(Scope::Path(b"/tmp/x"), 0, &mut bash).outcome, Outcome::Allow);
        // An unreadable caller cannot escape a Block rule.
        assert_eq!(m.decide(Scope::Path(b"/tmp/x"), 0, &mut gone).outcome, Outcome::Block);
    }

    #[test]
    fn owner_only_exempts_the_owner() {
        let mut r = dir("/home/", true, Action::Block);
        r.owner_only = true;
        let m = enforce(vec![r]);
        let mut owner = KnownSubject { exe: None, uid: Some(1000) };
        let mut other = KnownSubject { exe: None, uid: Some(1001) };
        assert_eq!(m.decide(Scope::Path(b"/home/u/x"), 1000, &mut owner).outcome, Outcome::Allow);
        assert_eq!(m.decide(Scope::Path(b"/home/u/x"), 1000, &mut other).outcome, Outcome::Block);
    }

    #[test]
    fn allow_with_owner_only_allows_only_the_owner() {
        let mut r = dir("/opt/", true, Action::Allow);
        r.owner_only = true;
        let m = Matcher::new(vec![r], Posture::Block, Mode::Enforce);
        let mut owner = KnownSubject { exe: None, uid: Some(7) };
        let mut other = KnownSubject { exe: None, uid: Some(8) };
        assert_eq!(m.decide(Scope::Path(b"/opt/x"), 7, &mut owner).outcome, Outcome::Allow);
        assert_eq!(m.decide(Scope::Path(b"/opt/x"), 7, &mut other).outcome, Outcome::Block);
    }

    #[test]
    fn block_wins_over_allow() {
        let m = enforce(vec![dir("/tmp/build/", true, Action::Allow), dir("/tmp/", true, Action::Block)]);
        assert_eq!(decide(&m, "/tmp/build/cc1"), (Outcome::Block, Some("/tmp/".into())));
    }

    #[test]
    fn audit_rule_alerts_but_allows() {
        let m = enforce(vec![dir("/tmp/", true, Action::Audit)]);
        let (o, _) = decide(&m, "/tmp/x");
        assert_eq!(o, Outcome::Audit);
        assert!(m.decide(Scope::Path(b"/tmp/x"), 0, &mut KnownSubject::default()).outcome != Outcome::Block);
    }

    #[test]
    fn allow_rules_turn_on_the_default_posture() {
        let rules = || vec![dir("/opt/app/", true, Action::Allow), dir("/tmp/", true, Action::Block)];
        let audit = Matcher::new(rules(), Posture::Audit, Mode::Enforce);
        assert_eq!(decide(&audit, "/opt/app/run"), (Outcome::Allow, None));
        assert_eq!(decide(&audit, "/usr/bin/true"), (Outcome::Audit, Some(DEFAULT_POSTURE_POLICY.into())));
        let block = Matcher::new(rules(), Posture::Block, Mode::Enforce);
        assert_eq!(decide(&block, "/usr/bin/true"), (Outcome::Block, Some(DEFAULT_POSTURE_POLICY.into())));
        // Without Allow rules there is no posture: unmatched execs pass silently.
        let plain = Matcher::new(vec![dir("/tmp/", true, Action::Block)], Posture::Block, Mode::Enforce);
        assert_eq!(decide(&plain, "/usr/bin/true"), (Outcome::Allow, None));
    }

    #[test]
    fn audit_mode_turns_blocks_into_audits() {
        let m = Matcher::new(vec![dir("/tmp/", true, Action::Block)], Posture::Block, Mode::Audit);
        assert_eq!(decide(&m, "/tmp/x"), (Outcome::Audit, Some("/tmp/".into())));
        let w = Matcher::new(vec![dir("/opt/", true, Action::Allow)], Posture::Block, Mode::Audit);
        assert_eq!(decide(&w, "/usr/bin/x").0, Outcome::Audit);
    }

    #[test]
    fn first_block_rule_in_order_names_the_alert() {
        let m = enforce(vec![
            dir("/tmp/", true, Action::Audit),
            dir("/tmp/a/", true, Action::Block),
            dir("/tmp/", true, Action::Block),
        ]);
        assert_eq!(decide(&m, "/tmp/a/x"), (Outcome::Block, Some("/tmp/a/".into())));
        assert_eq!(decide(&m, "/tmp/b"), (Outcome::Block, Some("/tmp/".into())));
    }

    mod compiled_matches_the_list_walk {
        use super::*;
        use proptest::prelude::*;

        const COMPONENTS: &[&str] = &["tmp", "var", "a", "b", "x.sh", "x"];

        fn path_strategy() -> impl Strategy<Value = String> {
            proptest::collection::vec(proptest::sample::select(COMPONENTS), 1..5)
                .prop_map(|c| format!("/{}", c.join("/")))
        }

        fn rule_strategy() -> impl Strategy<Value = Rule> {
            let action = proptest::sample::select(vec![Action::Block, Action::Audit, Action::Allow]);
            (0..4u8, path_strategy(), any::<bool>(), action, any::<bool>(), any::<bool>()).prop_map(
                |(kind, p, recursive, action, owner_only, from_source)| {
                    let mut r = match kind {
                        0 => path(&p, action),
                        1 => dir(&format!("{p}/"), recursive, action),
                        2 => pattern(&format!("{p}/*.sh"), action),
                        _ => pattern(&format!("{p}/**/x*"), action),
                    };
                    r.owner_only = owner_only;
                    if from_source {
                        r.from_source = vec![b"/usr/bin/bash".to_vec()];
                    }
                    r
                },
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]

            #[test]
            fn same_outcome_and_rule(rules in proptest::collection::vec(rule_strategy(), 0..12),
                                     target in path_strategy(),
                                     raw in proptest::collection::vec(any::<u8>(), 0..24),
                                     block_posture in any::<bool>(),
                                     exe in proptest::option::of(Just(b"/usr/bin/bash".to_vec())),
                                     uid in proptest::option::of(0u32..3),
                                     owner in 0u32..3) {
                let posture = if block_posture { Posture::Block } else { Posture::Audit };
                let m = Matcher::new(rules, posture, Mode::Enforce);
                prop_assert!(m.index.is_some());
                for p in [target.as_bytes(), raw.as_slice()] {
                    let mut s1 = KnownSubject { exe: exe.clone(), uid };
                    let mut s2 = s1.clone();
                    let a = m.decide(Scope::Path(p), owner, &mut s1);
                    let b = m.decide_by_list(Scope::Path(p), owner, &mut s2);
                    prop_assert_eq!(a.outcome, b.outcome);
                    prop_assert_eq!(a.rule.map(|r| r.policy.clone()), b.rule.map(|r| r.policy.clone()));
                }
            }
        }
    }

    #[test]
    fn more_rules_than_the_index_takes_fall_back_to_the_list_walk() {
        let rules = (0..INDEXED_RULES + 1).map(|i| dir(&format!("/d{i}/"), true, Action::Block)).collect();
        let m = enforce(rules);
        assert!(m.index.is_none());
        assert_eq!(decide(&m, &format!("/d{INDEXED_RULES}/x")).0, Outcome::Block);
        assert_eq!(decide(&m, "/e/x").0, Outcome::Allow);
    }

    #[test]
    fn untouched_by_rules_means_outside_every_scope_and_no_allow_rule() {
        let m = enforce(vec![dir("/tmp/", true, Action::Block), pattern("/var/**/x*", Action::Audit)]);
        assert!(m.untouched_by_rules(b"/usr/bin/true"));
        assert!(m.untouched_by_rules(b"/tmpx/a"));
        assert!(!m.untouched_by_rules(b"/tmp/x"));
        assert!(!m.untouched_by_rules(b"/var/lib/y"), "a pattern's literal prefix is its scope");
        let w = enforce(vec![dir("/opt/", true, Action::Allow)]);
        assert!(!w.untouched_by_rules(b"/usr/bin/true"), "the default posture applies to everything");
    }

    #[test]
    fn path_independence_below_a_mount() {
        let m = enforce(vec![dir("/tmp/", true, Action::Block), dir("/var/tmp/", true, Action::Block)]);
        assert!(m.path_independent_below(b"/tmp/"));
        assert!(m.path_independent_below(b"/tmp/sub/"));
        assert!(m.path_independent_below(b"/dev/shm/"));
        assert!(!m.path_independent_below(b"/"));
        assert!(!m.path_independent_below(b"/var/"));
        let below = m.decide(Scope::Below(b"/tmp/"), 0, &mut KnownSubject::default());
        assert_eq!(below.outcome, Outcome::Block);
        let narrow = enforce(vec![dir("/tmp/", true, Action::Block), pattern("/tmp/ok/*", Action::Allow)]);
        assert!(!narrow.path_independent_below(b"/tmp/"));
        let flat = enforce(vec![dir("/tmp/", false, Action::Block)]);
        assert!(!flat.path_independent_below(b"/tmp/"));
    }

    fn name(n: &str, sources: &[&str], action: Action) -> Rule {
        Rule {
            target: Target::Name(n.as_bytes().to_vec()),
            owner_only: false,
            from_source: sources.iter().map(|s| s.as_bytes().to_vec()).collect(),
            meta: meta(n, action),
        }
    }

    #[test]
    fn an_exec_name_matches_the_last_component_anywhere() {
        let m = enforce(vec![name("apt", &[], Action::Block)]);
        for blocked in ["/usr/bin/apt", "/apt", "/tmp/deep/er/apt"] {
            assert_eq!(decide(&m, blocked).0, Outcome::Block, "{blocked}");
            assert_eq!(
                m.decide_by_list(Scope::Path(blocked.as_bytes()), 0, &mut KnownSubject::default()).outcome,
                Outcome::Block
            );
        }
        for allowed in ["/usr/bin/apt-get", "/usr/bin/xapt", "/apt/ls", "/usr/bin/ap"] {
            assert_eq!(decide(&m, allowed).0, Outcome::Allow, "{allowed}");
        }
        assert!(!m.untouched_by_rules(b"/usr/bin/true"), "a name can be anywhere");
        assert!(!m.path_independent_below(b"/tmp/"), "only the name can tell");
    }

    #[test]
    fn an_exec_name_with_from_source_holds_for_those_callers_only() {
        let m = enforce(vec![name("apt", &["/usr/bin/bash"], Action::Block)]);
        assert_eq!(decide(&m, "/usr/bin/apt").0, Outcome::Block, "decide() runs as /usr/bin/bash");
        let mut other = KnownSubject { exe: Some(b"/usr/bin/dash".to_vec()), uid: Some(0) };
        assert_eq!(m.decide(Scope::Path(b"/usr/bin/apt"), 0, &mut other).outcome, Outcome::Allow);
        let allow = enforce(vec![name("ls", &[], Action::Allow)]);
        assert_eq!(decide(&allow, "/bin/ls").0, Outcome::Allow);
        assert_eq!(decide(&allow, "/bin/cat").0, Outcome::Audit, "the default posture for the rest");
    }
}
