//! The stage folders import one way: a module names (`crate::x`) only modules of an earlier stage. A circle
//! would let a change in one stage break the stages before it; this test fails when one comes back. Files
//! import one way too, inside a stage: no two files name each other, directly or around a circle (a file's
//! `crate::`, `super::`, `self::` and child-module paths, resolved to the file of the module they name).
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
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

#[test]
fn no_import_circle_between_files() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|f| (f.strip_prefix(&src).unwrap().display().to_string(), std::fs::read_to_string(f).unwrap()))
        .filter(|(rel, _)| rel != "main.rs")
        .collect();
    let graph = file_graph(&sources);
    assert!(
        graph.get("host/mounts.rs").is_some_and(|to| to.contains("host/overlay.rs")),
        "the graph sees `use super::overlay`: {graph:?}"
    );
    let circles = circles(&graph);
    let shown: Vec<String> = circles.iter().map(|c| describe_circle(&graph, c)).collect();
    assert!(circles.is_empty(), "import circles between files:\n{}", shown.join("\n"));
}

#[test]
fn the_check_sees_a_circle_between_files() {
    let files = |a: &str, b: &str, c: &str| {
        vec![
            ("lib.rs".to_owned(), "pub mod x;\n".to_owned()),
            ("x/mod.rs".to_owned(), format!("mod a;\nmod b;\nmod c;\n{a}")),
            ("x/a.rs".to_owned(), b.to_owned()),
            ("x/b.rs".to_owned(), c.to_owned()),
            ("x/c.rs".to_owned(), "// use crate::x::a;\nfn f() { let s = \"super::b::f\"; }\n".to_owned()),
        ]
    };
    // mod.rs → a (a child's path), a → b (a grouped `super::` tree), b → mod.rs (an item of the parent).
    let g = file_graph(&files("pub use a::A;\n", "use super::{b::{self, B}, c};\n", "use crate::x::Thing;\n"));
    assert_eq!(circles(&g), vec![vec!["x/a.rs".to_owned(), "x/b.rs".to_owned(), "x/mod.rs".to_owned()]]);
    // The same names in comments and strings, and a test module's `super::*`: no edge back.
    let inline = "use super::c::f;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n";
    let g = file_graph(&files("pub use a::A;\n", "use super::b::B;\n", inline));
    assert!(circles(&g).is_empty(), "{g:?}");
    assert_eq!(g.get("x/c.rs"), None, "comments and strings name nothing: {g:?}");
}

/// For each file (its path under `src/`), the other files its paths name: `crate::a::b`, `super::b`,
/// `self::x`, and a child module's `child::x`, each `use` tree expanded, resolved to the file of the
/// deepest module named. Comments and literals are left out; an inline module (`mod tests { use super::*; }`)
/// counts as part of its file.
fn file_graph(sources: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeMap<Vec<String>, String> = sources.iter().map(|(rel, _)| (module_of(rel), rel.clone())).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in sources {
        let code = code_only(text);
        let own = module_of(rel);
        let children = declared_children(&code);
        let mut inline: Vec<(String, usize)> = Vec::new();
        let mut depth = 0usize;
        let bytes = code.as_bytes();
        let mut at = 0;
        while let Some(&b) = bytes.get(at) {
            match b {
                b'{' => {
                    depth += 1;
                    at += 1;
                }
                b'}' => {
                    if inline.last().is_some_and(|(_, d)| *d == depth) {
                        inline.pop();
                    }
                    depth = depth.saturating_sub(1);
                    at += 1;
                }
                b if b.is_ascii_alphabetic() || b == b'_' => {
                    let (word, end) = ident(bytes, at);
                    let before = code[..at].trim_end().chars().last();
                    let after = skip_ws(bytes, end);
                    if word == "mod" {
                        let (name, name_end) = ident(bytes, skip_ws(bytes, end));
                        let open = skip_ws(bytes, name_end);
                        if !name.is_empty() && bytes.get(open) == Some(&b'{') {
                            depth += 1;
                            inline.push((name, depth));
                            at = open + 1;
                            continue;
                        }
                    } else if before != Some(':')
                        && bytes.get(after..after + 2) == Some(b"::")
                        && (matches!(word.as_str(), "crate" | "super" | "self") || children.contains(&word))
                    {
                        let mut current = own.clone();
                        current.extend(inline.iter().map(|(m, _)| m.clone()));
                        let mut paths = Vec::new();
                        let end = use_tree(bytes, at, Vec::new(), &mut paths);
                        for path in paths {
                            let target = resolve(&current, &path);
                            let file = (0..=target.len()).rev().find_map(|n| modules.get(&target[..n]));
                            if let Some(file) = file.filter(|f| *f != rel) {
                                graph.entry(rel.clone()).or_default().insert(file.clone());
                            }
                        }
                        at = end.max(at + word.len());
                        continue;
                    }
                    at = end;
                }
                _ => at += 1,
            }
        }
    }
    graph
}

/// The module path of a file under `src/`: `host/mounts.rs` is `host::mounts`, `host/mod.rs` is `host`.
fn module_of(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel.trim_end_matches(".rs").split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod" || (parts.len() == 1 && p == "lib")) {
        parts.pop();
    }
    parts
}

