//! Privileged: the DaemonSet's pod as a kubelet runs it through containerd's CRI (`cri`'s client and
//! containerd), guarding the node (the sandbox's filesystems) and a CRI WordPress pod. The pod template of
//! `packaging/kubernetes/daemonset.yaml` is turned into `RunPodSandbox` and `CreateContainer` fields one by
//! one (a field this does not know fails the test), with two departures a node without CNI needs: the pod
//! runs on the node's network (`network: NODE`) and the liveness endpoint listens on a loopback port of the
//! kernel's choosing; `--stall-after` is shortened to [`STALL_AFTER_IN_TEST`] s.
//!
//! Then the failures: `kill -9` of the daemon (the node's waiting execs stay held while the supervisor is held
//! back, then the supervisor's new daemon decides them), SIGSTOP of the daemon (an `ExecSync` into the
//! WordPress pod, whose shim writes runc's process spec into the node's `/tmp`, waits and is decided by the
//! replacement the watchdog forks), and `kill -9` of the whole noexecd container, restarted by the kubelet's
//! calls (`CreateContainer` with the next attempt, `StartContainer`) while the held group keeps execs waiting.
//! Then a rollout to a second generation of the pod in the order the DaemonSet's `updateStrategy` sets, with
//! uid 65534 exec'ing the node's tmp program in a loop throughout (no attempt may run), and a plain deletion
//! of the new pod, which releases the group within the pod's grace period.
//!
//! Safety as in `cri`: `noexecd check` first, the daemon's marks read back after every step. Every command
//! and CRI call is bounded; the hold container and the daemon are killed if the test fails while they hold
//! the node's execs.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_cri::v1::{
    Capability, ContainerConfig, ContainerMetadata, CreateContainerRequest, Int64Value, KeyValue, LinuxContainerConfig,
    LinuxContainerResources, LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PortMapping, RunPodSandboxRequest,
    SecurityProfile, StartContainerRequest, security_profile::ProfileType,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::*;
use crate::container_enforce::KSP_YAML;
use crate::containers::{IMAGE, Sandbox, SandboxLayout, have_tools, path_str};
use crate::cri::{self, Cri, PodSpec};

const NOEXECD_IMAGE: &str = "localhost/noexecd-it-cri:1";
const STALL_AFTER_IN_TEST: u64 = 4;
const UP_WITHIN: Duration = Duration::from_secs(60);
/// How long the rollout's new daemon is held back before it may mark.
const SLOW_START: Duration = Duration::from_secs(2);
/// The DaemonSet's pods on the node: the first generation, and the one a rollout replaces it with.
const GENERATIONS: [(&str, &str); 2] = [
    ("noexecd-7x2kq", "5d1e0c2b-9a8f-4e7d-b6c5-a4b3c2d1e0f9"),
    ("noexecd-m4r8w", "8c3a1f5e-2d4b-4a6c-9e7f-1b2c3d4e5f60"),
];

fn fields(v: &Value, what: &str) -> Vec<(String, Value)> {
    v.as_object().unwrap_or_else(|| panic!("{what}: not a map")).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("{v}: not a string")).to_owned()
}

