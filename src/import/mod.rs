//! `noexecd import`: KubeArmorPolicy and KubeArmorHostPolicy documents (`security.kubearmor.com/v1`) to
//! noexecd TOML. Process rules map one to one; everything noexecd does not enforce (file, network,
//! capabilities and syscalls rules, Kubernetes selectors, `fromSource` on patterns, unknown keys) becomes a
//! [`Report`], never a silent drop. The same conversion lets the loader read `*.yaml` files in `policy_dir`.
//!
//! Layout: [`yaml`] parses (serde-saphyr) into position-keeping nodes; `convert` reads KubeArmor's
//! schema out of them; `emit` writes TOML with a line map back to the YAML; [`report`] is what was left out.
#![forbid(unsafe_code)]

mod convert;
mod emit;
pub mod report;
pub mod yaml;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, PolicyError, Result};
use crate::matcher::Rule;
pub use convert::API_VERSION;
use convert::{Converter, Src};
use emit::Emitted;
pub use report::{Report, ReportKind};

/// One converted policy.
#[derive(Debug, Clone)]
pub struct ImportedPolicy {
    /// `metadata.name`.
    pub name: String,
    /// `DOC#N` in its file.
    pub doc: String,
    emitted: Emitted,
    src: Src,
}

impl ImportedPolicy {
    /// The policy as a TOML `[[policy]]` table with its header comments.
    pub fn toml(&self) -> &str {
        &self.emitted.text
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

/// Converts the text of one YAML file; `path` names it in reports and errors. Each policy is checked by
/// the policy loader, and its errors are given at their place in the YAML.
pub fn convert_str(path: &Path, text: &str) -> Result<Conversion> {
    let docs = yaml::parse_documents(text).map_err(|e| Error::ParseKubeArmor {
        path: path.to_owned(),
        line: e.line,
        col: e.col,
        message: e.message,
    })?;
    let file = path.display().to_string();
    let mut converter = Converter::new(&file);
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
        check(path, &p.doc, &name, &emitted)?;
        policies.push(ImportedPolicy { name, doc: p.doc.clone(), emitted, src: p.name.src.clone() });
    }
    Ok(Conversion { file: path.to_owned(), policies, reports: converter.reports })
}

/// The converted policy must load; a loader error is moved back to the YAML value it came from.
fn check(path: &Path, doc: &str, name: &str, emitted: &Emitted) -> Result<()> {
    match crate::policy::load_str(path, &emitted.text) {
        Ok(_) => Ok(()),
        Err(Error::Policy(e)) => {
            let src = emitted.origin(e.line).cloned().unwrap_or_default();
            Err(Error::ConvertKubeArmor {
                path: path.to_owned(),
                line: src.line,
                col: src.col,
                message: format!("{doc} policy {name}: {}: {}", src.path, e.message),
            })
        }
        Err(other) => Err(other),
    }
}

/// Reads and converts one YAML file.
pub fn convert_file(path: &Path) -> Result<Conversion> {
    let text =
        std::fs::read_to_string(path).map_err(|source| Error::ReadKubeArmor { path: path.to_owned(), source })?;
    convert_str(path, &text)
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
pub fn drop_in(path: &Path, text: &str) -> Result<DropIn> {
    let c = convert_str(path, text)?;
    for r in &c.reports {
        match r.kind {
            ReportKind::NotEnforced => tracing::warn!("{r}"),
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
    pub fn relocate_rules(&self, rules: &mut [Rule]) {
        let prefix = format!("{}:", self.path.display());
        for rule in rules {
            let Some(rest) = rule.meta.origin.strip_prefix(&prefix) else { continue };
            let mut parts = rest.splitn(2, ':').map(str::parse::<usize>);
            let (Some(Ok(line)), Some(Ok(col))) = (parts.next(), parts.next()) else { continue };
            let (line, col, _) = self.locate(line, col);
            Arc::make_mut(&mut rule.meta).origin = format!("{prefix}{line}:{col}");
        }
    }
}

/// `noexecd import` options.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Any report of a part noexecd does not enforce is an error, and nothing is written.
    pub strict: bool,
    /// Write one `<policy-name>.toml` per policy here instead of everything to `out`.
    pub output_dir: Option<PathBuf>,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub policies: usize,
    pub not_enforced: usize,
    /// The files written with `output_dir`.
    pub written: Vec<PathBuf>,
}

/// `noexecd import`: converts every file (all or nothing), prints each report on `err`, then writes the
/// TOML to `out` or into `output_dir`.
pub fn import(files: &[PathBuf], options: &ImportOptions, out: &mut dyn Write, err: &mut dyn Write) -> Result<Summary> {
    let conversions = files.iter().map(|f| convert_file(f)).collect::<Result<Vec<_>>>()?;
    let mut seen: HashMap<&str, (&Path, &str)> = HashMap::new();
    for c in &conversions {
        for p in &c.policies {
            if let Some((file, doc)) = seen.insert(&p.name, (&c.file, &p.doc)) {
                return Err(Error::ConvertKubeArmor {
                    path: c.file.clone(),
                    line: p.src.line,
                    col: p.src.col,
                    message: format!(
                        "{} policy {}: metadata.name: \"{}\" is already the name of the policy in {}:{doc}; give each policy its own name",
                        p.doc,
                        p.name,
                        p.name,
                        file.display()
                    ),
                });
            }
        }
    }
    let mut summary = Summary::default();
    for c in &conversions {
        for r in &c.reports {
            let _ = writeln!(err, "{r}");
        }
        summary.not_enforced += c.not_enforced();
        summary.policies += c.policies.len();
    }
    if options.strict && summary.not_enforced > 0 {
        return Err(Error::ImportStrict { count: summary.not_enforced });
    }
    match &options.output_dir {
        None => {
            let stdout = Path::new("standard output");
            let text: Vec<String> = conversions.iter().map(Conversion::toml).collect();
            out.write_all(text.join("\n").as_bytes())
                .and_then(|()| out.flush())
                .map_err(|source| Error::WriteFile { path: stdout.to_owned(), source })?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| Error::CreateImportDir { path: dir.clone(), source })?;
            for c in &conversions {
                for p in &c.policies {
                    summary.written.push(write_policy(dir, c, p)?);
                }
            }
        }
    }
    let into = options.output_dir.as_ref().map(|d| format!(" into {}", d.display())).unwrap_or_default();
    let _ = writeln!(
        err,
        "imported {} policies from {} file(s){into}; {} part(s) not enforced by noexecd{}",
        summary.policies,
        files.len(),
        summary.not_enforced,
        if summary.not_enforced > 0 { " (listed above)" } else { "" }
    );
    Ok(summary)
}

/// `<dir>/<name>.toml`, written whole (temporary file, then rename) so a running daemon never reloads half.
fn write_policy(dir: &Path, c: &Conversion, p: &ImportedPolicy) -> Result<PathBuf> {
    let safe = !p.name.is_empty()
        && !p.name.starts_with('.')
        && p.name.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
    if !safe {
        return Err(Error::ConvertKubeArmor {
            path: c.file.clone(),
            line: p.src.line,
            col: p.src.col,
            message: format!(
                "{} policy {}: metadata.name cannot name a file in {}: use letters, digits, '-', '_' and '.' (as Kubernetes does)",
                p.doc,
                p.name,
                dir.display()
            ),
        });
    }
    let path = dir.join(format!("{}.toml", p.name));
    let tmp = dir.join(format!(".{}.toml.tmp", p.name));
    let text =
        format!("# Converted by `noexecd import` from {} (KubeArmor {API_VERSION})\n\n{}", c.file.display(), p.toml());
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| Error::WriteFile { path: path.clone(), source })?;
    Ok(path)
}

#[cfg(test)]
mod tests;
