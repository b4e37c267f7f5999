//! What an import leaves out or changes, one line each: every part of a KubeArmor policy that noexecd does
//! not enforce, every document that is not a policy, every value rewritten on the way.

use std::fmt;

/// How much a report matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// Part of a policy that noexecd does not enforce: a rule (also one it cannot use), a section, a node
    /// selector, a key written twice (the earlier one). `--strict` fails on it.
    NotEnforced,
    /// A document that is not a KubeArmor policy (a ConfigMap in the same file): skipped.
    Skipped,
    /// A value written differently but with the same meaning, or a policy that had nothing to import.
    Note,
    /// A rule enforced as written that leaves open what it seems to guard (a Block pattern `/tmp/*`).
    Warning,
}

/// One report line: `FILE:DOC#N policy NAME: spec.file.matchPaths[0] not enforced by noexecd (file rules) [line 12]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub kind: ReportKind,
    /// The input file as named on the command line.
    pub file: String,
    /// `DOC#2`, or `DOC#1 items[3]` inside a `kind: List`.
    pub doc: String,
    pub policy: Option<String>,
    /// Where in the document: `spec.file.matchPaths[0]`; empty for the whole document.
    pub path: String,
    /// Why, or what was done.
    pub detail: String,
    /// 1-based line in the file; 0 when unknown.
    pub line: usize,
}

impl Report {
    /// The report without the file and document, for a comment in the generated TOML.
    pub fn short(&self) -> String {
        match self.kind {
            ReportKind::NotEnforced => format!("{} not enforced by noexecd ({})", self.path, self.detail),
            ReportKind::Warning => format!("warning: {}: {}", self.path, self.detail),
            ReportKind::Skipped | ReportKind::Note if self.path.is_empty() => self.detail.clone(),
            ReportKind::Skipped | ReportKind::Note => format!("{}: {}", self.path, self.detail),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.doc)?;
        if let Some(p) = &self.policy {
            write!(f, " policy {p}")?;
        }
        write!(f, ": {}", self.short())?;
        if self.line > 0 {
            write!(f, " [line {}]", self.line)?;
        }
        Ok(())
    }
}