fn memory_bytes(q: &str) -> i64 {
    let (n, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let n: i64 = n.parse().unwrap();
    n * match unit {
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "" => 1,
        _ => panic!("memory {q}: unit not translated"),
    }
}

/// A pod's CRI calls, from the template: the sandbox's config and each container's, in order.
struct Translated {
    sandbox: PodSandboxConfig,
    containers: Vec<ContainerConfig>,
    /// The liveness endpoint's port, as the supervisor is told to listen (loopback of the node).
    health_port: u16,
    health_path: String,
    /// The readiness probe's path on the same port, if the template has one: the DaemonSet controller counts
    /// a pod available (and, surging, deletes the one it replaces) once it answers 200.
    ready_path: Option<String>,
}

fn translate(
    (pod_name, pod_uid): (&str, &str),
    template: &Value,
    image: &str,
    volumes: &HashMap<String, PathBuf>,
    base: &Path,
    cgroup: &str,
) -> Translated {
    let mut labels = HashMap::new();
    for (key, value) in fields(template, "template") {
        match key.as_str() {
            "metadata" => {
                for (k, v) in fields(&value["labels"], "labels") {
                    labels.insert(k, s(&v));
                }
            }
            "spec" => {}
            _ => panic!("pod template field {key}: not translated"),
        }
    }
    labels.extend([
        ("io.kubernetes.pod.name".to_owned(), pod_name.to_owned()),
        ("io.kubernetes.pod.namespace".to_owned(), "noexecd".to_owned()),
        ("io.kubernetes.pod.uid".to_owned(), pod_uid.to_owned()),
    ]);
    // No CNI on this node: the pod's network is the node's (a departure from the template, which has none).
    let mut namespaces = NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ..Default::default()
    };
    let spec = &template["spec"];
    let mut containers = Vec::new();
    let mut grace = 30;
    for (key, value) in fields(spec, "spec") {
        match key.as_str() {
            "serviceAccountName" | "automountServiceAccountToken" | "priorityClassName" | "tolerations" => {}
            "terminationGracePeriodSeconds" => grace = value.as_u64().unwrap(),
            "hostPID" => {
                assert_eq!(value, Value::Bool(true), "hostPID");
                namespaces.pid = NamespaceMode::Node as i32;
            }
            "containers" => containers = value.as_array().unwrap().clone(),
            "volumes" => {
                for v in value.as_array().unwrap() {
                    let name = s(&v["name"]);
                    assert!(volumes.contains_key(&name), "volume {name}: the test gives it no directory");
                    for (k, _) in fields(v, "volume") {
                        assert!(
                            ["name", "configMap", "emptyDir"].contains(&k.as_str()),
                            "volume {name}: {k} not translated"
                        );
                    }
                }
            }
            _ => panic!("pod spec field {key}: not translated"),
        }
    }
    let free_port = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let health_port = free_port();
    // The pod shares the node's network here (no CNI): KubeArmor's gRPC port moves to a free loopback port.
    let grpc_port = free_port();
    let mut health_path = String::new();
    let mut ready_path = None;
    let mut port_mappings = Vec::new();
    let sandbox = |port_mappings: Vec<PortMapping>| PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: pod_name.to_owned(),
            uid: pod_uid.to_owned(),
            namespace: "noexecd".to_owned(),
            attempt: 0,
        }),
        log_directory: path_str(&base.join(format!("pods/noexecd_{pod_name}_{pod_uid}"))),
        labels: labels.clone(),
        annotations: HashMap::from([("kubernetes.io/config.source".to_owned(), "api".to_owned())]),
        port_mappings,
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/{cgroup}/kubepods/pod{pod_uid}"),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut configs = Vec::new();
    for c in &containers {
        let cname = s(&c["name"]);
        let mut config = ContainerConfig {
            metadata: Some(ContainerMetadata { name: cname.clone(), attempt: 0 }),
            labels: HashMap::from([
                ("io.kubernetes.pod.name".to_owned(), pod_name.to_owned()),
                ("io.kubernetes.pod.namespace".to_owned(), "noexecd".to_owned()),
                ("io.kubernetes.pod.uid".to_owned(), pod_uid.to_owned()),
                ("io.kubernetes.container.name".to_owned(), cname.clone()),
            ]),
            annotations: HashMap::from([("io.kubernetes.pod.terminationGracePeriod".to_owned(), grace.to_string())]),
            log_path: format!("{cname}/0.log"),
            ..Default::default()
        };
        let mut security =
            LinuxContainerSecurityContext { namespace_options: Some(namespaces.clone()), ..Default::default() };
        let mut resources = LinuxContainerResources::default();
        for (key, value) in fields(c, "container") {
            match key.as_str() {
                "name" | "imagePullPolicy" => {}
                "image" => {
                    assert!(s(&value).starts_with("localhost/noexecd:"), "image {value}");
                    config.image = Some(cri::image_spec(image));
                }
                "args" => {
                    let mut args: Vec<String> = value.as_array().unwrap().iter().map(s).collect();
                    if let Some(at) = args.iter().position(|a| a == "--stall-after") {
                        args[at + 1] = STALL_AFTER_IN_TEST.to_string();
                    }
                    if let Some(at) = args.iter().position(|a| a == "--health-listen") {
                        args[at + 1] = format!("127.0.0.1:{health_port}");
                    }
                    if let Some(at) = args.iter().position(|a| a == "--grpc") {
                        args[at + 1] = format!("127.0.0.1:{grpc_port}");
                    }
                    config.args = args;
                }
                "env" => {
                    for e in value.as_array().unwrap() {
                        let v = match (e.get("value"), e.pointer("/valueFrom/fieldRef/fieldPath")) {
                            (Some(v), None) => s(v),
                            (None, Some(p)) if p == "spec.nodeName" => HOST_NAME.to_owned(),
                            _ => panic!("env {e}: not translated"),
                        };
                        config.envs.push(KeyValue { key: s(&e["name"]), value: v });
                    }
                }
                "securityContext" => {
                    for (k, v) in fields(&value, "securityContext") {
                        match k.as_str() {
                            "runAsUser" => security.run_as_user = Some(Int64Value { value: v.as_i64().unwrap() }),
                            "readOnlyRootFilesystem" => security.readonly_rootfs = v == Value::Bool(true),
                            "allowPrivilegeEscalation" => security.no_new_privs = v == Value::Bool(false),
                            "capabilities" => {
                                let mut caps = Capability::default();
                                for (which, list) in fields(&v, "capabilities") {
                                    let list: Vec<String> = list.as_array().unwrap().iter().map(s).collect();
                                    match which.as_str() {
                                        "drop" => caps.drop_capabilities = list,
                                        "add" => caps.add_capabilities = list,
                                        _ => panic!("capabilities.{which}: not translated"),
                                    }
                                }
                                security.capabilities = Some(caps);
                            }
                            "seccompProfile" => {
                                assert_eq!(v["type"], "RuntimeDefault", "seccompProfile");
                                security.seccomp = Some(SecurityProfile {
                                    profile_type: ProfileType::RuntimeDefault as i32,
                                    ..Default::default()
                                });
                            }
                            "appArmorProfile" => {
                                assert_eq!(v["type"], "Unconfined", "appArmorProfile");
                                security.apparmor = Some(SecurityProfile {
                                    profile_type: ProfileType::Unconfined as i32,
                                    ..Default::default()
                                });
                            }
                            _ => panic!("securityContext.{k}: not translated"),
                        }
                    }
                }
                "resources" => {
                    for (k, v) in fields(&value["limits"], "limits") {
                        match k.as_str() {
                            "memory" => resources.memory_limit_in_bytes = memory_bytes(&s(&v)),
                            "cpu" => {
                                let text = s(&v);
                                let millis: i64 = match text.strip_suffix('m') {
                                    Some(m) => m.parse().unwrap(),
                                    None => text.parse::<i64>().unwrap() * 1000,
                                };
                                resources.cpu_period = 100_000;
                                resources.cpu_quota = millis * 100;
                            }
                            _ => panic!("limits.{k}: not translated"),
                        }
                    }
                }
                "ports" => {
                    for p in value.as_array().unwrap() {
                        for (k, _) in fields(p, "port") {
                            assert!(
                                ["name", "containerPort", "protocol"].contains(&k.as_str()),
                                "ports.{k}: not translated"
                            );
                        }
                        port_mappings.push(PortMapping {
                            container_port: i32::try_from(p["containerPort"].as_i64().unwrap()).unwrap(),
                            ..Default::default()
                        });
                    }
                }
                "readinessProbe" => {
                    for (k, v) in fields(&value, "readinessProbe") {
                        match k.as_str() {
                            "httpGet" => {
                                assert_eq!(v["port"], "health", "readinessProbe: the supervisor's port");
                                ready_path = Some(s(&v["path"]));
                            }
                            "periodSeconds" | "timeoutSeconds" | "failureThreshold" | "successThreshold" => {}
                            _ => panic!("readinessProbe.{k}: not translated"),
                        }
                    }
                }
                "livenessProbe" => {
                    // The kubelet's own GET: made by the test ([`http_probe`]).
                    for (k, v) in fields(&value, "livenessProbe") {
                        match k.as_str() {
                            "httpGet" => health_path = s(&v["path"]),
                            "initialDelaySeconds" | "periodSeconds" | "timeoutSeconds" | "failureThreshold" => {}
                            _ => panic!("livenessProbe.{k}: not translated"),
                        }
                    }
                }
                "volumeMounts" => {
                    for m in value.as_array().unwrap() {
                        config.mounts.push(Mount {
                            container_path: s(&m["mountPath"]),
                            host_path: path_str(&volumes[&s(&m["name"])]),
                            readonly: m.get("readOnly") == Some(&Value::Bool(true)),
                            ..Default::default()
                        });
                    }
                }
                _ => panic!("container field {key}: not translated"),
            }
        }
        if cname == "noexecd" {
            config.envs.push(KeyValue { key: "NOEXECD_STATUS_EVERY_MS".into(), value: STATUS_EVERY_MS.into() });
        }
        config.linux = Some(LinuxContainerConfig { resources: Some(resources), security_context: Some(security) });
        configs.push(config);
    }
    assert!(!health_path.is_empty(), "the template's liveness probe is an httpGet");
    Translated { sandbox: sandbox(port_mappings), containers: configs, health_port, health_path, ready_path }
}

