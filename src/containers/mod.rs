//! Which container a process runs in: the container id from `/proc/PID/cgroup` (docker, containerd/CRI,
//! CRI-O, podman), then its name, image and Kubernetes namespace and pod from the runtime's files on the
//! host. Everything here is best effort: a file that is missing, unreadable or in another shape gives
//! `None` for what it would have told, never an error.
#![forbid(unsafe_code)]

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use crate::host::cgroup::Runtime;

/// What the host tells about a process's container: the fields of a KubeArmor container alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The full 64-hex-digit id (`ContainerID`).
    pub id: String,
    pub runtime: Runtime,
    /// `ContainerName`: docker's or podman's name, or the Kubernetes container name.
    pub name: Option<String>,
    /// `ContainerImage`.
    pub image: Option<String>,
    /// `NamespaceName` (Kubernetes).
    pub namespace: Option<String>,
    /// `PodName` (Kubernetes).
    pub pod: Option<String>,
}

/// The container of process `pid` with every path below `root` (`root/proc/PID/cgroup`,
/// `root/var/lib/docker/...`): the tests' view of what the daemon reads from the cgroup and `describe_on_host`.
#[cfg(test)]
fn container_of_in(root: &Path, pid: i32) -> Option<ContainerInfo> {
    let cgroup = read_small(&root.join(format!("proc/{pid}/cgroup")))?;
    let (runtime, id) = crate::host::cgroup::parse_cgroup(&cgroup)?;
    Some(describe(root, runtime, id))
}

/// What the host's runtime files tell about container `id` (from [`parse_cgroup`] of a process).
pub fn describe_on_host(runtime: Runtime, id: String) -> ContainerInfo {
    describe(Path::new("/"), runtime, id)
}

/// Name, image, namespace and pod of a container, from whatever the runtime keeps on the host.
fn describe(root: &Path, runtime: Runtime, id: String) -> ContainerInfo {
    let mut info = ContainerInfo { id, runtime, name: None, image: None, namespace: None, pod: None };
    match runtime {
        Runtime::Docker => docker(root, &mut info),
        Runtime::Containerd => {
            containerd(root, &mut info);
            // Kubernetes over cgroupfs (`/kubepods/.../<id>`) does not say which runtime: try the others.
            if info.name.is_none() {
                containers_storage(root, &mut info);
            }
            if info.name.is_none() {
                docker(root, &mut info);
            }
        }
        Runtime::CriO | Runtime::Podman => containers_storage(root, &mut info),
    }
    info
}

/// A runtime file, up to 16 MiB; `None` if it cannot be read.
fn read_small(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(16 << 20).read_to_string(&mut text).ok()?;
    Some(text)
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&read_small(path)?).ok()
}

/// A non-empty string at a JSON pointer.
fn string_at(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
}

fn fill(slot: &mut Option<String>, value: Option<String>) {
    if slot.is_none() {
        *slot = value;
    }
}

/// The Kubernetes labels or annotations a runtime copies onto a container.
fn kubernetes(map: &Value, info: &mut ContainerInfo) {
    let get = |keys: &[&str]| keys.iter().find_map(|k| map.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()));
    fill(
        &mut info.namespace,
        get(&["io.kubernetes.pod.namespace", "io.kubernetes.cri.sandbox-namespace"]).map(Into::into),
    );
    fill(&mut info.pod, get(&["io.kubernetes.pod.name", "io.kubernetes.cri.sandbox-name"]).map(Into::into));
    fill(&mut info.name, get(&["io.kubernetes.container.name", "io.kubernetes.cri.container-name"]).map(Into::into));
    fill(
        &mut info.image,
        get(&["io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName", "io.kubernetes.container.image"])
            .map(Into::into),
    );
    fill(&mut info.name, get(&["nerdctl/name", "io.podman.annotations.name"]).map(Into::into));
}

/// `/var/lib/docker/containers/<id>/config.v2.json`: `Name` ("/web"), `Config.Image`, and the Kubernetes
/// labels dockershim set.
fn docker(root: &Path, info: &mut ContainerInfo) {
    let Some(config) = read_json(&root.join("var/lib/docker/containers").join(&info.id).join("config.v2.json")) else {
        return;
    };
    if let Some(labels) = config.pointer("/Config/Labels") {
        kubernetes(labels, info);
    }
    fill(&mut info.name, string_at(&config, "/Name").map(|n| n.trim_start_matches('/').to_owned()));
    fill(&mut info.image, string_at(&config, "/Config/Image"));
}

