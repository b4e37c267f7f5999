//! KubeArmor documents to noexecd policies. Each document is read key by key: process rules become
//! [`Policy`] values, everything else becomes a [`Report`]. Nothing is dropped without one. A rule that
//! cannot be used (a wrong value, or one the policy loader refuses) is reported and left out; the rest of
//! the policy is kept.

use super::model::{At, Expression, Meta, Policy, Rule, Selector, Src, Target};
use super::report::{Report, ReportKind};
use super::yaml::{self, Node, Value};

/// The API group and version noexecd reads.
pub const API_VERSION: &str = "security.kubearmor.com/v1";
const KINDS: [&str; 3] = ["KubeArmorPolicy", "KubeArmorClusterPolicy", "KubeArmorHostPolicy"];

/// A value that cannot be converted: a missing name, `severity: high`, `ownerOnly: maybe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    pub line: usize,
    pub col: usize,
    /// Starts with the document and policy, ends with what to write instead.
    pub message: String,
    /// The message without the document and policy: `spec.process.matchPaths[0].ownerOnly: maybe is ...`.
    pub reason: String,
}

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

/// Conversion of one policy: its label, for reports and errors.
struct Ctx<'c> {
    file: &'c str,
    doc: &'c str,
    policy: Option<&'c str>,
}

impl Ctx<'_> {
    fn error(&self, node: &Node, path: &str, message: impl AsRef<str>) -> ConvertError {
        let policy = self.policy.map(|p| format!(" policy {p}")).unwrap_or_default();
        let sep = if path.is_empty() { "" } else { ": " };
        let reason = format!("{path}{sep}{}", message.as_ref());
        ConvertError { line: node.line, col: node.col, message: format!("{}{policy}: {reason}", self.doc), reason }
    }

    fn report(&self, kind: ReportKind, node: &Node, path: impl Into<String>, detail: impl Into<String>) -> Report {
        self.report_at(kind, node.line, path, detail)
    }

    fn report_at(&self, kind: ReportKind, line: usize, path: impl Into<String>, detail: impl Into<String>) -> Report {
        Report {
            kind,
            file: self.file.to_owned(),
            doc: self.doc.to_owned(),
            policy: self.policy.map(str::to_owned),
            path: path.into(),
            detail: detail.into(),
            line,
        }
    }

    /// Every key written twice in `node` (at `path`): the earlier one is not read.
    fn duplicates(&self, node: &Node, path: &str, descend: bool, reports: &mut Vec<Report>) {
        let mut found = Vec::new();
        yaml::duplicate_keys(node, path, descend, &mut found);
        found.sort_by_key(|d| (d.line, d.col));
        for d in found {
            let detail = format!(
                "duplicate key: the one at line {} replaces it; the last one wins, as Kubernetes reads YAML",
                d.later_line
            );
            reports.push(self.report_at(ReportKind::NotEnforced, d.line, d.path, detail));
        }
    }
}

