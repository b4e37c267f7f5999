//! The stage folders import one way: a module names (`crate::x`) only modules of an earlier stage. A circle
//! would let a change in one stage break the stages before it; this test fails when one comes back.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::path::Path;

/// Each top-level module and its stage: a module may import from lower stages only. `error` and `stats`
/// are leaves every stage uses.
const STAGES: &[(&str, u8)] = &[
    ("error", 0),
    ("stats", 0),
    ("sys", 1),
    ("host", 2),
    ("containers", 3),
    ("policy", 4),
    ("alert", 5),
    ("guard", 6),
    ("decide", 7),
    ("daemon", 8),
    ("cli", 9),
    ("cmd", 10),
];

fn stage(module: &str) -> Option<u8> {
    STAGES.iter().find(|(m, _)| *m == module).map(|&(_, s)| s)
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules `text` names through `crate::`.
fn imported(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        assert!(!name.is_empty(), "write `crate::module::...`, not a grouped `crate::{{...}}` import: {rest:.40}");
        out.insert(name);
    }
    out
}

#[test]
fn every_module_imports_only_from_earlier_stages() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned();
        if matches!(top.as_str(), "main" | "lib" | "layering") {
            continue;
        }
        let own = stage(&top).unwrap_or_else(|| panic!("{}: module {top} has no stage in STAGES", rel.display()));
        for dep in imported(&std::fs::read_to_string(file).unwrap()) {
            if dep == top || matches!(dep.as_str(), "Error" | "Result") {
                continue;
            }
            let theirs = stage(&dep).unwrap_or_else(|| panic!("{}: crate::{dep} has no stage", rel.display()));
            if theirs >= own && !(theirs == 0 && own == 0) {
                wrong.push(format!("{} ({top}, stage {own}) imports crate::{dep} (stage {theirs})", rel.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the stage order:\n{}", wrong.join("\n"));
}

#[test]
fn the_check_sees_a_wrong_import() {
    assert_eq!(
        imported("use crate::daemon::fdstore;\nlet x = crate::sys::f();"),
        ["daemon", "sys"].map(String::from).into()
    );
}
