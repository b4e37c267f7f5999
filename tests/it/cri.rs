//! Privileged: Kubernetes pods as the kubelet makes them, through containerd's CRI plugin, guarded by
//! `noexecd run` with KubeArmor's `ksp-block-exec-inside-tmp` (the seed's policy, loaded unchanged as a YAML
//! drop-in), on the two host layouts of `container_enforce` ([`SandboxLayout::TmpTmpfs`]: the host's `/tmp`
//! its own tmpfs; [`SandboxLayout::Ext4Root`]: `/tmp` a directory of an ext4 image that also holds
//! containerd's root).
//!
//! containerd (Debian's 1.6, CRI plugin on) runs in a `containers::Sandbox` (private mount and pid namespace,
//! fresh tmpfs over `/run`, `/var/lib`, `/var/tmp`, `/dev/shm`) at a node's default places: state
//! `/run/containerd`, socket `/run/containerd/containerd.sock`, root `/var/lib/containerd` (on the ext4 image
//! for the second layout). The test is the kubelet: it drives `runtime.v1.RuntimeService` and `ImageService`
//! over that socket (reached through the namespace's pid 1, `/proc/PID/root/...`) with the calls and the
//! fields a kubelet sends for a pod with `hostNetwork: true` (`network: NODE`, so no CNI is needed):
//! `RunPodSandbox` (metadata, the pod's labels and annotations plus the kubelet's, the Linux security
//! context), `CreateContainer` (the kubelet's labels `io.kubernetes.pod.*`, `io.kubernetes.container.name`
//! and its annotations), `StartContainer`, `ExecSync` (what `kubectl exec` and exec probes use),
//! `StopPodSandbox` and `RemovePodSandbox`. Every call is bounded by a timeout.
//!
//! The images come from no registry: a static busybox `tar`red, imported into podman (the pause image with
//! `sleep` as its command), saved as OCI archives and imported with `ctr -n k8s.io images import`.
//!
//! Safety, as in `common`: the policy goes through `noexecd check` first and every `mark` line must name a
//! filesystem this test mounted (never the machine's `/` or `/tmp`); once READY=1 came, the daemon's marks are
//! read back from /proc/PID/fdinfo after every step, and a mark anywhere else kills it.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use containerd_client::tonic::transport::Channel;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerStatusRequest, CreateContainerRequest, ExecSyncRequest, ImageSpec,
    ImageStatusRequest, Int64Value, LinuxContainerConfig, LinuxContainerSecurityContext, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, Mount, NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
    RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
    VersionRequest,
};
use serde_json::Value;

use crate::common::*;
use crate::container_enforce::{GuardDaemon, HOST_POLICY, KSP_YAML};
use crate::containers::{IMAGE, Sandbox, SandboxLayout, have_tools, path_str};

/// The pods' sandbox ("pause") image: busybox with `sleep` as its command.
const PAUSE_IMAGE: &str = "localhost/noexecd-it-pause:1";
/// containerd's places, a node's defaults (on the sandbox's own `/run` and `/var/lib`).
const CONTAINERD_STATE: &str = "/run/containerd";
pub(crate) const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
/// Each CRI call (a first `RunPodSandbox` mounts and starts a container: seconds on a loaded machine).
const CRI_CALL: Duration = Duration::from_secs(60);
/// `ExecSync`'s own timeout, in seconds.
const EXEC_SECS: i64 = 30;
/// The seed's pod: a Deployment's WordPress pod in namespace `wordpress-mysql`.
pub(crate) const WP_POD: &str = "wordpress-fb448db97-wj7n7";
pub(crate) const NAMESPACE: &str = "wordpress-mysql";
/// The seed's attack, as `kubectl exec` runs it.
pub(crate) const PAYLOAD: &str = "cp /bin/busybox /var/tmp/xvzf && /var/tmp/xvzf true";

// ---------------------------------------------------------------------------------------------------------
// The CRI client: the kubelet's side of the socket

/// A kubelet's connection to the CRI: the two services on one channel, calls made on a runtime of its own.
pub(crate) struct Cri {
    rt: tokio::runtime::Runtime,
    pub(crate) runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

/// What a pod is made of, as the kubelet turns a pod spec into CRI calls.
pub(crate) struct PodSpec<'a> {
    pub(crate) name: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) uid: &'a str,
    /// The pod's own labels (`metadata.labels`).
    pub(crate) labels: &'a [(&'a str, &'a str)],
    pub(crate) container: &'a str,
    pub(crate) image: &'a str,
    pub(crate) command: &'a [&'a str],
    /// `hostPath` volumes: (the path on the node as the runtime sees it, the path in the container).
    pub(crate) mounts: &'a [(&'a str, &'a str)],
}

/// A pod that runs: its sandbox and its one container.
pub(crate) struct Pod {
    pub(crate) sandbox_id: String,
    pub(crate) container_id: String,
}

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

