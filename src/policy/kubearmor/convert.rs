//! KubeArmor documents to noexecd policies. Each document is read key by key: process and file rules become
//! [`Policy`] values, everything else becomes a [`Report`]. Nothing is dropped without one. A rule that
//! cannot be used (a wrong value, or one the policy loader refuses) is reported and left out; the rest of
//! the policy is kept.

use super::fields::{Ctx, Res, is_empty, is_meta, meta_key, text};
use super::file::file;
use super::model::{At, Expression, Meta, Policy, Rule, Selector, Src, Target};
use super::process::process;
use super::report::{Report, ReportKind};
use super::selectors::selector_labels;
use super::yaml::{Node, Value};

/// The API group and version noexecd reads.
pub const API_VERSION: &str = "security.kubearmor.com/v1";
const KINDS: [&str; 3] = ["KubeArmorPolicy", "KubeArmorClusterPolicy", "KubeArmorHostPolicy"];

/// What one document (or one item of a `kind: List`) turns into, for one input file.
pub struct Converter<'a> {
    pub file: &'a str,
    pub policies: Vec<Policy>,
    pub reports: Vec<Report>,
    /// What the policy loader says of a converted policy (the loader sits above the conversion, which it
    /// calls for YAML drop-ins, so it is handed in).
    loads: &'a dyn Fn(&Policy) -> Loaded,
}

/// What the policy loader says of one converted policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    Yes,
    /// It refuses a value: where that value came from in the YAML, and why.
    Refused {
        src: Src,
        message: String,
    },
    /// It fails for a reason that is not about one value.
    Failed(String),
}

impl<'a> Converter<'a> {
    pub fn new(file: &'a str, loads: &'a dyn Fn(&Policy) -> Loaded) -> Self {
        Self { file, policies: Vec::new(), reports: Vec::new(), loads }
    }

    /// Converts the `index`-th document (1-based) of the file.
    pub fn document(&mut self, index: usize, root: &Node) -> Res<()> {
        self.convert(&format!("DOC#{index}"), root)
    }

    fn convert(&mut self, doc: &str, root: &Node) -> Res<()> {
        let name = root.get("metadata").and_then(|m| m.get("name")).and_then(Node::scalar_text);
        let ctx = Ctx { file: self.file, doc, policy: name.as_deref() };
        let anon = Ctx { policy: None, ..ctx };
        if !matches!(root.value, Value::Map(_)) {
            let what = root.value.kind();
            self.reports.push(anon.report(
                ReportKind::Skipped,
                root,
                "",
                format!("{what}, not a KubeArmor policy: skipped"),
            ));
            return Ok(());
        }
        let kind = root.get("kind").and_then(Node::scalar_text);
        let api = root.get("apiVersion").and_then(Node::scalar_text);
        match kind.as_deref() {
            Some("List") if root.get("items").is_some() => {
                anon.duplicates(root, "", false, &mut self.reports);
                let Some(Value::Seq(items)) = root.get("items").map(|n| &n.value) else {
                    return Err(ctx.error(root, "items", "a kind: List holds a list of items"));
                };
                for (i, item) in items.iter().enumerate() {
                    self.convert(&format!("{doc} items[{i}]"), item)?;
                }
                Ok(())
            }
            Some(k) if KINDS.contains(&k) => {
                match api.as_deref() {
                    Some(API_VERSION) => {}
                    None => self.reports.push(ctx.report(
                        ReportKind::Note,
                        root,
                        "",
                        format!("no apiVersion: read as {API_VERSION}"),
                    )),
                    Some(other) => {
                        let detail = format!("noexecd reads {API_VERSION}; document skipped");
                        self.reports.push(ctx.report(
                            ReportKind::NotEnforced,
                            root,
                            format!("apiVersion {other}"),
                            detail,
                        ));
                        return Ok(());
                    }
                }
                self.policy(doc, k, root)
            }
            Some(k) if api.as_deref().is_some_and(|a| a.starts_with("security.kubearmor.com/")) => {
                let detail =
                    "noexecd imports KubeArmorPolicy, KubeArmorClusterPolicy and KubeArmorHostPolicy; document skipped";
                self.reports.push(ctx.report(ReportKind::NotEnforced, root, format!("kind {k}"), detail));
                Ok(())
            }
            Some(k) => {
                let detail = format!("kind {k} is not a KubeArmor policy: skipped");
                self.reports.push(anon.report(ReportKind::Skipped, root, "", detail));
                Ok(())
            }
            None => {
                self.reports.push(anon.report(
                    ReportKind::Skipped,
                    root,
                    "",
                    "no kind, not a KubeArmor policy: skipped",
                ));
                Ok(())
            }
        }
    }

