//! Writing a converted [`Policy`] as noexecd TOML (the format of `policy/raw.rs`), remembering for every
//! line which YAML value it came from so that the loader's `file:line:col` can be turned back into a
//! place in the YAML file.

use std::fmt::Write as _;

use super::model::{At, Expression, Meta, Policy, Rule, Src, Target};
use super::report::{Report, ReportKind};

/// TOML text and, per line, its origin in the YAML.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Emitted {
    pub text: String,
    pub lines: Vec<Src>,
}

impl Emitted {
    fn line(&mut self, text: &str, src: &Src) {
        self.text.push_str(text);
        self.text.push('\n');
        self.lines.push(src.clone());
    }

    fn comment(&mut self, text: &str, src: &Src) {
        self.line(&format!("# {}", comment_text(text)), src);
    }

    pub fn append(&mut self, other: &Emitted) {
        self.text.push_str(&other.text);
        self.lines.extend(other.lines.iter().cloned());
    }

    /// The YAML origin of 1-based TOML line `line`.
    pub fn origin(&self, line: usize) -> Option<&Src> {
        self.lines.get(line.checked_sub(1)?)
    }
}

/// A TOML basic string: `"..."` with `\`, `"` and control characters escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML key: bare when it can be (`app`), else quoted (`"kubearmor.io/container.name"`).
fn key(s: &str) -> String {
    let bare = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare { s.to_owned() } else { quote(s) }
}

/// Comment text on one line: control characters (a newline in a policy name) become `?`.
fn comment_text(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

fn meta(out: &mut Emitted, m: &Meta) {
    if let Some(a) = &m.action {
        out.line(&format!("action = {}", quote(a.value)), &a.src);
    }
    if let Some(s) = &m.severity {
        out.line(&format!("severity = {}", s.value), &s.src);
    }
    if let Some(t) = &m.tags {
        let list: Vec<String> = t.value.iter().map(|t| quote(t)).collect();
        out.line(&format!("tags = [{}]", list.join(", ")), &t.src);
    }
    if let Some(msg) = &m.message {
        out.line(&format!("message = {}", quote(&msg.value)), &msg.src);
    }
}

fn flag(out: &mut Emitted, key: &str, value: Option<&At<bool>>) {
    if let Some(v) = value.filter(|v| v.value) {
        out.line(&format!("{key} = true"), &v.src);
    }
}

/// One `[[policy.selector.match_expressions]]`, each value on a line of its own so that an error in one
/// names its own place in the YAML.
fn expression(out: &mut Emitted, e: &Expression) {
    out.line("", &e.src);
    out.line("[[policy.selector.match_expressions]]", &e.src);
    out.line(&format!("key = {}", quote(&e.key.value)), &e.key.src);
    out.line(&format!("operator = {}", quote(&e.operator.value)), &e.operator.src);
    if e.values.is_empty() {
        out.line("values = []", &e.src);
        return;
    }
    out.line("values = [", &e.src);
    for v in &e.values {
        out.line(&format!("    {},", quote(&v.value)), &v.src);
    }
    out.line("]", &e.src);
}

/// One policy: a header comment (kind, name, origin, what was left out), then its `[[policy]]` table.
pub fn policy(p: &Policy, file: &str, reports: &[Report]) -> Emitted {
    let mut out = Emitted::default();
    let src = &p.name.src;
    out.comment(&format!("{} {} ({file}, {})", p.kind, quote(&p.name.value), p.doc), src);
    for r in reports.iter().filter(|r| r.doc == p.doc && r.policy.as_deref() == Some(p.name.value.as_str())) {
        let prefix = match r.kind {
            ReportKind::NotEnforced | ReportKind::Warning => "",
            ReportKind::Skipped | ReportKind::Note => "note: ",
        };
        out.comment(&format!("{prefix}{}", r.short()), src);
    }
    if p.selector.is_some() {
        out.comment("a container policy: its rules apply inside the containers [policy.selector] picks", src);
    }
    if p.has_allow() {
        out.comment(
            "Allow rules: an exec on a guarded filesystem that matches no rule gets [daemon] default_posture",
            src,
        );
    }
    if p.has_file_allow() {
        out.comment("Allow file rules: an open that matches no file rule gets [daemon] default_file_posture", src);
    }
    out.line("[[policy]]", src);
    out.line(&format!("name = {}", quote(&p.name.value)), src);
    meta(&mut out, &p.meta);
    if let Some(sel) = &p.selector {
        out.line("", &sel.src);
        out.line("[policy.selector]", &sel.src);
        if let Some(ns) = &sel.namespace {
            out.line(&format!("namespace = {}", quote(&ns.value)), &ns.src);
        }
        if !sel.labels.is_empty() {
            out.line("", &sel.src);
            out.line("[policy.selector.match_labels]", &sel.src);
            for (k, v) in &sel.labels {
                out.line(&format!("{} = {}", key(&k.value), quote(&v.value)), &k.src);
            }
        }
        for e in &sel.expressions {
            expression(&mut out, e);
        }
    }
    section(&mut out, "process", &p.process_meta, &p.rules, src);
    section(&mut out, "file", &p.file_meta, &p.file_rules, src);
    out
}

/// `[policy.<name>]` with its meta (when it has any), then its rules.
fn section(out: &mut Emitted, name: &str, section_meta: &Meta, rules: &[Rule], src: &Src) {
    if !section_meta.is_empty() {
        out.line("", src);
        out.line(&format!("[policy.{name}]"), src);
        meta(out, section_meta);
    }
    for rule in rules {
        out.line("", &rule.src);
        match &rule.target {
            Target::Path(path) => {
                out.line(&format!("[[policy.{name}.match_paths]]"), &rule.src);
                out.line(&format!("path = {}", quote(&path.value)), &path.src);
            }
            Target::Dir { dir, recursive } => {
                out.line(&format!("[[policy.{name}.match_directories]]"), &rule.src);
                out.line(&format!("dir = {}", quote(&dir.value)), &dir.src);
                flag(out, "recursive", recursive.as_ref());
            }
            Target::Pattern(pattern) => {
                out.line(&format!("[[policy.{name}.match_patterns]]"), &rule.src);
                out.line(&format!("pattern = {}", quote(&pattern.value)), &pattern.src);
            }
            Target::Name(n) => {
                out.line(&format!("[[policy.{name}.match_paths]]"), &rule.src);
                out.line(&format!("execname = {}", quote(&n.value)), &n.src);
            }
        }
        flag(out, "read_only", rule.read_only.as_ref());
        flag(out, "owner_only", rule.owner_only.as_ref());
        match rule.from_source.as_slice() {
            [] => {}
            [one] => out.line(&format!("from_source = [{}]", quote(&one.value)), &one.src),
            [first, ..] => {
                // One line each, so that an error in one names its own place in the YAML.
                out.line("from_source = [", &first.src);
                for s in &rule.from_source {
                    out.line(&format!("    {},", quote(&s.value)), &s.src);
                }
                out.line("]", &first.src);
            }
        }
        meta(out, &rule.meta);
    }
}
