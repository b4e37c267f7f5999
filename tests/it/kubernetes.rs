//! Privileged: noexecd as the Kubernetes DaemonSet runs it, without a cluster. The pod template of
//! `packaging/kubernetes/daemonset.yaml` is turned into `podman run` flags here (every field is translated or
//! refused, so the test cannot drift from the manifest): the host's pid namespace, the capabilities, the
//! read-only root, the arguments, the liveness probe (a podman healthcheck), the volumes. The ConfigMaps
//! become directories in the kubelet's own layout (each file a link into `..data`, itself a link to a
//! timestamped directory) bind-mounted where the manifest mounts them, and an update swaps `..data` as the
//! kubelet does. (podman 4.3's `kube play` ignores `hostPID`, which this pod cannot do without.)
//!
//! Everything runs in the `container_enforce` fixture: a private mount and pid namespace standing for the
//! node, a private podman with its storage on the test's filesystems, the host policy protecting the node's
//! tmp directories and KubeArmor's `ksp-block-exec-inside-tmp` (the manifest's ConfigMap file, checked to be
//! the seed unchanged) selecting the `app=wordpress` containers. The image is the tested binary with the
//! shared objects it needs, or `make image`'s archive when `NOEXECD_IT_IMAGE` names it.
//!
//! Safety: the configuration goes through `noexecd check` first (every mark on a filesystem the test mounted);
//! once the daemon answers, its marks are read back from /proc/PID/fdinfo after every step. Every command is
//! bounded by a timeout; the container goes with the sandbox.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::*;
use crate::container_enforce::{
    Guarded, HOST_POLICY, InContainer, KSP_YAML, OTHER_LABELS, assert_denied_in_shell, assert_host_alert, assert_ran,
    assert_wordpress_alert, expected_marks, setup,
};
use crate::containers::{IMAGE, SandboxLayout, WORDPRESS_LABELS, path_str};

/// The image the pod template is run from in the test.
const NOEXECD_IMAGE: &str = "localhost/noexecd-it-k8s:1";
/// The node's name: what the downward API's `spec.nodeName` gives the pod.
const NODE_NAME: &str = HOST_NAME;
/// How long the daemon may take to write its first status file.
const UP_WITHIN: Duration = Duration::from_secs(30);
/// How long a ConfigMap update may take to be in force (the watcher looks every 2 s, plus the reload).
const RELOADED_WITHIN: Duration = Duration::from_secs(15);

fn manifest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/kubernetes")
}

/// The documents of a multi-document YAML file, as JSON values.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap();
    text.split("\n---\n")
        .map(|doc| serde_saphyr::from_str::<Value>(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str().unwrap_or_else(|| panic!("{what}: expected a string, got {v}"))
}

fn fields(v: &Value, what: &str) -> Vec<(String, Value)> {
    v.as_object().unwrap_or_else(|| panic!("{what}: expected a mapping, got {v}")).clone().into_iter().collect()
}

/// A Kubernetes quantity as podman takes it: `256Mi` -> `256m`, CPUs as a number of CPUs.
fn memory(q: &str) -> String {
    let (n, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    match unit {
        "Mi" => format!("{n}m"),
        "Gi" => format!("{n}g"),
        "" => n.to_owned(),
        _ => panic!("memory quantity {q}: not translated"),
    }
}

fn cpus(q: &str) -> String {
    match q.strip_suffix('m') {
        Some(milli) => format!("{:.3}", milli.parse::<f64>().unwrap() / 1000.0),
        None => q.to_owned(),
    }
}

/// What the kubelet supplies for the pod: the node's name, a directory per volume.
struct Node<'a> {
    node_name: &'a str,
    image: &'a str,
    /// Volume name -> the directory on the node the kubelet materialized it in.
    volumes: &'a BTreeMap<String, PathBuf>,
    /// The container's name (the kubelet's `k8s_<container>_<pod>_...`, shortened).
    name: &'a str,
}

/// `podman run` arguments for each container of the DaemonSet's pod template, in the manifest's order (the
/// kubelet's), as the kubelet would set them up: (container name, its podman container's name, arguments). The
/// containers of the pod share what the pod spec gives them all (pid namespace, labels) and its volumes
/// (the same node directory bind-mounted into each). A field this does not know fails the test: the manifest
/// cannot gain a setting the test does not apply.
fn podman_run_args(template: &Value, node: &Node<'_>) -> Vec<(String, String, Vec<String>)> {
    let mut args: Vec<String> = Vec::new();
    for (key, value) in fields(template, "template") {
        match key.as_str() {
            "metadata" => {
                for (k, v) in fields(&value["labels"], "labels") {
                    args.push("--label".into());
                    args.push(format!("{k}={}", str_of(&v, "label")));
                }
            }
            "spec" => {}
            _ => panic!("pod template field {key}: not translated"),
        }
    }
    let spec = &template["spec"];
    let mut containers = Vec::new();
    for (key, value) in fields(spec, "spec") {
        match key.as_str() {
            // The scheduler's and the API server's business: no effect on how the node runs the pod.
            "serviceAccountName" | "automountServiceAccountToken" | "priorityClassName" | "tolerations" => {}
            "terminationGracePeriodSeconds" => {
                args.push("--stop-timeout".into());
                args.push(value.as_u64().unwrap().to_string());
            }
            "hostPID" => {
                assert_eq!(value, Value::Bool(true), "hostPID");
                args.push("--pid".into());
                args.push("host".into());
            }
            "containers" => containers = value.as_array().unwrap().clone(),
            "volumes" => {
                for v in value.as_array().unwrap() {
                    let name = str_of(&v["name"], "volume name");
                    assert!(node.volumes.contains_key(name), "volume {name}: the test gives it no directory");
                    let kinds: Vec<String> = fields(v, "volume").into_iter().map(|(k, _)| k).collect();
                    assert!(
                        kinds.iter().all(|k| ["name", "configMap", "emptyDir"].contains(&k.as_str())),
                        "volume {name}: kinds {kinds:?} not translated"
                    );
                }
            }
            _ => panic!("pod spec field {key}: not translated"),
        }
    }
    assert!(!containers.is_empty(), "a container in the pod");
    containers
        .iter()
        .map(|c| {
            let cname = str_of(&c["name"], "container name").to_owned();
            let podman_name = format!("{}-{cname}", node.name);
            let mut run: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), podman_name.clone()];
            run.extend(["--network", "none"].map(String::from));
            run.extend(args.iter().cloned());
            run.extend(container_args(c, node));
            (cname, podman_name, run)
        })
        .collect()
}

