//! What every part of a KubeArmor document is read with: the label of the policy being read (for errors and
//! reports), and the readers of its scalar fields and of `action`/`severity`/`tags`/`message`.

use super::model::{At, Meta, Src};
use super::report::{Report, ReportKind};
use super::yaml::{self, Node, Value};

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

/// Conversion of one policy: its label, for reports and errors.
pub(super) struct Ctx<'c> {
    pub(super) file: &'c str,
    pub(super) doc: &'c str,
    pub(super) policy: Option<&'c str>,
}

impl Ctx<'_> {
    pub(super) fn error(&self, node: &Node, path: &str, message: impl AsRef<str>) -> ConvertError {
        let policy = self.policy.map(|p| format!(" policy {p}")).unwrap_or_default();
        let sep = if path.is_empty() { "" } else { ": " };
        let reason = format!("{path}{sep}{}", message.as_ref());
        ConvertError { line: node.line, col: node.col, message: format!("{}{policy}: {reason}", self.doc), reason }
    }

    pub(super) fn report(
        &self,
        kind: ReportKind,
        node: &Node,
        path: impl Into<String>,
        detail: impl Into<String>,
    ) -> Report {
        self.report_at(kind, node.line, path, detail)
    }

    pub(super) fn report_at(
        &self,
        kind: ReportKind,
        line: usize,
        path: impl Into<String>,
        detail: impl Into<String>,
    ) -> Report {
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
    pub(super) fn duplicates(&self, node: &Node, path: &str, descend: bool, reports: &mut Vec<Report>) {
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

pub(super) type Res<T> = Result<T, ConvertError>;

/// Null, `{}`, `[]`, `""`, or a mapping of only such values (`selector: {matchLabels: {}}`).
pub(super) fn is_empty(node: &Node) -> bool {
    match &node.value {
        Value::Null => true,
        Value::Str(s) => s.is_empty(),
        Value::Seq(s) => s.is_empty(),
        Value::Map(m) => m.iter().all(|(_, v)| is_empty(v)),
        Value::Bool(_) | Value::Int(_) | Value::Float(_) => false,
    }
}

pub(super) fn is_meta(key: &str) -> bool {
    matches!(key, "action" | "severity" | "tags" | "message")
}

pub(super) fn meta_key(ctx: &Ctx<'_>, key: &str, value: &Node, path: &str, meta: &mut Meta) -> Res<()> {
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
pub(super) fn text(ctx: &Ctx<'_>, node: &Node, path: &str) -> Res<String> {
    node.scalar_text().ok_or_else(|| ctx.error(node, path, format!("expected a string, found {}", node.value.kind())))
}

/// A boolean field; `"true"`/`"false"` in quotes too. Null reads as false.
pub(super) fn boolean(ctx: &Ctx<'_>, node: &Node, path: &str) -> Res<bool> {
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
