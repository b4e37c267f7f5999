//! `noexecd import`: KubeArmorPolicy, KubeArmorClusterPolicy and KubeArmorHostPolicy documents
//! (`security.kubearmor.com/v1`) to noexecd TOML: a KubeArmorPolicy becomes a container policy
//! (`[policy.selector]` from its `spec.selector` and `metadata.namespace`), a KubeArmorClusterPolicy one of
//! every namespace its `matchExpressions` pick, a KubeArmorHostPolicy a host policy. Process and file rules
//! map one to one (file rules are also reported, as this build does not enforce them); everything noexecd
//! does not enforce (network, capabilities and syscalls rules, node selectors, `fromSource` on patterns,
//! unknown keys, a rule the loader refuses, a key written twice) becomes a [`Report`], never a silent drop. The same conversion lets the loader read `*.yaml` files in
//! `policy_dir`.
//!
//! Layout: [`yaml`] parses (serde-saphyr) into position-keeping nodes; `convert` reads KubeArmor's
//! schema out of them into `model`'s values, a document at a time, with a file per section (`selectors`,
//! `process`, `file`) over the field readers of `fields`; `emit` writes those as TOML with a line map back to the YAML;
//! [`report`] is what was left out. The policy loader, which reads YAML drop-ins through this module, is
//! handed in ([`Validate`]) to check that each converted policy loads: imports run one way.

mod convert;
mod emit;
mod fields;
mod file;
mod model;
mod process;
pub mod report;
mod selectors;
pub mod yaml;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, PolicyError, Result};
use crate::policy::located::utf8;
use crate::policy::matcher::Rule;
pub use convert::API_VERSION;
use convert::{Converter, Loaded};
use emit::Emitted;
use model::{Policy, Src};

/// The policy loader's check of configuration text (`policy::validate_str`): a converted policy the loader
/// refuses a rule of loses that rule, with a report.
pub type Validate = fn(&Path, &str) -> Result<()>;
pub use report::{Report, ReportKind};

/// One converted policy.
#[derive(Debug, Clone)]
pub struct ImportedPolicy {
    /// `metadata.name`.
    pub name: String,
    /// `DOC#N` in its file.
    pub doc: String,
    /// A container policy (from a KubeArmorPolicy), not a host policy.
    pub container: bool,
    emitted: Emitted,
    src: Src,
}

impl ImportedPolicy {
    /// The line and column of its `metadata.name` in the YAML file.
    pub fn place(&self) -> (usize, usize) {
        (self.src.line, self.src.col)
    }

    /// The policy as a TOML `[[policy]]` table with its header comments.
    pub fn toml(&self) -> &str {
        &self.emitted.text
    }

    /// A loader error about [`toml`](Self::toml) (read as `path`), moved back to the YAML value it came from.
    pub fn relocate(&self, path: &Path, e: Error) -> Error {
        match e {
            Error::Policy(e) => {
                let src = self.emitted.origin(e.line).cloned().unwrap_or_default();
                Error::ConvertKubeArmor {
                    path: path.to_owned(),
                    line: src.line,
                    col: src.col,
                    message: format!("{} policy {}: {}: {}", self.doc, self.name, src.path, e.message),
                }
            }
            other => other,
        }
    }
}

/// Everything one YAML file converts to.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// The file as it was named.
    pub file: PathBuf,
    pub policies: Vec<ImportedPolicy>,
    /// In document order.
    pub reports: Vec<Report>,
}

impl Conversion {
    /// Reports of parts noexecd does not enforce (what `--strict` refuses).
    pub fn not_enforced(&self) -> usize {
        self.reports.iter().filter(|r| r.kind == ReportKind::NotEnforced).count()
    }

    /// The whole file as one TOML document: a header naming the source, the reports that belong to no
    /// written policy, then every policy.
    pub fn toml(&self) -> String {
        self.emitted().text
    }

    fn emitted(&self) -> Emitted {
        let mut out = Emitted::default();
        let top = Src::default();
        let names: Vec<(&str, &str)> = self.policies.iter().map(|p| (p.doc.as_str(), p.name.as_str())).collect();
        let file = self.file.display();
        let mut head = format!("# Converted by `noexecd import` from {file} (KubeArmor {API_VERSION})\n");
        let mut head_lines = 1;
        for r in &self.reports {
            if !names.iter().any(|(doc, name)| *doc == r.doc && r.policy.as_deref() == Some(*name)) {
                head.push_str(&format!("# {}\n", r.to_string().replace(|c: char| c.is_control(), "?")));
                head_lines += 1;
            }
        }
        out.text = head;
        out.lines = vec![top; head_lines];
        for p in &self.policies {
            out.text.push('\n');
            out.lines.push(p.src.clone());
            out.append(&p.emitted);
        }
        out
    }
}