/// The kubelet's `httpGet`: the status line of the answer, or `None`.
fn http_probe(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut peer = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    peer.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    peer.write_all(format!("GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut text = String::new();
    peer.read_to_string(&mut text).ok()?;
    text.lines().next().map(str::to_owned)
}

fn cmdline(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
        })
        .unwrap_or_default()
}

fn ppid(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split_whitespace().nth(1)?.parse().ok()
}

/// (supervisor, daemon): the processes running `noexecd run --host-namespace` with the given health port,
/// the daemon the supervisor's child. `None` while either is missing.
fn pod_processes(health_port: u16) -> Option<(i32, i32)> {
    let listen = format!("127.0.0.1:{health_port}");
    let mut ours = Vec::new();
    for e in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let args = cmdline(pid);
        if args.iter().any(|a| a == "--host-namespace") && args.contains(&listen) {
            ours.push(pid);
        }
    }
    let supervisor = *ours.iter().find(|p| ppid(**p).is_some_and(|pp| !ours.contains(&pp)))?;
    let daemon = *ours.iter().find(|p| ppid(**p) == Some(supervisor))?;
    // A zombie has no mount namespace to read.
    fs::read_link(format!("/proc/{daemon}/ns/mnt")).ok()?;
    Some((supervisor, daemon))
}

/// The kernel stacks of every thread of `pid` (what a stuck process waits on).
fn stacks(pid: i32) -> String {
    let mut out = format!("pid {pid} {}", fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default());
    for t in fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let comm = fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let stack = fs::read_to_string(t.path().join("stack")).unwrap_or_default();
        let top: Vec<&str> = stack.lines().take(6).collect();
        out += &format!("\n  {:?} {}: {}", t.file_name(), comm.trim(), top.join(" | "));
    }
    out
}

/// `path` run on the node in the background: its exit status once it ends.
struct NodeExec(Child);

impl NodeExec {
    fn start(sb: &Sandbox, path: &Path) -> NodeExec {
        let child = Command::new("nsenter")
            .env("PATH", SYS_PATH)
            .arg("-t")
            .arg(sb.init.to_string())
            .args(["-m", "-p", "--", "timeout", "-k", "2", "120"])
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        NodeExec(child)
    }

    fn done(&mut self) -> Option<i32> {
        self.0.try_wait().unwrap().map(|st| st.code().unwrap_or(-1))
    }

    fn wait(mut self, within: Duration) -> (i32, String) {
        let code = wait_until("a node exec to end", within, || self.done());
        let mut err = String::new();
        if let Some(mut e) = self.0.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        (code, err)
    }
}

