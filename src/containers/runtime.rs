//! What a container runtime must provide, and what it reports. Every runtime is one file under `runtimes/`
//! implementing [`ContainerRuntime`], listed once in `runtimes::RUNTIMES`; nothing else names a runtime:
//! the cgroup parser, the `[containers]` keys, the flags of `noexecd containers`, the layer roots marked for
//! container policies and the alert's `describe` all come from that list.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A container runtime: the one place that says what adding a runtime takes.
///
/// - [`name`](Self::name): how it is named on the command line, in `noexecd containers`' output, and in
///   `explain` and `check`.
/// - [`cgroup_forms`](Self::cgroup_forms): the cgroup path components that name its containers (in
///   `/proc/PID/cgroup`), which is how a process's container, and its runtime, are found.
/// - [`sources`](Self::sources): where its records (and its image layers) are; each one is a `[containers]`
///   key of the configuration and, where it says so, a flag of `noexecd containers`.
/// - [`discover`](Self::discover): its running containers with the facts a policy selects them by, best
///   effort: a runtime that is not there, or says something odd, gives nothing.
/// - [`describe`](Self::describe): one container's facts for an alert, from files only, after the answer:
///   an alert never waits on a runtime's socket.
pub trait ContainerRuntime: Sync {
    fn name(&self) -> &'static str;
    fn cgroup_forms(&self) -> &'static [CgroupForm];
    fn sources(&self) -> &'static [Source];
    /// The running containers, reading its records where `sources` says they are; a container's first pid
    /// that the runtime does not tell comes from `first_pids` (one scan of `/proc`, made only if asked).
    fn discover(&self, sources: &Sources, first_pids: &mut dyn FirstPids) -> Vec<Container>;
    /// Container `id`'s facts from the files the runtime keeps below `root` (`/` on the host) at its default
    /// places, running or not; `None` when it has no record of it.
    fn describe(&self, root: &Path, id: &str) -> Option<ContainerInfo>;
    /// How its instances on a node are found without configuration: its service processes and the places
    /// distributions put it (`found`); `None`: only where `sources` says.
    fn finding(&self) -> Option<&'static Finding> {
        None
    }
}

/// How a runtime's instances are found on a node: each running service, then the places distributions
/// are known to put it, then its own defaults.
pub struct Finding {
    /// The `comm` of its service processes (`/proc/PID/comm`).
    pub comms: &'static [&'static str],
    /// The [`Source`] key that tells one instance from another: where its records are.
    pub identity: &'static str,
    /// Its places from a service's arguments (argv without argv\[0\]) and the configuration files they name,
    /// read through `read` (a path as the service sees it); only the keys it tells.
    pub from_service: ServicePlaces,
    /// Where distributions put it.
    pub known: &'static [KnownPlace],
}

/// A runtime's places from a service's arguments, reading the files they name with the function given.
pub type ServicePlaces = fn(args: &[String], read: &dyn Fn(&Path) -> Option<String>) -> Vec<(&'static str, PathBuf)>;

/// A distribution's place for a runtime.
pub struct KnownPlace {
    pub distribution: &'static str,
    /// `(key, path)` of each [`Source`] it sets.
    pub places: &'static [(&'static str, &'static str)],
    /// Paths that all exist where it runs (two distributions may share a socket).
    pub present_if: &'static [&'static str],
}

/// A cgroup path component that names a container of a runtime. A component's `.scope` suffix is dropped
/// first; the id is a full container id (64 lower-case hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupForm {
    /// `<prefix><id>`: systemd's scopes (`docker-<id>.scope`, `libpod-<id>.scope`).
    Prefixed(&'static str),
    /// `<id>` directly below a component named so (`/docker/<id>`, containerd's `/<namespace>/<id>`).
    Below(&'static str),
    /// `<id>` anywhere below a `kubepods*` component, where no other form matched: the kubelet's cgroupfs
    /// layout, which does not say which runtime.
    UnderKubepods,
}

/// One place a runtime keeps its records or layers: a `[containers]` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// The `[containers]` key.
    pub key: &'static str,
    /// The runtime's own default.
    pub default: &'static str,
    /// What it is, for `--help`.
    pub about: &'static str,
    /// `DIR` or `PATH`, for `--help`.
    pub value_name: &'static str,
    /// Its flag of `noexecd containers` (the key with `-` for `_`), if it has one: that command reads records,
    /// never layers.
    pub flag: Option<&'static str>,
    /// Its filesystem holds the runtime's image layers: marked when container policies exist, as every exec
    /// in a container raises its event there.
    pub layers: bool,
}

