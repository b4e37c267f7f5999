//! `spec.process` of a KubeArmor policy: its `matchPaths`, `matchDirectories` and `matchPatterns` rules.
//! `spec.file` has the same three lists (`file.rs`), read here with its own keys: `readOnly`, and no
//! `execname`.

use super::fields::{Ctx, Res, boolean, is_empty, is_meta, meta_key, text};
use super::model::{At, Meta, Policy, Rule, Src, Target};
use super::report::{Report, ReportKind};
use super::yaml::{Node, Value};

pub(super) fn process(ctx: &Ctx<'_>, section: &Node, policy: &mut Policy, reports: &mut Vec<Report>) -> Res<()> {
    rules_section(ctx, Section::Process, section, &mut policy.process_meta, &mut policy.rules, reports)
}

/// Which section of a policy a rule list belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Process,
    File,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Process => "process",
            Section::File => "file",
        }
    }
}

/// `spec.<section>`: its meta into `section_meta`, its rules appended to `out`.
pub(super) fn rules_section(
    ctx: &Ctx<'_>,
    kind: Section,
    section: &Node,
    section_meta: &mut Meta,
    out: &mut Vec<Rule>,
    reports: &mut Vec<Report>,
) -> Res<()> {
    let name = kind.name();
    match section.value {
        Value::Null => return Ok(()),
        Value::Map(_) => {}
        _ => {
            let found = section.value.kind();
            return Err(ctx.error(section, &format!("spec.{name}"), format!("expected a mapping, found {found}")));
        }
    }
    let mut paths = Vec::new();
    let mut dirs = Vec::new();
    let mut patterns = Vec::new();
    for (key, value) in section.entries() {
        let path = format!("spec.{name}.{key}");
        let rules = match key.as_str() {
            "matchPaths" => &mut paths,
            "matchDirectories" => &mut dirs,
            "matchPatterns" => &mut patterns,
            k if is_meta(k) => {
                meta_key(ctx, k, value, &path, section_meta)?;
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
            match process_rule(ctx, kind, &key, item, &rpath, reports) {
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
    out.extend(paths.into_iter().chain(dirs).chain(patterns));
    Ok(())
}

/// One `matchPaths`/`matchDirectories`/`matchPatterns` entry; `None` when noexecd cannot enforce it as
/// written (reported).
fn process_rule(
    ctx: &Ctx<'_>,
    kind: Section,
    list: &str,
    item: &Node,
    path: &str,
    reports: &mut Vec<Report>,
) -> Res<Option<Rule>> {
    if !matches!(item.value, Value::Map(_)) {
        return Err(ctx.error(item, path, format!("expected a rule (a mapping), found {}", item.value.kind())));
    }
    let mut meta = Meta::default();
    let mut target_text = None;
    let mut exec_name = None;
    let mut recursive = None;
    let mut owner_only = None;
    let mut read_only = None;
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
            "readOnly" if kind == Section::File => {
                read_only = Some(At { value: boolean(ctx, value, &kpath)?, src: Src::at(&kpath, value) });
            }
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
            "execname" if list == "matchPaths" && kind == Section::Process => {
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
                read_only,
                owner_only,
                from_source,
                meta,
            }));
        }
        (Some(t), None) => t,
        (None, None) if list == "matchPaths" && kind == Section::Process => {
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
    Ok(Some(Rule { src: Src::at(path, item), target, read_only, owner_only, from_source, meta }))
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
