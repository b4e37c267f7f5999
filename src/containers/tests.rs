//! The runtime readers on files and answers shaped like the runtimes' own (no root, no runtime needed).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;

use serde_json::json;

use super::record::{read_small, with_digest};
use super::runtimes::containerd::{self, CONTAINERD};
use super::runtimes::crio::{self, CRIO};
use super::runtimes::docker::{self, DOCKER};
use super::runtimes::podman::{self, PODMAN};
use super::*;

const ID: &str = "3f2c9a7d5b1e4c8f0a6d2b9e7c5a3f1d8b6e4c2a0f9d7b5e3c1a8f6d4b2e0c9a";
const DIGEST: &str = "79d461fea2c28ff1e52df66f4bf63f96b289f7830ebb03b314a49a218ccc47f2";

fn put(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn id(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// The container of process `pid` with every path below `root` (`root/proc/PID/cgroup`,
/// `root/var/lib/docker/...`): what the alert writer gets from the cgroup and `describe_on_host`.
fn container_of_in(root: &Path, pid: i32) -> Option<ContainerInfo> {
    let cgroup = read_small(&root.join(format!("proc/{pid}/cgroup")))?;
    let (runtime, id) = parse_cgroup(&cgroup)?;
    Some(describe(root, runtime, id))
}

/// The runtimes' sources at `root/<path>` for each key given, and the rest where nothing is.
fn sources_at(root: &Path, places: &[(&str, &str)]) -> Sources {
    let mut sources = Sources::under(&root.join("nowhere"));
    for (key, path) in places {
        assert!(sources.set(key, root.join(path)), "{key}");
    }
    sources.proc = root.join("proc");
    sources
}

/// A pod without a controller its labels tell: its own owner.
fn pod_owner(pod: &str, namespace: &str) -> Owner {
    Owner { kind: "", name: pod.into(), namespace: namespace.into() }
}

fn bare(runtime: Runtime) -> ContainerInfo {
    ContainerInfo::new(ID.to_owned(), runtime)
}

// ---------------------------------------------------------------------------------------------------------
// describe (the alert's view)

#[test]
fn docker_name_image_and_labels() {
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
            name: Some("web-1".into()),
            image: Some("nginx:1.27".into()),
            labels: map(&[("com.example", "1")]),
            ..bare(DOCKER)
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
    assert_eq!(info.runtime, CONTAINERD, "cgroupfs kubepods does not name the runtime");
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
        info,
        ContainerInfo {
            name: Some("api".into()),
            image: Some("registry.example/api:2".into()),
            namespace: Some("payments".into()),
            pod: Some("api-7d9f".into()),
            owner: Some(pod_owner("api-7d9f", "payments")),
            ..bare(CONTAINERD)
        },
        "the CRI's annotations are bookkeeping, not labels"
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
        r#"{"annotations":{"nerdctl/name":"redis-1","tier":"cache"}}"#,
    );
    let info = container_of_in(root, 3).unwrap();
    assert_eq!(
        (info.runtime, info.name.as_deref(), info.namespace.as_deref(), info.labels),
        (CONTAINERD, Some("redis-1"), None, map(&[("tier", "cache")]))
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
        (CRIO, Some("coredns"), Some("registry.k8s.io/coredns:v1.11"), Some("kube-system"), Some("dns-1"))
    );

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    put(root, "proc/6/cgroup", &format!("0::/machine.slice/libpod-{ID}.scope\n"));
    put(
        root,
        &format!("var/lib/containers/storage/overlay-containers/{ID}/userdata/config.json"),
        r#"{"annotations":{"io.container.manager":"libpod"}}"#,
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
        (PODMAN, Some("toolbox"), Some("docker.io/library/alpine:3.20"), None)
    );
}

#[test]
fn missing_or_broken_runtime_files_leave_only_the_id() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    put(root, "proc/8/cgroup", &format!("0::/docker/{ID}\n"));
    let bare = bare(DOCKER);
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

// ---------------------------------------------------------------------------------------------------------
// Each runtime's records

#[test]
fn docker_config_v2() {
    // The fields dockerd 20.10 writes (trimmed), for `docker run --label ... --name wp localhost/bb:1`.
    let config = json!({
        "StreamConfig": {}, "State": {"Running": true, "Paused": false, "Pid": 4242, "ExitCode": 0,
            "StartedAt": "2026-12-01T08:40:50Z"},
        "ID": ID, "Created": "2026-12-01T08:40:50Z", "Path": "sleep", "Args": ["300"],
        "Config": {"Hostname": "3f2c9a7d5b1e", "Image": "localhost/bb:1", "Cmd": ["sleep", "300"],
            "Labels": {"app": "wordpress", "pod-template-hash": "5d8f", "io.kubernetes.pod.namespace": "wordpress-mysql",
                "io.kubernetes.pod.name": "wp-1", "io.kubernetes.container.name": "wordpress"}},
        "Image": format!("sha256:{DIGEST}"), "Name": "/wp", "Driver": "overlay2"
    });
    let r = docker::parse(ID, &config);
    assert!(r.running && !r.sandbox);
    assert_eq!(r.pid, Some(4242));
    assert_eq!(
        r.info,
        ContainerInfo {
            name: Some("wordpress".into()),
            image: Some(format!("localhost/bb:1@sha256:{DIGEST}")),
            labels: map(&[
                ("app", "wordpress"),
                ("io.kubernetes.container.name", "wordpress"),
                ("io.kubernetes.pod.name", "wp-1"),
                ("io.kubernetes.pod.namespace", "wordpress-mysql"),
            ]),
            namespace: Some("wordpress-mysql".into()),
            pod: Some("wp-1".into()),
            owner: Some(pod_owner("wp-1", "wordpress-mysql")),
            ..bare(DOCKER)
        },
        "KubeArmor's dropped keys are not labels; the Kubernetes container name wins over docker's"
    );
    // Stopped, a sandbox, odd types.
    let r =
        docker::parse(ID, &json!({"State": {"Running": false, "Pid": 0}, "Name": "/x", "Config": {"Labels": null}}));
    assert!(!r.running);
    assert_eq!((r.pid, r.info.name.as_deref(), r.info.labels.len()), (None, Some("x"), 0));
    let r = docker::parse(ID, &json!({"Config": {"Labels": {"io.kubernetes.docker.type": "podsandbox", "n": 1}}}));
    assert!(r.sandbox);
    assert_eq!(r.info.labels, map(&[("io.kubernetes.docker.type", "podsandbox")]), "non-string values are skipped");
    let r = docker::parse(ID, &json!({"State": {"Running": true, "Pid": 99999999999_i64}}));
    assert_eq!(r.pid, None);
}

/// `GET /v4.0.0/libpod/containers/json` of podman 4.3, for a container, an exited one, a kube-play pod's
/// infra and its container.
fn podman_list() -> serde_json::Value {
    json!([
        {"AutoRemove": false, "Command": ["sleep", "300"], "Exited": false, "Id": id(1), "Image": "localhost/bb:1",
         "ImageID": DIGEST, "IsInfra": false, "Labels": {"app": "wordpress", "io.kubernetes.pod.namespace": "wordpress-mysql",
         "io.kubernetes.pod.name": "wp-1", "io.kubernetes.container.name": "wordpress"}, "Mounts": [], "Names": ["wp"],
         "Namespaces": {}, "Networks": [], "Pid": 28446, "Pod": "", "PodName": "", "Ports": null, "State": "running", "Status": ""},
        {"Id": id(2), "Image": "localhost/bb:1", "ImageID": DIGEST, "IsInfra": false, "Labels": null, "Names": ["old"],
         "Pid": 0, "State": "exited"},
        {"Id": id(3), "Image": "localhost/bb:1", "ImageID": DIGEST, "IsInfra": true, "Labels": null,
         "Names": ["b6abcbb5bcd7-infra"], "Pid": 53, "Pod": id(9), "PodName": "shop", "State": "running"},
        {"Id": id(4), "Image": "localhost/bb:1", "ImageID": DIGEST, "IsInfra": false,
         "Labels": {"app": "shop", "pod-template-hash": "abc"}, "Names": ["shop-web"], "Pid": 74, "Pod": id(9),
         "PodName": "shop", "State": "running"},
        {"Id": "not-an-id", "State": "running", "Pid": 5},
        "garbage"
    ])
}

#[test]
fn podman_api_answers() {
    let entries = podman::parse_containers(&podman_list());
    assert_eq!(entries.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), vec![id(1), id(4)], "running, not infra");
    let pods = podman::parse_pods(&json!([
        {"Id": id(9), "Name": "shop", "Labels": {"app": "shop", "tier": "web", "pod-template-hash": "abc"}},
        {"Name": "no id"}
    ]));
    assert_eq!(pods.len(), 1);
    let mut it = entries.into_iter();
    let (wp, shop) = (it.next().unwrap(), it.next().unwrap());
    assert_eq!(wp.pid, Some(28446));
    assert_eq!(
        wp.into_info(None),
        ContainerInfo {
            id: id(1),
            runtime: PODMAN,
            name: Some("wordpress".into()),
            image: Some(format!("localhost/bb:1@sha256:{DIGEST}")),
            labels: map(&[
                ("app", "wordpress"),
                ("io.kubernetes.container.name", "wordpress"),
                ("io.kubernetes.pod.name", "wp-1"),
                ("io.kubernetes.pod.namespace", "wordpress-mysql"),
            ]),
            namespace: Some("wordpress-mysql".into()),
            pod: Some("wp-1".into()),
            owner: Some(pod_owner("wp-1", "wordpress-mysql")),
        }
    );
    let shop = shop.into_info(pods.get(&id(9)));
    assert_eq!(
        (shop.name.as_deref(), shop.pod.as_deref(), shop.namespace.as_deref(), &shop.labels),
        (Some("shop-web"), Some("shop"), None, &map(&[("app", "shop"), ("tier", "web")])),
        "the pod's labels join the container's; podman's pod name is the pod"
    );
    assert!(podman::parse_containers(&json!({"message": "not a list"})).is_empty());
}