/// The first pid of a container the runtime does not tell.
pub trait FirstPids {
    /// The lowest pid whose cgroup names container `id`.
    fn first_pid(&mut self, id: &str) -> Option<i32>;
}

/// Where each runtime keeps its records: one path per [`Source`] key of every runtime, defaults filled in
/// (`Sources::default`). A path that does not exist turns that part of a runtime off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub(crate) paths: BTreeMap<&'static str, PathBuf>,
    /// The keys set by configuration ([`Sources::set`]): a runtime with one of them is read only there.
    pub(crate) configured: std::collections::BTreeSet<&'static str>,
    /// The `/proc` whose pids are reported, and scanned where a runtime does not tell a container's pid.
    pub proc: PathBuf,
}

impl Sources {
    /// The path of `key`; an empty path (which no runtime finds anything at) for a key no runtime has.
    pub fn get(&self, key: &str) -> &Path {
        self.paths.get(key).map_or(Path::new(""), PathBuf::as_path)
    }

    /// Sets `key` (one of the runtimes' [`Source`] keys); `false` if no runtime has it.
    pub fn set(&mut self, key: &str, path: PathBuf) -> bool {
        match self.paths.get_mut(key) {
            Some(slot) => {
                *slot = path;
                if let Some((k, _)) = self.paths.get_key_value(key) {
                    self.configured.insert(*k);
                }
                true
            }
            None => false,
        }
    }

    /// Whether configuration set `key`.
    pub fn is_configured(&self, key: &str) -> bool {
        self.configured.contains(key)
    }

    /// Every key with its path, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        self.paths.iter().map(|(k, p)| (*k, p.as_path()))
    }
}

