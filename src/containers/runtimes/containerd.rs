//! containerd: the OCI bundle of each running task, `<state>/io.containerd.runtime.v2.task/<namespace>/<id>/`.
//! Its `config.json` `annotations` hold what containerd's clients put there: `ctr run --label k=v` copies
//! each label, the CRI plugin (namespace `k8s.io`) writes `io.kubernetes.cri.*` (container name, image name,
//! sandbox name and namespace, container type), nerdctl `nerdctl/*`. `init.pid` beside it is the task's first
//! process. A container's labels under Kubernetes, and the pod's, are in containerd's metadata store only:
//! [`super::containerd_api`] reads them through containerd's API socket, when there is one, and they are
//! merged here (the container's metadata labels first, then its sandbox's: the pod's labels).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::containerd_api::{self, Metadata};
use super::{crio, docker};
use crate::containers::record::{
    fill, is_id, keep_labels, kubernetes, read_json, read_small, sorted_dirs, string_map, with_digest,
};
use crate::containers::runtime::{
    CgroupForm, Container, ContainerInfo, ContainerRuntime, Finding, FirstPids, Runtime, Source, Sources,
};

/// containerd, directly (ctr, nerdctl) or as the Kubernetes CRI runtime.
pub struct Containerd;

pub const CONTAINERD: Runtime = Runtime(&Containerd);

const STATE: Source = Source {
    key: "containerd_state",
    default: "/run/containerd",
    about: "containerd's state directory (`state` in its config.toml)",
    value_name: "DIR",
    flag: Some("containerd-state"),
    layers: false,
};

const SOCKET: Source = Source {
    key: "containerd_socket",
    default: "/run/containerd/containerd.sock",
    about: "containerd's API socket (`[grpc] address` in its config.toml): labels of its containers and pods",
    value_name: "PATH",
    flag: Some("containerd-socket"),
    layers: false,
};

/// Its snapshots: the layers of its containers, not read for records.
const ROOT: Source = Source {
    key: "containerd_root",
    default: "/var/lib/containerd",
    about: "containerd's root directory (`root` in its config.toml): its snapshots",
    value_name: "DIR",
    flag: None,
    layers: true,
};

impl ContainerRuntime for Containerd {
    fn name(&self) -> &'static str {
        "containerd"
    }

    /// `cri-containerd-<id>.scope` (the CRI plugin under systemd), `nerdctl-<id>.scope`; under cgroupfs
    /// `/<containerd namespace>/<id>` (ctr's `default`, the CRI's `k8s.io`, dockerd's `moby`), and the
    /// kubelet's `/kubepods/.../<id>`, which does not say which runtime (see `describe`).
    fn cgroup_forms(&self) -> &'static [CgroupForm] {
        &[
            CgroupForm::Prefixed("cri-containerd-"),
            CgroupForm::Prefixed("nerdctl-"),
            CgroupForm::Below("k8s.io"),
            CgroupForm::Below("default"),
            CgroupForm::Below("moby"),
            CgroupForm::UnderKubepods,
        ]
    }

    fn sources(&self) -> &'static [Source] {
        &[STATE, SOCKET, ROOT]
    }

    fn finding(&self) -> Option<&'static Finding> {
        Some(&super::services::CONTAINERD)
    }

    fn discover(&self, sources: &Sources, first_pids: &mut dyn FirstPids) -> Vec<Container> {
        discover(sources.get(STATE.key), sources.get(SOCKET.key), &sources.proc, first_pids)
    }

    /// Kubernetes over cgroupfs (`/kubepods/.../<id>`) does not say which runtime: CRI-O's and docker's
    /// records are tried after containerd's.
    fn describe(&self, root: &Path, id: &str) -> Option<ContainerInfo> {
        let under = |source: &Source| root.join(source.default.trim_start_matches('/'));
        describe_in(&under(&STATE), id)
            .or_else(|| crio::CriO.describe(root, id))
            .or_else(|| docker::Docker.describe(root, id))
    }
}

const TASKS: &str = "io.containerd.runtime.v2.task";

/// dockerd's namespace on a containerd it shares: docker's own files describe those containers.
const SKIPPED_NAMESPACES: [&str; 1] = ["moby"];

/// Annotations and metadata labels that are the runtime's bookkeeping, not labels.
const NOT_LABELS: [&str; 5] =
    ["io.kubernetes.cri.", "nerdctl/", "io.cri-containerd.", "io.containerd.", "containerd.io/"];