/// The `podman run` arguments of one container of the pod, its image and the image's arguments last.
fn container_args(c: &Value, node: &Node<'_>) -> Vec<String> {
    let mut args = Vec::new();
    let mut image_args = Vec::new();
    for (key, value) in fields(c, "container") {
        match key.as_str() {
            "name" | "imagePullPolicy" => {}
            "image" => assert!(str_of(&value, "image").starts_with("localhost/noexecd:"), "image {value}"),
            "args" => image_args = value.as_array().unwrap().iter().map(|a| str_of(a, "arg").to_owned()).collect(),
            "env" => {
                for e in value.as_array().unwrap() {
                    let name = str_of(&e["name"], "env name");
                    let v = match (e.get("value"), e.pointer("/valueFrom/fieldRef/fieldPath")) {
                        (Some(v), None) => str_of(v, "env value").to_owned(),
                        (None, Some(p)) if p == "spec.nodeName" => node.node_name.to_owned(),
                        _ => panic!("env {e}: not translated"),
                    };
                    args.push("--env".into());
                    args.push(format!("{name}={v}"));
                }
            }
            "securityContext" => {
                for (k, v) in fields(&value, "securityContext") {
                    match k.as_str() {
                        "runAsUser" => args.extend(["--user".into(), v.as_u64().unwrap().to_string()]),
                        "readOnlyRootFilesystem" => {
                            if v == Value::Bool(true) {
                                args.push("--read-only".into());
                            }
                        }
                        "allowPrivilegeEscalation" => {
                            if v == Value::Bool(false) {
                                args.extend(["--security-opt".into(), "no-new-privileges".into()]);
                            }
                        }
                        "capabilities" => {
                            for (which, list) in fields(&v, "capabilities") {
                                let flag = match which.as_str() {
                                    "drop" => "--cap-drop",
                                    "add" => "--cap-add",
                                    _ => panic!("capabilities.{which}: not translated"),
                                };
                                for cap in list.as_array().unwrap() {
                                    args.extend([flag.to_owned(), str_of(cap, "capability").to_owned()]);
                                }
                            }
                        }
                        // podman's default seccomp profile is the runtime's default.
                        "seccompProfile" => assert_eq!(v["type"], "RuntimeDefault", "seccompProfile"),
                        "appArmorProfile" => {
                            assert_eq!(v["type"], "Unconfined", "appArmorProfile");
                            args.extend(["--security-opt".into(), "apparmor=unconfined".into()]);
                        }
                        _ => panic!("securityContext.{k}: not translated"),
                    }
                }
            }
            "resources" => {
                // Requests are the scheduler's; limits are the cgroup's.
                for (k, v) in fields(&value["limits"], "limits") {
                    match k.as_str() {
                        "memory" => args.extend(["--memory".into(), memory(str_of(&v, "memory"))]),
                        "cpu" => args.extend(["--cpus".into(), cpus(str_of(&v, "cpu"))]),
                        _ => panic!("limits.{k}: not translated"),
                    }
                }
            }
            "livenessProbe" | "readinessProbe" => {
                // The kubelet's own HTTP GET, made by the test from the pod's network namespace ([`http_probe`]);
                // its timing is the kubelet's, checked here to be what docs/kubernetes.md states.
                for (k, v) in fields(&value, &key) {
                    match k.as_str() {
                        "httpGet" => {
                            let keys: Vec<String> = fields(&v, "httpGet").into_iter().map(|(k, _)| k).collect();
                            assert_eq!(keys, ["path", "port"], "{key}.httpGet: fields not translated");
                        }
                        "initialDelaySeconds" | "periodSeconds" | "failureThreshold" => {
                            assert!(v.as_u64().is_some(), "{key}.{k}")
                        }
                        "timeoutSeconds" => assert!(v.as_u64().unwrap() <= PROBE_TIMEOUT.as_secs(), "{k}"),
                        _ => panic!("{key}.{k}: not translated"),
                    }
                }
            }
            "ports" => {
                // Within the pod's network namespace: nothing to publish on the node. A containerPort only
                // names the port (for the Service and the probe): the daemon listens on 32767 because its
                // args say --grpc, the supervisor on 9880 because they say --health-listen.
                for port in value.as_array().unwrap() {
                    for (k, v) in fields(port, "port") {
                        match k.as_str() {
                            "name" => {}
                            "containerPort" => assert!(matches!(v.as_u64(), Some(32767 | 9880)), "ports: {port}"),
                            "protocol" => assert_eq!(v, "TCP", "ports.protocol"),
                            _ => panic!("ports.{k}: not translated"),
                        }
                    }
                }
            }
            "volumeMounts" => {
                for m in value.as_array().unwrap() {
                    let name = str_of(&m["name"], "volumeMount name");
                    let at = str_of(&m["mountPath"], "mountPath");
                    let ro = m.get("readOnly") == Some(&Value::Bool(true));
                    let dir = &node.volumes[name];
                    args.push("--volume".into());
                    args.push(format!("{}:{at}{}", path_str(dir), if ro { ":ro" } else { "" }));
                }
            }
            _ => panic!("container field {key}: not translated"),
        }
    }
    args.push(node.image.into());
    args.extend(image_args);
    args
}