/// SIGKILLs the pod's processes if the test fails while they hold the node's execs.
struct KillOnDrop(u16);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            let args = cmdline(pid);
            let ours = args.contains(&format!("127.0.0.1:{}", self.0))
                || (args.iter().any(|a| a == "hold")
                    && args.iter().any(|a| a.ends_with("hold.sock"))
                    && args.len() == 4);
            if ours {
                let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

fn create_and_start(cri: &Cri, sandbox_id: &str, config: &ContainerConfig, sandbox: &PodSandboxConfig) -> String {
    let mut runtime = cri.runtime.clone();
    let req = CreateContainerRequest {
        pod_sandbox_id: sandbox_id.to_owned(),
        config: Some(config.clone()),
        sandbox_config: Some(sandbox.clone()),
    };
    let id = cri.call("CreateContainer", async move { runtime.create_container(req).await }).unwrap().container_id;
    let mut runtime = cri.runtime.clone();
    let req = StartContainerRequest { container_id: id.clone() };
    cri.call("StartContainer", async move { runtime.start_container(req).await }).unwrap();
    id
}

fn daemonset_pod_through_cri(name: &str, layout: SandboxLayout) {
    if !may_run_privileged(name) || !available_here(name, Needs::WritableCgroups) {
        return;
    }
    let tools = ["containerd", "ctr", "containerd-shim-runc-v2", "runc", "podman", "busybox", "tar", "file", "ldd"];
    if !have_tools(name, &tools) || (layout == SandboxLayout::Ext4Root && !have_tools(name, &["truncate", "losetup"])) {
        return;
    }
    let started = Instant::now();
    let runtime = if layout == SandboxLayout::Ext4Root { "cri-ds-ext4" } else { "cri-ds-tmpfs" };
    let mut sb = Sandbox::with_layout(name, runtime, layout);
    let (allowed, host_tmp) = cri::test_filesystems(&sb, name, layout);
    let cri = cri::start_containerd(&mut sb, name);
    let base = sb.base();

    // The pod's image: the tested binary and its shared objects, imported into containerd as `make image`'s is.
    let img = base.join("noexecd-img");
    sb.sh(&format!(
        "set -e\nmkdir -p {img}/usr/bin\ncp {bin} {img}/usr/bin/noexecd\n\
         for l in $(ldd {bin} | grep -o '/[^ ]*'); do mkdir -p {img}$(dirname $l); cp -L $l {img}$l; done\n\
         tar -C {img} -cf {base}/noexecd-img.tar .\n",
        img = sh_quote(&img),
        bin = sh_quote(&bin()),
        base = sh_quote(&base)
    ));
    let tar = path_str(&base.join("noexecd-img.tar"));
    sb.podman(&["import", "-q", "--change", "ENTRYPOINT [\"/usr/bin/noexecd\"]", &tar, NOEXECD_IMAGE]);
    let archive = path_str(&base.join("noexecd.oci.tar"));
    sb.podman(&["save", "-q", "--format", "oci-archive", "-o", &archive, NOEXECD_IMAGE]);
    sb.ok(&["ctr", "-a", cri::CONTAINERD_SOCKET, "-n", "k8s.io", "images", "import", archive.as_str()]);
    // Three copies of a debug binary fill most of the sandbox's tmpfs, which also backs the ext4 image that
    // containerd's root is on: once imported, they go.
    sb.sh(&format!(
        "rm -rf {img} {tar} {archive}\n",
        tar = sh_quote(Path::new(&tar)),
        archive = sh_quote(Path::new(&archive)),
        img = sh_quote(&img)
    ));

    // The node's payloads, put before anything guards: a program in the node's tmp, an allowed one elsewhere.
    let x = host_tmp[0].join("hx");
    sb.sh(&format!("cp /bin/busybox {x}\n", x = sh_quote(&x)));

    // The configuration: `cri`'s, with the pod's view (policy_dir the policies volume, fail closed, HostName
    // from the downward API).
    let (config, alert_log) = cri::write_config(&sb, &host_tmp);
    cri::check(&sb, name, &config, &allowed);
    // Read once: the rollout's order and the pods come from the same manifest.
    let daemonset = manifest_daemonset();
    let template = daemonset["spec"]["template"].clone();
    let daemon_spec =
        template["spec"]["containers"].as_array().unwrap().iter().find(|c| c["name"] == "noexecd").unwrap().clone();
    let mount_of = |volume: &str| {
        daemon_spec["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == volume).map(|m| s(&m["mountPath"]))
    };
    let host_text = fs::read_to_string(sb.host_view(&config)).unwrap();
    let mut pod_text = String::new();
    for line in host_text.lines() {
        if line.starts_with("host_name") {
            continue;
        }
        let line = if line.starts_with("fail_mode") {
            "fail_mode = \"closed\"".to_owned()
        } else if line.starts_with("policy_dir") {
            format!("policy_dir = {}", toml_str(Path::new(&mount_of("policies").unwrap())))
        } else {
            line.to_owned()
        };
        pod_text += &line;
        pod_text.push('\n');
    }
    // Each generation of the pod has volumes of its own: the emptyDirs are the pod's, and the kubelet projects
    // the ConfigMaps into each pod's directory.
    let volumes_of = |dir: &str| {
        let mut volumes = HashMap::new();
        for v in template["spec"]["volumes"].as_array().unwrap() {
            let volume = s(&v["name"]);
            let path = base.join(dir).join(&volume);
            fs::create_dir_all(sb.host_view(&path)).unwrap();
            volumes.insert(volume, path);
        }
        fs::write(sb.host_view(&volumes["config"].join("noexecd.toml")), &pod_text).unwrap();
        fs::write(sb.host_view(&volumes["policies"].join("ksp-block-exec-inside-tmp.yaml")), KSP_YAML).unwrap();
        volumes
    };
    let volumes = volumes_of("kubelet");
    let status_on_node = volumes["run"].join("status");

    let pod = translate(GENERATIONS[0], &template, NOEXECD_IMAGE, &volumes, &base, &sb.cgroup);
    let _kill = KillOnDrop(pod.health_port);
    let (sandbox_id, ids) = start_pod(&cri, &pod);
    let logs = || {
        let dir = sb.host_view(Path::new(&pod.sandbox.log_directory));
        let read = |c: &str| fs::read_to_string(dir.join(c).join("0.log")).unwrap_or_default();
        format!("{}\n--- hold ---\n{}", read("noexecd"), read("hold"))
    };
    let up = poll_until(UP_WITHIN, || {
        (sb.host_view(&status_on_node).exists() && logs().contains("noexecd is guarding")).then_some(())
    });
    assert!(up.is_some(), "{name}: the pod's daemon is not guarding within {UP_WITHIN:?}\n{}", logs());
    assert!(logs().contains("fanotify group held by noexecd hold"), "{name}: held from the start\n{}", logs());
    let (supervisor, daemon) =
        wait_until("the pod's supervisor and daemon", UP_WITHIN, || pod_processes(pod.health_port));
    let verify = |daemon: i32| {
        let bad = marks_outside_but_sandbox_superblocks(daemon, &allowed);
        assert!(bad.is_empty(), "{name}: SAFETY: noexecd marked a filesystem outside the test: {bad:?}");
    };
    verify(daemon);
    let probe = || http_probe(pod.health_port, &pod.health_path);
    assert_eq!(probe().as_deref(), Some("HTTP/1.1 200 OK"), "{name}: the liveness probe\n{}", logs());
    let n_alerts = || cri::alerts(&sb, &alert_log).len();

    // The WordPress pod, and the seed's attack in it: refused.
    let wp_spec = PodSpec {
        name: cri::WP_POD,
        namespace: cri::NAMESPACE,
        uid: "2f9c1d4e-7b1a-4c55-9d0e-4a1b2c3d4e5f",
        labels: &[("app", "wordpress"), ("pod-template-hash", "fb448db97")],
        container: "wordpress",
        image: IMAGE,
        command: &["/bin/sleep", "100000"],
        mounts: &[],
    };
    let wp = cri.run_pod(&wp_spec, &base, &sb.cgroup).unwrap_or_else(|e| panic!("{name}: the WordPress pod: {e}"));
    let (code, _, err) = cri.exec_sync(&wp.container_id, &["/bin/sh", "-c", cri::PAYLOAD]).unwrap();
    assert!(code == 126 && err.contains(EPERM_TEXT), "{name}: the seed's exec: {code} {err}\n{}", logs());
    wait_until("the seed's alert", ALERT_TIMEOUT, || (n_alerts() >= 1).then_some(()));
    let alert = cri::alerts(&sb, &alert_log)[0].clone();
    assert_eq!(get_str(&alert, "PodName"), cri::WP_POD, "{alert}");
    assert_eq!(get_str(&alert, "ContainerID"), wp.container_id, "{alert}");
    // The node's tmp: refused too.
    let (code, err) = NodeExec::start(&sb, &x).wait(Duration::from_secs(60));
    assert!(code == 126 && err.contains(EPERM_TEXT), "{name}: {} on the node: {code} {err}", x.display());
    wait_until("the node's alert", ALERT_TIMEOUT, || (n_alerts() >= 2).then_some(()));
    verify(daemon);

    // kill -9 of the daemon, the supervisor held back a second so that the node's execs must wait.
    kill(Pid::from_raw(supervisor), Signal::SIGSTOP).unwrap();
    kill(Pid::from_raw(daemon), Signal::SIGKILL).unwrap();
    let mut waiting = NodeExec::start(&sb, &x);
    // Only the clock can say an exec stayed held for a while.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(waiting.done(), None, "{name}: {} ran while no daemon answered", x.display());
    let woken = Instant::now();
    kill(Pid::from_raw(supervisor), Signal::SIGCONT).unwrap();
    let (code, err) = waiting.wait(Duration::from_secs(30));
    let crash_window = woken.elapsed();
    assert!(
        code == 126 && err.contains(EPERM_TEXT),
        "{name}: the exec held across the crash: {code} {err}\n{}",
        logs()
    );
    println!("{name}: kill -9 of the daemon: the held exec decided {crash_window:?} after the supervisor could act");
    assert!(crash_window < Duration::from_secs(3), "{name}: {crash_window:?}\n{}", logs());
    let (supervisor, daemon) =
        wait_until("the new daemon", UP_WITHIN, || pod_processes(pod.health_port).filter(|(_, d)| *d != daemon));
    let guarding =
        poll_until(Duration::from_secs(20), || (logs().matches("noexecd is guarding").count() >= 2).then_some(()));
    assert!(
        guarding.is_some(),
        "{name}: the new daemon is not guarding\n{}\n{}\n{}",
        stacks(daemon),
        stacks(supervisor),
        logs()
    );
    verify(daemon);

    // The new daemon's own first status write: before it, a stall counts against the start's longer grace.
    let restarted_at = std::time::SystemTime::now();
    wait_until("the new daemon's status file", UP_WITHIN, || {
        let m = fs::metadata(sb.host_view(&status_on_node)).and_then(|m| m.modified()).ok()?;
        (m > restarted_at).then_some(())
    });

    // SIGSTOP of the daemon: an `ExecSync` into the WordPress pod (its shim writes runc's process spec into the
    // node's /tmp) waits on the stalled guard, and is decided once the watchdog's replacement answers.
    kill(Pid::from_raw(daemon), Signal::SIGSTOP).unwrap();
    let stalled_at = Instant::now();
    let waiting = NodeExec::start(&sb, &x);
    let (code, out, err) = cri.exec_sync(&wp.container_id, &["/bin/sh", "-c", "echo hi"]).unwrap_or_else(|e| {
        let age = fs::metadata(sb.host_view(&status_on_node)).and_then(|m| m.modified()).map(|m| m.elapsed());
        panic!(
            "{name}: ExecSync during the stall: {e} after {:?}; status age {age:?}\n{}\n{}\n{}",
            stalled_at.elapsed(),
            stacks(supervisor),
            stacks(daemon),
            logs()
        )
    });
    let exec_window = stalled_at.elapsed();
    assert_eq!((code, out.as_str()), (0, "hi\n"), "{name}: ExecSync during the stall: {err}\n{}", logs());
    let (code, err) = waiting.wait(Duration::from_secs(60));
    let stall_window = stalled_at.elapsed();
    assert!(
        code == 126 && err.contains(EPERM_TEXT),
        "{name}: the node exec held by the stall: {code} {err}\n{}",
        logs()
    );
    println!(
        "{name}: SIGSTOP of the daemon: the node's waiting exec refused by the replacement {stall_window:?} after the stall; an ExecSync into a pod answered after {exec_window:?} (--stall-after {STALL_AFTER_IN_TEST})"
    );
    assert!(
        stall_window >= Duration::from_secs(STALL_AFTER_IN_TEST),
        "{name}: the node exec was decided {stall_window:?} after the stall: not held\n{}",
        logs()
    );
    assert!(stall_window < Duration::from_secs(STALL_AFTER_IN_TEST + 6), "{name}: {stall_window:?}\n{}", logs());
    let replaced = poll_until(Duration::from_secs(STALL_AFTER_IN_TEST + 10), || {
        pod_processes(pod.health_port).filter(|(s, d)| *s == supervisor && *d != daemon)
    });
    let Some((supervisor, daemon)) = replaced else {
        let age = fs::metadata(sb.host_view(&status_on_node)).and_then(|m| m.modified()).map(|m| m.elapsed());
        panic!(
            "{name}: the stalled daemon {daemon} not replaced; processes {:?}, status file age {age:?}\n{}\n{}\n{}",
            pod_processes(pod.health_port),
            stacks(supervisor),
            stacks(daemon),
            logs()
        );
    };
    verify(daemon);
    assert!(logs().contains("longer than --stall-after"), "{name}: the watchdog's kill\n{}", logs());
    let alive = poll_until(Duration::from_secs(10), || probe().filter(|l| l == "HTTP/1.1 200 OK"));
    assert!(alive.is_some(), "{name}: the probe after the replacement\n{}", logs());

    // kill -9 of the whole noexecd container (its first process): the daemon stops with it and the group
    // stays held; the kubelet's restart (the next attempt's CreateContainer, StartContainer) takes it back.
    let before = n_alerts();
    kill(Pid::from_raw(supervisor), Signal::SIGKILL).unwrap();
    wait_until("the daemon gone with its container", Duration::from_secs(30), || {
        fs::metadata(format!("/proc/{daemon}")).is_err().then_some(())
    });
    let mut waiting = NodeExec::start(&sb, &x);
    // Only the clock can say an exec stayed held for a while.
    std::thread::sleep(Duration::from_secs(1));
    if let Some(code) = waiting.done() {
        let (_, err) = waiting.wait(Duration::from_secs(1));
        panic!("{name}: {} ended ({code}: {err}) while the container was down\n{}", x.display(), logs());
    }
    let restart = Instant::now();
    let mut again = pod.containers[0].clone();
    again.metadata.as_mut().unwrap().attempt = 1;
    let restarted = create_and_start(&cri, &sandbox_id, &again, &pod.sandbox);
    let (code, err) = waiting.wait(Duration::from_secs(60));
    assert!(
        code == 126 && err.contains(EPERM_TEXT),
        "{name}: the exec held across the container's restart: {code} {err}\n{}",
        logs()
    );
    println!(
        "{name}: the kubelet's restart of the noexecd container decided the held exec {:?} after CreateContainer",
        restart.elapsed()
    );
    wait_until("the held exec's alert", ALERT_TIMEOUT, || (n_alerts() > before).then_some(()));
    let (_, daemon) = wait_until("the restarted container's daemon", UP_WITHIN, || pod_processes(pod.health_port));
    verify(daemon);

    // A rollout to the next generation of the pod, in the order the manifest's updateStrategy makes the
    // DaemonSet controller take, while uid 65534 runs the node's tmp program in a loop throughout.
    let rollout = Rollout::of(&daemonset);
    let grace = pod_grace(&template);
    let next = translate(GENERATIONS[1], &template, NOEXECD_IMAGE, &volumes_of("kubelet-2"), &base, &sb.cgroup);
    let _kill_next = KillOnDrop(next.health_port);
    let next_logs = || {
        let dir = sb.host_view(Path::new(&next.sandbox.log_directory));
        fs::read_to_string(dir.join("noexecd").join("0.log")).unwrap_or_default()
    };
    let before = n_alerts();
    let mut looping = ExecLoop::start(&sb, &x);
    if poll_until(ALERT_TIMEOUT, || (n_alerts() > before).then_some(())).is_none() {
        let ended = looping.0.try_wait().unwrap();
        let (ran, refused) = looping.stop(&sb);
        panic!(
            "{name}: no refusal of the loop within {ALERT_TIMEOUT:?} (ended: {ended:?}; ran {ran}, refused {refused})"
        );
    }
    let old_ids = vec![ids[1].clone(), restarted];
    let rollout_at = Instant::now();
    // The new daemon is made slow to mark, as one that walks large protected trees is: held stopped for
    // SLOW_START from before it can mark (it waits for its pod's `hold`, which starts after it) while the
    // test, as the DaemonSet controller, deletes the old pod as soon as the new one counts as available.
    let delete_old = || delete_pod(&cri, &sandbox_id, &old_ids, grace).unwrap_or_else(|e| panic!("{name}: {e}"));
    let next_sandbox = match rollout {
        Rollout::SurgeFirst => {
            let (started, slow) = start_pod_slowly(&cri, &next, name);
            let resume_at = Instant::now() + SLOW_START;
            let mut old_deleted = false;
            let mut unready = 0;
            // Only the clock can say the pod stayed unavailable while its daemon had not marked: the
            // controller's look at the pod is repeated until the daemon is let go.
            while Instant::now() < resume_at {
                if is_available(&next) {
                    delete_old();
                    old_deleted = true;
                    break;
                }
                unready += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(resume_at.saturating_duration_since(Instant::now()));
            kill(Pid::from_raw(slow), Signal::SIGCONT).unwrap();
            if !old_deleted {
                println!("{name}: the new pod answered not ready {unready} times while its daemon had not marked");
                wait_available(&next, &next_logs, name);
                delete_old();
            }
            started
        }
        Rollout::DeleteFirst => {
            delete_old();
            let (started, slow) = start_pod_slowly(&cri, &next, name);
            std::thread::sleep(SLOW_START);
            kill(Pid::from_raw(slow), Signal::SIGCONT).unwrap();
            wait_available(&next, &next_logs, name);
            started
        }
    };
    let rolled = rollout_at.elapsed();
    // The loop goes on until the new generation alone has refused some of its attempts.
    wait_until("the new generation guarding", UP_WITHIN, || next_logs().contains("noexecd is guarding").then_some(()));
    let after = n_alerts();
    wait_until("refusals by the new generation alone", ALERT_TIMEOUT, || (n_alerts() > after).then_some(()));
    let (ran, refused) = looping.stop(&sb);
    println!(
        "{name}: rollout {rollout:?} in {rolled:?}: uid 65534's loop on {} ran {ran} times, refused {refused} times",
        x.display()
    );
    assert_eq!(ran, 0, "{name}: {} ran during the rollout ({rollout:?})\n{}\n{}", x.display(), logs(), next_logs());
    let (_, daemon) = wait_until("the new generation's daemon", UP_WITHIN, || pod_processes(next.health_port));
    verify(daemon);

    // Deleting the pod with no new one (`kubectl delete pod`: the kubelet's SIGTERM to each container)
    // releases the group within the grace period: the node's tmp runs again, unguarded.
    cri.remove_pod(&wp.sandbox_id).unwrap();
    let deleted_at = Instant::now();
    delete_pod(&cri, &next_sandbox.0, &next_sandbox.1, grace).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (code, err) = NodeExec::start(&sb, &x).wait(Duration::from_secs(60));
    let released = deleted_at.elapsed();
    assert_eq!(code, 127, "{name}: busybox as `hx` runs once the pod is gone: {err}");
    println!("{name}: a plain deletion of the pod released the group within {released:?} (grace {grace} s)");
    assert!(released < Duration::from_secs(grace.unsigned_abs()), "{name}: {released:?}");
    println!("{name}: {:.1} s", started.elapsed().as_secs_f64());
}

/// The order in which the DaemonSet controller replaces a node's pod, from `updateStrategy.rollingUpdate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rollout {
    /// `maxSurge` above 0 with `maxUnavailable: 0`: the new pod starts beside the old one, which is deleted
    /// once the new one is available (ready).
    SurgeFirst,
    /// Otherwise: the old pod is deleted, then the new one created.
    DeleteFirst,
}

impl Rollout {
    fn of(daemonset: &Value) -> Rollout {
        let strategy = &daemonset["spec"]["updateStrategy"];
        assert_eq!(strategy["type"], "RollingUpdate", "updateStrategy");
        let rolling = &strategy["rollingUpdate"];
        for (k, _) in fields(rolling, "rollingUpdate") {
            assert!(["maxSurge", "maxUnavailable"].contains(&k.as_str()), "rollingUpdate.{k}: not translated");
        }
        // Absent, maxUnavailable is 1 and maxSurge 0 (the API's defaults); one node here, so a number is what
        // a percentage rounds to for it.
        let count = |v: &Value, default: i64| match v {
            Value::Null => default,
            Value::Number(n) => n.as_i64().unwrap(),
            Value::String(p) if p.ends_with('%') => i64::from(p.trim_end_matches('%').parse::<i64>().unwrap() > 0),
            _ => panic!("rollingUpdate value {v}: not translated"),
        };
        let (surge, unavailable) = (count(&rolling["maxSurge"], 0), count(&rolling["maxUnavailable"], 1));
        if surge > 0 && unavailable == 0 { Rollout::SurgeFirst } else { Rollout::DeleteFirst }
    }
}

fn manifest_daemonset() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/kubernetes/daemonset.yaml");
    let text = fs::read_to_string(path).unwrap();
    let docs: Vec<Value> = text.split("\n---\n").map(|doc| serde_saphyr::from_str::<Value>(doc).unwrap()).collect();
    docs.into_iter().find(|d| d["kind"] == "DaemonSet").expect("a DaemonSet")
}

fn pod_grace(template: &Value) -> i64 {
    template["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30)
}

/// `RunPodSandbox`, then `CreateContainer` and `StartContainer` of each container: its sandbox and containers.
fn start_pod(cri: &Cri, pod: &Translated) -> (String, Vec<String>) {
    let mut runtime = cri.runtime.clone();
    let req = RunPodSandboxRequest { config: Some(pod.sandbox.clone()), runtime_handler: String::new() };
    let sandbox_id =
        cri.call("RunPodSandbox", async move { runtime.run_pod_sandbox(req).await }).unwrap().pod_sandbox_id;
    let ids = pod.containers.iter().map(|c| create_and_start(cri, &sandbox_id, c, &pod.sandbox)).collect();
    (sandbox_id, ids)
}

/// [`start_pod`], with the daemon held stopped (SIGSTOP) once its first container runs and before the next
/// one starts: it cannot have marked (it waits for `hold` before its first mark). Returns the daemon's pid.
fn start_pod_slowly(cri: &Cri, pod: &Translated, name: &str) -> ((String, Vec<String>), i32) {
    let mut runtime = cri.runtime.clone();
    let req = RunPodSandboxRequest { config: Some(pod.sandbox.clone()), runtime_handler: String::new() };
    let sandbox_id =
        cri.call("RunPodSandbox", async move { runtime.run_pod_sandbox(req).await }).unwrap().pod_sandbox_id;
    let (first, rest) = pod.containers.split_first().unwrap();
    assert_eq!(first.metadata.as_ref().unwrap().name, "noexecd", "{name}: the daemon's container starts first");
    let mut ids = vec![create_and_start(cri, &sandbox_id, first, &pod.sandbox)];
    let (_, daemon) = wait_until("the new pod's daemon", UP_WITHIN, || pod_processes(pod.health_port));
    kill(Pid::from_raw(daemon), Signal::SIGSTOP).unwrap();
    ids.extend(rest.iter().map(|c| create_and_start(cri, &sandbox_id, c, &pod.sandbox)));
    ((sandbox_id, ids), daemon)
}

/// Whether the DaemonSet controller counts the pod available: its readiness probe answers 200, or, without
/// one, its containers run.
fn is_available(pod: &Translated) -> bool {
    pod.ready_path.as_ref().is_none_or(|path| http_probe(pod.health_port, path).as_deref() == Some("HTTP/1.1 200 OK"))
}

/// A pod's deletion as the kubelet carries it out: `StopContainer` of every container at once with the pod's
/// grace period, then `StopPodSandbox` and `RemovePodSandbox`.
fn delete_pod(cri: &Cri, sandbox_id: &str, containers: &[String], grace: i64) -> Result<(), String> {
    cri.stop_containers(containers, grace)?;
    cri.remove_pod(sandbox_id)
}

/// Until the pod counts as available ([`is_available`]).
fn wait_available(pod: &Translated, logs: &dyn Fn() -> String, name: &str) {
    let ready = poll_until(UP_WITHIN, || is_available(pod).then_some(()));
    assert!(ready.is_some(), "{name}: the new pod is not ready within {UP_WITHIN:?}\n{}", logs());
}

/// uid 65534 exec'ing a program of the node's tmp (by its name, from its directory) again and again, as fast
/// as it can, until stopped: `execloop until`.
struct ExecLoop(Child);

/// The loop's stop file, on the node's /run (not guarded; searchable by any user).
const LOOP_STOP: &str = "/run/noexecd-it-execloop.stop";

impl ExecLoop {
    fn start(sb: &Sandbox, program: &Path) -> ExecLoop {
        let execloop = Path::new("/run/noexecd-it-execloop");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/execloop.c");
        let mut cc = Command::new("cc");
        cc.env("PATH", SYS_PATH).arg("-O2").arg("-o").arg(sb.host_view(execloop)).arg(src);
        let o = run_bounded(&mut cc, Duration::from_secs(120));
        assert!(o.status.success(), "cc execloop.c\n{o}");
        let _ = fs::remove_file(sb.host_view(Path::new(LOOP_STOP)));
        // The directory is entered in the node's mount namespace (nsenter's --wd would resolve it in ours),
        // as root: uid 65534 then names the program relative to it.
        let script = format!(
            "cd {dir} && exec timeout -k 2 300 setpriv --reuid=65534 --regid=65534 --clear-groups -- {execloop} until {stop} ./{program}",
            dir = sh_quote(program.parent().unwrap()),
            execloop = sh_quote(execloop),
            stop = sh_quote(Path::new(LOOP_STOP)),
            program = program.file_name().unwrap().to_string_lossy(),
        );
        let child = Command::new("nsenter")
            .env("PATH", SYS_PATH)
            .arg("-t")
            .arg(sb.init.to_string())
            .args(["-m", "-p", "--", "sh", "-c"])
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        ExecLoop(child)
    }

    /// Stops the loop: (attempts that ran, attempts refused with EPERM).
    fn stop(mut self, sb: &Sandbox) -> (u64, u64) {
        fs::write(sb.host_view(Path::new(LOOP_STOP)), "").unwrap();
        let status = wait_until("the exec loop to stop", Duration::from_secs(30), || self.0.try_wait().unwrap());
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut o) = self.0.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut o, &mut out);
        }
        if let Some(mut e) = self.0.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        assert!(status.success(), "the exec loop: {status}\n{out}\n{err}");
        let count = |key: &str| -> u64 {
            out.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key}= in the exec loop's line {out:?} {err}"))
        };
        assert_eq!(count("other"), 0, "the exec loop: attempts that neither ran nor were refused: {out} {err}");
        (count("ran"), count("eperm"))
    }
}

impl Drop for ExecLoop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn tmp_tmpfs_daemonset_pod_through_cri_fails_closed_and_is_replaced() {
    daemonset_pod_through_cri(&test_name!(), SandboxLayout::TmpTmpfs);
}

#[test]
fn ext4_root_daemonset_pod_through_cri_fails_closed_and_is_replaced() {
    daemonset_pod_through_cri(&test_name!(), SandboxLayout::Ext4Root);
}