#[test]
fn containerd_bundles() {
    // `ctr run --label ...`: the labels are the annotations.
    let b = containerd::parse(
        ID,
        &json!({"ociVersion": "1.0.2-dev", "process": {"args": ["sleep", "300"]}, "annotations": {
            "app": "wordpress", "io.kubernetes.pod.namespace": "wordpress-mysql", "io.kubernetes.pod.name": "wp-1",
            "io.kubernetes.container.name": "wordpress", "controller-revision-hash": "7"}, "linux": {"cgroupsPath": "/k8s.io/x"}}),
    );
    assert!(!b.sandbox);
    assert_eq!(
        b.info,
        ContainerInfo {
            name: Some("wordpress".into()),
            labels: map(&[
                ("app", "wordpress"),
                ("io.kubernetes.container.name", "wordpress"),
                ("io.kubernetes.pod.name", "wp-1"),
                ("io.kubernetes.pod.namespace", "wordpress-mysql"),
            ]),
            namespace: Some("wordpress-mysql".into()),
            pod: Some("wp-1".into()),
            owner: Some(pod_owner("wp-1", "wordpress-mysql")),
            ..bare(CONTAINERD)
        }
    );
    let b = containerd::parse(
        ID,
        &json!({"annotations": {"io.kubernetes.cri.container-type": "sandbox",
        "io.kubernetes.cri.sandbox-name": "p", "io.kubernetes.cri.sandbox-namespace": "n"}}),
    );
    assert!(b.sandbox);
    assert_eq!((b.info.pod.as_deref(), b.info.namespace.as_deref(), b.info.labels.len()), (Some("p"), Some("n"), 0));
    let b = containerd::parse(ID, &json!({"annotations": ["not", "a", "map"]}));
    assert_eq!(b.info, bare(CONTAINERD));
}