type Res<T> = Result<T, ConvertError>;

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
                "file" => other_section(&ctx, value, &path, "file rules", &mut reports),
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
        if policy.rules.is_empty() {
            reports.push(ctx.report(
                ReportKind::Note,
                spec,
                "",
                "no process rules noexecd enforces: no policy written",
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
        while !policy.rules.is_empty() {
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
            let Some(i) = policy.rules.iter().position(within) else {
                let node = Node { value: Value::Null, line: src.line, col: src.col };
                return Err(ctx.error(&node, &src.path, message));
            };
            let rule = policy.rules.remove(i);
            let detail = format!("{}: {}; rule skipped", src.path, message);
            let report = ctx.report_at(ReportKind::NotEnforced, src.line, rule.src.path, detail);
            // Among the other reports of the policy, in line order.
            let at = reports.iter().position(|r| r.line > report.line).unwrap_or(reports.len());
            reports.insert(at, report);
        }
        Ok(())
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

/// `spec.selector` of a KubeArmorPolicy or KubeArmorClusterPolicy: its `matchLabels` and `matchExpressions`;
/// any other part is reported.
fn selector_labels(ctx: &Ctx<'_>, sel: &Node, out: &mut Selector, reports: &mut Vec<Report>) -> Res<()> {
    match &sel.value {
        Value::Null => return Ok(()),
        Value::Map(_) => {}
        other => return Err(ctx.error(sel, "spec.selector", format!("expected a mapping, found {}", other.kind()))),
    }
    for (key, value) in sel.entries() {
        let path = format!("spec.selector.{key}");
        match (key.as_str(), &value.value) {
            ("matchLabels", Value::Null) => {}
            ("matchLabels", Value::Map(_)) => {
                for (k, v) in value.entries() {
                    let kpath = format!("{path}.{k}");
                    let v_text = if v.is_null() { String::new() } else { text(ctx, v, &kpath)? };
                    let key_node = value.key_node(&k).unwrap_or(v);
                    out.labels.push((
                        At { value: k.clone(), src: Src::at(&kpath, key_node) },
                        At { value: v_text, src: Src::at(&kpath, v) },
                    ));
                }
            }
            ("matchLabels", other) => {
                return Err(ctx.error(value, &path, format!("expected a mapping of labels, found {}", other.kind())));
            }
            ("matchExpressions", _) if is_empty(value) => {}
            ("matchExpressions", Value::Seq(items)) => {
                for (i, item) in items.iter().enumerate() {
                    out.expressions.push(expression(ctx, item, &format!("{path}[{i}]"), reports)?);
                }
            }
            ("matchExpressions", other) => {
                return Err(ctx.error(
                    value,
                    &path,
                    format!("expected a list of {{key, operator, values}}, found {}", other.kind()),
                ));
            }
            _ => reports.push(ctx.report(
                ReportKind::NotEnforced,
                value,
                path,
                "unknown key; noexecd selects by matchLabels, matchExpressions and the namespace",
            )),
        }
    }
    Ok(())
}

/// One `matchExpressions` entry. Its key and operator are written as they are: the loader refuses those
/// KubeArmor's CRDs refuse (`Exists`), and the policy with them, rather than select more containers.
fn expression(ctx: &Ctx<'_>, item: &Node, path: &str, reports: &mut Vec<Report>) -> Res<Expression> {
    if !matches!(item.value, Value::Map(_)) {
        return Err(ctx.error(item, path, format!("expected {{key, operator, values}}, found {}", item.value.kind())));
    }
    let mut key = None;
    let mut operator = None;
    let mut values = Vec::new();
    for (k, value) in item.entries() {
        let kpath = format!("{path}.{k}");
        match k.as_str() {
            "key" => key = Some(At { value: text(ctx, value, &kpath)?, src: Src::at(&kpath, value) }),
            "operator" => operator = Some(At { value: text(ctx, value, &kpath)?, src: Src::at(&kpath, value) }),
            "values" => match &value.value {
                Value::Null => {}
                Value::Seq(items) => {
                    for (i, v) in items.iter().enumerate() {
                        let vpath = format!("{kpath}[{i}]");
                        values.push(At { value: text(ctx, v, &vpath)?, src: Src::at(&vpath, v) });
                    }
                }
                other => {
                    return Err(ctx.error(value, &kpath, format!("expected a list of values, found {}", other.kind())));
                }
            },
            _ => reports.push(ctx.report(ReportKind::NotEnforced, value, kpath, "unknown key")),
        }
    }
    let key = key.ok_or_else(|| ctx.error(item, path, "key is missing: write key: label or key: namespace"))?;
    let operator =
        operator.ok_or_else(|| ctx.error(item, path, "operator is missing: write operator: In or operator: NotIn"))?;
    Ok(Expression { src: Src::at(path, item), key, operator, values })
}

/// Null, `{}`, `[]`, `""`, or a mapping of only such values (`selector: {matchLabels: {}}`).
fn is_empty(node: &Node) -> bool {
    match &node.value {
        Value::Null => true,
        Value::Str(s) => s.is_empty(),
        Value::Seq(s) => s.is_empty(),
        Value::Map(m) => m.iter().all(|(_, v)| is_empty(v)),
        Value::Bool(_) | Value::Int(_) | Value::Float(_) => false,
    }
}

fn is_meta(key: &str) -> bool {
    matches!(key, "action" | "severity" | "tags" | "message")
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

fn process(ctx: &Ctx<'_>, section: &Node, policy: &mut Policy, reports: &mut Vec<Report>) -> Res<()> {
    match section.value {
        Value::Null => return Ok(()),
        Value::Map(_) => {}
        _ => {
            let found = section.value.kind();
            return Err(ctx.error(section, "spec.process", format!("expected a mapping, found {found}")));
        }
    }
    let mut paths = Vec::new();
    let mut dirs = Vec::new();
    let mut patterns = Vec::new();
    for (key, value) in section.entries() {
        let path = format!("spec.process.{key}");
        let rules = match key.as_str() {
            "matchPaths" => &mut paths,
            "matchDirectories" => &mut dirs,
            "matchPatterns" => &mut patterns,
            k if is_meta(k) => {
                meta_key(ctx, k, value, &path, &mut policy.process_meta)?;
                continue;
            }
            _ => {
                reports.push(ctx.report(ReportKind::NotEnforced, value, path, "unknown key"));
                continue;
            }
        };
        let items: &[Node] = match &value.value {
            Value::Null => &[],
            Value::Seq(items) => items,
            other => {
                let detail = format!("expected a list of rules, found {}; skipped", other.kind());
                reports.push(ctx.report(ReportKind::NotEnforced, value, path, detail));
                continue;
            }
        };
        for (i, item) in items.iter().enumerate() {
            let rpath = format!("{path}[{i}]");
            match process_rule(ctx, &key, item, &rpath, reports) {
                Ok(Some(rule)) => rules.push(rule),
                Ok(None) => {}
                // A rule that cannot be read is left out; the rest of the policy is kept.
                Err(e) => {
                    let detail = format!("{}; rule skipped", e.reason);
                    reports.push(ctx.report_at(ReportKind::NotEnforced, e.line, rpath, detail));
                }
            }
        }
    }
    policy.rules.extend(paths.into_iter().chain(dirs).chain(patterns));
    Ok(())
}

/// One `matchPaths`/`matchDirectories`/`matchPatterns` entry; `None` when noexecd cannot enforce it as
/// written (reported).
fn process_rule(ctx: &Ctx<'_>, list: &str, item: &Node, path: &str, reports: &mut Vec<Report>) -> Res<Option<Rule>> {
    if !matches!(item.value, Value::Map(_)) {
        return Err(ctx.error(item, path, format!("expected a rule (a mapping), found {}", item.value.kind())));
    }
    let mut meta = Meta::default();
    let mut target_text = None;
    let mut exec_name = None;
    let mut recursive = None;
    let mut owner_only = None;
    let mut from_source = Vec::new();
    let mut skip: Option<(String, String)> = None;
    let (target_key, target_example) = match list {
        "matchPaths" => ("path", "/usr/local/bin/tool"),
        "matchDirectories" => ("dir", "/tmp/"),
        _ => ("pattern", "/tmp/**/*.sh"),
    };
    for (key, value) in item.entries() {
        let kpath = format!("{path}.{key}");
        match key.as_str() {
            k if k == target_key => {
                target_text = Some(At { value: text(ctx, value, &kpath)?, src: Src::at(&kpath, value) })
            }
            "recursive" if list == "matchDirectories" => {
                recursive = Some(At { value: boolean(ctx, value, &kpath)?, src: Src::at(&kpath, value) });
            }
            "ownerOnly" => owner_only = Some(At { value: boolean(ctx, value, &kpath)?, src: Src::at(&kpath, value) }),
            "fromSource" if is_empty(value) => {}
            "fromSource" if list == "matchPatterns" => {
                skip.get_or_insert((kpath, "fromSource on a pattern rule".to_owned()));
            }
            "fromSource" => {
                let Value::Seq(sources) = &value.value else {
                    let found = value.value.kind();
                    return Err(ctx.error(value, &kpath, format!("expected a list of {{path: ...}}, found {found}")));
                };
                for (i, source) in sources.iter().enumerate() {
                    let spath = format!("{kpath}[{i}]");
                    match source_path(ctx, source, &spath, reports)? {
                        Ok(p) => from_source.push(p),
                        Err(why) => {
                            skip.get_or_insert((spath, why));
                        }
                    }
                }
            }
            "execname" if list == "matchPaths" => {
                exec_name = Some(At { value: text(ctx, value, &kpath)?, src: Src::at(&kpath, value) });
            }
            k if is_meta(k) => meta_key(ctx, k, value, &kpath, &mut meta)?,
            _ => reports.push(ctx.report(ReportKind::NotEnforced, value, kpath, "unknown key")),
        }
    }
    if let Some((where_, why)) = skip {
        let detail = format!("{why} at {where_}; rule skipped");
        reports.push(ctx.report(ReportKind::NotEnforced, item, path, detail));
        return Ok(None);
    }
    let target_text = match (target_text, exec_name) {
        (Some(_), Some(name)) => {
            return Err(ctx.error(
                &Node { value: Value::Null, line: name.src.line, col: name.src.col },
                &name.src.path,
                "a rule with both path and execname: write them as two rules",
            ));
        }
        (None, Some(name)) => {
            return Ok(Some(Rule {
                src: Src::at(path, item),
                target: Target::Name(name),
                owner_only,
                from_source,
                meta,
            }));
        }
        (Some(t), None) => t,
        (None, None) if list == "matchPaths" => {
            return Err(ctx.error(item, path, "path is missing: write path: /usr/bin/apt or execname: apt"));
        }
        (None, None) => {
            return Err(ctx.error(
                item,
                path,
                format!("{target_key} is missing: write {target_key}: {target_example}"),
            ));
        }
    };
    let target_text = if list == "matchDirectories" && !target_text.value.ends_with('/') {
        // KubeArmor accepts a directory written without its '/' and means the directory.
        let value = format!("{}/", target_text.value);
        let detail = format!("\"{}\" read as the directory \"{value}\"", target_text.value);
        reports.push(ctx.report(ReportKind::Note, item, target_text.src.path.clone(), detail));
        At { value, src: target_text.src }
    } else {
        target_text
    };
    let target = match list {
        "matchPaths" => Target::Path(target_text),
        "matchDirectories" => Target::Dir { dir: target_text, recursive },
        _ => {
            let written = target_text.value.clone();
            let value = globset_form(&written);
            if value != written {
                let detail = format!("\"{written}\" written as \"{value}\" (noexecd's ** stands between slashes)");
                reports.push(ctx.report(ReportKind::Note, item, target_text.src.path.clone(), detail));
            }
            Target::Pattern(At { value, src: target_text.src })
        }
    };
    Ok(Some(Rule { src: Src::at(path, item), target, owner_only, from_source, meta }))
}

/// One `fromSource` entry: `Ok(Ok(path))`, or `Ok(Err(why))` when it is a form noexecd does not enforce.
fn source_path(ctx: &Ctx<'_>, source: &Node, path: &str, reports: &mut Vec<Report>) -> Res<Result<At<String>, String>> {
    if !matches!(source.value, Value::Map(_)) {
        let found = source.value.kind();
        return Err(ctx.error(source, path, format!("expected {{path: /usr/bin/tool}}, found {found}")));
    }
    let mut out = None;
    let mut unsupported = None;
    for (key, value) in source.entries() {
        let kpath = format!("{path}.{key}");
        match key.as_str() {
            "path" => out = Some(At { value: text(ctx, value, &kpath)?, src: Src::at(&kpath, value) }),
            "dir" | "recursive" => {
                unsupported.get_or_insert_with(|| "fromSource directories".to_owned());
            }
            _ => reports.push(ctx.report(ReportKind::NotEnforced, value, kpath, "unknown key")),
        }
    }
    match (out, unsupported) {
        (_, Some(why)) => Ok(Err(why)),
        (Some(p), None) => Ok(Ok(p)),
        (None, None) => Err(ctx.error(source, path, "path is missing: write - path: /usr/bin/tool")),
    }
}

/// AppArmor's `**` crosses `/` anywhere; noexecd's (globset's) must stand alone between slashes. The one
/// common other form, a last component starting with `**` (`/tmp/**.sh`), means the same as `/tmp/**/*.sh`.
pub(super) fn globset_form(pattern: &str) -> String {
    let Some((head, last)) = pattern.rsplit_once('/') else { return pattern.to_owned() };
    let head_ok = head.split('/').all(|c| c == "**" || !c.contains("**"));
    match last.strip_prefix("**") {
        Some(rest) if head_ok && !rest.is_empty() && !rest.contains("**") => format!("{head}/**/*{rest}"),
        _ => pattern.to_owned(),
    }
}

fn meta_key(ctx: &Ctx<'_>, key: &str, value: &Node, path: &str, meta: &mut Meta) -> Res<()> {
    if value.is_null() {
        return Ok(());
    }
    let src = Src::at(path, value);
    match key {
        "action" => {
            let a = text(ctx, value, path)?;
            let normal = match a.trim().to_ascii_lowercase().as_str() {
                "block" => "Block",
                "audit" => "Audit",
                "allow" => "Allow",
                _ => {
                    return Err(ctx.error(
                        value,
                        path,
                        format!("action \"{a}\" is not known: write Block, Audit or Allow"),
                    ));
                }
            };
            meta.action = Some(At { value: normal, src });
        }
        "severity" => {
            let n = match &value.value {
                Value::Int(i) => Some(*i),
                Value::Str(s) => s.trim().parse::<i128>().ok(),
                Value::Float(f) if f.fract() == 0.0 && f.abs() <= 100.0 => format!("{f:.0}").parse::<i128>().ok(),
                _ => None,
            };
            let shown = value.scalar_text().unwrap_or_else(|| value.value.kind().to_owned());
            let s = n
                .and_then(|n| u8::try_from(n).ok())
                .filter(|n| (1..=10).contains(n))
                .ok_or_else(|| ctx.error(value, path, format!("severity {shown} is not a number from 1 to 10")))?;
            meta.severity = Some(At { value: s, src });
        }
        "tags" => {
            let Value::Seq(items) = &value.value else {
                let found = value.value.kind();
                return Err(ctx.error(
                    value,
                    path,
                    format!("expected a list of tags, found {found}: write [\"CIS\", ...]"),
                ));
            };
            let tags = items
                .iter()
                .enumerate()
                .map(|(i, t)| text(ctx, t, &format!("{path}[{i}]")))
                .collect::<Res<Vec<_>>>()?;
            meta.tags = Some(At { value: tags, src });
        }
        _ => meta.message = Some(At { value: text(ctx, value, path)?, src }),
    }
    Ok(())
}

/// A string field; numbers and booleans are read as their text (`message: 42`).
fn text(ctx: &Ctx<'_>, node: &Node, path: &str) -> Res<String> {
    node.scalar_text().ok_or_else(|| ctx.error(node, path, format!("expected a string, found {}", node.value.kind())))
}

/// A boolean field; `"true"`/`"false"` in quotes too. Null reads as false.
fn boolean(ctx: &Ctx<'_>, node: &Node, path: &str) -> Res<bool> {
    match &node.value {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(false),
        Value::Str(s) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
        Value::Str(s) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
        other => {
            let shown = node.scalar_text().unwrap_or_else(|| other.kind().to_owned());
            Err(ctx.error(node, path, format!("{shown} is not a boolean: write true or false")))
        }
    }
}
