//! The containers on this host and the facts a policy selects them by, read from each runtime's own
//! records; and, for an alert, which container a process runs in.
//!
//! Two ways in, one reader per runtime:
//!
//! - [`discover`]: every container running now, from every runtime [`Sources`] names (docker, podman,
//!   containerd, CRI-O), each best effort: a runtime that is not there, or says something odd, gives
//!   nothing, and the others are still read. Nothing is cached: each call reads what the runtimes say at that
//!   moment, so a container started a second ago is there without a reload.
//! - [`describe_on_host`]: the name, image, labels, Kubernetes namespace and pod of one container, named by
//!   the id in a process's `/proc/PID/cgroup` (`host::cgroup::parse_cgroup`). The alert writer calls it after
//!   the answer; it reads files only (never the podman socket), so an alert never waits on a runtime.
//!
//! Where each runtime keeps what is needed, and why that source:
//!
//! | runtime | read | why there |
//! |---|---|---|
//! | docker | `<data root>/containers/<id>/config.v2.json`: `Name`, `Config.Image`, `Image` (the image id), `Config.Labels`, `State.Running`, `State.Pid` | dockerd writes the whole container record there on every state change; it is the file `docker inspect` is built from, so no socket is needed. |
//! | podman | its REST API on a unix socket, `GET /v4.0.0/libpod/containers/json` (`Id`, `Names`, `Image`, `ImageID`, `Labels`, `Pid`, `State`, `Pod`, `PodName`, `IsInfra`), and `/v4.0.0/libpod/pods/json` for the labels of the pods they are in | podman keeps `--label`s only in its state database (a BoltDB or SQLite file, no stable format to read): neither `overlay-containers/containers.json` nor the container's `config.json` holds them. The API answers from that database. A tiny HTTP/1.1 client ([`http`]) does it, with 1 s timeouts and a size cap. |
//! | containerd | `<state>/io.containerd.runtime.v2.task/<namespace>/<id>/config.json` (`annotations`) and `init.pid` beside it | the OCI bundle of a running task: `ctr run --label` copies the labels into its annotations, the CRI plugin writes `io.kubernetes.cri.*` (container name, image name, sandbox name and namespace). `init.pid` is the task's first process. Plus its API socket (`Containers.List` per namespace, [`containerd_api`], 1 s timeout): the labels `ctr run --label`, nerdctl and the CRI plugin put in containerd's metadata, and, for a Kubernetes container, the labels of its pod's sandbox, which are the pod's labels (they are nowhere else on the node). Without the socket, the bundle's annotations alone. |
//! | CRI-O | `<storage>/overlay-containers/<id>/userdata/config.json` (`annotations`) | CRI-O writes the OCI spec of each container there with `io.kubernetes.cri-o.Labels` (the kubelet's labels, as a JSON string), `ContainerName`, `Metadata`, `ImageName`, `ImageRef`, `SandboxID`; the sandbox's own spec, in the same place, carries the pod's labels. Which of them run, and their first pid, come from `/proc` (below). |
//!
//! The first process (`init_pid`, a pid as our `/proc` numbers it) comes from the runtime where it tells
//! (docker, podman, containerd); elsewhere it is the lowest pid whose `/proc/PID/cgroup` names the container,
//! from one scan of `/proc` per [`discover`] call, made only if a runtime needs it ([`procscan`]).
//!
//! Labels are the container's own (image labels included, where the runtime merges them), plus, for a pod,
//! the pod's labels where the runtime has them (podman pods, CRI-O sandboxes, containerd's CRI
//! sandboxes). Like KubeArmor, `pod-template-hash`, `controller-revision-hash` and `pod-template-generation` are dropped. Pod sandboxes
//! and infra containers (pause) are not listed: nothing runs in them that a policy is about.
#![forbid(unsafe_code)]

mod containerd;
mod containerd_api;
mod crio;
mod docker;
mod http;
mod podman;
mod procscan;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use crate::host::cgroup::Runtime;

/// A container running on this host, with the facts a policy selects it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// The full id: 64 lower-case hex digits, as the runtime and the cgroup name it.
    pub id: String,
    pub runtime: Runtime,
    /// The Kubernetes container name (`io.kubernetes.container.name`) where there is one, else the runtime's
    /// name for it (docker's without its `/`, podman's first name).
    pub name: Option<String>,
    /// The image as the container was started from it, with `@sha256:<id>` where the runtime tells the
    /// image id (docker, podman, CRI-O).
    pub image: Option<String>,
    /// The container's labels, and for a pod the pod's labels where the runtime has them (see the module
    /// docs); without KubeArmor's dropped keys.
    pub labels: BTreeMap<String, String>,
    /// Kubernetes namespace: `io.kubernetes.pod.namespace`, or the CRI's sandbox namespace.
    pub namespace: Option<String>,
    /// Kubernetes pod: `io.kubernetes.pod.name`, the CRI's sandbox name, or podman's pod.
    pub pod: Option<String>,
    /// The container's first process, as a pid of the `/proc` that [`Sources::proc`] names.
    pub init_pid: i32,
}