/// `mod name;` declarations: names whose paths (`name::x`) lead into a child file.
fn declared_children(code: &str) -> BTreeSet<String> {
    let bytes = code.as_bytes();
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("mod ") {
        if i > 0 && bytes.get(i - 1).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
            continue;
        }
        let (name, end) = ident(bytes, skip_ws(bytes, i + 3));
        if !name.is_empty() && bytes.get(skip_ws(bytes, end)) == Some(&b';') {
            out.insert(name);
        }
    }
    out
}

/// An absolute module path from a path written in module `current`.
fn resolve(current: &[String], path: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, seg) in path.iter().enumerate() {
        match (i, seg.as_str()) {
            (0, "crate") => {}
            (0, "self") => out = current.to_vec(),
            (0, "super") => {
                out = current.to_vec();
                out.pop();
            }
            (_, "super") => {
                out.pop();
            }
            (0, _) => {
                out = current.to_vec();
                out.push(seg.clone());
            }
            _ => out.push(seg.clone()),
        }
    }
    out
}

/// The paths of a `use` tree or path expression at `at` (`a::b::{c, d::{self, e}}` gives `a::b::c`,
/// `a::b::d`, `a::b::d::e`), into `out`; returns where it ends.
fn use_tree(text: &[u8], mut at: usize, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    loop {
        at = skip_ws(text, at);
        if text.get(at) == Some(&b'{') {
            at += 1;
            loop {
                at = skip_ws(text, at);
                match text.get(at) {
                    None => return at,
                    Some(b'}') => return at + 1,
                    Some(b',') => at += 1,
                    Some(_) => {
                        let next = use_tree(text, at, prefix.clone(), out);
                        if next == at {
                            return at;
                        }
                        at = next;
                    }
                }
            }
        }
        let (word, end) = ident(text, at);
        if word.is_empty() {
            out.push(prefix);
            return if text.get(at) == Some(&b'*') { at + 1 } else { at };
        }
        at = end;
        if word != "self" || prefix.is_empty() {
            prefix.push(word);
        }
        let after = skip_ws(text, at);
        if text.get(after..after + 2) != Some(b"::") {
            out.push(prefix);
            return at;
        }
        at = after + 2;
    }
}

fn ident(text: &[u8], at: usize) -> (String, usize) {
    let len =
        text.get(at..).unwrap_or_default().iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count();
    (String::from_utf8_lossy(&text[at..at + len]).into_owned(), at + len)
}

fn skip_ws(text: &[u8], at: usize) -> usize {
    at + text.get(at..).unwrap_or_default().iter().take_while(|b| b.is_ascii_whitespace()).count()
}

/// `text` with comments, string, byte-string and char literals blanked out (newlines kept).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in out.iter_mut().take(to.min(b.len())).skip(from) {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let starts_token = |i: usize| i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let (mut j, mut nest) = (i + 2, 1);
            while j < b.len() && nest > 0 {
                if b[j..].starts_with(b"/*") {
                    nest += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    nest -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if let Some((open, hashes)) = raw_string_open(rest).filter(|_| starts_token(i)) {
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            let end = b[i + open..].windows(close.len()).position(|w| w == close.as_slice());
            let end = end.map_or(b.len(), |p| i + open + p + close.len());
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"\"") || (rest.starts_with(b"b\"") && starts_token(i)) {
            let mut j = i + if rest[0] == b'b' { 2 } else { 1 };
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if rest.starts_with(b"'") {
            // A char literal (`'x'`, `'\n'`, `'é'`), not a lifetime (`'a`).
            let len = if rest.get(1) == Some(&b'\\') {
                rest.iter().skip(3).position(|&c| c == b'\'').map(|p| p + 4)
            } else {
                let width = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (rest.get(1 + width) == Some(&b'\'')).then_some(2 + width)
            };
            match len {
                Some(len) => {
                    blank(&mut out, i, i + len);
                    i += len;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The length of a raw string's opening (`r"`, `r#"`, `br##"`) at the start of `rest`, and its `#`s.
fn raw_string_open(rest: &[u8]) -> Option<(usize, usize)> {
    let r = if rest.starts_with(b"br") {
        2
    } else if rest.starts_with(b"r") {
        1
    } else {
        return None;
    };
    let hashes = rest[r..].iter().take_while(|&&c| c == b'#').count();
    (rest.get(r + hashes) == Some(&b'"')).then_some((r + hashes + 1, hashes))
}

/// The circles of `graph`: each set of files that reach each other (a strongly connected component of more
/// than one file), sorted.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(f) = todo.pop() {
            for to in graph.get(&f).into_iter().flatten() {
                if seen.insert(to.clone()) {
                    todo.push(to.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> = graph.keys().map(|f| (f, reach(f))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    for (f, from_f) in &reached {
        if !from_f.contains(*f) || out.iter().any(|c| c.contains(f)) {
            continue;
        }
        let circle: Vec<String> =
            from_f.iter().filter(|g| reached.get(g).is_some_and(|r| r.contains(*f))).cloned().collect();
        out.push(circle);
    }
    out.sort();
    out
}

/// A circle and the imports that close it.
fn describe_circle(graph: &BTreeMap<String, BTreeSet<String>>, circle: &[String]) -> String {
    let mut lines = vec![circle.join(" ⇄ ")];
    for f in circle {
        for to in graph.get(f).into_iter().flatten().filter(|t| circle.contains(t)) {
            lines.push(format!("    {f} → {to}"));
        }
    }
    lines.join("\n")
}
