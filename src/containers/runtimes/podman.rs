//! podman: its REST API on a unix socket (`podman system service`, or systemd's `podman.socket` at
//! `/run/podman/podman.sock`). podman keeps a container's labels only in its own state database, which has no
//! format to read from outside; the API answers from it. `GET /v4.0.0/libpod/containers/json` lists the
//! running containers (`Id`, `Names`, `Image`, `ImageID`, `Labels`, `Pid`, `State`, `Pod`, `PodName`,
//! `IsInfra`); when some are in a pod, `GET /v4.0.0/libpod/pods/json` gives the pods' `Labels`.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde_json::Value;

use crate::containers::http;
use crate::containers::record::{fill, is_id, keep_labels, kubernetes, string_at, string_map, with_digest};
use crate::containers::runtime::{
    CgroupForm, Container, ContainerInfo, ContainerRuntime, Finding, FirstPids, Runtime, Source, Sources,
};
use crate::containers::runtimes::crio;

/// podman, through its API service.
pub struct Podman;

pub const PODMAN: Runtime = Runtime(&Podman);

const SOCKET: Source = Source {
    key: "podman_socket",
    default: "/run/podman/podman.sock",
    about: "podman's API socket (podman system service, or the podman.socket unit)",
    value_name: "PATH",
    flag: Some("podman-socket"),
    layers: false,
};

impl ContainerRuntime for Podman {
    fn name(&self) -> &'static str {
        "podman"
    }

    /// `libpod-<id>.scope`, also as `.../libpod-<id>.scope/container` (rootless, cgroup v2). Conmon's own
    /// `libpod-conmon-<id>.scope` watches a container and is not in it: `conmon-<id>` is no id.
    fn cgroup_forms(&self) -> &'static [CgroupForm] {
        &[CgroupForm::Prefixed("libpod-")]
    }

    fn sources(&self) -> &'static [Source] {
        &[SOCKET]
    }

    fn finding(&self) -> Option<&'static Finding> {
        Some(&super::services::PODMAN)
    }

    fn discover(&self, sources: &Sources, first_pids: &mut dyn FirstPids) -> Vec<Container> {
        discover(sources.get(SOCKET.key), first_pids)
    }

    /// podman keeps its containers in containers/storage as CRI-O does: read there, never on the socket.
    fn describe(&self, root: &Path, id: &str) -> Option<ContainerInfo> {
        crio::describe_in(root, id)
    }
}

pub(crate) const CONTAINERS: &str = "/v4.0.0/libpod/containers/json";
pub(crate) const PODS: &str = "/v4.0.0/libpod/pods/json";

/// One running container of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub name: Option<String>,
    pub image: Option<String>,
    pub pod_id: Option<String>,
    pub pod_name: Option<String>,
    pub pid: Option<i32>,
}

/// The running, non-infra containers of a `containers/json` answer.
pub(crate) fn parse_containers(list: &Value) -> Vec<Entry> {
    let Some(list) = list.as_array() else { return Vec::new() };
    list.iter()
        .filter_map(|c| {
            let id = string_at(c, "/Id").filter(|id| is_id(id))?;
            if string_at(c, "/State").as_deref() != Some("running")
                || c.get("IsInfra").and_then(Value::as_bool).unwrap_or(false)
            {
                return None;
            }
            let image_id = string_at(c, "/ImageID");
            Some(Entry {
                id,
                labels: string_map(c.get("Labels")),
                name: string_at(c, "/Names/0"),
                image: string_at(c, "/Image").map(|i| with_digest(i, image_id.as_deref())),
                pod_id: string_at(c, "/Pod"),
                pod_name: string_at(c, "/PodName"),
                pid: c.get("Pid").and_then(Value::as_i64).and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0),
            })
        })
        .collect()
}

/// Pod id -> its labels, from a `pods/json` answer.
pub(crate) fn parse_pods(list: &Value) -> BTreeMap<String, BTreeMap<String, String>> {
    let Some(list) = list.as_array() else { return BTreeMap::new() };
    list.iter().filter_map(|p| Some((string_at(p, "/Id")?, string_map(p.get("Labels"))))).collect()
}

impl Entry {
    /// The container's facts; the pod's labels fill in keys the container does not set itself.
    pub(crate) fn into_info(self, pod_labels: Option<&BTreeMap<String, String>>) -> ContainerInfo {
        let mut info = ContainerInfo::new(self.id, PODMAN);
        info.labels = self.labels;
        for (k, v) in pod_labels.into_iter().flatten() {
            info.labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        kubernetes(&mut info, &BTreeMap::new());
        fill(&mut info.name, self.name);
        fill(&mut info.image, self.image);
        fill(&mut info.pod, self.pod_name);
        keep_labels(&mut info);
        info
    }
}

fn api_json(socket: &Path, target: &str) -> io::Result<Value> {
    let response = http::get(socket, target)?;
    if response.status != 200 {
        return Err(io::Error::other(format!("{target}: HTTP status {}", response.status)));
    }
    serde_json::from_slice(&response.body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The running containers podman's API at `socket` reports.
fn discover(socket: &Path, scan: &mut dyn FirstPids) -> Vec<Container> {
    if !socket.exists() {
        tracing::debug!(socket = %socket.display(), "podman: no API socket");
        return Vec::new();
    }
    let entries = match api_json(socket, CONTAINERS) {
        Ok(list) => parse_containers(&list),
        Err(e) => {
            tracing::debug!(socket = %socket.display(), error = %e, "podman: the API did not answer");
            return Vec::new();
        }
    };
    let pods = if entries.iter().any(|e| e.pod_id.is_some()) {
        match api_json(socket, PODS) {
            Ok(list) => parse_pods(&list),
            Err(e) => {
                tracing::debug!(socket = %socket.display(), error = %e, "podman: no pod labels");
                BTreeMap::new()
            }
        }
    } else {
        BTreeMap::new()
    };
    let mut out = Vec::new();
    for entry in entries {
        let pid = entry.pid.or_else(|| scan.first_pid(&entry.id));
        let pod_labels = entry.pod_id.as_ref().and_then(|p| pods.get(p));
        let info = entry.into_info(pod_labels);
        if let Some(pid) = pid {
            out.push(info.into_container(pid));
        }
    }
    out
}