    fn policy(&mut self, doc: &str, kind: &str, root: &Node) -> Res<()> {
        let anon = Ctx { file: self.file, doc, policy: None };
        let metadata = root.get("metadata").ok_or_else(|| anon.error(root, "metadata.name", "is missing"))?;
        let name_node = metadata.get("name").ok_or_else(|| anon.error(metadata, "metadata.name", "is missing"))?;
        let name = text(&anon, name_node, "metadata.name")?;
        if name.trim().is_empty() {
            return Err(anon.error(name_node, "metadata.name", "is empty"));
        }
        let ctx = Ctx { file: self.file, doc, policy: Some(&name) };
        let mut policy = Policy {
            kind: kind.to_owned(),
            name: At { value: name.clone(), src: Src::at("metadata.name", name_node) },
            doc: doc.to_owned(),
            meta: Meta::default(),
            selector: None,
            process_meta: Meta::default(),
            rules: Vec::new(),
            file_meta: Meta::default(),
            file_rules: Vec::new(),
        };
        let empty = Node { value: Value::Null, line: root.line, col: root.col };
        let spec = root.get("spec").unwrap_or(&empty);
        if !matches!(spec.value, Value::Map(_)) {
            return Err(ctx.error(spec, "spec", format!("expected a mapping, found {}", spec.value.kind())));
        }
        let mut reports = Vec::new();
        ctx.duplicates(root, "", true, &mut reports);
        let mut selector = None;
        for (key, value) in spec.entries() {
            let path = format!("spec.{key}");
            match key.as_str() {
                "process" => process(&ctx, value, &mut policy, &mut reports)?,
                "action" | "severity" | "tags" | "message" => meta_key(&ctx, &key, value, &path, &mut policy.meta)?,
                // A KubeArmorPolicy's or KubeArmorClusterPolicy's selector picks its containers (below).
                "selector" if kind != "KubeArmorHostPolicy" => selector = Some(value),
                "selector" | "nodeSelector" => {
                    if !is_empty(value) {
                        let detail = if key == "selector" {
                            "a pod selector in a host policy; noexecd applies the rules to every process on this host"
                        } else {
                            "Kubernetes node selector; noexecd applies the rules on this host whatever its labels"
                        };
                        reports.push(ctx.report(ReportKind::NotEnforced, value, path, detail));
                    }
                }
                "file" => file(&ctx, value, &mut policy, &mut reports)?,
                "network" => other_section(&ctx, value, &path, "network rules", &mut reports),
                "capabilities" => other_section(&ctx, value, &path, "capabilities rules", &mut reports),
                "syscalls" => other_section(&ctx, value, &path, "syscalls rules", &mut reports),
                "apparmor" => {
                    if !is_empty(value) {
                        reports.push(ctx.report(ReportKind::NotEnforced, value, path, "raw AppArmor profile"));
                    }
                }
                _ => reports.push(ctx.report(ReportKind::NotEnforced, value, path, "unknown key")),
            }
        }
        if kind == "KubeArmorPolicy" {
            // A container policy: the containers of the pods its selector picks, in its namespace.
            let at = selector.unwrap_or(spec);
            let mut s = Selector {
                src: Src::at("spec.selector", at),
                namespace: None,
                labels: Vec::new(),
                expressions: Vec::new(),
            };
            if let Some(ns) = metadata.get("namespace").filter(|n| !is_empty(n)) {
                let value = text(&ctx, ns, "metadata.namespace")?;
                s.namespace = Some(At { value, src: Src::at("metadata.namespace", ns) });
            } else {
                let detail = "none given: the policy selects containers in every namespace (kubectl would apply it in its current namespace, usually default)";
                reports.push(ctx.report(ReportKind::Note, metadata, "metadata.namespace", detail));
            }
            if let Some(sel) = selector {
                selector_labels(&ctx, sel, &mut s, &mut reports)?;
            }
            policy.selector = Some(s);
        } else if kind == "KubeArmorClusterPolicy" {
            // The containers of every namespace its expressions pick; its own namespace, if any, is not one.
            let at = selector.unwrap_or(spec);
            let src = Src::at("spec.selector", at);
            let mut s = Selector { src: src.clone(), namespace: None, labels: Vec::new(), expressions: Vec::new() };
            if let Some(sel) = selector {
                selector_labels(&ctx, sel, &mut s, &mut reports)?;
            }
            if let Some((k, _)) = s.labels.first() {
                let detail = "matchLabels in a cluster policy: KubeArmor's CRD has matchExpressions only; the labels are required as written";
                reports.push(ctx.report_at(ReportKind::Note, k.src.line, k.src.path.clone(), detail));
            }
            if !s.expressions.iter().any(|e| e.key.value == "namespace") {
                // KubeArmor applies it in each namespace the API server lists: a container in none is not one.
                let at = |value: &str| At { value: value.to_owned(), src: src.clone() };
                s.expressions.push(Expression {
                    src: src.clone(),
                    key: at("namespace"),
                    operator: at("NotIn"),
                    values: Vec::new(),
                });
            }
            policy.selector = Some(s);
        }
        self.loadable(&ctx, &mut policy, &mut reports)?;
        shallow_patterns(&ctx, &policy, &mut reports);
        file_rules_not_enforced(&ctx, &policy, &mut reports);
        if policy.rules.is_empty() && policy.file_rules.is_empty() {
            reports.push(ctx.report(
                ReportKind::Note,
                spec,
                "",
                "no process or file rules noexecd reads: no policy written",
            ));
        } else {
            self.policies.push(policy);
        }
        self.reports.append(&mut reports);
        Ok(())
    }
}