/// containerd's OCI bundle `/run/containerd/io.containerd.runtime.v2.task/<namespace>/<id>/config.json`:
/// the CRI annotations (namespace `k8s.io`), or nerdctl's (`default`, any other).
fn containerd(root: &Path, info: &mut ContainerInfo) {
    let tasks = root.join("run/containerd/io.containerd.runtime.v2.task");
    let mut bundles: Vec<PathBuf> = vec![tasks.join("k8s.io").join(&info.id)];
    if let Ok(namespaces) = std::fs::read_dir(&tasks) {
        let mut others: Vec<PathBuf> = namespaces
            .filter_map(|e| e.ok())
            .map(|e| e.path().join(&info.id))
            .filter(|p| !bundles.contains(p))
            .collect();
        others.sort();
        bundles.extend(others);
    }
    for bundle in bundles {
        if let Some(config) = read_json(&bundle.join("config.json")) {
            if let Some(annotations) = config.get("annotations") {
                kubernetes(annotations, info);
            }
            return;
        }
    }
}

/// containers/storage (podman, CRI-O): the OCI `config.json` under `overlay-containers/<id>/userdata/`
/// (graph root `/var/lib/containers/storage`, run root `/run/containers/storage`) for the annotations, and
/// `overlay-containers/containers.json` for podman's name and image.
fn containers_storage(root: &Path, info: &mut ContainerInfo) {
    for store in ["var/lib/containers/storage", "run/containers/storage"] {
        let dir = root.join(store).join("overlay-containers");
        if let Some(annotations) =
            read_json(&dir.join(&info.id).join("userdata/config.json")).and_then(|c| c.get("annotations").cloned())
        {
            kubernetes(&annotations, info);
        }
        let Some(Value::Array(containers)) = read_json(&dir.join("containers.json")) else { continue };
        let Some(entry) = containers.iter().find(|c| c.get("id").and_then(Value::as_str) == Some(info.id.as_str()))
        else {
            continue;
        };
        // `metadata` is a JSON document in a string: {"image-name": ..., "name": ..., "pod-name": ...}.
        let metadata: Value = entry
            .get("metadata")
            .and_then(Value::as_str)
            .and_then(|m| serde_json::from_str(m).ok())
            .unwrap_or_default();
        fill(&mut info.pod, string_at(&metadata, "/pod-name"));
        fill(&mut info.name, string_at(&metadata, "/name"));
        fill(&mut info.name, string_at(entry, "/names/0"));
        fill(&mut info.image, string_at(&metadata, "/image-name"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2c9a7d5b1e4c8f0a6d2b9e7c5a3f1d8b6e4c2a0f9d7b5e3c1a8f6d4b2e0c9a";

    fn put(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn docker_name_and_image() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        put(root, "proc/42/cgroup", &format!("0::/system.slice/docker-{ID}.scope\n"));
        put(
            root,
            &format!("var/lib/docker/containers/{ID}/config.v2.json"),
            r#"{"ID":"x","Name":"/web-1","Config":{"Image":"nginx:1.27","Labels":{"com.example":"1"}},"State":{}}"#,
        );
        let info = container_of_in(root, 42).unwrap();
        assert_eq!(
            info,
            ContainerInfo {
                id: ID.to_owned(),
                runtime: Runtime::Docker,
                name: Some("web-1".into()),
                image: Some("nginx:1.27".into()),
                namespace: None,
                pod: None,
            }
        );
    }

    #[test]
    fn dockershim_kubernetes_labels() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        put(root, "proc/7/cgroup", &format!("11:devices:/kubepods/burstable/podabc/{ID}\n"));
        put(
            root,
            &format!("var/lib/docker/containers/{ID}/config.v2.json"),
            r#"{"Name":"/k8s_app_shop-0_prod_abc_0","Config":{"Image":"shop@sha256:00","Labels":{
                "io.kubernetes.pod.namespace":"prod","io.kubernetes.pod.name":"shop-0","io.kubernetes.container.name":"app"}}}"#,
        );
        let info = container_of_in(root, 7).unwrap();
        assert_eq!(info.runtime, Runtime::Containerd, "cgroupfs kubepods does not name the runtime");
        assert_eq!(
            (info.name.as_deref(), info.image.as_deref(), info.namespace.as_deref(), info.pod.as_deref()),
            (Some("app"), Some("shop@sha256:00"), Some("prod"), Some("shop-0"))
        );
    }

    #[test]
    fn containerd_cri_annotations() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        put(root, "proc/9/cgroup", &format!("0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{ID}.scope\n"));
        put(
            root,
            &format!("run/containerd/io.containerd.runtime.v2.task/k8s.io/{ID}/config.json"),
            r#"{"ociVersion":"1.1.0","annotations":{"io.kubernetes.cri.container-type":"container",
                "io.kubernetes.cri.container-name":"api","io.kubernetes.cri.image-name":"registry.example/api:2",
                "io.kubernetes.cri.sandbox-name":"api-7d9f","io.kubernetes.cri.sandbox-namespace":"payments"}}"#,
        );
        let info = container_of_in(root, 9).unwrap();
        assert_eq!(
            (info.runtime, info.name.as_deref(), info.image.as_deref(), info.namespace.as_deref(), info.pod.as_deref()),
            (Runtime::Containerd, Some("api"), Some("registry.example/api:2"), Some("payments"), Some("api-7d9f"))
        );
    }

    #[test]
    fn containerd_pod_annotations_and_other_namespaces() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        put(root, "proc/9/cgroup", &format!("0::/kubepods/besteffort/pod1/{ID}\n"));
        put(
            root,
            &format!("run/containerd/io.containerd.runtime.v2.task/k8s.io/{ID}/config.json"),
            r#"{"annotations":{"io.kubernetes.pod.namespace":"ns","io.kubernetes.pod.name":"pod","io.kubernetes.container.name":"c"}}"#,
        );
        let info = container_of_in(root, 9).unwrap();
        assert_eq!(
            (info.name.as_deref(), info.namespace.as_deref(), info.pod.as_deref()),
            (Some("c"), Some("ns"), Some("pod"))
        );
        // nerdctl: namespace "default", its own name annotation.
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        put(root, "proc/3/cgroup", &format!("0::/system.slice/nerdctl-{ID}.scope\n"));
        put(
            root,
            &format!("run/containerd/io.containerd.runtime.v2.task/default/{ID}/config.json"),
            r#"{"annotations":{"nerdctl/name":"redis-1"}}"#,
        );
        let info = container_of_in(root, 3).unwrap();
        assert_eq!(
            (info.runtime, info.name.as_deref(), info.namespace.as_deref()),
            (Runtime::Containerd, Some("redis-1"), None)
        );
    }

    #[test]
    fn crio_and_podman_from_containers_storage() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        put(root, "proc/5/cgroup", &format!("0::/kubepods.slice/kubepods-podx.slice/crio-{ID}.scope\n"));
        put(
            root,
            &format!("run/containers/storage/overlay-containers/{ID}/userdata/config.json"),
            r#"{"annotations":{"io.kubernetes.pod.namespace":"kube-system","io.kubernetes.pod.name":"dns-1",
                "io.kubernetes.container.name":"coredns","io.kubernetes.cri-o.ImageName":"registry.k8s.io/coredns:v1.11"}}"#,
        );
        let info = container_of_in(root, 5).unwrap();
        assert_eq!(
            (info.runtime, info.name.as_deref(), info.image.as_deref(), info.namespace.as_deref(), info.pod.as_deref()),
            (Runtime::CriO, Some("coredns"), Some("registry.k8s.io/coredns:v1.11"), Some("kube-system"), Some("dns-1"))
        );

        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        put(root, "proc/6/cgroup", &format!("0::/machine.slice/libpod-{ID}.scope\n"));
        put(
            root,
            &format!("var/lib/containers/storage/overlay-containers/{ID}/userdata/config.json"),
            r#"{"annotations":{}}"#,
        );
        let other = "b".repeat(64);
        put(
            root,
            "var/lib/containers/storage/overlay-containers/containers.json",
            &format!(
                r#"[{{"id":"{other}","names":["other"],"metadata":"{{}}"}},
                   {{"id":"{ID}","names":["toolbox"],"image":"c0ffee","metadata":"{{\"image-name\":\"docker.io/library/alpine:3.20\",\"name\":\"toolbox\"}}"}}]"#
            ),
        );
        let info = container_of_in(root, 6).unwrap();
        assert_eq!(
            (info.runtime, info.name.as_deref(), info.image.as_deref(), info.namespace.as_deref()),
            (Runtime::Podman, Some("toolbox"), Some("docker.io/library/alpine:3.20"), None)
        );
    }

    #[test]
    fn missing_or_broken_runtime_files_leave_only_the_id() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        put(root, "proc/8/cgroup", &format!("0::/docker/{ID}\n"));
        let bare = ContainerInfo {
            id: ID.to_owned(),
            runtime: Runtime::Docker,
            name: None,
            image: None,
            namespace: None,
            pod: None,
        };
        assert_eq!(container_of_in(root, 8), Some(bare.clone()));
        put(root, &format!("var/lib/docker/containers/{ID}/config.v2.json"), "{not json");
        assert_eq!(container_of_in(root, 8), Some(bare.clone()));
        put(root, &format!("var/lib/docker/containers/{ID}/config.v2.json"), r#"{"Name":7,"Config":[]}"#);
        assert_eq!(container_of_in(root, 8), Some(bare));
        // No such process, or a host process.
        assert_eq!(container_of_in(root, 99), None);
        put(root, "proc/1/cgroup", "0::/init.scope\n");
        assert_eq!(container_of_in(root, 1), None);
    }
}
