//! `noexecd import`: converts KubeArmor YAML files (all or nothing), checks every policy with the loader,
//! prints each report, then writes the TOML to standard output or one file per policy.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::policy;
use crate::policy::kubearmor::{API_VERSION, Conversion, ImportedPolicy, convert_file};

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
    /// Of them, container policies (from KubeArmorPolicy documents).
    pub containers: usize,
    pub not_enforced: usize,
    /// The files written with `output_dir`.
    pub written: Vec<PathBuf>,
}

/// `noexecd import`: converts every file (all or nothing), prints each report on `err`, then writes the
/// TOML to `out` or into `output_dir`.
pub fn import(files: &[PathBuf], options: &ImportOptions, out: &mut dyn Write, err: &mut dyn Write) -> Result<Summary> {
    let conversions = files
        .iter()
        .map(|f| convert_file(f, policy::validate_str).and_then(|c| policy::check_imported(&c).map(|()| c)))
        .collect::<Result<Vec<_>>>()?;
    let mut seen: HashMap<&str, (&Path, &str)> = HashMap::new();
    for c in &conversions {
        for p in &c.policies {
            if let Some((file, doc)) = seen.insert(&p.name, (&c.file, &p.doc)) {
                return Err(Error::ConvertKubeArmor {
                    path: c.file.clone(),
                    line: p.place().0,
                    col: p.place().1,
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
        summary.containers += c.policies.iter().filter(|p| p.container).count();
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
    let containers = match summary.containers {
        0 => String::new(),
        n => format!(" ({n} for containers)"),
    };
    let _ = writeln!(
        err,
        "imported {} policies{containers} from {} file(s){into}; {} part(s) not enforced by noexecd{}",
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
            line: p.place().0,
            col: p.place().1,
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
mod tests {
    use super::*;

    const HEAD: &str = "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: p\n";

    fn import_to_strings(files: &[PathBuf], options: &ImportOptions) -> (Result<Summary>, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let r = import(files, options, &mut out, &mut err);
        (r, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn strict_refuses_anything_not_enforced_and_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let clean =
            write(tmp.path(), "clean.yaml", &format!("{HEAD}spec:\n  process:\n    matchPaths:\n    - path: /a\n"));
        let lossy = write(
            tmp.path(),
            "lossy.yaml",
            "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: q\nspec:\n  process:\n    matchPaths:\n    - path: /b\n  network:\n    matchProtocols:\n    - protocol: raw\n",
        );
        let out_dir = tmp.path().join("policy.d");
        let strict = ImportOptions { strict: true, output_dir: Some(out_dir.clone()) };
        let (r, out, err) = import_to_strings(&[clean.clone(), lossy.clone()], &strict);
        assert!(matches!(r, Err(Error::ImportStrict { count: 1 })), "{r:?}");
        assert!(out.is_empty());
        assert!(
            err.contains(
                "lossy.yaml:DOC#1 policy q: spec.network.matchProtocols[0] not enforced by noexecd (network rules) [line 11]"
            ),
            "{err}"
        );
        assert!(!out_dir.exists(), "strict failure must write nothing");
        let (r, out, _) =
            import_to_strings(&[clean.clone(), lossy.clone()], &ImportOptions { strict: true, output_dir: None });
        assert!(r.is_err() && out.is_empty());
        // Strict passes a file whose every part is enforced; skipped kinds are not lost policy parts.
        let mixed = write(
            tmp.path(),
            "mixed.yaml",
            &format!(
                "kind: ConfigMap\napiVersion: v1\n---\n{HEAD}spec:\n  process:\n    matchPaths:\n    - path: /a\n"
            ),
        );
        let (r, out, err) = import_to_strings(&[mixed], &ImportOptions { strict: true, output_dir: None });
        assert_eq!(r.unwrap().policies, 1);
        assert!(
            out.contains("[[policy]]") && err.contains("kind ConfigMap is not a KubeArmor policy: skipped"),
            "{err}"
        );
        // Without --strict the same input imports, reporting.
        let (r, out, err) = import_to_strings(&[clean, lossy], &ImportOptions::default());
        let s = r.unwrap();
        assert_eq!((s.policies, s.not_enforced), (2, 1));
        assert!(
            err.ends_with("imported 2 policies from 2 file(s); 1 part(s) not enforced by noexecd (listed above)\n"),
            "{err}"
        );
        crate::policy::load_str(Path::new("stdout.toml"), &out).unwrap();
    }

    #[test]
    fn output_dir_gets_one_loadable_file_per_policy() {
        let tmp = tempfile::tempdir().unwrap();
        let corpus_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kubearmor/multi-document.yaml");
        let out_dir = tmp.path().join("etc/noexecd/policy.d");
        let (r, out, err) =
            import_to_strings(&[corpus_file], &ImportOptions { strict: false, output_dir: Some(out_dir.clone()) });
        let s = r.unwrap_or_else(|e| panic!("{e}\n{err}"));
        assert!(out.is_empty());
        let mut names: Vec<String> = std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "csp-every-namespace.toml",
                "hsp-last.toml",
                "hsp-no-api-version.toml",
                "ksp-shop-block-pkg-mgmt.toml"
            ]
        );
        assert_eq!(s.written.len(), 4);
        for f in &s.written {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(text.starts_with("# Converted by `noexecd import` from "), "{text}");
            crate::policy::load_str(f, &text).unwrap_or_else(|e| panic!("{e}"));
        }
        // A name that cannot be a file name is refused.
        let bad = write(
            tmp.path(),
            "bad.yaml",
            "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: ../x\nspec:\n  process:\n    matchPaths:\n    - path: /a\n",
        );
        let (r, _, _) = import_to_strings(&[bad], &ImportOptions { strict: false, output_dir: Some(out_dir) });
        let e = r.unwrap_err().to_string();
        assert!(e.contains("metadata.name cannot name a file"), "{e}");
    }

    #[test]
    fn same_name_in_two_files_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let doc = format!("{HEAD}spec:\n  process:\n    matchPaths:\n    - path: /a\n");
        let a = write(tmp.path(), "a.yaml", &doc);
        let b = write(tmp.path(), "b.yaml", &doc);
        let (r, out, _) = import_to_strings(&[a, b], &ImportOptions::default());
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("b.yaml:4:9: DOC#1 policy p: metadata.name: \"p\" is already the name of the policy in ")
                && e.contains("a.yaml:DOC#1"),
            "{e}"
        );
        assert!(out.is_empty());
        let (r, _, _) = import_to_strings(&[tmp.path().join("missing.yaml")], &ImportOptions::default());
        assert!(matches!(r, Err(Error::ReadKubeArmor { .. })), "{r:?}");
    }
}