impl Converter<'_> {
    /// Leaves out, with a report each, the rules the policy loader refuses (a relative pattern, a `dir`
    /// without its '/', an invalid glob, ...), so that what is written loads. A refusal that is not about
    /// one rule (the selector) is the policy's error.
    fn loadable(&self, ctx: &Ctx<'_>, policy: &mut Policy, reports: &mut Vec<Report>) -> Res<()> {
        while !policy.rules.is_empty() || !policy.file_rules.is_empty() {
            let (src, message) = match (self.loads)(policy) {
                Loaded::Yes => return Ok(()),
                Loaded::Refused { src, message } => (src, message),
                Loaded::Failed(message) => {
                    let node = Node { value: Value::Null, line: policy.name.src.line, col: policy.name.src.col };
                    return Err(ctx.error(&node, "", message));
                }
            };
            let within = |rule: &Rule| {
                src.path == rule.src.path
                    || src.path.strip_prefix(rule.src.path.as_str()).is_some_and(|rest| rest.starts_with('.'))
            };
            let rule = if let Some(i) = policy.rules.iter().position(within) {
                policy.rules.remove(i)
            } else if let Some(i) = policy.file_rules.iter().position(within) {
                policy.file_rules.remove(i)
            } else {
                let node = Node { value: Value::Null, line: src.line, col: src.col };
                return Err(ctx.error(&node, &src.path, message));
            };
            let detail = format!("{}: {}; rule skipped", src.path, message);
            let report = ctx.report_at(ReportKind::NotEnforced, src.line, rule.src.path, detail);
            // Among the other reports of the policy, in line order.
            let at = reports.iter().position(|r| r.line > report.line).unwrap_or(reports.len());
            reports.insert(at, report);
        }
        Ok(())
    }
}

/// File rules this build does not enforce (a container policy's, Allow rules, rules reaching every directory
/// from `/`) are written to the policy, which loads them, and reported, each where it stands.
fn file_rules_not_enforced(ctx: &Ctx<'_>, policy: &Policy, reports: &mut Vec<Report>) {
    use crate::policy::file_rules::{not_enforced_reason, pattern_directory};
    use crate::policy::matcher::Action;
    for rule in &policy.file_rules {
        let action = match [&rule.meta, &policy.file_meta, &policy.meta].into_iter().find_map(|m| m.action.as_ref()) {
            Some(a) if a.value == "Allow" => Action::Allow,
            Some(a) if a.value == "Audit" => Action::Audit,
            _ => Action::Block,
        };
        let directory = match &rule.target {
            Target::Dir { dir, .. } => dir.value.as_str(),
            Target::Pattern(p) => pattern_directory(&p.value),
            // A file's own directory is marked.
            Target::Path(p) => match p.value.rfind('/') {
                Some(0) | None => "/",
                Some(i) => p.value.get(..i).unwrap_or("/"),
            },
            Target::Name(_) => "",
        };
        let Some(why) = not_enforced_reason(policy.selector.is_some(), action, directory.as_bytes()) else { continue };
        let report = ctx.report_at(
            ReportKind::NotEnforced,
            rule.src.line,
            rule.src.path.clone(),
            format!("file rule: converted; {why}"),
        );
        let at = reports.iter().position(|r| r.line > report.line).unwrap_or(reports.len());
        reports.insert(at, report);
    }
}

/// A warning for each Block or Audit pattern that leaves deeper paths of its directory open.
fn shallow_patterns(ctx: &Ctx<'_>, policy: &Policy, reports: &mut Vec<Report>) {
    for rule in &policy.rules {
        let Target::Pattern(pattern) = &rule.target else { continue };
        let action = [&rule.meta, &policy.process_meta, &policy.meta].into_iter().find_map(|m| m.action.as_ref());
        if action.is_some_and(|a| a.value == "Allow") {
            continue;
        }
        if let Some(advice) = crate::policy::lint::shallow_pattern(&pattern.value) {
            let report = ctx.report_at(ReportKind::Warning, pattern.src.line, pattern.src.path.clone(), advice);
            let at = reports.iter().position(|r| r.line > report.line).unwrap_or(reports.len());
            reports.insert(at, report);
        }
    }
}

/// `spec.file`, `spec.network`, ...: one report per rule.
fn other_section(ctx: &Ctx<'_>, section: &Node, path: &str, what: &str, reports: &mut Vec<Report>) {
    if is_empty(section) {
        return;
    }
    if !matches!(section.value, Value::Map(_)) {
        reports.push(ctx.report(ReportKind::NotEnforced, section, path, what));
        return;
    }
    for (key, value) in section.entries() {
        match &value.value {
            // Their action, severity, tags and message apply to those rules only.
            _ if is_meta(&key) => {}
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    reports.push(ctx.report(ReportKind::NotEnforced, item, format!("{path}.{key}[{i}]"), what));
                }
            }
            _ if is_empty(value) => {}
            _ => reports.push(ctx.report(ReportKind::NotEnforced, value, format!("{path}.{key}"), what)),
        }
    }
}