/// How long the test's HTTP probe waits for an answer (the manifest's `timeoutSeconds` may not exceed it).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// `--stall-after` in the test's translation (the manifest's value is what docs/kubernetes.md states): a
/// stalled daemon is replaced within this plus one status period.
const STALL_AFTER_IN_TEST: u64 = 4;

/// A probe (`livenessProbe`, `readinessProbe`) as the kubelet makes it: `GET path` on the container's named
/// port, from the pod's network namespace (the kubelet reaches the pod's address). The status line, or `None`
/// without an answer.
fn http_probe(spec: &Value, which: &str, supervisor: i32) -> Option<String> {
    let get = &spec[which]["httpGet"];
    let port_name = str_of(&get["port"], "httpGet.port");
    let port = spec["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == port_name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no port named {port_name}"));
    let path = str_of(&get["path"], "httpGet.path").to_owned();
    let netns = format!("/proc/{supervisor}/ns/net");
    // A thread of its own joins the pod's network namespace; the test's other threads stay where they are.
    let answer = thread::spawn(move || -> std::io::Result<String> {
        use std::io::{Read, Write};
        let ns = fs::File::open(&netns)?;
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).unwrap()));
        let mut peer = std::net::TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
        peer.set_read_timeout(Some(PROBE_TIMEOUT))?;
        peer.set_write_timeout(Some(PROBE_TIMEOUT))?;
        peer.write_all(format!("GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n").as_bytes())?;
        let mut text = String::new();
        peer.read_to_string(&mut text)?;
        Ok(text)
    })
    .join()
    .unwrap();
    match answer {
        Ok(text) => text.lines().next().map(str::to_owned),
        Err(e) => {
            println!("http probe of {supervisor}: no answer: {e}");
            None
        }
    }
}

/// The daemon the supervisor forked after `old` ended.
fn next_daemon_of(g: &Guarded, container: &str, old: i32) -> i32 {
    wait_until(format_args!("{container}: a daemon after {old}"), UP_WITHIN, || {
        let (_, daemon) = daemon_of(g, container);
        (daemon != old && fs::metadata(format!("/proc/{daemon}")).is_ok()).then_some(daemon)
    })
}