#[test]
fn containerd_metadata_adds_the_pods_labels_from_its_sandbox() {
    use super::runtimes::containerd_api::{Meta, Metadata};
    let sandbox = "a".repeat(64);
    let mut b = containerd::parse(
        ID,
        &json!({"annotations": {"io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.sandbox-id": sandbox, "io.kubernetes.cri.sandbox-name": "wordpress-5d8f9c-x7k2p",
            "io.kubernetes.cri.sandbox-namespace": "wordpress-mysql", "io.kubernetes.cri.container-name": "wordpress"}}),
    );
    assert_eq!(b.sandbox_id.as_deref(), Some(sandbox.as_str()));
    let digest = format!("sha256:{}", "7".repeat(64));
    let meta = |labels: &[(&str, &str)], image: Option<&str>| Meta {
        labels: map(labels),
        image: image.map(String::from),
        image_digest: image.map(|_| digest.clone()),
    };
    let mut metadata = Metadata::new();
    metadata.insert(
        ("k8s.io".into(), ID.into()),
        meta(
            &[("io.kubernetes.container.name", "wordpress"), ("io.cri-containerd.kind", "container"), ("tier", "own")],
            Some("docker.io/library/wordpress:6"),
        ),
    );
    metadata.insert(
        ("k8s.io".into(), sandbox.clone()),
        meta(
            &[
                ("app", "wordpress"),
                ("tier", "pod"),
                ("pod-template-hash", "5d8f9c"),
                ("io.cri-containerd.kind", "sandbox"),
            ],
            None,
        ),
    );
    // Another namespace's container of the same id says nothing of this one.
    metadata.insert(("default".into(), ID.into()), meta(&[("other", "x")], Some("other")));
    containerd::merge_metadata(&mut b, "k8s.io", &metadata);
    assert_eq!(
        b.info,
        ContainerInfo {
            name: Some("wordpress".into()),
            image: Some(format!("docker.io/library/wordpress:6@{digest}")),
            labels: map(&[("app", "wordpress"), ("io.kubernetes.container.name", "wordpress"), ("tier", "own")]),
            namespace: Some("wordpress-mysql".into()),
            pod: Some("wordpress-5d8f9c-x7k2p".into()),
            owner: Some(Owner { kind: "Deployment", name: "wordpress".into(), namespace: "wordpress-mysql".into() }),
            ..bare(CONTAINERD)
        },
        "the container's own labels win over its pod's; bookkeeping and rollout labels are dropped, the pod's \
         `pod-template-hash` names its Deployment; the image has the digest containerd's record points at"
    );
    // Without metadata (no socket), the bundle alone.
    let mut alone = containerd::parse(ID, &json!({"annotations": {"app": "x"}}));
    containerd::merge_metadata(&mut alone, "k8s.io", &Metadata::new());
    assert_eq!(alone.info.labels, map(&[("app", "x")]));
}