/// A runtime of the registry: a copyable handle, compared by name.
#[derive(Clone, Copy)]
pub struct Runtime(pub &'static dyn ContainerRuntime);

impl Runtime {
    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

impl PartialEq for Runtime {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Runtime {}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A container running on this host: what the host tells about it (the facts a policy selects it by, and
/// an alert's container fields), and its first process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub info: ContainerInfo,
    /// The container's first process, as a pid of the `/proc` that [`Sources::proc`] names.
    pub init_pid: i32,
}

impl Container {
    /// The labels as KubeArmor's alert `Labels` field writes them: `k=v,...`, sorted.
    pub fn display_labels(&self) -> String {
        display_labels(&self.info.labels)
    }
}

/// What the host tells about a container: the facts a policy selects it by, and the fields of a KubeArmor
/// container alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The full id (`ContainerID`): 64 lower-case hex digits, as the runtime and the cgroup name it.
    pub id: String,
    pub runtime: Runtime,
    /// `ContainerName`: the Kubernetes container name (`io.kubernetes.container.name`) where there is one,
    /// else the runtime's name for it (docker's without its `/`, podman's first name).
    pub name: Option<String>,
    /// `ContainerImage`: the image as the container was started from it, with `@sha256:<id>` where the
    /// runtime tells the image id (docker, podman, CRI-O) or, through containerd's API, the digest its image
    /// record points at.
    pub image: Option<String>,
    /// The container's labels, and for a pod the pod's labels where the runtime has them (see the module
    /// docs); without KubeArmor's dropped keys. [`display_labels`] writes the alert's `Labels`.
    pub labels: BTreeMap<String, String>,
    /// `NamespaceName`: `io.kubernetes.pod.namespace`, or the CRI's sandbox namespace.
    pub namespace: Option<String>,
    /// `PodName`: `io.kubernetes.pod.name`, the CRI's sandbox name, or podman's pod.
    pub pod: Option<String>,
    /// `Owner`: the pod's controller, as its labels and name tell it ([`Owner::of_pod`]).
    pub owner: Option<Owner>,
}

impl ContainerInfo {
    pub(crate) fn new(id: String, runtime: Runtime) -> Self {
        ContainerInfo {
            id,
            runtime,
            name: None,
            image: None,
            labels: BTreeMap::new(),
            namespace: None,
            pod: None,
            owner: None,
        }
    }

    pub(crate) fn into_container(self, init_pid: i32) -> Container {
        Container { info: self, init_pid }
    }
}

/// The workload a pod belongs to, as KubeArmor's alert `Owner` names it: the controller at the top of the
/// pod's owner chain (a ReplicaSet's Deployment, a Job's CronJob), or the pod itself when it has none
/// known. Derived without the API server, from what the kubelet gives the runtime: the pod's name and the
/// labels each controller puts on its pods (the limits are in docs/alerts.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// `Deployment`, `DaemonSet`, `StatefulSet`, `Job`, `CronJob`; empty for the pod itself (KubeArmor's
    /// informer hands it pods without their kind).
    pub kind: &'static str,
    pub name: String,
    pub namespace: String,
}

impl Owner {
    /// The owner of pod `pod` in `namespace` with `labels` (all of them, the rollout hashes included):
    /// - `job-name`: a Job, or a CronJob's when the Job's name is `<cronjob>-<minutes>` (the scheduled
    ///   time in minutes since 1970, eight digits);
    /// - `controller-revision-hash` with `statefulset.kubernetes.io/pod-name`: a StatefulSet, the pod name
    ///   without its `-<ordinal>`;
    /// - `controller-revision-hash` with `pod-template-generation`: a DaemonSet, the pod name without its
    ///   `-<suffix>` of five;
    /// - `pod-template-hash`: a Deployment, the pod name without `-<hash>-<suffix>`;
    /// - none of these, or a name without the form its controller gives: the pod itself.
    pub fn of_pod(pod: &str, namespace: &str, labels: &BTreeMap<String, String>) -> Owner {
        let label = |k: &str| labels.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let owner =
            |kind: &'static str, name: &str| Owner { kind, name: name.to_owned(), namespace: namespace.to_owned() };
        if let Some(job) = label("job-name").or_else(|| label("batch.kubernetes.io/job-name")) {
            return match cronjob_of(job) {
                Some(cronjob) => owner("CronJob", cronjob),
                None => owner("Job", job),
            };
        }
        let derived = if label("controller-revision-hash").is_some() {
            if label("statefulset.kubernetes.io/pod-name").is_some() {
                strip_suffix(pod, |s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .map(|n| ("StatefulSet", n))
            } else if label("pod-template-generation").is_some() {
                strip_suffix(pod, is_generated_suffix).map(|n| ("DaemonSet", n))
            } else {
                None
            }
        } else if let Some(hash) = label("pod-template-hash") {
            strip_suffix(pod, is_generated_suffix)
                .and_then(|rs| rs.strip_suffix(hash)?.strip_suffix('-'))
                .filter(|d| !d.is_empty())
                .map(|d| ("Deployment", d))
        } else {
            None
        };
        match derived {
            Some((kind, name)) => owner(kind, name),
            None => owner("", pod),
        }
    }
}

/// `name` without its last `-<suffix>`, when `suffix` is what `ok` accepts and something is left before it.
fn strip_suffix(name: &str, ok: impl Fn(&str) -> bool) -> Option<&str> {
    let (base, suffix) = name.rsplit_once('-')?;
    (ok(suffix) && !base.is_empty()).then_some(base)
}

/// The five characters Kubernetes appends to a `generateName` (consonants and digits, lower case).
fn is_generated_suffix(s: &str) -> bool {
    s.len() == 5 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The CronJob of a Job named `<cronjob>-<minutes since 1970>`, as the CronJob controller names them.
fn cronjob_of(job: &str) -> Option<&str> {
    strip_suffix(job, |s| s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()))
}

/// Labels KubeArmor leaves out: they change with every rollout of a Deployment, DaemonSet or StatefulSet,
/// and would make a container's identity change with them.
pub const DROPPED_LABELS: [&str; 3] = ["pod-template-hash", "controller-revision-hash", "pod-template-generation"];

/// The prefix of the labels the kubelet adds to a pod's own (`io.kubernetes.pod.name`, ...) and the keys
/// container runtimes write under it: not the pod's labels, which is all KubeArmor's alert shows.
const KUBELET_PREFIX: &str = "io.kubernetes.";

/// KubeArmor's alert `Labels` field: the pod's (or the container's) own labels, `k=v,...` sorted by key,
/// without [`DROPPED_LABELS`] and without the kubelet's `io.kubernetes.*`. A policy still selects by the
/// kubelet's labels (see [`display_labels`]); only the alert leaves them out.
pub fn alert_labels(labels: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (k, v) in labels.iter().filter(|(k, _)| !DROPPED_LABELS.contains(&k.as_str()) && !k.starts_with(KUBELET_PREFIX))
    {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// `k=v,...` sorted by key, without [`DROPPED_LABELS`]: the labels a policy selects by.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn owner_of(pod: &str, pairs: &[(&str, &str)]) -> (&'static str, String) {
        let o = Owner::of_pod(pod, "ns", &labels(pairs));
        assert_eq!(o.namespace, "ns");
        (o.kind, o.name)
    }

    #[test]
    fn owners_from_what_each_controller_writes_on_its_pods() {
        let deployment =
            owner_of("wordpress-fb448db97-wj7n7", &[("app", "wordpress"), ("pod-template-hash", "fb448db97")]);
        assert_eq!(deployment, ("Deployment", "wordpress".into()));
        let dashed = owner_of("my-web-app-6d4cf56db6-2xq9z", &[("pod-template-hash", "6d4cf56db6")]);
        assert_eq!(dashed, ("Deployment", "my-web-app".into()));
        let daemonset = owner_of(
            "fluent-bit-7xk2p",
            &[("controller-revision-hash", "5c9f8b7d6"), ("pod-template-generation", "3"), ("app", "fluent-bit")],
        );
        assert_eq!(daemonset, ("DaemonSet", "fluent-bit".into()));
        let statefulset = owner_of(
            "mysql-12",
            &[("controller-revision-hash", "mysql-7d8c9"), ("statefulset.kubernetes.io/pod-name", "mysql-12")],
        );
        assert_eq!(statefulset, ("StatefulSet", "mysql".into()));
        let job = owner_of("migrate-db-x7k2p", &[("job-name", "migrate-db"), ("controller-uid", "1-2-3")]);
        assert_eq!(job, ("Job", "migrate-db".into()));
        let newer_job = owner_of("migrate-db-x7k2p", &[("batch.kubernetes.io/job-name", "migrate-db")]);
        assert_eq!(newer_job, ("Job", "migrate-db".into()));
        let cronjob = owner_of("backup-29383920-q5v2n", &[("job-name", "backup-29383920")]);
        assert_eq!(cronjob, ("CronJob", "backup".into()));
    }

    #[test]
    fn a_pod_without_a_known_controller_is_its_own_owner() {
        assert_eq!(owner_of("debug", &[("app", "debug")]), ("", "debug".into()));
        // The hash does not appear where the ReplicaSet puts it (a name shortened by `generateName`).
        assert_eq!(
            owner_of("wordpress-fb448db97wj7n7", &[("pod-template-hash", "fb448db97")]),
            ("", "wordpress-fb448db97wj7n7".into())
        );
        assert_eq!(owner_of("web-abc-wj7n7", &[("pod-template-hash", "fb448db97")]), ("", "web-abc-wj7n7".into()));
        // A revision hash alone says neither DaemonSet nor StatefulSet.
        assert_eq!(owner_of("x-wj7n7", &[("controller-revision-hash", "1")]), ("", "x-wj7n7".into()));
        // A StatefulSet pod's name ends in its ordinal; anything else is not one.
        let odd =
            owner_of("db-a", &[("controller-revision-hash", "1"), ("statefulset.kubernetes.io/pod-name", "db-a")]);
        assert_eq!(odd, ("", "db-a".into()));
        // Empty label values tell nothing.
        assert_eq!(owner_of("p-wj7n7", &[("job-name", "")]), ("", "p-wj7n7".into()));
    }

    #[test]
    fn alert_labels_are_the_pods_own() {
        let all = labels(&[
            ("app", "wordpress"),
            ("io.kubernetes.container.name", "wordpress"),
            ("io.kubernetes.pod.name", "wordpress-fb448db97-wj7n7"),
            ("io.kubernetes.pod.namespace", "wordpress-mysql"),
            ("io.kubernetes.pod.uid", "2f9c1d4e"),
            ("pod-template-hash", "fb448db97"),
            ("controller-revision-hash", "1"),
            ("pod-template-generation", "2"),
            ("tier", "frontend"),
        ]);
        assert_eq!(alert_labels(&all), "app=wordpress,tier=frontend");
        // What a policy selects by keeps the kubelet's labels.
        assert!(display_labels(&all).contains("io.kubernetes.pod.namespace=wordpress-mysql"));
        assert_eq!(alert_labels(&BTreeMap::new()), "");
    }
}