impl Cri {
    /// Connects to `socket` (a path the test process reaches) and asks the runtime's version.
    fn connect(socket: &Path) -> Result<Cri, String> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let channel = rt
            .block_on(async { tokio::time::timeout(CRI_CALL, containerd_client::connect(socket)).await })
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| format!("connect: {e}"))?;
        let cri =
            Cri { rt, runtime: RuntimeServiceClient::new(channel.clone()), images: ImageServiceClient::new(channel) };
        let mut runtime = cri.runtime.clone();
        let v = cri.call("Version", async move { runtime.version(VersionRequest::default()).await })?;
        println!("CRI: {} {} (CRI {})", v.runtime_name, v.runtime_version, v.runtime_api_version);
        Ok(cri)
    }

    /// One call, bounded by [`CRI_CALL`]; a failure names the call and gRPC's status.
    pub(crate) fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<containerd_client::tonic::Response<T>, containerd_client::tonic::Status>>,
    ) -> Result<T, String> {
        match self.rt.block_on(async { tokio::time::timeout(CRI_CALL, fut).await }) {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(format!("{what}: {:?}: {}", status.code(), status.message())),
            Err(_) => Err(format!("{what}: no answer within {CRI_CALL:?}")),
        }
    }

    /// `ImageStatus`: the image's id (`sha256:` of its config) and its repo digests.
    fn image_status(&self, image: &str) -> Result<(String, Vec<String>), String> {
        let mut images = self.images.clone();
        let req = ImageStatusRequest { image: Some(image_spec(image)), verbose: false };
        let r = self.call("ImageStatus", async move { images.image_status(req).await })?;
        let i = r.image.ok_or_else(|| format!("ImageStatus: {image} is not known"))?;
        Ok((i.id, i.repo_digests))
    }

    /// The pod as the kubelet starts it: `RunPodSandbox`, `CreateContainer`, `StartContainer`.
    pub(crate) fn run_pod(&self, p: &PodSpec<'_>, base: &Path, cgroup: &str) -> Result<Pod, String> {
        let config = Self::sandbox_config(p, base, cgroup);
        let mut runtime = self.runtime.clone();
        let req = RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() };
        let sandbox_id = self.call("RunPodSandbox", async move { runtime.run_pod_sandbox(req).await })?.pod_sandbox_id;
        let container_id = self.start_container(p, &sandbox_id, config, p.container, p.command)?;
        Ok(Pod { sandbox_id, container_id })
    }

    /// Another container `name` running `command` in `pod` (made by [`Cri::run_pod`] from `p`), as the
    /// kubelet starts a pod's second container: its id.
    pub(crate) fn add_container(
        &self,
        p: &PodSpec<'_>,
        pod: &Pod,
        base: &Path,
        cgroup: &str,
        name: &str,
        command: &[&str],
    ) -> Result<String, String> {
        self.start_container(p, &pod.sandbox_id, Self::sandbox_config(p, base, cgroup), name, command)
    }

    /// The sandbox's config as the kubelet writes it for `p`.
    fn sandbox_config(p: &PodSpec<'_>, base: &Path, cgroup: &str) -> PodSandboxConfig {
        let log_dir = base.join(format!("pods/{}_{}_{}", p.namespace, p.name, p.uid));
        // The kubelet's pod labels: the pod's own, and the three it adds (kubelet `newPodLabels`).
        let mut sandbox_labels = map(p.labels);
        sandbox_labels.extend(map(&[
            ("io.kubernetes.pod.name", p.name),
            ("io.kubernetes.pod.namespace", p.namespace),
            ("io.kubernetes.pod.uid", p.uid),
        ]));
        let sandbox_annotations =
            map(&[("kubernetes.io/config.source", "api"), ("kubernetes.io/config.seen", "2023-10-05T07:50:00Z")]);
        // `hostNetwork: true`: the node's network (no CNI); pid and ipc of the pod's own.
        let namespaces = NamespaceOption {
            network: NamespaceMode::Node as i32,
            pid: NamespaceMode::Container as i32,
            ipc: NamespaceMode::Pod as i32,
            ..Default::default()
        };
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: p.name.to_owned(),
                uid: p.uid.to_owned(),
                namespace: p.namespace.to_owned(),
                attempt: 0,
            }),
            // With the node's network the hostname is the node's: the kubelet sends none.
            hostname: String::new(),
            log_directory: path_str(&log_dir),
            labels: sandbox_labels,
            annotations: sandbox_annotations,
            linux: Some(LinuxPodSandboxConfig {
                // The kubelet's cgroupfs layout (`/kubepods/<QoS class>/pod<uid>`), below the test's cgroup.
                cgroup_parent: format!("/{cgroup}/kubepods/besteffort/pod{}", p.uid),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces.clone()),
                    run_as_user: Some(Int64Value { value: 0 }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// `CreateContainer` and `StartContainer` of container `name` (running `command`) of pod `p`, in sandbox
    /// `sandbox_id` whose config is `config`: its id.
    fn start_container(
        &self,
        p: &PodSpec<'_>,
        sandbox_id: &str,
        config: PodSandboxConfig,
        name: &str,
        command: &[&str],
    ) -> Result<String, String> {
        // `hostNetwork: true`: the node's network (no CNI); pid and ipc of the pod's own.
        let namespaces = NamespaceOption {
            network: NamespaceMode::Node as i32,
            pid: NamespaceMode::Container as i32,
            ipc: NamespaceMode::Pod as i32,
            ..Default::default()
        };
        // The kubelet's container labels and annotations (`newContainerLabels`, `newContainerAnnotations`).
        let labels = map(&[
            ("io.kubernetes.pod.name", p.name),
            ("io.kubernetes.pod.namespace", p.namespace),
            ("io.kubernetes.pod.uid", p.uid),
            ("io.kubernetes.container.name", name),
        ]);
        let annotations = map(&[
            ("io.kubernetes.container.hash", "9a7c2b1e"),
            ("io.kubernetes.container.restartCount", "0"),
            ("io.kubernetes.container.terminationMessagePath", "/dev/termination-log"),
            ("io.kubernetes.container.terminationMessagePolicy", "File"),
            ("io.kubernetes.pod.terminationGracePeriod", "30"),
        ]);
        let container = ContainerConfig {
            metadata: Some(ContainerMetadata { name: name.to_owned(), attempt: 0 }),
            image: Some(image_spec(p.image)),
            command: command.iter().map(|c| (*c).to_owned()).collect(),
            mounts: p
                .mounts
                .iter()
                .map(|(host_path, container_path)| Mount {
                    host_path: (*host_path).to_owned(),
                    container_path: (*container_path).to_owned(),
                    ..Default::default()
                })
                .collect(),
            labels,
            annotations,
            log_path: format!("{name}/0.log"),
            linux: Some(LinuxContainerConfig {
                resources: Some(Default::default()),
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(namespaces),
                    run_as_user: Some(Int64Value { value: 0 }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let mut runtime = self.runtime.clone();
        let req = CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
            config: Some(container),
            sandbox_config: Some(config),
        };
        let container_id =
            self.call("CreateContainer", async move { runtime.create_container(req).await })?.container_id;
        let mut runtime = self.runtime.clone();
        let req = StartContainerRequest { container_id: container_id.clone() };
        self.call("StartContainer", async move { runtime.start_container(req).await })?;
        Ok(container_id)
    }

    /// `ExecSync` (`kubectl exec`, an exec probe): exit code, stdout, stderr.
    pub(crate) fn exec_sync(&self, container_id: &str, cmd: &[&str]) -> Result<(i32, String, String), String> {
        let mut runtime = self.runtime.clone();
        let req = ExecSyncRequest {
            container_id: container_id.to_owned(),
            cmd: cmd.iter().map(|c| (*c).to_owned()).collect(),
            timeout: EXEC_SECS,
        };
        let r = self.call("ExecSync", async move { runtime.exec_sync(req).await })?;
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        Ok((r.exit_code, text(r.stdout), text(r.stderr)))
    }

    /// `ContainerStatus`: the image as the kubelet reports it (`image`, `imageID`) and the labels.
    fn container_status(&self, container_id: &str) -> Result<k8s_cri::v1::ContainerStatus, String> {
        let mut runtime = self.runtime.clone();
        let req = ContainerStatusRequest { container_id: container_id.to_owned(), verbose: false };
        let r = self.call("ContainerStatus", async move { runtime.container_status(req).await })?;
        r.status.ok_or_else(|| "ContainerStatus: no status".to_owned())
    }

    /// `StopContainer` of each container at once, each given `grace` seconds between SIGTERM and SIGKILL: how
    /// the kubelet stops a deleted pod's containers before its sandbox.
    pub(crate) fn stop_containers(&self, ids: &[String], grace: i64) -> Result<(), String> {
        let calls: Vec<_> = ids
            .iter()
            .map(|id| {
                let mut runtime = self.runtime.clone();
                let req = StopContainerRequest { container_id: id.clone(), timeout: grace };
                async move { runtime.stop_container(req).await }
            })
            .collect();
        let all = async move {
            let tasks: Vec<_> = calls.into_iter().map(tokio::spawn).collect();
            let mut last = Ok(containerd_client::tonic::Response::new(Default::default()));
            for t in tasks {
                match t.await {
                    Ok(Ok(r)) => drop(r),
                    Ok(Err(status)) => last = Err(status),
                    Err(e) => last = Err(containerd_client::tonic::Status::internal(e.to_string())),
                }
            }
            last
        };
        self.call::<k8s_cri::v1::StopContainerResponse>("StopContainer", all).map(drop)
    }

    /// The end of a pod: `StopPodSandbox` (its containers stop with it), `RemovePodSandbox`.
    pub(crate) fn remove_pod(&self, sandbox_id: &str) -> Result<(), String> {
        let mut runtime = self.runtime.clone();
        let req = StopPodSandboxRequest { pod_sandbox_id: sandbox_id.to_owned() };
        self.call("StopPodSandbox", async move { runtime.stop_pod_sandbox(req).await })?;
        let mut runtime = self.runtime.clone();
        let req = RemovePodSandboxRequest { pod_sandbox_id: sandbox_id.to_owned() };
        self.call("RemovePodSandbox", async move { runtime.remove_pod_sandbox(req).await })?;
        Ok(())
    }
}

pub(crate) fn image_spec(image: &str) -> ImageSpec {
    ImageSpec { image: image.to_owned(), ..Default::default() }
}

// ---------------------------------------------------------------------------------------------------------
// containerd with its CRI plugin, in the sandbox

/// containerd's root on a layout: `/var/lib/containerd` on the sandbox's tmpfs, or on the ext4 image that
/// also holds the host's `/tmp`.
fn containerd_root(sb: &Sandbox) -> PathBuf {
    sb.root.as_ref().map_or_else(|| PathBuf::from("/var/lib/containerd"), |r| r.join("var/lib/containerd"))
}

/// Where containerd runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// In the sandbox's mount namespace, at a node's default places.
    Shared,
    /// In a mount namespace of its own (as kind, k3d or a docker-in-docker node's runtime runs): its state on
    /// a tmpfs mounted there ([`OWN_STATE`]), its root on the layout's ext4 image mounted whole there again
    /// ([`OWN_DISK`]); only its API socket is in the sandbox's view.
    OwnMountNamespace,
}

/// containerd's state in its own mount namespace: a tmpfs no other namespace shows.
pub(crate) const OWN_STATE: &str = "/run/ctrd-own";
/// Where containerd's own mount namespace mounts the ext4 image whole.
pub(crate) const OWN_DISK: &str = "/var/lib/ctrd-own";

/// Builds the two images, starts containerd with the CRI plugin, imports the images; the connected client.
pub(crate) fn start_containerd(sb: &mut Sandbox, name: &str) -> Cri {
    start_containerd_in(sb, name, Placement::Shared)
}

/// [`start_containerd`], with containerd at `placement`.
pub(crate) fn start_containerd_in(sb: &mut Sandbox, name: &str, placement: Placement) -> Cri {
    let busybox = which("busybox").unwrap();
    let file = run_bounded(Command::new("file").arg("-L").arg(&busybox), Duration::from_secs(20));
    assert!(file.stdout.contains("statically linked"), "{} is not static (install busybox-static)", busybox.display());
    let base = sb.base();
    sb.write_containers_conf();
    sb.sh(&format!(
        "cd {b}\nmkdir -p img/bin img/tmp img/var/tmp img/etc\nchmod 1777 img/tmp img/var/tmp\n\
         cp {bb} img/bin/busybox\nfor a in sh sleep true cat cp echo ls rm id; do ln -s busybox img/bin/$a; done\n\
         tar -C img -cf img.tar .\nmkdir -p cni/bin cni/net.d opt pods\n",
        b = sh_quote(&base),
        bb = sh_quote(&busybox)
    ));
    let tar = path_str(&base.join("img.tar"));
    sb.podman(&["import", "-q", &tar, IMAGE]);
    sb.podman(&["import", "-q", "--change", "CMD [\"/bin/sleep\", \"100000\"]", &tar, PAUSE_IMAGE]);
    let archives: Vec<String> = ["app.oci.tar", "pause.oci.tar"].iter().map(|a| path_str(&base.join(a))).collect();
    sb.podman(&["save", "-q", "--format", "oci-archive", "-o", &archives[0], IMAGE]);
    sb.podman(&["save", "-q", "--format", "oci-archive", "-o", &archives[1], PAUSE_IMAGE]);

    let q = |p: &Path| toml_str(p);
    let (root, state) = match placement {
        Placement::Shared => (containerd_root(sb), CONTAINERD_STATE),
        Placement::OwnMountNamespace => (Path::new(OWN_DISK).join("var/lib/containerd"), OWN_STATE),
    };
    let config = base.join("containerd.toml");
    // The CRI plugin as a node runs it, minus what this machine cannot give: no CNI needed (pods on the node's
    // network), root without CAP_SYS_RESOURCE (`restrict_oom_score_adj`), no AppArmor; its streaming server
    // on a port of the kernel's choosing, so that tests running side by side do not collide.
    let text = format!(
        "version = 2\nroot = {root}\nstate = {state}\n\n[grpc]\n  address = {socket}\n\n[ttrpc]\n  address = {ttrpc}\n\n\
         [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {opt}\n\n\
         [plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"{PAUSE_IMAGE}\"\n  restrict_oom_score_adj = true\n\
         \x20 disable_apparmor = true\n  enable_selinux = false\n  stream_server_address = \"127.0.0.1\"\n\
         \x20 stream_server_port = \"0\"\n\n\
         [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"overlayfs\"\n  default_runtime_name = \"runc\"\n\n\
         [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n\n\
         [plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = {cni_bin}\n  conf_dir = {cni_conf}\n",
        root = q(&root),
        state = q(Path::new(state)),
        socket = q(Path::new(CONTAINERD_SOCKET)),
        ttrpc = q(&Path::new(state).join("containerd.sock.ttrpc")),
        opt = q(&base.join("opt")),
        cni_bin = q(&base.join("cni/bin")),
        cni_conf = q(&base.join("cni/net.d")),
    );
    fs::write(sb.host_view(&config), text).unwrap();
    let containerd = ["containerd".to_owned(), "--config".to_owned(), path_str(&config)];
    match placement {
        Placement::Shared => sb.start_daemon("containerd", &containerd),
        Placement::OwnMountNamespace => {
            let image = sb.root.clone().expect("a runtime in its own namespace keeps its root on the ext4 image");
            let out = sb.sh(&format!("findmnt -n -o SOURCE --mountpoint {}", sh_quote(&image)));
            let disk = out.lines().last().unwrap_or("").trim().to_owned();
            assert!(disk.starts_with("/dev/loop"), "{name}: the ext4 image's device: {disk:?}");
            sb.sh(&format!("mkdir -p {OWN_STATE} {OWN_DISK} {}", sh_quote(Path::new(CONTAINERD_STATE))));
            let script = format!(
                "mount -t tmpfs noexecd-it-ctrd-state {OWN_STATE} && mount {disk} {OWN_DISK} && exec {}",
                containerd.iter().map(|a| sh_quote(Path::new(a))).collect::<Vec<_>>().join(" ")
            );
            let argv: Vec<String> = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", &script]
                .iter()
                .map(|a| (*a).to_owned())
                .collect();
            sb.start_daemon("containerd", &argv);
        }
    }
    assert!(
        sb.wait_for_socket(Path::new(CONTAINERD_SOCKET)),
        "{name}: containerd did not open its socket:\n{}",
        sb.daemon_log("containerd")
    );
    for archive in &archives {
        sb.ok(&["ctr", "-a", CONTAINERD_SOCKET, "-n", "k8s.io", "images", "import", archive.as_str()]);
    }
    // A pulled image has two references in containerd, its tag and its repo digest (`name@<manifest
    // digest>`), and the kubelet's `imageID` is the latter: the same for the imported one.
    let listed = sb.ok(&["ctr", "-a", CONTAINERD_SOCKET, "-n", "k8s.io", "images", "ls"]);
    for image in [IMAGE, PAUSE_IMAGE] {
        let digest =
            image_target(&listed, image).unwrap_or_else(|| panic!("{name}: {image} in `ctr images ls`:\n{listed}"));
        let repo = image.rsplit_once(':').map_or(image, |(repo, _)| repo);
        sb.ok(&["ctr", "-a", CONTAINERD_SOCKET, "-n", "k8s.io", "images", "tag", image, &format!("{repo}@{digest}")]);
    }
    Cri::connect(&sb.host_view(Path::new(CONTAINERD_SOCKET)))
        .unwrap_or_else(|e| panic!("{name}: the CRI: {e}\n{}", sb.daemon_log("containerd")))
}

/// The digest containerd's image record `image` points at (its manifest), from `ctr images ls`
/// (`REF TYPE DIGEST SIZE PLATFORMS LABELS`).
pub(crate) fn image_target(listed: &str, image: &str) -> Option<String> {
    listed.lines().find_map(|l| {
        let mut fields = l.split_whitespace();
        (fields.next()? == image).then(|| fields.nth(1).map(str::to_owned)).flatten()
    })
}

// ---------------------------------------------------------------------------------------------------------
// The daemon, in the sandbox's mount and pid namespaces

/// What [`cri_sandbox`] makes.
struct CriSandbox {
    sb: Sandbox,
    allowed: BTreeSet<(u64, u64)>,
    host_tmp: [PathBuf; 2],
    cri: Cri,
}

/// The sandbox of a CRI test on `layout` (its runtime named `<runtime>-ext4` or `<runtime>-tmpfs`), the
/// filesystems it mounted, the host's tmp directories it stands for, and a containerd driven through the
/// CRI; `None` (the test skipped, or failed under `NOEXECD_REQUIRE_PRIVILEGED`) without root, writable
/// cgroups or the tools, `extra_tools` among them.
fn cri_sandbox(name: &str, layout: SandboxLayout, runtime: &str, extra_tools: &[&str]) -> Option<CriSandbox> {
    if !may_run_privileged(name) || !available_here(name, Needs::WritableCgroups) {
        return None;
    }
    let mut tools = vec!["containerd", "ctr", "containerd-shim-runc-v2", "runc", "podman", "busybox", "tar", "file"];
    tools.extend(extra_tools);
    if !have_tools(name, &tools) || (layout == SandboxLayout::Ext4Root && !have_tools(name, &["truncate", "losetup"])) {
        return None;
    }
    let suffix = if layout == SandboxLayout::Ext4Root { "ext4" } else { "tmpfs" };
    let mut sb = Sandbox::with_layout(name, &format!("{runtime}-{suffix}"), layout);
    let (allowed, host_tmp) = test_filesystems(&sb, name, layout);
    let cri = start_containerd(&mut sb, name);
    Some(CriSandbox { sb, allowed, host_tmp, cri })
}

/// The filesystems the test mounted (the only ones the daemon may mark), and the host's two tmp directories as
/// the host policy names them.
pub(crate) fn test_filesystems(
    sb: &Sandbox,
    name: &str,
    layout: SandboxLayout,
) -> (BTreeSet<(u64, u64)>, [PathBuf; 2]) {
    let mut mounted: Vec<PathBuf> = ["/run", "/var/lib", "/var/tmp", "/dev/shm"].map(PathBuf::from).to_vec();
    mounted.push(sb.base());
    let host_tmp = match layout {
        SandboxLayout::TmpTmpfs => {
            mounted.push(PathBuf::from("/tmp"));
            [PathBuf::from("/tmp"), PathBuf::from("/var/tmp")]
        }
        SandboxLayout::Ext4Root => {
            let root = sb.root.clone().unwrap();
            mounted.push(root.clone());
            [root.join("tmp"), root.join("var/tmp")]
        }
        SandboxLayout::Plain => unreachable!("the CRI tests stand in for the host's /tmp"),
    };
    let forbidden = forbidden_devs();
    let mut allowed = BTreeSet::new();
    for m in &mounted {
        let dev = split_dev(fs::metadata(sb.host_view(m)).unwrap().dev());
        assert!(!forbidden.contains(&dev), "{name}: {} is not a fresh filesystem of the test", m.display());
        assert!(allowed.insert(dev), "{name}: two test mounts share device {dev:?}");
    }
    (allowed, host_tmp)
}

/// The daemon's config: enforce, the seed's KubeArmorPolicy as a drop-in, a host policy on the host's tmp
/// directories, containerd at the sandbox's places and every other runtime off.
pub(crate) fn write_config(sb: &Sandbox, host_tmp: &[PathBuf; 2]) -> (PathBuf, PathBuf) {
    let base = sb.base();
    fs::create_dir_all(sb.host_view(&base.join("policy.d"))).unwrap();
    fs::write(sb.host_view(&base.join("policy.d/ksp-block-exec-inside-tmp.yaml")), KSP_YAML).unwrap();
    let none = base.join("none");
    let alert_log = base.join("alerts.jsonl");
    let mut text = format!(
        "[daemon]\nmode = \"enforce\"\nalert_log = {}\ncluster_name = \"{CLUSTER_NAME}\"\nhost_name = \"{HOST_NAME}\"\n\
         max_alerts_per_sec = 1000\npolicy_dir = {}\nalert_socket = \"\"\nfail_mode = \"open\"\n\n\
         [containers]\npodman_socket = {}\nstorage = {}\ndocker_root = {}\ncontainerd_state = {}\ncontainerd_socket = {}\ncontainerd_root = {}\n\n\
         [[policy]]\nname = \"{HOST_POLICY}\"\naction = \"Block\"\nmessage = \"Alert! Execution attempted inside the host's tmp folder\"\n",
        toml_str(&alert_log),
        toml_str(&base.join("policy.d")),
        toml_str(&none.join("podman.sock")),
        toml_str(&none.join("storage")),
        toml_str(&none.join("docker")),
        toml_str(Path::new(CONTAINERD_STATE)),
        toml_str(Path::new(CONTAINERD_SOCKET)),
        toml_str(&containerd_root(sb)),
    );
    for dir in host_tmp {
        text += &format!(
            "\n[[policy.process.match_directories]]\ndir = {}\nrecursive = true\n",
            toml_str(Path::new(&dir_slash(dir)))
        );
    }
    let config = base.join("noexecd.toml");
    fs::write(sb.host_view(&config), text).unwrap();
    (config, alert_log)
}

/// `noexecd check`: SAFETY, every filesystem it would mark is one the test mounted.
pub(crate) fn check(sb: &Sandbox, name: &str, config: &Path, allowed: &BTreeSet<(u64, u64)>) {
    let o = sb.run(&[bin().into_os_string(), "check".into(), "--config".into(), config.into()]);
    assert_eq!(o.code(), Some(0), "{name}: `noexecd check` failed\n{o}");
    let forbidden = forbidden_devs();
    let marks = parse_marks(&o.stdout);
    assert!(!marks.is_empty(), "{name}: `noexecd check` marks nothing\n{o}");
    for m in &marks {
        assert!(!forbidden.contains(&m.dev), "SAFETY: the policy would mark the host's / or /tmp: {m:?}");
        assert!(allowed.contains(&m.dev), "SAFETY: the policy would mark a filesystem the test did not mount: {m:?}");
    }
    assert!(
        o.stdout.lines().any(|l| l.starts_with("container-policy\tksp-block-exec-inside-tmp\t")),
        "{name}: the KubeArmor drop-in is a container policy:\n{}",
        o.stdout
    );
}

pub(crate) fn alerts(sb: &Sandbox, log: &Path) -> Vec<Value> {
    Env::read_alerts_at(&sb.host_view(log))
}

/// Waits until the log holds at least `n` alerts and the daemon's alert writer has caught up with its
/// decisions, and asserts it holds exactly `n`.
fn expect_alerts(sb: &Sandbox, log: &Path, n: usize, what: &str, guard: &GuardDaemon) -> Vec<Value> {
    poll_until(ALERT_TIMEOUT, || (alerts(sb, log).len() >= n).then_some(()));
    guard.watch().settle();
    let a = alerts(sb, log);
    assert_eq!(
        a.len(),
        n,
        "{what}: expected {n} alert(s), got:\n{}\n--- noexecd ---\n{}",
        a.iter().map(Value::to_string).collect::<Vec<_>>().join("\n"),
        guard.log_text()
    );
    a
}

// ---------------------------------------------------------------------------------------------------------
// The seed's scenario

/// The seed's attack in a WordPress pod and the same in another app's pod, and the alert field by field. The
/// fields where today's daemon does not write what KubeArmor on a real node writes are collected: printed,
/// or (`strict`) a failure.
fn seed_scenario(name: &str, layout: SandboxLayout, strict: bool) {
    let started = Instant::now();
    let Some(CriSandbox { sb, allowed, host_tmp, cri }) = cri_sandbox(name, layout, "cri", &[]) else { return };
    let (image_id, repo_digests) = cri.image_status(IMAGE).unwrap_or_else(|e| panic!("{name}: {e}"));
    println!("{name}: ImageStatus {IMAGE}: id {image_id}, repo digests {repo_digests:?}");

    let (config, alert_log) = write_config(&sb, &host_tmp);
    check(&sb, name, &config, &allowed);
    let mut guard = GuardDaemon::start(&sb, name, &config, &allowed);

    // The seed's WordPress pod (a Deployment's: `pod-template-hash`, which KubeArmor leaves out of `Labels`),
    // and a pod of another app in the same namespace.
    let wp_spec = PodSpec {
        name: WP_POD,
        namespace: NAMESPACE,
        uid: "2f9c1d4e-7b1a-4c55-9d0e-4a1b2c3d4e5f",
        labels: &[("app", "wordpress"), ("pod-template-hash", "fb448db97")],
        container: "wordpress",
        image: IMAGE,
        command: &["/bin/sleep", "100000"],
        mounts: &[],
    };
    let other_spec = PodSpec {
        name: "other-5c7d8b9f6-q2x4z",
        namespace: NAMESPACE,
        uid: "7e3a9b10-2c4d-4e6f-8a1b-3c5d7e9f1a2b",
        labels: &[("app", "other")],
        container: "other",
        image: IMAGE,
        command: &["/bin/sleep", "100000"],
        mounts: &[],
    };
    let base = sb.base();
    let wp = cri
        .run_pod(&wp_spec, &base, &sb.cgroup)
        .unwrap_or_else(|e| panic!("{name}: the WordPress pod: {e}\n{}", sb.daemon_log("containerd")));
    let other = cri
        .run_pod(&other_spec, &base, &sb.cgroup)
        .unwrap_or_else(|e| panic!("{name}: the other pod: {e}\n{}", sb.daemon_log("containerd")));
    guard.verify(name, &allowed);
    let status = cri.container_status(&wp.container_id).unwrap_or_else(|e| panic!("{name}: {e}"));
    println!(
        "{name}: ContainerStatus: image {:?}, image_ref {:?}, image_id {:?}",
        status.image.as_ref().map(|i| &i.image),
        status.image_ref,
        status.image_id
    );

    // The pods run their programs.
    let (code, out, err) = cri.exec_sync(&wp.container_id, &["/bin/sh", "-c", "echo hi"]).unwrap();
    assert_eq!((code, out.as_str()), (0, "hi\n"), "{name}: `echo hi` in the WordPress pod; stderr {err}");
    expect_alerts(&sb, &alert_log, 0, &format!("{name}: programs outside tmp"), &guard);

    // The seed's attack in the WordPress pod: refused, one alert.
    let (code, out, err) = cri.exec_sync(&wp.container_id, &["/bin/sh", "-c", PAYLOAD]).unwrap();
    assert!(
        code == 126 && err.contains(EPERM_TEXT) && out.is_empty(),
        "{name}: {PAYLOAD} in the WordPress pod: exit {code}, stdout {out:?}, stderr {err:?}\n{}\n--- noexecd ---\n{}",
        containers_seen(&sb),
        guard.log_text()
    );
    let a = expect_alerts(&sb, &alert_log, 1, &format!("{name}: the seed's exec"), &guard);
    let alert = &a[0];
    println!("{name}: the seed's alert from a CRI pod:\n{}", serde_json::to_string_pretty(alert).unwrap());
    guard.verify(name, &allowed);

    // The same payload in the other app's pod runs (busybox, run as `xvzf`, says that is no applet of it).
    let (code, out, err) = cri.exec_sync(&other.container_id, &["/bin/sh", "-c", PAYLOAD]).unwrap();
    assert!(
        code == 127 && err == "xvzf: applet not found\n",
        "{name}: {PAYLOAD} in the other app's pod runs: exit {code}, stdout {out:?}, stderr {err:?}"
    );
    expect_alerts(&sb, &alert_log, 1, &format!("{name}: the other app's pod"), &guard);

    // The alert, field by field.
    assert_eq!(get_str(alert, "Type"), "MatchedPolicy", "{alert}");
    assert_eq!(get_str(alert, "PolicyName"), POLICY_NAME, "{alert}");
    assert_eq!(get_str(alert, "Message"), POLICY_MESSAGE, "{alert}");
    assert_eq!(get_str(alert, "Action"), "Block", "{alert}");
    assert_eq!(get_str(alert, "Result"), EPERM_TEXT, "the errno the caller saw: {alert}");
    assert_eq!(get_str(alert, "Operation"), "Process", "{alert}");
    assert_eq!(get_str(alert, "Resource"), "/var/tmp/xvzf", "the path inside the container: {alert}");
    assert_eq!(get_str(alert, "ProcessName"), "/var/tmp/xvzf", "{alert}");
    assert_eq!(get_str(alert, "Source"), "/bin/busybox", "the shell that called exec: {alert}");
    assert_eq!(get_str(alert, "PodName"), WP_POD, "{alert}");
    assert_eq!(get_str(alert, "NamespaceName"), NAMESPACE, "{alert}");
    assert_eq!(get_str(alert, "ContainerName"), "wordpress", "{alert}");
    assert_eq!(get_str(alert, "ContainerID"), wp.container_id, "the CRI container id: {alert}");
    assert_eq!(get_str(alert, "ClusterName"), CLUSTER_NAME, "{alert}");
    assert_eq!(get_str(alert, "HostName"), HOST_NAME, "{alert}");
    let (pid, host_pid) = (get_int(alert, "PID"), get_int(alert, "HostPID"));
    assert!(pid > 0 && host_pid > 0 && host_pid != pid, "PID inside the container, HostPID outside: {alert}");

    // The exec was `ExecSync`'s own process (the shell execs the last command of `-c`), whose parent is the
    // WordPress pod's shim, outside the container's pid namespace: `PPID` is the host's as in the seed's alert.
    // Until `runc exec` (the shim's child) has exited, the process is still its child, not yet the shim's: an
    // exec that quick names runc, gone by now or a runc.
    let shim = real_exe("containerd-shim-runc-v2");
    let wp_shim = shim_of(&sb, &shim, &wp.container_id);
    let host_ppid = get_int(alert, "HostPPID");
    // Read in the sandbox's namespaces, whose pid numbers the alert gives.
    let parent = sb.run(&["readlink".to_owned(), format!("/proc/{host_ppid}/exe")]);
    let runc_then = !parent.status.success() || parent.stdout.trim().ends_with("/runc");
    assert!(
        wp_shim == Some(host_ppid) || (wp_shim.is_some() && runc_then),
        "HostPPID is the pod's {shim} ({wp_shim:?}) or the runc exec it ran: {alert}"
    );
    assert_eq!(get_int(alert, "PPID"), get_int(alert, "HostPPID"), "{alert}");
    // The kubelet's `imageID` is the image's repo digest.
    let (repo, tag) = IMAGE.rsplit_once(':').unwrap();
    let digest = status.image_ref.strip_prefix(&format!("{repo}@")).unwrap_or_else(|| {
        panic!("{name}: ContainerStatus image_ref {:?} is {repo}@<digest> (tag {tag})", status.image_ref)
    });

    // What today's daemon gets right of the two fields below.
    assert!(get_str(alert, "ContainerImage").starts_with(IMAGE), "the image's name: {alert}");
    assert!(get_str(alert, "Labels").split(',').any(|l| l == "app=wordpress"), "the pod's labels: {alert}");

    // What a real node's alert says (KubeArmor's, from a pod the kubelet made) and today's daemon does not.
    let mut differs: Vec<String> = Vec::new();
    let mut want = |field: &str, expected: String| {
        let got = get_str(alert, field);
        if got != expected {
            differs.push(format!("{field}: want {expected:?}, got {got:?}"));
        }
    };
    // The pod's labels, without the kubelet's and without `pod-template-hash`.
    want("Labels", "app=wordpress".into());
    // The image as the pod names it, with the digest of the kubelet's `imageID` (`ContainerStatus`).
    want("ContainerImage", format!("{IMAGE}@{digest}"));
    // The caller's parent, not the caller.
    want("ParentProcessName", shim.clone());
    // The pod's Deployment, from its name and `pod-template-hash`, as KubeArmor's `Owner` names it.
    let owner = alert.get("Owner").map(|o| {
        let part = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        format!("{}/{}/{}", part("Ref"), part("Name"), part("Namespace"))
    });
    if owner.as_deref() != Some(&format!("Deployment/wordpress/{NAMESPACE}")) {
        differs.push(format!("Owner: want Deployment/wordpress/{NAMESPACE}, got {owner:?}"));
    }

    for pod in [&wp, &other] {
        cri.remove_pod(&pod.sandbox_id).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    guard.verify(name, &allowed);
    println!("{name}: {:.1} s", started.elapsed().as_secs_f64());
    if !differs.is_empty() {
        let text = format!("the alert differs from a real node's:\n{}\n{alert}", differs.join("\n"));
        assert!(!strict, "{name}: {text}");
        eprintln!("KNOWN DIFFERENCES {name}: {text}");
    }
}

/// `noexecd containers --table` in the sandbox, pointed at its containerd: what the daemon's reader sees.
fn containers_seen(sb: &Sandbox) -> String {
    let none = sb.base().join("none");
    let mut argv: Vec<String> = vec![path_str(&bin()), "containers".into(), "--table".into()];
    for (flag, value) in [
        ("--podman-socket", none.join("podman.sock")),
        ("--docker-root", none.join("docker")),
        ("--storage", none.join("storage")),
        ("--containerd-state", PathBuf::from(CONTAINERD_STATE)),
        ("--containerd-socket", PathBuf::from(CONTAINERD_SOCKET)),
    ] {
        argv.extend([flag.to_owned(), path_str(&value)]);
    }
    let o = sb.run(&argv);
    format!("{o}")
}

/// The pid of the shim of container `id` as the sandbox's pid namespace (the daemon's) numbers it: the
/// `containerd-shim-runc-v2` with a child in the container's cgroup.
fn shim_of(sb: &Sandbox, shim: &str, id: &str) -> Option<i64> {
    let children = |p: i64| -> Vec<i64> {
        let text = fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        text.split_whitespace().filter_map(|c| c.parse::<i64>().ok()).collect()
    };
    let mut stack = vec![i64::from(sb.init)];
    while let Some(p) = stack.pop() {
        if fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| path_str(&e) == shim)
            && children(p).iter().any(|c| fs::read_to_string(format!("/proc/{c}/cgroup")).is_ok_and(|g| g.contains(id)))
        {
            let status = fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            let ns_pid = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?.split_whitespace().last()?;
            return ns_pid.parse().ok();
        }
        stack.extend(children(p));
    }
    None
}

#[test]
fn tmp_tmpfs_seed_exec_in_a_cri_wordpress_pod_is_blocked_with_the_pods_alert() {
    seed_scenario(&test_name!(), SandboxLayout::TmpTmpfs, false);
}

#[test]
fn ext4_root_seed_exec_in_a_cri_wordpress_pod_is_blocked_with_the_pods_alert() {
    seed_scenario(&test_name!(), SandboxLayout::Ext4Root, false);
}

/// The same scenario, failing on every field where the alert differs from a real node's.
#[test]
fn tmp_tmpfs_cri_alert_says_what_a_real_nodes_alert_says() {
    seed_scenario(&test_name!(), SandboxLayout::TmpTmpfs, true);
}

#[test]
fn ext4_root_cri_alert_says_what_a_real_nodes_alert_says() {
    seed_scenario(&test_name!(), SandboxLayout::Ext4Root, true);
}

/// containerd in a mount namespace of its own (its state on a tmpfs only it shows, its root on the guarded ext4
/// mounted whole again there, as a kind, k3d or docker-in-docker node's runtime keeps them) while the daemon
/// guards the host's `/tmp` on that ext4 and `/run/lock` on the `/run` tmpfs: pods start and run their
/// programs (runc's, the shim's and the containers' execs are named through that namespace's mounts, and none is
/// refused for want of a name), and a payload put in the host's protected `/tmp` through a `hostPath` volume
/// of the runtime's own mount of the disk is refused under the host's name.
#[test]
fn ext4_root_pods_of_a_containerd_in_a_mount_namespace_of_its_own_run_and_a_host_payload_through_it_is_refused() {
    let name = test_name!();
    let name = name.as_str();
    let layout = SandboxLayout::Ext4Root;
    if !may_run_privileged(name) || !available_here(name, Needs::WritableCgroups) {
        return;
    }
    let tools = ["containerd", "ctr", "containerd-shim-runc-v2", "runc", "podman", "busybox", "tar", "file", "unshare"];
    if !have_tools(name, &tools) || !have_tools(name, &["truncate", "losetup", "findmnt"]) {
        return;
    }
    let mut sb = Sandbox::with_layout(name, "cri-own-ns", layout);
    let (allowed, host_tmp) = test_filesystems(&sb, name, layout);
    let cri = start_containerd_in(&mut sb, name, Placement::OwnMountNamespace);
    let (config, alert_log) = write_config(&sb, &host_tmp);
    // The shipped policy's /run/lock, which marks the /run tmpfs the runtime's socket is on.
    sb.sh("mkdir -p /run/lock");
    let mut text = fs::read_to_string(sb.host_view(&config)).unwrap();
    text += "\n[[policy]]\nname = \"run-lock\"\naction = \"Block\"\n[[policy.process.match_directories]]\ndir = \"/run/lock/\"\nrecursive = true\n";
    fs::write(sb.host_view(&config), text).unwrap();
    check(&sb, name, &config, &allowed);
    let guard = GuardDaemon::start(&sb, name, &config, &allowed);

    // The host's /tmp as the runtime's namespace names it: a directory of its own mount of the disk.
    let image = sb.root.clone().unwrap();
    let tmp_dir = host_tmp[0].strip_prefix(&image).unwrap();
    let runtime_tmp = Path::new(OWN_DISK).join(tmp_dir);
    let runtime_tmp = path_str(&runtime_tmp);
    let spec = PodSpec {
        name: "app-6d4cf56db6-r8t2k",
        namespace: NAMESPACE,
        uid: "5b1e7c2a-9d3f-4e8a-b6c1-2f4a6d8e0b13",
        labels: &[("app", "app")],
        container: "app",
        image: IMAGE,
        command: &["/bin/sleep", "100000"],
        mounts: &[(runtime_tmp.as_str(), "/host-tmp")],
    };
    let pod = cri.run_pod(&spec, &sb.base(), &sb.cgroup).unwrap_or_else(|e| {
        panic!(
            "{name}: a pod of the runtime in its own namespace does not start: {e}\n--- containerd ---\n{}\n--- noexecd ---\n{}",
            sb.daemon_log("containerd"),
            guard.log_text()
        )
    });
    let (code, out, err) = cri.exec_sync(&pod.container_id, &["/bin/sh", "-c", "echo hi"]).unwrap();
    assert_eq!((code, out.as_str()), (0, "hi\n"), "{name}: `echo hi` in the pod; stderr {err}\n{}", guard.log_text());
    let (code, out, err) = cri
        .exec_sync(&pod.container_id, &["/bin/sh", "-c", "cp /bin/busybox /host-tmp/xvzf && /host-tmp/xvzf true"])
        .unwrap();
    assert!(
        code == 126 && err.contains(EPERM_TEXT) && out.is_empty(),
        "{name}: the host's /tmp through the runtime's mount: exit {code}, stdout {out:?}, stderr {err:?}\n{}",
        guard.log_text()
    );
    let alerts = expect_alerts(&sb, &alert_log, 1, &format!("{name}: the host payload"), &guard);
    let unresolvable = alerts.iter().filter(|a| get_str(a, "PolicyName") == "noexecd-unresolvable-path").count();
    println!("{name}: {unresolvable} noexecd-unresolvable-path refusals; alerts {alerts:?}");
    assert_eq!(unresolvable, 0, "{name}: no exec is refused for want of a name: {alerts:?}");
    let a = &alerts[0];
    assert_eq!(get_str(a, "PolicyName"), HOST_POLICY, "{a}");
    assert_eq!(get_str(a, "Resource"), path_str(&host_tmp[0].join("xvzf")), "named as the host names it: {a}");
    assert_eq!(get_str(a, "Action"), "Block", "{a}");
    cri.remove_pod(&pod.sandbox_id).unwrap_or_else(|e| panic!("{name}: {e}"));
}

/// KubeArmor's own process policies of its end-to-end suite, unchanged, on CRI pods whose namespace is the
/// CRI's: a `KubeArmorPolicy` by `execname` (any `apt`, wherever it lies), one by `matchExpressions` with
/// `NotIn` on a label, a `KubeArmorClusterPolicy` by `matchExpressions` `In` on the namespace.
fn kubearmor_policies_on_cri_pods(name: &str, layout: SandboxLayout) {
    let Some(CriSandbox { sb, allowed, host_tmp, cri }) = cri_sandbox(name, layout, "cri-ka", &[]) else { return };
    let (config, alert_log) = write_config(&sb, &host_tmp);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubearmor");
    for f in [
        "ksp-ubuntu-1-block-proc-execname.yaml",
        "ksp-match-expression-notin-block-process.yaml",
        "csp-in-operator-block-process.yaml",
    ] {
        fs::copy(fixtures.join(f), sb.host_view(&sb.base().join("policy.d").join(f))).unwrap();
    }
    check(&sb, name, &config, &allowed);
    let guard = GuardDaemon::start(&sb, name, &config, &allowed);

    let pod = |pod: &'static str, namespace: &'static str, uid: &'static str, labels: &'static [(&str, &str)]| {
        let spec = PodSpec {
            name: pod,
            namespace,
            uid,
            labels,
            container: "main",
            image: IMAGE,
            command: &["/bin/sleep", "100000"],
            mounts: &[],
        };
        cri.run_pod(&spec, &sb.base(), &sb.cgroup)
            .unwrap_or_else(|e| panic!("{name}: pod {pod}: {e}\n{}", sb.daemon_log("containerd")))
    };
    let ubuntu_1 = pod(
        "ubuntu-1",
        "multiubuntu",
        "0a1b2c3d-0001-4000-8000-000000000001",
        &[("group", "group-1"), ("container", "ubuntu-1")],
    );
    let ubuntu_3 = pod(
        "ubuntu-3",
        "multiubuntu",
        "0a1b2c3d-0003-4000-8000-000000000003",
        &[("group", "group-1"), ("container", "ubuntu-3")],
    );
    let elsewhere = pod(
        "ubuntu-3",
        "other",
        "0a1b2c3d-0004-4000-8000-000000000004",
        &[("group", "group-1"), ("container", "ubuntu-3")],
    );
    let nginx1 = pod("nginx", "nginx1", "0a1b2c3d-0005-4000-8000-000000000005", &[("app", "nginx")]);
    let nginx2 = pod("nginx", "nginx2", "0a1b2c3d-0006-4000-8000-000000000006", &[("app", "nginx")]);
    // busybox run as `apt` or `apt-get` says it is no applet of it (127): it ran.
    let apt = |dir: &str| format!("mkdir -p {dir} && cp /bin/busybox {dir}/apt && {dir}/apt");
    let apt_get = "cp /bin/busybox /bin/apt-get && /bin/apt-get";
    let expect = |p: &Pod, script: &str, refused: bool, what: &str| {
        let (code, out, err) = cri.exec_sync(&p.container_id, &["/bin/sh", "-c", script]).unwrap();
        if refused {
            assert!(
                code == 126 && err.contains(EPERM_TEXT),
                "{name}: {what} refused: exit {code}, stdout {out:?}, stderr {err:?}\n{}",
                guard.log_text()
            );
        } else {
            assert!(
                code == 127 && err.contains("applet not found"),
                "{name}: {what} runs: exit {code}, stderr {err:?}"
            );
        }
    };
    expect(&ubuntu_1, &apt("/usr/bin"), true, "/usr/bin/apt in ubuntu-1 (execname)");
    expect(&ubuntu_1, &apt("/opt/x"), true, "/opt/x/apt in ubuntu-1 (execname, anywhere)");
    expect(&ubuntu_1, apt_get, false, "apt-get in ubuntu-1");
    expect(&ubuntu_3, &apt("/usr/bin"), true, "apt in ubuntu-3 (NotIn container=ubuntu-1)");
    expect(&ubuntu_3, apt_get, false, "apt-get in ubuntu-3");
    expect(&elsewhere, &apt("/usr/bin"), false, "apt in a pod of another namespace");
    expect(&nginx1, &apt("/usr/bin"), true, "apt in namespace nginx1 (cluster policy, namespace In)");
    expect(&nginx2, &apt("/usr/bin"), false, "apt in namespace nginx2");
    let alerts = expect_alerts(&sb, &alert_log, 4, &format!("{name}: the four apt execs refused"), &guard);
    let got: Vec<(&str, &str, &str)> = alerts
        .iter()
        .map(|a| (get_str(a, "PolicyName"), get_str(a, "Resource"), get_str(a, "NamespaceName")))
        .collect();
    assert_eq!(
        got,
        vec![
            ("ksp-ubuntu-1-block-proc-execname", "/usr/bin/apt", "multiubuntu"),
            ("ksp-ubuntu-1-block-proc-execname", "/opt/x/apt", "multiubuntu"),
            ("ksp-match-expression-notin-block-process", "/usr/bin/apt", "multiubuntu"),
            ("csp-in-operator-block-process", "/usr/bin/apt", "nginx1"),
        ],
        "{name}"
    );
    for p in [&ubuntu_1, &ubuntu_3, &elsewhere, &nginx1, &nginx2] {
        cri.remove_pod(&p.sandbox_id).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn tmp_tmpfs_kubearmor_policies_by_exec_name_and_expressions_on_cri_pods() {
    kubearmor_policies_on_cri_pods(&test_name!(), SandboxLayout::TmpTmpfs);
}

#[test]
fn ext4_root_kubearmor_policies_by_exec_name_and_expressions_on_cri_pods() {
    kubearmor_policies_on_cri_pods(&test_name!(), SandboxLayout::Ext4Root);
}

/// KubeArmor's Allow posture and its gRPC LogService on CRI pods, on both layouts: KubeArmor's
/// `ksp-ubuntu-3-allow-proc-dir` widened to `/usr/bin/` (`allow_posture::ALLOW_YAML`, posture block) selects a
/// WordPress pod of a dynamically linked image (the host's bash, env, cp, dash and sleep with their libraries
/// and loader); its first program, bash, env and an allowed `#!/bin/sh` script run, with the ELF and script
/// interpreters the kernel opens for them; a program outside the allowed directories and a copy in `/tmp` are
/// refused, and they alone raise alerts. The daemon serves gRPC (`NOEXECD_GRPC`, as `--grpc` in the
/// DaemonSet): a client generated from `kubearmor.proto`, watching before the execs, receives each of those
/// alerts with every field of its JSON line, the pod's among them.
fn allow_posture_and_grpc_on_cri_pods(name: &str, layout: SandboxLayout) {
    use crate::allow_posture::{ALLOW_YAML, DYN_IMAGE};
    use crate::grpc::{assert_same_alert, connect, runtime, watch};
    let Some(CriSandbox { sb, allowed, host_tmp, cri }) = cri_sandbox(name, layout, "cri-allow", &["ldd"]) else {
        return;
    };
    // The image, imported into containerd as a pulled image is, with its repo digest.
    let base = sb.base();
    sb.sh(&format!(
        "cd {b}\nrm -rf dyn\nmkdir -p dyn/bin dyn/usr/bin dyn/opt dyn/tmp\nchmod 1777 dyn/tmp\n\
         for p in /bin/bash /usr/bin/env /bin/cp /bin/sh /bin/sleep; do\n  cp -L --parents \"$p\" dyn/\n\
           for l in $(ldd \"$p\" | grep -o '/[^ ]*'); do cp -L --parents \"$l\" dyn/; done\ndone\n\
         printf '#!/bin/sh\\necho script-ran\\n' > dyn/bin/script\nchmod 755 dyn/bin/script\n\
         cp -L /bin/bash dyn/opt/bash\ntar -C dyn -cf dyn.tar .\n",
        b = sh_quote(&base)
    ));
    sb.podman(&["import", "-q", &path_str(&base.join("dyn.tar")), DYN_IMAGE]);
    let archive = path_str(&base.join("dyn.oci.tar"));
    sb.podman(&["save", "-q", "--format", "oci-archive", "-o", &archive, DYN_IMAGE]);
    sb.ok(&["ctr", "-a", CONTAINERD_SOCKET, "-n", "k8s.io", "images", "import", &archive]);
    let listed = sb.ok(&["ctr", "-a", CONTAINERD_SOCKET, "-n", "k8s.io", "images", "ls"]);
    let digest = image_target(&listed, DYN_IMAGE).unwrap_or_else(|| panic!("{name}: {DYN_IMAGE} in:\n{listed}"));
    let repo = DYN_IMAGE.rsplit_once(':').map_or(DYN_IMAGE, |(repo, _)| repo);
    sb.ok(&["ctr", "-a", CONTAINERD_SOCKET, "-n", "k8s.io", "images", "tag", DYN_IMAGE, &format!("{repo}@{digest}")]);

    let (config, alert_log) = write_config(&sb, &host_tmp);
    fs::write(sb.host_view(&base.join("policy.d/ksp-allow-bin-dirs.yaml")), ALLOW_YAML).unwrap();
    let text = fs::read_to_string(sb.host_view(&config)).unwrap();
    fs::write(sb.host_view(&config), text.replacen("[daemon]\n", "[daemon]\ndefault_posture = \"block\"\n", 1))
        .unwrap();
    check(&sb, name, &config, &allowed);
    let guard = GuardDaemon::start_with_env(&sb, name, &config, &allowed, &[("NOEXECD_GRPC", "127.0.0.1:0")]);
    let addr: std::net::SocketAddr = poll_until(Duration::from_secs(10), || {
        guard
            .log_text()
            .lines()
            .filter(|l| l.contains("gRPC LogService listening"))
            .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
            .and_then(|a| a.parse().ok())
    })
    .unwrap_or_else(|| panic!("{name}: the daemon did not say where gRPC listens:\n{}", guard.log_text()));
    let rt = runtime();
    let mut stream = rt.block_on(async {
        let mut client = connect(addr).await;
        client.watch_alerts(watch("policy")).await.unwrap().into_inner()
    });

    let spec = PodSpec {
        name: WP_POD,
        namespace: NAMESPACE,
        uid: "0a1b2c3d-0007-4000-8000-000000000007",
        labels: &[("app", "wordpress")],
        container: "wordpress",
        image: DYN_IMAGE,
        command: &["/bin/sleep", "100000"],
        mounts: &[],
    };
    let pod = cri
        .run_pod(&spec, &base, &sb.cgroup)
        .unwrap_or_else(|e| panic!("{name}: the pod under its posture: {e}\n{}", guard.log_text()));
    let script = "/bin/bash -c 'echo bash-ran'; /usr/bin/env /bin/bash -c 'echo env-ran'; /bin/script; \
                  /bin/cp /bin/bash /tmp/b; /opt/bash -c 'echo opt-ran'; /tmp/b -c 'echo tmp-ran'; exit 0";
    let (code, out, err) = cri.exec_sync(&pod.container_id, &["/bin/bash", "-c", script]).unwrap();
    for ran in ["bash-ran", "env-ran", "script-ran"] {
        assert!(out.contains(ran), "{name}: {ran} missing: exit {code}, {out:?}, {err:?}\n{}", guard.log_text());
    }
    for refused in ["opt-ran", "tmp-ran"] {
        assert!(!out.contains(refused), "{name}: a program outside the allowed directories ran: {out:?}");
    }
    let alerts = expect_alerts(&sb, &alert_log, 2, &format!("{name}: the two programs outside refused"), &guard);
    // `/opt/bash` by the posture at its exec; `/tmp/b` by the seed's Block rule on `/tmp/*`, which wins over
    // the posture, at its exec through the overlay's `/tmp`, whose marks carry execs too (the overlay's exec
    // event comes before its open event and the layer's). One alert each.
    let want = [
        ("/opt/bash", "DefaultPosture", "fanotify=FAN_OPEN_EXEC_PERM"),
        ("/tmp/b", "ksp-block-exec-inside-tmp", "fanotify=FAN_OPEN_EXEC_PERM"),
    ];
    for (a, (resource, policy, data)) in alerts.iter().zip(want) {
        assert_eq!(get_str(a, "Resource"), resource, "{a}");
        assert_eq!(get_str(a, "PolicyName"), policy, "{a}");
        assert_eq!(get_str(a, "Operation"), "Process", "{a}");
        assert_eq!(get_str(a, "Data"), data, "{a}");
        assert_eq!(get_str(a, "NamespaceName"), NAMESPACE, "{a}");
        assert_eq!(get_str(a, "PodName"), WP_POD, "{a}");
        assert_eq!(get_str(a, "ContainerID"), pod.container_id, "{a}");
    }
    // The same alerts on the gRPC stream, field by field.
    for json in &alerts {
        let got = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), stream.message()).await })
            .unwrap_or_else(|_| panic!("{name}: no alert on the gRPC stream for {json}"))
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: the gRPC stream ended"));
        assert_same_alert(&got, json);
    }
    cri.remove_pod(&pod.sandbox_id).unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[test]
fn tmp_tmpfs_allow_posture_and_grpc_on_cri_pods() {
    allow_posture_and_grpc_on_cri_pods(&test_name!(), SandboxLayout::TmpTmpfs);
}

#[test]
fn ext4_root_allow_posture_and_grpc_on_cri_pods() {
    allow_posture_and_grpc_on_cri_pods(&test_name!(), SandboxLayout::Ext4Root);
}

/// KubeArmor's `tests/k8s_env/multicontainer`, its policies unchanged, on a CRI pod of two containers
/// (`container-1`, `container-2`, the pod labelled `container: multicontainer` in namespace `multicontainer`),
/// in two rounds loaded by SIGHUP: `kubearmor.io/container.name: "[container-1]"` and the malformed
/// `"[container-1,,]"` refuse `/bin/ls` in `container-1` only; the empty `"[]"` and `""` refuse it in both.
fn multicontainer_lists(name: &str, layout: SandboxLayout) {
    let Some(CriSandbox { sb, allowed, host_tmp, cri }) = cri_sandbox(name, layout, "cri-multi", &[]) else { return };
    let (config, alert_log) = write_config(&sb, &host_tmp);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubearmor");
    let policy_dir = sb.base().join("policy.d");
    let put = |files: &[&str]| {
        for f in [
            "container-1-ls-block.yaml",
            "malformated-array-ls-block.yaml",
            "empty-array-ls-block.yaml",
            "empty-label-ls-block.yaml",
        ] {
            let _ = fs::remove_file(sb.host_view(&policy_dir.join(f)));
        }
        for f in files {
            fs::copy(fixtures.join(f), sb.host_view(&policy_dir.join(f))).unwrap();
        }
    };
    put(&["container-1-ls-block.yaml", "malformated-array-ls-block.yaml"]);
    check(&sb, name, &config, &allowed);
    let guard = GuardDaemon::start(&sb, name, &config, &allowed);
    let spec = PodSpec {
        name: "multicontainer",
        namespace: "multicontainer",
        uid: "0a1b2c3d-0008-4000-8000-000000000008",
        labels: &[("container", "multicontainer")],
        container: "container-1",
        image: IMAGE,
        command: &["/bin/sleep", "100000"],
        mounts: &[],
    };
    let base = sb.base();
    let pod = cri.run_pod(&spec, &base, &sb.cgroup).unwrap_or_else(|e| panic!("{name}: the pod: {e}"));
    let second = cri
        .add_container(&spec, &pod, &base, &sb.cgroup, "container-2", &["/bin/sleep", "100000"])
        .unwrap_or_else(|e| panic!("{name}: its second container: {e}"));
    // `/bin/ls` a program of its own (busybox's applet by its name), as in KubeArmor's ubuntu image.
    let ls = "[ -L /bin/ls ] && rm /bin/ls && cp /bin/busybox /bin/ls; /bin/ls / >/dev/null";
    let run_ls = |container: &str, refused: bool, what: &str| {
        let (code, out, err) = cri.exec_sync(container, &["/bin/sh", "-c", ls]).unwrap();
        let was_refused = code == 126 && err.contains(EPERM_TEXT);
        assert!(
            was_refused == refused && (refused || code == 0),
            "{name}: {what}: exit {code}, stdout {out:?}, stderr {err:?}\n{}",
            guard.log_text()
        );
    };
    run_ls(&pod.container_id, true, "ls in container-1 (\"[container-1]\", \"[container-1,,]\")");
    run_ls(&second, false, "ls in container-2 (\"[container-1]\", \"[container-1,,]\")");
    let alerts = expect_alerts(&sb, &alert_log, 1, &format!("{name}: ls refused in container-1"), &guard);
    assert_eq!(get_str(&alerts[0], "ContainerName"), "container-1", "{}", alerts[0]);
    assert_eq!(get_str(&alerts[0], "NamespaceName"), "multicontainer", "{}", alerts[0]);

    put(&["empty-array-ls-block.yaml", "empty-label-ls-block.yaml"]);
    let before = guard.watch().fresh_status().get("reloads");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(guard.pid()), nix::sys::signal::Signal::SIGHUP).unwrap();
    guard.watch().wait_status("the reload after SIGHUP", |s| s.get("reloads") > before);
    run_ls(&pod.container_id, true, "ls in container-1 (\"[]\", \"\")");
    run_ls(&second, true, "ls in container-2 (\"[]\", \"\")");
    let alerts = expect_alerts(&sb, &alert_log, 3, &format!("{name}: ls refused in both"), &guard);
    let names: Vec<&str> = alerts[1..].iter().map(|a| get_str(a, "ContainerName")).collect();
    assert_eq!(names, ["container-1", "container-2"], "{name}");
    cri.remove_pod(&pod.sandbox_id).unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[test]
fn tmp_tmpfs_kubearmor_multicontainer_lists_on_a_cri_pod() {
    multicontainer_lists(&test_name!(), SandboxLayout::TmpTmpfs);
}

#[test]
fn ext4_root_kubearmor_multicontainer_lists_on_a_cri_pod() {
    multicontainer_lists(&test_name!(), SandboxLayout::Ext4Root);
}