/// The annotation the CRI plugin puts on a Kubernetes container: the id of its pod's sandbox.
const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// What one bundle's `config.json` says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Bundle {
    pub info: ContainerInfo,
    /// A CRI pod sandbox (`io.kubernetes.cri.container-type=sandbox`): the pause container.
    pub sandbox: bool,
    /// The sandbox of the pod it is in (CRI).
    pub sandbox_id: Option<String>,
}

pub(crate) fn parse(id: &str, config: &Value) -> Bundle {
    let annotations = string_map(config.get("annotations"));
    let sandbox = annotations.get("io.kubernetes.cri.container-type").is_some_and(|t| t == "sandbox");
    let mut info = ContainerInfo::new(id.to_owned(), CONTAINERD);
    info.labels = annotations
        .iter()
        .filter(|(k, _)| is_label(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect::<BTreeMap<_, _>>();
    kubernetes(&mut info, &annotations);
    keep_labels(&mut info);
    let sandbox_id = annotations.get(SANDBOX_ID).filter(|s| is_id(s) && s.as_str() != id).cloned();
    Bundle { info, sandbox, sandbox_id }
}

fn is_label(key: &str) -> bool {
    !NOT_LABELS.iter().any(|p| key.starts_with(p))
}

/// Adds what containerd's metadata says of the bundle's container (in `namespace`): its own labels, then its
/// pod's (the labels of its sandbox container), each filling only keys not set yet; the image where the
/// bundle named none.
pub(crate) fn merge_metadata(bundle: &mut Bundle, namespace: &str, metadata: &Metadata) {
    let key = |id: &str| (namespace.to_owned(), id.to_owned());
    let own = metadata.get(&key(&bundle.info.id));
    let pod = bundle.sandbox_id.as_deref().and_then(|s| metadata.get(&key(s)));
    for meta in own.into_iter().chain(pod) {
        for (k, v) in meta.labels.iter().filter(|(k, _)| is_label(k)) {
            bundle.info.labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let labels = bundle.info.labels.clone();
    kubernetes(&mut bundle.info, &labels);
    if let Some(image) = own.and_then(|m| m.image.clone()) {
        fill(&mut bundle.info.image, Some(image));
    }
    let digest = own.and_then(|m| m.image_digest.as_deref());
    bundle.info.image = bundle.info.image.take().map(|image| with_digest(image, digest));
    keep_labels(&mut bundle.info);
}

/// The running tasks below containerd's state directory `state`, with what containerd's API on `socket`
/// adds; pids are checked against `proc`.
fn discover(state: &Path, socket: &Path, proc: &Path, scan: &mut dyn FirstPids) -> Vec<Container> {
    let tasks = state.join(TASKS);
    if !tasks.is_dir() {
        tracing::debug!(state = %state.display(), "containerd: no task directory");
        return Vec::new();
    }
    let namespaces: Vec<(String, PathBuf)> =
        sorted_dirs(&tasks).into_iter().filter(|(ns, _)| !SKIPPED_NAMESPACES.contains(&ns.as_str())).collect();
    let names: Vec<String> = namespaces.iter().map(|(ns, _)| ns.clone()).collect();
    let metadata = containerd_api::list(socket, &names);
    let mut out = Vec::new();
    for (namespace, ns_dir) in namespaces {
        for (id, bundle) in sorted_dirs(&ns_dir) {
            if !is_id(&id) {
                continue;
            }
            let Some(config) = read_json(&bundle.join("config.json")) else { continue };
            let mut b = parse(&id, &config);
            if b.sandbox {
                continue;
            }
            merge_metadata(&mut b, &namespace, &metadata);
            // A task that has exited but is not deleted keeps its bundle and `init.pid`: the pid must live.
            let pid = read_small(&bundle.join("init.pid"))
                .and_then(|t| t.trim().parse::<i32>().ok())
                .filter(|p| *p > 0 && proc.join(p.to_string()).exists())
                .or_else(|| scan.first_pid(&id));
            if let Some(pid) = pid {
                out.push(b.info.into_container(pid));
            }
        }
    }
    out
}

/// Container `id`'s facts from its bundle below containerd's state directory `state`, in namespace `k8s.io`
/// (the CRI's) first, then any other.
fn describe_in(state: &Path, id: &str) -> Option<ContainerInfo> {
    if !is_id(id) {
        return None;
    }
    let tasks = state.join(TASKS);
    let mut namespaces = vec![tasks.join("k8s.io")];
    namespaces.extend(sorted_dirs(&tasks).into_iter().map(|(_, p)| p).filter(|p| !p.ends_with("k8s.io")));
    namespaces.iter().find_map(|ns| read_json(&ns.join(id).join("config.json"))).map(|c| parse(id, &c).info)
}