/// Converts the text of one YAML file; `path` names it in reports and errors. The policies are not loaded
/// here: `policy::check_imported` does that for `noexecd import`, and a drop-in is loaded once, as a whole.
pub fn convert_str(path: &Path, text: &str, validate: Validate) -> Result<Conversion> {
    let docs = yaml::parse_documents(text).map_err(|e| Error::ParseKubeArmor {
        path: path.to_owned(),
        line: e.line,
        col: e.col,
        message: e.message,
    })?;
    let file = path.display().to_string();
    let loads = |p: &Policy| {
        let emitted = emit::policy(p, &file, &[]);
        match validate(Path::new(&file), &emitted.text) {
            Ok(()) => Loaded::Yes,
            Err(Error::Policy(e)) => {
                Loaded::Refused { src: emitted.origin(e.line).cloned().unwrap_or_default(), message: e.message }
            }
            Err(other) => Loaded::Failed(other.to_string()),
        }
    };
    let mut converter = Converter::new(&file, &loads);
    let starts = yaml::document_lines(text);
    for (i, doc) in docs.iter().enumerate() {
        let number = yaml::document_number(&starts, doc.line).unwrap_or(i + 1);
        converter.document(number, doc).map_err(|e| Error::ConvertKubeArmor {
            path: path.to_owned(),
            line: e.line,
            col: e.col,
            message: e.message,
        })?;
    }
    let mut policies = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for p in &converter.policies {
        let name = p.name.value.clone();
        if let Some(first) = seen.get(&name) {
            return Err(Error::ConvertKubeArmor {
                path: path.to_owned(),
                line: p.name.src.line,
                col: p.name.src.col,
                message: format!(
                    "{} policy {name}: metadata.name: \"{name}\" is already the name of the policy in {first}; give each policy its own name",
                    p.doc
                ),
            });
        }
        seen.insert(name.clone(), p.doc.clone());
        let emitted = emit::policy(p, &file, &converter.reports);
        let container = p.selector.is_some();
        policies.push(ImportedPolicy { name, doc: p.doc.clone(), container, emitted, src: p.name.src.clone() });
    }
    Ok(Conversion { file: path.to_owned(), policies, reports: converter.reports })
}

/// Reads and converts one YAML file.
pub fn convert_file(path: &Path, validate: Validate) -> Result<Conversion> {
    let bytes = std::fs::read(path).map_err(|source| Error::ReadKubeArmor { path: path.to_owned(), source })?;
    convert_bytes(path, bytes, validate)
}

/// Converts the bytes of one YAML file; bytes that are not UTF-8 are refused with their place.
pub fn convert_bytes(path: &Path, bytes: Vec<u8>, validate: Validate) -> Result<Conversion> {
    let text = utf8(bytes).map_err(|at| Error::KubeArmorNotUtf8 { path: path.to_owned(), at })?;
    convert_str(path, &text, validate)
}

/// Whether the loader reads a `policy_dir` file as KubeArmor YAML (`*.yaml`, `*.yml`).
pub fn is_yaml(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "yaml" || e == "yml")
}

/// A KubeArmor YAML file of `policy_dir`, converted for the policy loader.
#[derive(Debug, Clone)]
pub struct DropIn {
    /// TOML to hand to the loader.
    pub text: String,
    path: PathBuf,
    emitted: Emitted,
}

/// Converts a `policy_dir` YAML file for the loader; what noexecd does not enforce is logged (warn), not
/// fatal. A file that does not convert is an error, as a broken TOML file is.
pub fn drop_in(path: &Path, text: &str, validate: Validate) -> Result<DropIn> {
    let c = convert_str(path, text, validate)?;
    for r in &c.reports {
        match r.kind {
            ReportKind::NotEnforced | ReportKind::Warning => tracing::warn!("{r}"),
            ReportKind::Skipped | ReportKind::Note => tracing::info!("{r}"),
        }
    }
    let emitted = c.emitted();
    Ok(DropIn { text: emitted.text.clone(), path: path.to_owned(), emitted })
}

impl DropIn {
    fn locate(&self, line: usize, col: usize) -> (usize, usize, String) {
        match self.emitted.origin(line) {
            Some(src) if src.line > 0 => (src.line, src.col, src.path.clone()),
            _ => (line, col, String::new()),
        }
    }

    /// A loader error about the converted text, moved to the YAML value it came from.
    pub fn relocate(&self, e: Error) -> Error {
        match e {
            Error::Policy(p) if p.file == self.path => {
                let (line, col, at) = self.locate(p.line, p.col);
                let message = if at.is_empty() { p.message } else { format!("{at}: {}", p.message) };
                Error::Policy(PolicyError { file: p.file, line, col, message })
            }
            other => other,
        }
    }

    /// Rules compiled from the converted text name their place in the YAML (`explain`, logs).
    pub fn relocate_rules<'r>(&self, rules: impl IntoIterator<Item = &'r mut Rule>) {
        for rule in rules {
            if let Some(origin) = self.relocated(&rule.meta.origin) {
                Arc::make_mut(&mut rule.meta).origin = origin;
            }
        }
    }

    /// A `file:line:col` in the converted text, moved to its place in the YAML.
    pub fn relocated(&self, origin: &str) -> Option<String> {
        let prefix = format!("{}:", self.path.display());
        let rest = origin.strip_prefix(&prefix)?;
        let mut parts = rest.splitn(2, ':').map(str::parse::<usize>);
        let (Some(Ok(line)), Some(Ok(col))) = (parts.next(), parts.next()) else { return None };
        let (line, col, _) = self.locate(line, col);
        Some(format!("{prefix}{line}:{col}"))
    }
}

#[cfg(test)]
mod tests;
