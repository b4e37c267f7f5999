//! The containers on this host and the facts a policy selects them by, read from each runtime's own
//! records; and, for an alert, which container a process runs in.
//!
//! Two ways in, one reader per runtime:
//!
//! - [`discover`]: every container running now, from every runtime of the registry (`runtimes::RUNTIMES`:
//!   docker, podman, containerd, CRI-O; what each must provide is [`ContainerRuntime`]), each best effort: a runtime that is not there, or says something odd, gives
//!   nothing, and the others are still read. Nothing is cached: each call reads what the runtimes say at that
//!   moment, so a container started a second ago is there without a reload.
//! - [`describe_on_host`]: the name, image, labels, Kubernetes namespace and pod of one container, named by
//!   the id in a process's `/proc/PID/cgroup` ([`parse_cgroup`], from each runtime's cgroup forms). The alert writer calls it after
//!   the answer; it reads files only (never the podman socket), so an alert never waits on a runtime.
//!
//! Where each runtime keeps what is needed, and why that source:
//!
//! | runtime | read | why there |
//! |---|---|---|
//! | docker | `<data root>/containers/<id>/config.v2.json`: `Name`, `Config.Image`, `Image` (the image id), `Config.Labels`, `State.Running`, `State.Pid` | dockerd writes the whole container record there on every state change; it is the file `docker inspect` is built from, so no socket is needed. |
//! | podman | its REST API on a unix socket, `GET /v4.0.0/libpod/containers/json` (`Id`, `Names`, `Image`, `ImageID`, `Labels`, `Pid`, `State`, `Pod`, `PodName`, `IsInfra`), and `/v4.0.0/libpod/pods/json` for the labels of the pods they are in | podman keeps `--label`s only in its state database (a BoltDB or SQLite file, no stable format to read): neither `overlay-containers/containers.json` nor the container's `config.json` holds them. The API answers from that database. A tiny HTTP/1.1 client (`http`) does it, with 1 s timeouts and a size cap. |
//! | containerd | `<state>/io.containerd.runtime.v2.task/<namespace>/<id>/config.json` (`annotations`) and `init.pid` beside it | the OCI bundle of a running task: `ctr run --label` copies the labels into its annotations, the CRI plugin writes `io.kubernetes.cri.*` (container name, image name, sandbox name and namespace). `init.pid` is the task's first process. Plus its API socket (`Containers.List` per namespace, `runtimes::containerd_api`, one connection kept across looks, 1 s timeout): the labels `ctr run --label`, nerdctl and the CRI plugin put in containerd's metadata, and, for a Kubernetes container, the labels of its pod's sandbox, which are the pod's labels (they are nowhere else on the node). Without the socket, the bundle's annotations alone. |
//! | CRI-O | `<storage>/overlay-containers/<id>/userdata/config.json` (`annotations`) | CRI-O writes the OCI spec of each container there with `io.kubernetes.cri-o.Labels` (the kubelet's labels, as a JSON string), `ContainerName`, `Metadata`, `ImageName`, `ImageRef`, `SandboxID`; the sandbox's own spec, in the same place, carries the pod's labels. Which of them run, and their first pid, come from `/proc` (below). |
//!
//! The first process (`init_pid`, a pid as our `/proc` numbers it) comes from the runtime where it tells
//! (docker, podman, containerd); elsewhere it is the lowest pid whose `/proc/PID/cgroup` names the container,
//! from one scan of `/proc` per [`discover`] call, made only if a runtime needs it (`procscan`).
//!
//! Labels are the container's own (image labels included, where the runtime merges them), plus, for a pod,
//! the pod's labels where the runtime has them (podman pods, CRI-O sandboxes, containerd's CRI
//! sandboxes). Like KubeArmor, `pod-template-hash`, `controller-revision-hash` and `pod-template-generation` are dropped. Pod sandboxes
//! and infra containers (pause) are not listed: nothing runs in them that a policy is about.
#![forbid(unsafe_code)]

mod api_thread;
mod cgroup;
pub mod events;
pub mod found;
mod http;
mod procscan;
mod record;
mod runtime;
pub(crate) mod runtimes;

use std::path::Path;

pub use cgroup::{container_of, container_of_with, parse_cgroup};
/// What a policy selects by, for the readers' tests (the commands use `Container::display_labels`).
#[cfg(test)]
use runtime::display_labels;
pub use runtime::{Container, ContainerInfo, ContainerRuntime, Owner, Runtime, Source, Sources, alert_labels};

/// The containers running now, from every runtime in `sources`, sorted by runtime, name and id. A container
/// two runtimes report (dockerd on the host's containerd) is listed once, as the first one in the registry
/// tells it. Never fails: a runtime that cannot be read gives nothing.
pub fn discover(sources: &Sources) -> Vec<Container> {
    let mut scan = procscan::Lazy::new(&sources.proc);
    let mut found: Vec<Container> = Vec::new();
    for instance in found::instances(sources) {
        for c in instance.runtime.0.discover(&instance.sources, &mut scan) {
            if !found.iter().any(|f| f.info.id == c.info.id) {
                found.push(c);
            }
        }
    }
    found.sort_by(|a, b| {
        (a.info.runtime.name(), &a.info.name, &a.info.id).cmp(&(b.info.runtime.name(), &b.info.name, &b.info.id))
    });
    found
}

/// The directories whose filesystems hold container layers, of every runtime instance `sources` leads to
/// (configured, found running, at a distribution's known place, or at the runtime's default).
pub fn layer_roots(sources: &Sources) -> Vec<std::path::PathBuf> {
    found::layer_roots(sources)
}

/// What the host's runtime files tell about container `id` (from [`parse_cgroup`] of a process).
pub fn describe_on_host(runtime: Runtime, id: String) -> ContainerInfo {
    describe(Path::new("/"), runtime, id)
}

/// Name, image, labels, namespace and pod of a container, from the files the runtimes keep below `root`
/// (`/` on the host) at their default places.
fn describe(root: &Path, runtime: Runtime, id: String) -> ContainerInfo {
    match runtime.0.describe(root, &id) {
        Some(mut info) => {
            info.runtime = runtime;
            info
        }
        None => ContainerInfo::new(id, runtime),
    }
}

/// How the runtimes are named on the command line and in `noexecd containers`' output.
pub fn runtime_name(runtime: Runtime) -> &'static str {
    runtime.name()
}

#[cfg(test)]
mod tests;