impl Container {
    /// The labels as KubeArmor's alert `Labels` field writes them: `k=v,...`, sorted.
    pub fn display_labels(&self) -> String {
        display_labels(&self.labels)
    }

    /// What an alert tells of it.
    pub fn info(&self) -> ContainerInfo {
        let Container { id, runtime, name, image, labels, namespace, pod, init_pid: _ } = self.clone();
        ContainerInfo { id, runtime, name, image, labels, namespace, pod }
    }
}

/// What the host tells about a process's container: the fields of a KubeArmor container alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The full 64-hex-digit id (`ContainerID`).
    pub id: String,
    pub runtime: Runtime,
    /// `ContainerName`: the Kubernetes container name, or docker's or podman's name.
    pub name: Option<String>,
    /// `ContainerImage`.
    pub image: Option<String>,
    /// The labels the runtime's files hold (podman's are in its database only: empty here); see
    /// [`display_labels`] for the alert's `Labels`.
    pub labels: BTreeMap<String, String>,
    /// `NamespaceName` (Kubernetes).
    pub namespace: Option<String>,
    /// `PodName` (Kubernetes).
    pub pod: Option<String>,
}

impl ContainerInfo {
    fn new(id: String, runtime: Runtime) -> Self {
        ContainerInfo { id, runtime, name: None, image: None, labels: BTreeMap::new(), namespace: None, pod: None }
    }

    fn into_container(self, init_pid: i32) -> Container {
        let ContainerInfo { id, runtime, name, image, labels, namespace, pod } = self;
        Container { id, runtime, name, image, labels, namespace, pod, init_pid }
    }
}

/// Where each runtime keeps its records. The defaults are the runtimes' own defaults; a path that does not
/// exist turns that runtime off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// dockerd's `--data-root`.
    pub docker_root: PathBuf,
    /// podman's API socket (`podman system service`, or the `podman.socket` unit).
    pub podman_socket: PathBuf,
    /// containerd's `state` directory.
    pub containerd_state: PathBuf,
    /// containerd's API socket (its `[grpc] address`): the labels of its containers and pods.
    pub containerd_socket: PathBuf,
    /// The containers/storage graph root CRI-O (and podman) keep their containers in.
    pub storage: PathBuf,
    /// The `/proc` whose pids are reported, and scanned where a runtime does not tell a container's pid.
    pub proc: PathBuf,
}

pub const DEFAULT_DOCKER_ROOT: &str = "/var/lib/docker";
pub const DEFAULT_PODMAN_SOCKET: &str = "/run/podman/podman.sock";
pub const DEFAULT_CONTAINERD_STATE: &str = "/run/containerd";
pub const DEFAULT_CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
pub const DEFAULT_STORAGE: &str = "/var/lib/containers/storage";

impl Default for Sources {
    fn default() -> Self {
        Sources {
            docker_root: DEFAULT_DOCKER_ROOT.into(),
            podman_socket: DEFAULT_PODMAN_SOCKET.into(),
            containerd_state: DEFAULT_CONTAINERD_STATE.into(),
            containerd_socket: DEFAULT_CONTAINERD_SOCKET.into(),
            storage: DEFAULT_STORAGE.into(),
            proc: "/proc".into(),
        }
    }
}

/// The containers running now, from every runtime in `sources`, sorted by runtime, name and id. A container
/// two runtimes report (dockerd on the host's containerd) is listed once, as the first one tells it (docker,
/// podman, containerd, CRI-O). Never fails: a runtime that cannot be read gives nothing.
pub fn discover(sources: &Sources) -> Vec<Container> {
    let mut scan = procscan::Lazy::new(&sources.proc);
    let mut found: Vec<Container> = Vec::new();
    let mut add = |list: Vec<Container>| {
        for c in list {
            if !found.iter().any(|f| f.id == c.id) {
                found.push(c);
            }
        }
    };
    add(docker::discover(&sources.docker_root, &mut scan));
    add(podman::discover(&sources.podman_socket, &mut scan));
    add(containerd::discover(&sources.containerd_state, &sources.containerd_socket, &sources.proc, &mut scan));
    add(crio::discover(&sources.storage, &mut scan));
    found.sort_by(|a, b| (runtime_name(a.runtime), &a.name, &a.id).cmp(&(runtime_name(b.runtime), &b.name, &b.id)));
    found
}

/// What the host's runtime files tell about container `id` (from [`crate::host::cgroup::parse_cgroup`] of a
/// process).
pub fn describe_on_host(runtime: Runtime, id: String) -> ContainerInfo {
    describe(Path::new("/"), runtime, id)
}

