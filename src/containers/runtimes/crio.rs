//! CRI-O, from containers/storage: `<storage>/overlay-containers/<id>/userdata/config.json`, the OCI spec
//! CRI-O wrote for the container. Its `annotations` carry `io.kubernetes.cri-o.Labels` (the kubelet's labels
//! of the container, a JSON object in a string), `io.kubernetes.cri-o.Metadata` (`{"name": ...}`),
//! `ContainerName`, `ContainerType`, `ImageName`, `ImageRef` (the image id) and `SandboxID`; the sandbox's own
//! spec in the same place carries the pod's labels in its `Labels`. Nothing there tells whether a container
//! runs: the ones with a process in their cgroup do (`procscan`).
//!
//! podman keeps its containers in the same storage (`io.container.manager: libpod` in their spec); those are
//! listed through podman's API, not here. For an alert, podman's `overlay-containers/containers.json` gives
//! a container's name, image and pod.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::containers::record::{fill, is_id, keep_labels, kubernetes, read_json, string_at, string_map, with_digest};
use crate::containers::runtime::{
    CgroupForm, Container, ContainerInfo, ContainerRuntime, Finding, FirstPids, Runtime, Source, Sources,
};

/// CRI-O.
pub struct CriO;

pub const CRIO: Runtime = Runtime(&CriO);

const STORAGE: Source = Source {
    key: "storage",
    default: "/var/lib/containers/storage",
    about: "The containers/storage graph root CRI-O keeps its containers in",
    value_name: "DIR",
    flag: Some("storage"),
    layers: true,
};

impl ContainerRuntime for CriO {
    fn name(&self) -> &'static str {
        "cri-o"
    }

    /// `crio-<id>.scope` (systemd), `crio-<id>` (cgroupfs). Conmon's `crio-conmon-<id>` is not a container.
    fn cgroup_forms(&self) -> &'static [CgroupForm] {
        &[CgroupForm::Prefixed("crio-")]
    }

    fn sources(&self) -> &'static [Source] {
        &[STORAGE]
    }

    fn finding(&self) -> Option<&'static Finding> {
        Some(&super::services::CRIO)
    }

    fn discover(&self, sources: &Sources, first_pids: &mut dyn FirstPids) -> Vec<Container> {
        discover(sources.get(STORAGE.key), first_pids)
    }

    fn describe(&self, root: &Path, id: &str) -> Option<ContainerInfo> {
        describe_in(root, id)
    }
}

const CONTAINERS: &str = "overlay-containers";

/// Where containers/storage lives below a root, for [`describe_in`]: graph root, then run root.
const STORES: [&str; 2] = ["var/lib/containers/storage", "run/containers/storage"];

/// What kind of container a spec belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// CRI-O's container of a pod.
    Container,
    /// CRI-O's pod sandbox (the pause container): its labels are the pod's.
    Sandbox,
    /// podman's (`io.container.manager: libpod`).
    Libpod,
    /// Neither says so.
    Unknown,
}

/// The `annotations` of a container's `config.json`.
pub(crate) fn annotations(config: &Value) -> BTreeMap<String, String> {
    string_map(config.get("annotations"))
}

pub(crate) fn kind(annotations: &BTreeMap<String, String>) -> Kind {
    if annotations.get("io.container.manager").is_some_and(|m| m == "libpod") {
        return Kind::Libpod;
    }
    match annotations.get("io.kubernetes.cri-o.ContainerType").map(String::as_str) {
        Some("sandbox") => Kind::Sandbox,
        Some(_) => Kind::Container,
        None => Kind::Unknown,
    }
}

/// `io.kubernetes.cri-o.Labels`, a JSON object in a string.
pub(crate) fn labels(annotations: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    annotations
        .get("io.kubernetes.cri-o.Labels")
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| string_map(Some(&v)))
        .unwrap_or_default()
}

