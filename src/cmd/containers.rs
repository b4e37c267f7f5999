//! `noexecd containers`: the containers running on this host now, as each runtime tells them, one JSON object
//! per line (or a table). What is read, and why there, is in `containers`' module docs and docs/containers.md.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;

use serde_json::json;

use crate::containers::found::{How, instances};
use crate::containers::{Container, Sources, discover, runtime_name};

/// Where to find each runtime: `(key, path)` for the runtime sources given (`cli::SourceFlags`); any other
/// takes the runtime's default.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub sources: Vec<(&'static str, PathBuf)>,
    /// A table for people instead of JSON lines.
    pub table: bool,
}

impl Options {
    fn sources(&self) -> Sources {
        let mut sources = Sources::default();
        // A flag left at its default names no place: the runtime is then found where it runs.
        for (key, path) in &self.sources {
            if sources.get(key) != path.as_path() {
                sources.set(key, path.clone());
            }
        }
        sources
    }
}

/// Discovers the containers and prints them to `out`; the runtime instances read, and how each was found,
/// to stderr.
pub fn run(options: &Options, out: &mut dyn Write) -> std::io::Result<()> {
    let sources = options.sources();
    let mut err = std::io::stderr().lock();
    for line in runtime_lines(&sources) {
        writeln!(err, "{line}")?;
    }
    let found = discover(&sources);
    if options.table { write_table(&found, out) } else { write_json_lines(&found, out) }
}

/// One line per runtime instance whose records are there (every configured one): `runtime <name> found=<how>
/// <key>=<path>...`; or one line saying none was found.
pub fn runtime_lines(sources: &Sources) -> Vec<String> {
    let mut lines = Vec::new();
    for i in instances(sources) {
        if !i.present() && i.how != How::Configured {
            continue;
        }
        let places: Vec<String> = i.places().iter().map(|(k, p)| format!("{k}={}", p.display())).collect();
        let absent = if i.present() { "" } else { "\tabsent" };
        lines.push(format!("runtime\t{}\tfound={}\t{}{absent}", i.runtime.name(), i.how, places.join("\t")));
    }
    if lines.is_empty() {
        lines.push("runtime\tnone found (no containerd, CRI-O, dockerd or podman service, no known place)".to_owned());
    }
    lines
}

/// One container as `noexecd containers` prints it.
pub fn to_json(c: &Container) -> serde_json::Value {
    json!({
        "id": c.info.id,
        "runtime": runtime_name(c.info.runtime),
        "name": c.info.name,
        "image": c.info.image,
        "namespace": c.info.namespace,
        "pod": c.info.pod,
        "labels": c.info.labels,
        "init_pid": c.init_pid,
    })
}

fn write_json_lines(found: &[Container], out: &mut dyn Write) -> std::io::Result<()> {
    for c in found {
        writeln!(out, "{}", to_json(c))?;
    }
    out.flush()
}

fn write_table(found: &[Container], out: &mut dyn Write) -> std::io::Result<()> {
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    let mut rows: Vec<[String; 8]> =
        vec![["ID", "RUNTIME", "NAME", "IMAGE", "NAMESPACE", "POD", "PID", "LABELS"].map(str::to_owned)];
    for c in found {
        let labels = c.display_labels();
        rows.push([
            c.info.id.chars().take(12).collect(),
            runtime_name(c.info.runtime).to_owned(),
            text(&c.info.name),
            text(&c.info.image),
            text(&c.info.namespace),
            text(&c.info.pod),
            c.init_pid.to_string(),
            if labels.is_empty() { "-".to_owned() } else { labels },
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::ContainerInfo;
    use crate::containers::runtimes::crio::CRIO;
    use crate::containers::runtimes::podman::PODMAN;

    fn sample() -> Vec<Container> {
        vec![
            Container {
                info: ContainerInfo {
                    id: "ab".repeat(32),
                    runtime: PODMAN,
                    name: Some("wordpress".into()),
                    image: Some("localhost/wp:1".into()),
                    labels: [("app", "wordpress"), ("io.kubernetes.pod.name", "wp-1")]
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                    namespace: Some("wordpress-mysql".into()),
                    pod: Some("wp-1".into()),
                    owner: None,
                },
                init_pid: 4242,
            },
            Container { info: ContainerInfo::new("cd".repeat(32), CRIO), init_pid: 7 },
        ]
    }

    #[test]
    fn json_lines_name_every_field() {
        let mut out = Vec::new();
        write_json_lines(&sample(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            format!(
                r#"{{"id":"{}","runtime":"podman","name":"wordpress","image":"localhost/wp:1","namespace":"wordpress-mysql","pod":"wp-1","labels":{{"app":"wordpress","io.kubernetes.pod.name":"wp-1"}},"init_pid":4242}}"#,
                "ab".repeat(32)
            )
        );
        assert_eq!(
            lines[1],
            format!(
                r#"{{"id":"{}","runtime":"cri-o","name":null,"image":null,"namespace":null,"pod":null,"labels":{{}},"init_pid":7}}"#,
                "cd".repeat(32)
            )
        );
    }

    #[test]
    fn the_table_lines_up() {
        let mut out = Vec::new();
        write_table(&sample(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let expected = "\
ID            RUNTIME  NAME       IMAGE           NAMESPACE        POD   PID   LABELS
abababababab  podman   wordpress  localhost/wp:1  wordpress-mysql  wp-1  4242  app=wordpress,io.kubernetes.pod.name=wp-1
cdcdcdcdcdcd  cri-o    -          -               -                -     7     -
";
        assert_eq!(text, expected);
        let mut out = Vec::new();
        write_table(&[], &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "ID  RUNTIME  NAME  IMAGE  NAMESPACE  POD  PID  LABELS\n");
    }
}