/// Name, image, labels, namespace and pod of a container, from the files the runtimes keep below `root`
/// (`/` on the host) at their default places.
fn describe(root: &Path, runtime: Runtime, id: String) -> ContainerInfo {
    let docker_root = root.join(DEFAULT_DOCKER_ROOT.trim_start_matches('/'));
    let containerd_state = root.join(DEFAULT_CONTAINERD_STATE.trim_start_matches('/'));
    let found = match runtime {
        Runtime::Docker => docker::describe(&docker_root, &id),
        // Kubernetes over cgroupfs (`/kubepods/.../<id>`) does not say which runtime: try the others.
        Runtime::Containerd => containerd::describe(&containerd_state, &id)
            .or_else(|| crio::describe(root, &id))
            .or_else(|| docker::describe(&docker_root, &id)),
        Runtime::CriO | Runtime::Podman => crio::describe(root, &id),
    };
    match found {
        Some(mut info) => {
            info.runtime = runtime;
            info
        }
        None => ContainerInfo::new(id, runtime),
    }
}

/// How the runtimes are named on the command line and in `noexecd containers`' output.
pub fn runtime_name(runtime: Runtime) -> &'static str {
    match runtime {
        Runtime::Docker => "docker",
        Runtime::Podman => "podman",
        Runtime::Containerd => "containerd",
        Runtime::CriO => "cri-o",
    }
}

/// Labels KubeArmor leaves out: they change with every rollout of a Deployment, DaemonSet or StatefulSet,
/// and would make a container's identity change with them.
pub const DROPPED_LABELS: [&str; 3] = ["pod-template-hash", "controller-revision-hash", "pod-template-generation"];

/// `k=v,...` sorted by key, without [`DROPPED_LABELS`]: KubeArmor's alert `Labels` field.
pub fn display_labels(labels: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (k, v) in labels.iter().filter(|(k, _)| !DROPPED_LABELS.contains(&k.as_str())) {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

// ---------------------------------------------------------------------------------------------------------
// Shared by the runtime readers

/// Files and responses are read up to this size; a larger one is not a runtime record.
const MAX_RECORD: u64 = 16 << 20;

/// A runtime file, up to [`MAX_RECORD`]; `None` if it cannot be read.
fn read_small(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_RECORD).read_to_string(&mut text).ok()?;
    Some(text)
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&read_small(path)?).ok()
}

/// A non-empty string at a JSON pointer.
fn string_at(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// A full container id: 64 lower-case hex digits (also what makes it safe in a path).
fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The string entries of a JSON object (labels, annotations); anything else gives an empty map.
fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    let Some(Value::Object(map)) = v else { return BTreeMap::new() };
    map.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect()
}

/// Labels without [`DROPPED_LABELS`].
fn kept(mut labels: BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels.retain(|k, _| !DROPPED_LABELS.contains(&k.as_str()));
    labels
}

/// Fills name, namespace, pod and image from the Kubernetes labels and the CRI annotations, where a runtime
/// has them; the runtime's own name and image are filled in afterwards where these leave a gap.
fn kubernetes(info: &mut ContainerInfo, annotations: &BTreeMap<String, String>) {
    let get = |keys: &[&str]| {
        keys.iter().find_map(|k| info.labels.get(*k).or_else(|| annotations.get(*k)).filter(|v| !v.is_empty())).cloned()
    };
    let namespace = get(&["io.kubernetes.pod.namespace", "io.kubernetes.cri.sandbox-namespace"]);
    let pod = get(&["io.kubernetes.pod.name", "io.kubernetes.cri.sandbox-name"]);
    let name = get(&["io.kubernetes.container.name", "io.kubernetes.cri.container-name"]);
    let image =
        get(&["io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName", "io.kubernetes.container.image"]);
    let other_name = get(&["nerdctl/name", "io.podman.annotations.name"]);
    fill(&mut info.namespace, namespace);
    fill(&mut info.pod, pod);
    fill(&mut info.name, name);
    fill(&mut info.image, image);
    fill(&mut info.name, other_name);
}

fn fill(slot: &mut Option<String>, value: Option<String>) {
    if slot.is_none() {
        *slot = value.filter(|v| !v.is_empty());
    }
}

/// `image@sha256:<hex>` from an image name and the image id a runtime records (`sha256:<hex>`, `<hex>`, or
/// a reference ending in `@sha256:<hex>`); the name alone when the id is not a sha256 digest or the name
/// already carries one.
fn with_digest(image: String, id: Option<&str>) -> String {
    if image.contains("@sha256:") {
        return image;
    }
    let Some(id) = id else { return image };
    let hex = id.rsplit_once("@sha256:").map(|(_, h)| h).or_else(|| id.strip_prefix("sha256:")).unwrap_or(id);
    if is_id(hex) { format!("{image}@sha256:{hex}") } else { image }
}

#[cfg(test)]
mod tests;