/// CRI-O's annotations on a container of pod `wp-1` (CRI-O 1.2x, trimmed), and on its sandbox.
fn crio_specs(sandbox: &str) -> (serde_json::Value, serde_json::Value) {
    let labels = json!({"io.kubernetes.container.name": "wordpress", "io.kubernetes.pod.name": "wp-1",
        "io.kubernetes.pod.namespace": "wordpress-mysql", "io.kubernetes.pod.uid": "0a1b"})
    .to_string();
    let container = json!({"ociVersion": "1.0.2-dev", "annotations": {
        "io.container.manager": "cri-o",
        "io.kubernetes.cri-o.ContainerType": "container",
        "io.kubernetes.cri-o.ContainerName": "k8s_wordpress_wp-1_wordpress-mysql_0a1b_0",
        "io.kubernetes.cri-o.Metadata": "{\"name\":\"wordpress\",\"attempt\":0}",
        "io.kubernetes.cri-o.ImageName": "docker.io/library/wordpress:6",
        "io.kubernetes.cri-o.ImageRef": DIGEST,
        "io.kubernetes.cri-o.Labels": labels,
        "io.kubernetes.cri-o.SandboxID": sandbox,
        "io.kubernetes.pod.name": "wp-1", "io.kubernetes.pod.namespace": "wordpress-mysql"}});
    let pod_labels = json!({"app": "wordpress", "tier": "frontend", "pod-template-hash": "5d8f",
        "io.kubernetes.pod.name": "wp-1", "io.kubernetes.pod.namespace": "wordpress-mysql", "io.kubernetes.pod.uid": "0a1b"})
    .to_string();
    let sandbox = json!({"annotations": {"io.container.manager": "cri-o", "io.kubernetes.cri-o.ContainerType": "sandbox",
        "io.kubernetes.cri-o.Labels": pod_labels, "io.kubernetes.cri-o.KubeName": "wp-1"}});
    (container, sandbox)
}

