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
    pub(crate) fn new(id: String, runtime: Runtime) -> Self {
        ContainerInfo { id, runtime, name: None, image: None, labels: BTreeMap::new(), namespace: None, pod: None }
    }

    pub(crate) fn into_container(self, init_pid: i32) -> Container {
        let ContainerInfo { id, runtime, name, image, labels, namespace, pod } = self;
        Container { id, runtime, name, image, labels, namespace, pod, init_pid }
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
