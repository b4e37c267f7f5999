//! docker: `<data root>/containers/<id>/config.v2.json`, the record dockerd rewrites on every state change
//! (what `docker inspect` shows): `Name` ("/web-1"), `Config.Image`, `Image` (the image id,
//! `sha256:<hex>`), `Config.Labels` (the image's labels and `--label`s, and the kubelet's under dockershim),
//! `State.Running`, `State.Pid`.

use std::path::Path;

use serde_json::Value;

use crate::containers::record::{fill, is_id, keep_labels, kubernetes, read_json, string_at, string_map, with_digest};
use crate::containers::runtime::{
    CgroupForm, Container, ContainerInfo, ContainerRuntime, Finding, FirstPids, Runtime, Source, Sources,
};

/// dockerd.
pub struct Docker;

pub const DOCKER: Runtime = Runtime(&Docker);

const DATA_ROOT: Source = Source {
    key: "docker_root",
    default: "/var/lib/docker",
    about: "docker's data root (dockerd --data-root)",
    value_name: "DIR",
    flag: Some("docker-root"),
    layers: true,
};

impl ContainerRuntime for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    /// `docker-<id>.scope` (systemd), `/docker/<id>` (cgroupfs).
    fn cgroup_forms(&self) -> &'static [CgroupForm] {
        &[CgroupForm::Prefixed("docker-"), CgroupForm::Below("docker")]
    }

    fn sources(&self) -> &'static [Source] {
        &[DATA_ROOT]
    }

    fn finding(&self) -> Option<&'static Finding> {
        Some(&super::services::DOCKERD)
    }

    fn discover(&self, sources: &Sources, first_pids: &mut dyn FirstPids) -> Vec<Container> {
        discover(sources.get(DATA_ROOT.key), first_pids)
    }

    fn describe(&self, root: &Path, id: &str) -> Option<ContainerInfo> {
        describe_in(&root.join(DATA_ROOT.default.trim_start_matches('/')), id)
    }
}

/// What one `config.v2.json` says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub info: ContainerInfo,
    pub running: bool,
    /// `State.Pid` when it is a pid.
    pub pid: Option<i32>,
    /// A dockershim pod sandbox (`io.kubernetes.docker.type=podsandbox`): the pause container.
    pub sandbox: bool,
}

pub(crate) fn parse(id: &str, config: &Value) -> Record {
    let mut info = ContainerInfo::new(id.to_owned(), DOCKER);
    info.labels = string_map(config.pointer("/Config/Labels"));
    let sandbox = info.labels.get("io.kubernetes.docker.type").is_some_and(|t| t == "podsandbox");
    kubernetes(&mut info, &Default::default());
    fill(&mut info.name, string_at(config, "/Name").map(|n| n.trim_start_matches('/').to_owned()));
    let image_id = string_at(config, "/Image");
    fill(&mut info.image, string_at(config, "/Config/Image").map(|i| with_digest(i, image_id.as_deref())));
    keep_labels(&mut info);
    let running = config.pointer("/State/Running").and_then(Value::as_bool).unwrap_or(false);
    let pid =
        config.pointer("/State/Pid").and_then(Value::as_i64).and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0);
    Record { info, running, pid, sandbox }
}

fn record(root: &Path, id: &str) -> Option<Record> {
    let config = read_json(&root.join("containers").join(id).join("config.v2.json"))?;
    Some(parse(id, &config))
}

/// The running containers below docker's data root `root`.
fn discover(root: &Path, scan: &mut dyn FirstPids) -> Vec<Container> {
    let Ok(entries) = std::fs::read_dir(root.join("containers")) else {
        tracing::debug!(root = %root.display(), "docker: no containers directory");
        return Vec::new();
    };
    let mut ids: Vec<String> =
        entries.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| is_id(n)).collect();
    ids.sort();
    let mut out = Vec::new();
    for id in ids {
        let Some(r) = record(root, &id) else { continue };
        if !r.running || r.sandbox {
            continue;
        }
        if let Some(pid) = r.pid.or_else(|| scan.first_pid(&id)) {
            out.push(r.info.into_container(pid));
        }
    }
    out
}

/// Container `id`'s facts from docker's data root `root`, running or not.
pub(crate) fn describe_in(root: &Path, id: &str) -> Option<ContainerInfo> {
    is_id(id).then(|| record(root, id)).flatten().map(|r| r.info)
}