#[test]
fn crio_annotations() {
    let (container, sandbox) = crio_specs(&id(7));
    let a = crio::annotations(&container);
    assert_eq!(crio::kind(&a), crio::Kind::Container);
    let s = crio::annotations(&sandbox);
    assert_eq!(crio::kind(&s), crio::Kind::Sandbox);
    let info = crio::parse(ID, &a, &crio::labels(&s));
    assert_eq!(
        info,
        ContainerInfo {
            name: Some("wordpress".into()),
            image: Some(format!("docker.io/library/wordpress:6@sha256:{DIGEST}")),
            labels: map(&[
                ("app", "wordpress"),
                ("io.kubernetes.container.name", "wordpress"),
                ("io.kubernetes.pod.name", "wp-1"),
                ("io.kubernetes.pod.namespace", "wordpress-mysql"),
                ("io.kubernetes.pod.uid", "0a1b"),
                ("tier", "frontend"),
            ]),
            namespace: Some("wordpress-mysql".into()),
            pod: Some("wp-1".into()),
            owner: Some(pod_owner("wp-1", "wordpress-mysql")),
            ..bare(CRIO)
        }
    );
    // Without the kubelet's labels: the name from Metadata, then ContainerName; a broken Labels string.
    let a = map(&[
        ("io.kubernetes.cri-o.ContainerType", "container"),
        ("io.kubernetes.cri-o.Labels", "{not json"),
        ("io.kubernetes.cri-o.ContainerName", "k8s_x"),
        ("io.kubernetes.cri-o.Metadata", "{\"name\":\"x\"}"),
    ]);
    assert_eq!(crio::parse(ID, &a, &BTreeMap::new()).name.as_deref(), Some("x"));
    let a = map(&[("io.kubernetes.cri-o.ContainerType", "container"), ("io.kubernetes.cri-o.ContainerName", "k8s_x")]);
    assert_eq!(crio::parse(ID, &a, &BTreeMap::new()).name.as_deref(), Some("k8s_x"));
    assert_eq!(crio::kind(&map(&[("io.container.manager", "libpod")])), crio::Kind::Libpod);
    assert_eq!(crio::kind(&BTreeMap::new()), crio::Kind::Unknown);
}

#[test]
fn image_digests_and_labels_as_kubearmor_writes_them() {
    let hex = DIGEST;
    assert_eq!(with_digest("a:1".into(), Some(&format!("sha256:{hex}"))), format!("a:1@sha256:{hex}"));
    assert_eq!(with_digest("a:1".into(), Some(hex)), format!("a:1@sha256:{hex}"));
    assert_eq!(with_digest("a:1".into(), Some(&format!("docker.io/a@sha256:{hex}"))), format!("a:1@sha256:{hex}"));
    assert_eq!(with_digest(format!("a@sha256:{hex}"), Some(hex)), format!("a@sha256:{hex}"), "one digest");
    assert_eq!(with_digest("a:1".into(), Some("sha256:short")), "a:1");
    assert_eq!(with_digest("a:1".into(), None), "a:1");

    let labels = map(&[("tier", "web"), ("app", "wp"), ("pod-template-hash", "1"), ("controller-revision-hash", "2")]);
    assert_eq!(display_labels(&labels), "app=wp,tier=web");
    assert_eq!(display_labels(&BTreeMap::new()), "");
}

// ---------------------------------------------------------------------------------------------------------
// discover, end to end over a made-up host