/// The container's facts from its annotations; `pod_labels` (its sandbox's labels) fill in keys the container
/// does not set itself.
pub(crate) fn parse(
    id: &str,
    annotations: &BTreeMap<String, String>,
    pod_labels: &BTreeMap<String, String>,
) -> ContainerInfo {
    let mut info = ContainerInfo::new(id.to_owned(), CRIO);
    info.labels = labels(annotations);
    for (k, v) in pod_labels {
        info.labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let image = annotations
        .get("io.kubernetes.cri-o.ImageName")
        .or_else(|| annotations.get("io.kubernetes.cri-o.Image"))
        .filter(|i| !i.is_empty())
        .map(|i| with_digest(i.clone(), annotations.get("io.kubernetes.cri-o.ImageRef").map(String::as_str)));
    fill(&mut info.image, image);
    kubernetes(&mut info, annotations);
    let metadata_name = annotations
        .get("io.kubernetes.cri-o.Metadata")
        .and_then(|m| serde_json::from_str::<Value>(m).ok())
        .and_then(|m| string_at(&m, "/name"));
    fill(&mut info.name, metadata_name);
    fill(&mut info.name, annotations.get("io.kubernetes.cri-o.ContainerName").cloned());
    keep_labels(&mut info);
    info
}

fn spec_annotations(storage: &Path, id: &str) -> Option<BTreeMap<String, String>> {
    let config = read_json(&storage.join(CONTAINERS).join(id).join("userdata/config.json"))?;
    Some(annotations(&config))
}

/// The labels of the sandbox a container names, read once per sandbox.
fn pod_labels<'a>(
    storage: &Path,
    annotations: &BTreeMap<String, String>,
    cache: &'a mut BTreeMap<String, BTreeMap<String, String>>,
) -> Option<&'a BTreeMap<String, String>> {
    let sandbox = annotations.get("io.kubernetes.cri-o.SandboxID").filter(|s| is_id(s))?;
    Some(cache.entry(sandbox.clone()).or_insert_with(|| {
        spec_annotations(storage, sandbox).filter(|a| kind(a) == Kind::Sandbox).map(|a| labels(&a)).unwrap_or_default()
    }))
}

/// CRI-O's running containers in the containers/storage graph root `storage`.
fn discover(storage: &Path, scan: &mut dyn FirstPids) -> Vec<Container> {
    let Ok(entries) = std::fs::read_dir(storage.join(CONTAINERS)) else {
        tracing::debug!(storage = %storage.display(), "cri-o: no containers/storage here");
        return Vec::new();
    };
    let mut ids: Vec<String> =
        entries.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| is_id(n)).collect();
    ids.sort();
    let mut sandboxes = BTreeMap::new();
    let mut out = Vec::new();
    for id in ids {
        let Some(annotations) = spec_annotations(storage, &id) else { continue };
        if kind(&annotations) != Kind::Container {
            continue;
        }
        let Some(pid) = scan.first_pid(&id) else { continue };
        let pod = pod_labels(storage, &annotations, &mut sandboxes).cloned().unwrap_or_default();
        out.push(parse(&id, &annotations, &pod).into_container(pid));
    }
    out
}

/// Container `id`'s facts from containers/storage below `root` (graph root, then run root): CRI-O's spec,
/// and podman's `containers.json`.
pub(crate) fn describe_in(root: &Path, id: &str) -> Option<ContainerInfo> {
    if !is_id(id) {
        return None;
    }
    let mut found: Option<ContainerInfo> = None;
    for store in STORES {
        let storage = root.join(store);
        if let Some(annotations) = spec_annotations(&storage, id) {
            let mut cache = BTreeMap::new();
            let pod = pod_labels(&storage, &annotations, &mut cache).cloned().unwrap_or_default();
            let info = parse(id, &annotations, &pod);
            merge(&mut found, info);
        }
        if let Some(info) = podman_file(&storage, id) {
            merge(&mut found, info);
        }
    }
    found
}

/// Fills what `found` does not know yet from `more`.
fn merge(found: &mut Option<ContainerInfo>, more: ContainerInfo) {
    match found {
        None => *found = Some(more),
        Some(f) => {
            fill(&mut f.name, more.name);
            fill(&mut f.image, more.image);
            fill(&mut f.namespace, more.namespace);
            fill(&mut f.pod, more.pod);
            for (k, v) in more.labels {
                f.labels.entry(k).or_insert(v);
            }
        }
    }
}

/// podman's `overlay-containers/containers.json`: `names`, and `metadata` (a JSON document in a string:
/// `image-name`, `name`, `pod-name`). It holds no labels.
fn podman_file(storage: &Path, id: &str) -> Option<ContainerInfo> {
    let Some(Value::Array(containers)) = read_json(&storage.join(CONTAINERS).join("containers.json")) else {
        return None;
    };
    let entry = containers.iter().find(|c| c.get("id").and_then(Value::as_str) == Some(id))?;
    let metadata: Value =
        entry.get("metadata").and_then(Value::as_str).and_then(|m| serde_json::from_str(m).ok()).unwrap_or_default();
    // The runtime is the one the cgroup named: the caller sets it.
    let mut info = ContainerInfo::new(id.to_owned(), CRIO);
    fill(&mut info.pod, string_at(&metadata, "/pod-name"));
    fill(&mut info.name, string_at(&metadata, "/name"));
    fill(&mut info.name, string_at(entry, "/names/0"));
    fill(&mut info.image, string_at(&metadata, "/image-name"));
    Some(info)
}