/// The kubelet's atomic writer: `dir/..<generation>/` holds the files, `dir/..data` links to it, and each
/// file's name in `dir` links to `..data/<name>`. A second call swaps `..data` in one rename.
fn write_configmap(dir: &Path, generation: &str, files: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap();
    let data = dir.join(format!("..{generation}"));
    fs::create_dir(&data).unwrap();
    for (name, text) in files {
        fs::write(data.join(name), text).unwrap();
    }
    let old = fs::read_link(dir.join("..data")).ok();
    let tmp = dir.join("..data_tmp");
    symlink(format!("..{generation}"), &tmp).unwrap();
    fs::rename(&tmp, dir.join("..data")).unwrap();
    for (name, _) in files {
        if fs::symlink_metadata(dir.join(name)).is_err() {
            symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
    }
    if let Some(old) = old {
        fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

/// The host pid of a process of the sandbox's pid namespace, known there as `ns_pid`.
fn host_pid_of(g: &Guarded, ns_pid: i64) -> i32 {
    let want_ns = fs::read_link(format!("/proc/{}/ns/pid", g.sb.init)).unwrap();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        let nspid: Vec<i64> = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .map(|l| l.split_whitespace().filter_map(|p| p.parse().ok()).collect())
            .unwrap_or_default();
        if nspid.len() == 2
            && nspid[1] == ns_pid
            && fs::read_link(format!("/proc/{pid}/ns/pid")).ok() == Some(want_ns.clone())
        {
            return pid;
        }
    }
    panic!("no process {ns_pid} in the sandbox's pid namespace");
}

/// The host pids of the noexecd container's first process (the supervisor) and of its child, the daemon.
fn daemon_of(g: &Guarded, container: &str) -> (i32, i32) {
    wait_until(format_args!("{container}: a daemon under the supervisor"), UP_WITHIN, || {
        let first: i64 = g.inspect(container, "{{.State.Pid}}").parse().unwrap();
        let first_host = host_pid_of(g, first);
        let children = fs::read_to_string(format!("/proc/{first_host}/task/{first_host}/children")).unwrap_or_default();
        children.split_whitespace().next().and_then(|p| p.parse().ok()).map(|daemon| (first_host, daemon))
    })
}

/// Waits until a container's log holds `text`; false after `within`.
fn wait_for_log(g: &Guarded, container: &str, text: &str, within: Duration) -> bool {
    poll_until(within, || {
        let o = g.podman(&["logs", container]);
        (o.stdout.contains(text) || o.stderr.contains(text)).then_some(())
    })
    .is_some()
}

/// Kills these host pids (the hold container's process) when dropped: a test that fails while the group is
/// held must not leave the node's execs waiting.
struct ReleaseOnDrop(Vec<i32>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
    }
}

/// How long an exec started by [`exec_in_background`] may wait for a restarted daemon.
const WAITED_EXEC_SECS: u64 = 120;

/// Runs `path` on the node in the background as [`Guarded::host_exec`] does; its output and exit status go
/// to `<base>/<tag>.{out,err,status}`. Returns the stem. (In a session of its own: the sandbox's bounded
/// commands take their process group down with them.)
fn exec_in_background(g: &Guarded, path: &Path, tag: &str) -> PathBuf {
    let stem = g.sb.base().join(tag);
    let script = stem.with_extension("sh");
    let text = format!(
        "timeout -k 2 {WAITED_EXEC_SECS} bash -c 'exec \"$1\"' host \"$1\" > \"$2.out\" 2> \"$2.err\"\n\
         echo $? > \"$2.tmp\"\nmv \"$2.tmp\" \"$2.status\"\n"
    );
    fs::write(g.sb.host_view(&script), text).unwrap();
    let o = g.sb.run(&[
        "bash",
        "-c",
        "setsid -f bash \"$0\" \"$@\" < /dev/null > /dev/null 2>&1",
        &path_str(&script),
        &path_str(path),
        &path_str(&stem),
    ]);
    assert!(o.status.success(), "{}: cannot start in the background\n{o}", path.display());
    stem
}

/// The exit status of an exec started by [`exec_in_background`], if it has ended.
fn exec_status(g: &Guarded, stem: &Path) -> Option<i32> {
    let text = fs::read_to_string(g.sb.host_view(&stem.with_extension("status"))).ok()?;
    text.trim().parse().ok()
}

/// Waits for an exec started by [`exec_in_background`] to end: its output as a process's.
fn wait_exec(g: &Guarded, stem: &Path) -> Output {
    let code = wait_until(
        format_args!("{}: the exec's end", stem.display()),
        Duration::from_secs(WAITED_EXEC_SECS + 5),
        || exec_status(g, stem),
    );
    let read = |ext: &str| fs::read_to_string(g.sb.host_view(&stem.with_extension(ext))).unwrap_or_default();
    use std::os::unix::process::ExitStatusExt;
    Output { status: std::process::ExitStatus::from_raw(code << 8), stdout: read("out"), stderr: read("err") }
}

/// The image the pod runs: `make image`'s archive when `NOEXECD_IT_IMAGE` names it (the static binary, as
/// shipped), else `<base>/noexecd-img.tar`: the tested binary at /usr/bin/noexecd and the shared objects it loads.
fn noexecd_image(g: &Guarded) -> String {
    if let Some(archive) = std::env::var_os("NOEXECD_IT_IMAGE") {
        let out = g.sb.podman(&["load", "-q", "-i", &path_str(Path::new(&archive))]);
        let name = out.trim().rsplit(' ').next().unwrap().to_owned();
        println!("pod image {name}, loaded from {}", Path::new(&archive).display());
        return name;
    }
    build_noexecd_image(g);
    NOEXECD_IMAGE.to_owned()
}

fn build_noexecd_image(g: &Guarded) {
    let base = g.sb.base();
    let img = base.join("noexecd-img");
    let script = format!(
        "set -e\nmkdir -p {img}/usr/bin\ncp {bin} {img}/usr/bin/noexecd\n\
         for l in $(ldd {bin} | grep -o '/[^ ]*'); do mkdir -p {img}$(dirname $l); cp -L $l {img}$l; done\n\
         tar -C {img} -cf {base}/noexecd-img.tar .\n",
        img = sh_quote(&img),
        bin = sh_quote(&bin()),
        base = sh_quote(&base)
    );
    g.sb.sh(&script);
    let tar = path_str(&base.join("noexecd-img.tar"));
    g.sb.podman(&["import", "-q", "--change", "ENTRYPOINT [\"/usr/bin/noexecd\"]", &tar, NOEXECD_IMAGE]);
}

/// What the pod's container wrote to stdout: its alert lines, parsed (log lines go to stderr).
fn stdout_alerts(g: &Guarded, name: &str) -> Vec<Value> {
    let o = g.podman(&["logs", name]);
    o.stdout.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn pod_template_guards_the_node(name: &str, layout: SandboxLayout) {
    let Some(mut g) = setup(name, layout) else { return };
    let base = g.sb.base();
    let pod_image = noexecd_image(&g);

    // The manifest: its ConfigMap file is KubeArmor's seed unchanged; its DaemonSet's pod template.
    let ksp = fs::read_to_string(manifest_dir().join("policy.d/ksp-block-exec-inside-tmp.yaml")).unwrap();
    assert_eq!(ksp, KSP_YAML, "the shipped ConfigMap's policy is KubeArmor's seed, unchanged");
    let docs = yaml_documents(&manifest_dir().join("daemonset.yaml"));
    let ds = docs.iter().find(|d| d["kind"] == "DaemonSet").expect("a DaemonSet");
    let template = &ds["spec"]["template"];
    let containers = template["spec"]["containers"].as_array().unwrap();
    let daemon_spec = containers.iter().find(|c| c["name"] == "noexecd").expect("the noexecd container");
    let mounts: BTreeMap<String, String> = daemon_spec["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (str_of(&m["name"], "name").to_owned(), str_of(&m["mountPath"], "mountPath").to_owned()))
        .collect();
    let args = daemon_spec["args"].as_array().unwrap();
    let arg_after = |flag: &str| {
        let at = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} in the DaemonSet's args"));
        str_of(&args[at + 1], flag).to_owned()
    };
    let config_in_pod = PathBuf::from(arg_after("--config"));
    let status_in_pod = PathBuf::from(arg_after("--status-file"));

    // The configuration as the test's `setup` wrote it for the host, with the pod's view: its policy
    // directory is the policies volume's mount, its HostName comes from the downward API.
    let host_text = fs::read_to_string(g.sb.host_view(&g.config)).unwrap();
    let mut pod_text = String::new();
    for line in host_text.lines() {
        if line.starts_with("host_name") {
            continue;
        }
        if line.starts_with("fail_mode") {
            // The shipped configuration's default: the pod's hold container keeps the group.
            pod_text += "fail_mode = \"closed\"\n";
            continue;
        }
        if line.starts_with("policy_dir") {
            pod_text += &format!("policy_dir = {}\n", toml_str(Path::new(&mounts["policies"])));
            continue;
        }
        pod_text += line;
        pod_text.push('\n');
    }
    let config_volume = mounts.iter().find(|(_, at)| config_in_pod.starts_with(at)).map(|(n, _)| n.clone()).unwrap();
    let config_file = config_in_pod.file_name().unwrap().to_str().unwrap().to_owned();
    let kubelet = base.join("kubelet");
    let mut volumes = BTreeMap::new();
    for v in template["spec"]["volumes"].as_array().unwrap() {
        let volume = str_of(&v["name"], "volume name").to_owned();
        volumes.insert(volume.clone(), kubelet.join(&volume));
        fs::create_dir_all(g.sb.host_view(&kubelet.join(volume))).unwrap();
    }
    let volume_views: BTreeMap<String, PathBuf> = volumes.iter().map(|(n, p)| (n.clone(), g.sb.host_view(p))).collect();
    let cm = |v: &str| volume_views[v].clone();
    write_configmap(&cm(&config_volume), "2026_12_01_00_00_00.1", &[(&config_file, &pod_text)]);
    // And a container policy selecting the pod's own label that forbids its own program: the daemon's own
    // container is never decided by container policies, so its probe still runs.
    let own = "[[policy]]\nname = \"it-block-noexecd-in-its-own-pod\"\naction = \"Block\"\n\n[policy.selector]\n\
               match_labels = { app = \"noexecd\" }\n\n[[policy.process.match_paths]]\npath = \"/usr/bin/noexecd\"\n";
    let policies = [("ksp-block-exec-inside-tmp.yaml", ksp.as_str()), ("own-pod.toml", own)];
    write_configmap(&cm("policies"), "2026_12_01_00_00_00.1", &policies);
    let status_volume = mounts.iter().find(|(_, at)| status_in_pod.starts_with(at)).map(|(n, _)| n.clone()).unwrap();
    let status_on_node = volumes[&status_volume].join(status_in_pod.strip_prefix(&mounts[&status_volume]).unwrap());

    // SAFETY: what the configuration marks, checked on the host's copy (same policies).
    let o = g.sb.run(&[bin().into_os_string(), "check".into(), "--config".into(), g.config.clone().into()]);
    assert_eq!(o.code(), Some(0), "{name}: noexecd check\n{o}");
    let forbidden = forbidden_devs();
    let marks = parse_marks(&o.stdout);
    for m in &marks {
        assert!(!forbidden.contains(&m.dev) && g.allowed.contains(&m.dev), "SAFETY: would mark {m:?}");
    }
    let got: Vec<(String, &str, Vec<String>)> =
        marks.iter().map(|m| (m.mount_point.clone(), m.decides.as_str(), m.protects.clone())).collect();
    assert_eq!(got, expected_marks(&g), "{name}: the filesystems the pod's configuration marks");

    // The pod, as the kubelet would run it: its containers in the manifest's order.
    let node = Node { node_name: NODE_NAME, image: &pod_image, volumes: &volumes, name: "noexecd-node-1" };
    let pod_containers = podman_run_args(template, &node);
    let podman_name = |c: &str| pod_containers.iter().find(|(n, _, _)| n == c).map(|(_, p, _)| p.clone()).unwrap();
    let (pod, holder) = (podman_name("noexecd"), podman_name("hold"));
    let pod = pod.as_str();
    for (cname, _, run) in &pod_containers {
        let mut run = run.clone();
        run.splice(2..2, ["--cgroup-parent".to_owned(), format!("/{}", g.sb.cgroup)]);
        if cname == "noexecd" {
            // The status file rewritten often enough for the test to wait on it, and a stall noticed sooner.
            run.splice(2..2, ["--env".to_owned(), format!("NOEXECD_STATUS_EVERY_MS={STATUS_EVERY_MS}")]);
            let at = run.iter().position(|a| a == "--stall-after").expect("--stall-after in the DaemonSet's args");
            run[at + 1] = STALL_AFTER_IN_TEST.to_string();
        }
        let run: Vec<&str> = run.iter().map(String::as_str).collect();
        let o = g.podman(&run);
        assert!(o.status.success(), "{name}: the pod's container {cname} starts\n{o}");
    }
    let logs = |g: &Guarded| {
        let o = g.podman(&["logs", pod]);
        format!("{}{}", o.stdout, o.stderr)
    };
    let written = poll_until(UP_WITHIN, || {
        if g.sb.host_view(&status_on_node).exists() {
            return Some(());
        }
        let state = g.inspect(pod, "{{.State.Status}}");
        assert!(state == "running", "{name}: the pod's container is {state}:\n{}", logs(&g));
        None
    });
    assert!(written.is_some(), "{name}: no status file within {UP_WITHIN:?}:\n{}", logs(&g));
    // The container's first process supervises; its child is the daemon, in the host's mount namespace.
    let (first_host, daemon) = daemon_of(&g, pod);
    g.watch_pod(g.sb.host_view(&status_on_node), daemon);
    let ns = |pid: i32| fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    assert_eq!(ns(daemon), ns(g.sb.init as i32), "{name}: the daemon is in the node's mount namespace");
    assert_ne!(ns(first_host), ns(g.sb.init as i32), "{name}: the supervisor stays in the container's");
    let verify = |g: &Guarded| {
        // The containers' own tmpfs and overlays (anonymous superblocks of the sandbox) carry the marks of the
        // container policies; the machine's own filesystems never do.
        let bad = marks_outside_but_sandbox_superblocks(daemon, &g.allowed);
        assert!(bad.is_empty(), "{name}: SAFETY: noexecd marked a filesystem outside the test: {bad:?}");
    };
    verify(&g);
    let probe = |g: &Guarded| {
        let (supervisor, _) = daemon_of(g, pod);
        http_probe(daemon_spec, "livenessProbe", supervisor)
    };
    let alive = probe(&g);
    assert_eq!(alive.as_deref(), Some("HTTP/1.1 200 OK"), "{name}: the liveness probe passes\n{}", logs(&g));
    let ready = http_probe(daemon_spec, "readinessProbe", daemon_of(&g, pod).0);
    assert_eq!(ready.as_deref(), Some("HTTP/1.1 200 OK"), "{name}: the readiness probe passes\n{}", logs(&g));

    // The node's tmp directories are guarded: the host policy, for a program of the node.
    let mut n = 0;
    for dir in g.host_tmp.clone() {
        let x = dir.join("hx");
        g.put_ok(&x);
        assert_denied_in_shell(&g.host_exec(&x), &format!("{name}: {} on the node", x.display()));
        n += 1;
        let alerts = g.expect_alerts(n, "the node's exec in its tmp");
        assert_host_alert(&alerts[n - 1], &x);
    }
    // A labelled sibling container's /var/tmp: KubeArmor's policy from the ConfigMap.
    let wp_name = "wp-1-wordpress";
    let o = g.run_container(&WORDPRESS_LABELS, &["-d", "--name", wp_name], IMAGE, &["/bin/sleep", "600"]);
    assert!(o.status.success(), "{name}: the WordPress container starts\n{o}");
    let wp = o.stdout.trim().to_owned();
    let script = "cp /bin/busybox /var/tmp/xvzf && /var/tmp/xvzf true";
    let o = g.podman(&["exec", wp_name, "/bin/sh", "-c", script]);
    assert_denied_in_shell(&o, &format!("{name}: {script} in the WordPress container"));
    n += 1;
    let alerts = g.expect_alerts(n, "the /var/tmp exec in the WordPress container");
    let image = format!("{IMAGE}@sha256:{}", g.image_id(IMAGE));
    let c = InContainer { id: &wp, image, resource: "/var/tmp/xvzf", source: Some("/bin/busybox"), pid: None };
    assert_wordpress_alert(&alerts[n - 1], &c);
    // An unselected one runs.
    let other = ["/bin/sh", "-c", "cp /bin/ok /var/tmp/x && /var/tmp/x"];
    assert_ran(&g.run_container(&OTHER_LABELS, &["--rm"], IMAGE, &other), &format!("{name}: app=other"));
    g.expect_alerts(n, "nothing from the app=other container");
    verify(&g);

    // The same alerts on the pod's stdout, one JSON line each (what `kubectl logs` shows).
    let out = stdout_alerts(&g, pod);
    assert_eq!(out, g.alerts(), "{name}: the container's stdout carries the alert log's lines\n{}", logs(&g));
    assert_eq!(get_str(&out[0], "PolicyName"), HOST_POLICY, "{}", out[0]);
    assert_wordpress_alert(&out[n - 1], &c);

    // A ConfigMap update: the policy now selects app=other. The kubelet swaps `..data`; no SIGHUP.
    let swapped = ksp.replace("app: wordpress", "app: other");
    assert_ne!(swapped, ksp);
    let policies = [("ksp-block-exec-inside-tmp.yaml", swapped.as_str()), ("own-pod.toml", own)];
    let reloads = g.watch().fresh_status().get("reloads");
    write_configmap(&cm("policies"), "2026_12_01_00_05_00.2", &policies);
    let swapped_at = Instant::now();
    g.watch().wait_status_within(RELOADED_WITHIN, format_args!("{name}: the update in force"), |s| {
        s.get("reloads") > reloads
    });
    println!("{name}: the ConfigMap update was in force {:?} after the ..data swap", swapped_at.elapsed());
    let o = g.run_container(&OTHER_LABELS, &["--rm"], IMAGE, &other);
    assert_denied_in_shell(&o, &format!("{name}: app=other after the update"));
    let o = g.podman(&["exec", wp_name, "/bin/sh", "-c", "cp /bin/ok /var/tmp/y && /var/tmp/y"]);
    assert_ran(&o, &format!("{name}: the WordPress container after the update"));
    let log = logs(&g);
    assert!(log.contains("configuration files changed: reloading") && log.contains("policy reloaded"), "{log}");
    verify(&g);

    // Fail closed across a restart of the noexecd container: the hold container keeps the group.
    let up = |g: &Guarded| wait_for_log(g, pod, "fanotify group held by noexecd hold", UP_WITHIN);
    assert!(up(&g), "{name}: the daemon handed the group to the hold container\n{}", logs(&g));
    let holder_pid = host_pid_of(&g, g.inspect(&holder, "{{.State.Pid}}").parse().unwrap());
    // Whatever fails from here, killing the holder (and the daemon) lets every waiting exec through.
    let release = ReleaseOnDrop(vec![holder_pid]);
    let x = g.host_tmp[0].join("hx");
    // An allowed program on a marked filesystem (the container storage's): it waits too, then runs. (Not run
    // before: the exec cache would exempt it.)
    let allowed = g.sb.podman_root.parent().unwrap().join("ok-waits");
    g.put_ok(&allowed);
    let n_before = g.alerts().len();
    let hold_log = |g: &Guarded| {
        let o = g.podman(&["logs", &holder]);
        format!("{}{}", o.stdout, o.stderr)
    };
    let resumed_count = |g: &Guarded| logs(g).matches("queued exec attempts are decided now").count();

    // kill -9 of the daemon: the node's execs wait (the supervisor held back here, so that they must), and the
    // supervisor forks it again at once, without a restart of the container.
    let resumed_before = resumed_count(&g);
    kill(Pid::from_raw(first_host), Signal::SIGSTOP).unwrap();
    kill(Pid::from_raw(daemon), Signal::SIGKILL).unwrap();
    let denied = exec_in_background(&g, &x, "denied-1");
    let ok = exec_in_background(&g, &allowed, "allowed-1");
    // Execs that must stay stalled while no daemon runs: only the clock can say they did for a while.
    thread::sleep(Duration::from_secs(1));
    assert_eq!(exec_status(&g, &denied), None, "{name}: {} ran while the daemon was down", x.display());
    assert_eq!(exec_status(&g, &ok), None, "{name}: {} did not wait for the daemon", allowed.display());
    let woken = Instant::now();
    kill(Pid::from_raw(first_host), Signal::SIGCONT).unwrap();
    let denied = wait_exec(&g, &denied);
    let crash_window = woken.elapsed();
    assert_denied_in_shell(&denied, &format!("{name}: {} that waited across the crash", x.display()));
    assert_ran(&wait_exec(&g, &ok), &format!("{name}: {} that waited across the crash", allowed.display()));
    println!(
        "{name}: kill -9 of the daemon: the supervisor's new daemon decided the waiting execs {crash_window:?} after the supervisor could act"
    );
    assert!(crash_window < Duration::from_secs(3), "{name}: the crashed daemon back in {crash_window:?}\n{}", logs(&g));
    assert_eq!(g.inspect(pod, "{{.State.Status}}"), "running", "{name}: the container was not restarted");
    let daemon = next_daemon_of(&g, pod, daemon);
    g.watch_pod(g.sb.host_view(&status_on_node), daemon);
    assert!(
        resumed_count(&g) > resumed_before,
        "{name}: the new daemon resumed the held group\n{}\n--- hold ---\n{}",
        logs(&g),
        hold_log(&g)
    );
    let alerts = g.expect_alerts(n_before + 1, "the exec that waited across the crash");
    assert_host_alert(&alerts[n_before], &x);
    assert!(
        logs(&g).contains("resuming the fanotify group kept across the daemon's end"),
        "{name}: resumed\n{}",
        logs(&g)
    );

    // A stalled daemon (SIGSTOP, a hung decision thread's stand-in): the supervisor's watchdog replaces it,
    // and the execs waiting on the node are decided by the replacement, with no exec into any container.
    g.watch().fresh_status();
    let resumed_before = resumed_count(&g);
    kill(Pid::from_raw(daemon), Signal::SIGSTOP).unwrap();
    let stalled_at = Instant::now();
    let denied = exec_in_background(&g, &x, "denied-stalled");
    let denied = wait_exec(&g, &denied);
    let stall_window = stalled_at.elapsed();
    assert_denied_in_shell(&denied, &format!("{name}: {} that waited on the stalled daemon", x.display()));
    println!(
        "{name}: SIGSTOP of the daemon: replaced, the waiting exec decided {stall_window:?} after the stall (--stall-after {STALL_AFTER_IN_TEST})"
    );
    assert!(
        stall_window >= Duration::from_secs(STALL_AFTER_IN_TEST)
            && stall_window < Duration::from_secs(STALL_AFTER_IN_TEST + 5),
        "{name}: the stalled daemon replaced in {stall_window:?}\n{}",
        logs(&g)
    );
    let daemon = next_daemon_of(&g, pod, daemon);
    g.watch_pod(g.sb.host_view(&status_on_node), daemon);
    assert!(resumed_count(&g) > resumed_before, "{name}: the replacement resumed the held group\n{}", logs(&g));
    assert!(logs(&g).contains("longer than --stall-after"), "{name}: the watchdog's kill is logged\n{}", logs(&g));
    g.expect_alerts(n_before + 2, "the exec that waited on the stalled daemon");
    assert_eq!(g.inspect(pod, "{{.State.Status}}"), "running", "{name}: the container was not restarted");
    let log = logs(&g);
    assert!(up(&g), "{name}: the new daemon hands the group over again\n{}", logs(&g));
    let alive = probe(&g);
    assert_eq!(alive.as_deref(), Some("HTTP/1.1 200 OK"), "{name}: the liveness probe passes after the restarts");
    let bad = marks_outside_but_sandbox_superblocks(daemon, &g.allowed);
    assert!(bad.is_empty(), "{name}: SAFETY: noexecd marked a filesystem outside the test: {bad:?}");

    // SIGTERM of the noexecd container alone (a failed liveness probe: a restart follows) keeps it held...
    let o = g.podman(&["stop", "-t", "20", pod]);
    assert!(o.status.success(), "{name}: podman stop\n{o}");
    assert_eq!(g.inspect(pod, "{{.State.ExitCode}}"), "0", "{name}: the guard stopped cleanly\n{}", logs(&g));
    assert!(fs::metadata(format!("/proc/{daemon}")).is_err(), "{name}: the daemon is gone");
    let waiting = exec_in_background(&g, &x, "denied-2");
    // An exec that must stay stalled while the group is held and no daemon runs: the clock says for how long.
    thread::sleep(Duration::from_secs(1));
    assert_eq!(exec_status(&g, &waiting), None, "{name}: {} ran after SIGTERM of the daemon", x.display());
    // ... and deleting the pod stops the holder too: its exit releases the group, the waiting exec runs.
    let o = g.podman(&["stop", "-t", "20", &holder]);
    assert!(o.status.success(), "{name}: podman stop of the holder\n{o}");
    assert_eq!(g.inspect(&holder, "{{.State.ExitCode}}"), "0", "{name}: the holder stopped cleanly");
    assert_ran(&wait_exec(&g, &waiting), &format!("{name}: the exec that waited, once the pod is gone"));
    assert_ran(&g.host_exec(&x), &format!("{name}: the node's tmp once the pod is stopped"));
    drop(release);
    let _ = g.podman(&["rm", "-f", "-t", "0", wp_name]);
    let _ = g.podman(&["rm", "-f", "-t", "0", pod]);
    let _ = g.podman(&["rm", "-f", "-t", "0", &holder]);
    println!("{name}: the pod's log:\n{log}");
}

/// The node's `/tmp` is its own tmpfs; podman's storage on another.
#[test]
fn pod_template_guards_the_node_tmp_tmpfs() {
    pod_template_guards_the_node(&test_name!(), SandboxLayout::TmpTmpfs);
}

/// `/tmp` and the container storage share one ext4 filesystem.
#[test]
fn pod_template_guards_the_node_ext4_root() {
    pod_template_guards_the_node(&test_name!(), SandboxLayout::Ext4Root);
}