/// Serves `body` chunked to each request on `path` (a podman API stand-in), for `n` requests.
fn fake_podman(path: &Path, answers: Vec<(String, String)>) -> std::thread::JoinHandle<Vec<String>> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let mut asked = Vec::new();
        for _ in 0..answers.len() {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0);
                req.extend_from_slice(&buf[..n]);
            }
            let line = String::from_utf8_lossy(&req).lines().next().unwrap().to_owned();
            let target = line.split(' ').nth(1).unwrap().to_owned();
            let body = answers.iter().find(|(t, _)| *t == target).map(|(_, b)| b.clone()).unwrap_or_default();
            let (a, b) = body.split_at(body.len() / 2);
            write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap();
            write!(s, "{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len()).unwrap();
            asked.push(target);
        }
        asked
    })
}

#[test]
fn discover_lists_every_runtime_once_with_its_first_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let sources = sources_at(
        root,
        &[
            ("docker_root", "docker"),
            ("podman_socket", "podman.sock"),
            ("containerd_state", "containerd"),
            ("containerd_socket", "containerd.sock"),
            ("storage", "storage"),
        ],
    );
    // docker: one running, one stopped.
    put(
        root,
        &format!("docker/containers/{}/config.v2.json", id(0xd1)),
        &json!({"Name": "/web", "State": {"Running": true, "Pid": 300}, "Image": format!("sha256:{DIGEST}"),
            "Config": {"Image": "nginx:1", "Labels": {"app": "web"}}})
        .to_string(),
    );
    put(
        root,
        &format!("docker/containers/{}/config.v2.json", id(0xd2)),
        &json!({"Name": "/gone", "State": {"Running": false, "Pid": 0}}).to_string(),
    );
    put(root, "docker/containers/not-an-id/config.v2.json", "{}");
    // containerd: a ctr task (pid alive), an exited task (pid gone), a CRI sandbox, docker's namespace.
    let tasks = "containerd/io.containerd.runtime.v2.task";
    put(root, &format!("{tasks}/k8s.io/{}/config.json", id(0xc1)), r#"{"annotations":{"app":"db"}}"#);
    put(root, &format!("{tasks}/k8s.io/{}/init.pid", id(0xc1)), "400");
    put(root, &format!("{tasks}/k8s.io/{}/config.json", id(0xc2)), r#"{"annotations":{"app":"old"}}"#);
    put(root, &format!("{tasks}/k8s.io/{}/init.pid", id(0xc2)), "401");
    put(
        root,
        &format!("{tasks}/k8s.io/{}/config.json", id(0xc3)),
        r#"{"annotations":{"io.kubernetes.cri.container-type":"sandbox"}}"#,
    );
    put(root, &format!("{tasks}/k8s.io/{}/init.pid", id(0xc3)), "402");
    put(root, &format!("{tasks}/moby/{}/config.json", id(0xd1)), r#"{"annotations":{}}"#);
    put(root, &format!("{tasks}/moby/{}/init.pid", id(0xd1)), "300");
    // CRI-O: a container with its sandbox, both running; a podman container in the same storage.
    let (container, sandbox) = crio_specs(&id(0x5b));
    put(root, &format!("storage/overlay-containers/{}/userdata/config.json", id(0x51)), &container.to_string());
    put(root, &format!("storage/overlay-containers/{}/userdata/config.json", id(0x5b)), &sandbox.to_string());
    put(
        root,
        &format!("storage/overlay-containers/{}/userdata/config.json", id(1)),
        r#"{"annotations":{"io.container.manager":"libpod"}}"#,
    );
    // /proc: the processes and their cgroups.
    for (pid, cgroup) in [
        (300, format!("0::/docker/{}\n", id(0xd1))),
        (400, "0::/k8s.io/ctr-task\n".to_owned()),
        (402, "0::/k8s.io/pause\n".to_owned()),
        (510, format!("0::/kubepods/besteffort/pod1/crio-{}.scope\n", id(0x51))),
        (507, format!("0::/kubepods/besteffort/pod1/crio-{}.scope\n", id(0x51))),
        (506, format!("0::/kubepods/besteffort/pod1/crio-conmon-{}.scope\n", id(0x51))),
        (500, format!("0::/kubepods/besteffort/pod1/crio-{}.scope\n", id(0x5b))),
        (28446, format!("0::/libpod_parent/libpod-{}\n", id(1))),
        (1, "0::/init.scope\n".to_owned()),
    ] {
        put(root, &format!("proc/{pid}/cgroup"), &cgroup);
    }
    put(root, "proc/self/cgroup", "0::/\n");
    // podman: its API.
    let server = fake_podman(
        sources.get("podman_socket"),
        vec![
            (podman::CONTAINERS.to_owned(), podman_list().to_string()),
            (podman::PODS.to_owned(), json!([{"Id": id(9), "Labels": {"tier": "web"}}]).to_string()),
        ],
    );

    let found = discover(&sources);
    assert_eq!(server.join().unwrap(), vec![podman::CONTAINERS.to_owned(), podman::PODS.to_owned()]);
    let summary: Vec<(String, &str, Option<&str>, i32, String)> = found
        .iter()
        .map(|c| {
            (c.info.id.clone(), runtime_name(c.info.runtime), c.info.name.as_deref(), c.init_pid, c.display_labels())
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (id(0xc1), "containerd", None, 400, "app=db".to_owned()),
            (
                id(0x51),
                "cri-o",
                Some("wordpress"),
                507,
                "app=wordpress,io.kubernetes.container.name=wordpress,io.kubernetes.pod.name=wp-1,\
                 io.kubernetes.pod.namespace=wordpress-mysql,io.kubernetes.pod.uid=0a1b,tier=frontend"
                    .to_owned()
            ),
            (id(0xd1), "docker", Some("web"), 300, "app=web".to_owned()),
            (id(4), "podman", Some("shop-web"), 74, "app=shop,tier=web".to_owned()),
            (
                id(1),
                "podman",
                Some("wordpress"),
                28446,
                "app=wordpress,io.kubernetes.container.name=wordpress,io.kubernetes.pod.name=wp-1,\
                 io.kubernetes.pod.namespace=wordpress-mysql"
                    .to_owned()
            ),
        ]
    );
    let docker = found.iter().find(|c| c.info.runtime == DOCKER).unwrap();
    assert_eq!(docker.info.image.as_deref(), Some(format!("nginx:1@sha256:{DIGEST}").as_str()));

    // Nothing there at all: nothing, quickly, and no error.
    let none = Sources::under(&root.join("none"));
    assert!(discover(&none).is_empty());
}

#[test]
fn a_podman_socket_that_does_not_answer_costs_only_podman() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let socket = root.join("podman.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        std::thread::sleep(http::TIMEOUT + std::time::Duration::from_millis(300));
        drop(s);
    });
    put(
        root,
        &format!("docker/containers/{ID}/config.v2.json"),
        &json!({"Name": "/web", "State": {"Running": true, "Pid": 300}}).to_string(),
    );
    let sources = sources_at(root, &[("docker_root", "docker"), ("podman_socket", "podman.sock")]);
    let t = std::time::Instant::now();
    let found = discover(&sources);
    assert!(t.elapsed() < http::DEADLINE, "{:?}", t.elapsed());
    assert_eq!(
        found.iter().map(|c| (c.info.name.as_deref(), c.init_pid)).collect::<Vec<_>>(),
        vec![(Some("web"), 300)]
    );
    server.join().unwrap();
}

#[test]
fn the_proc_scan_takes_the_lowest_pid_of_each_container() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for (pid, text) in [
        ("90", format!("0::/docker/{ID}\n")),
        ("12", format!("0::/docker/{ID}\n")),
        ("200", format!("0::/machine.slice/libpod-{}.scope\n", id(1))),
        ("201", format!("0::/machine.slice/libpod-conmon-{}.scope\n", id(2))),
        ("7", "0::/init.scope\n".to_owned()),
        ("self", format!("0::/docker/{}\n", id(3))),
        ("0", format!("0::/docker/{}\n", id(4))),
    ] {
        put(root, &format!("{pid}/cgroup"), &text);
    }
    std::fs::create_dir(root.join("300")).unwrap(); // gone: no cgroup file
    let found = procscan::scan(root);
    assert_eq!(found, [(ID.to_owned(), 12), (id(1), 200)].into_iter().collect());
    assert!(procscan::scan(&root.join("missing")).is_empty());
}
