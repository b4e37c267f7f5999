//! The runtime instances of this node, found by what runs there rather than configured: for each runtime of
//! the registry, every service process of it in our mount namespace (its command line and the configuration
//! file that names: `runtimes::services`), then the places Kubernetes distributions put it (k3s, RKE2, k0s,
//! microk8s, OpenShift) where they exist, then its own defaults (a kubeadm node's). Several instances of one
//! runtime (a node's containerd and k3s's) are all read. A runtime with a `[containers]` key is read only
//! where the configuration says.
//!
//! The process scan reads `/proc/PID/comm` of every process and the command line of the few that are a
//! runtime's service; it is kept for [`RESCAN`], as a refresh every 500 ms would otherwise read every
//! process's `comm` each time.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::record::read_small;
use super::runtime::{Runtime, Sources};
use super::runtimes;

/// How long a scan of the service processes is used before it is made again.
pub const RESCAN: Duration = Duration::from_secs(5);

/// How a runtime instance was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    /// `[containers]` (or a flag of `noexecd containers`) names its places.
    Configured,
    /// Its service process, by pid, from its command line and configuration file.
    Process(i32),
    /// The places a distribution puts it, which exist here.
    Known(&'static str),
    /// The runtime's own defaults (upstream's, as kubeadm sets a node up).
    Default,
}

impl fmt::Display for How {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            How::Configured => f.write_str("configured"),
            How::Process(pid) => write!(f, "process {pid}"),
            How::Known(d) => write!(f, "known path ({d})"),
            How::Default => f.write_str("default path"),
        }
    }
}

/// One runtime instance: where its records are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub runtime: Runtime,
    pub how: How,
    /// Every key as the whole registry has them, this runtime's set to this instance's places.
    pub sources: Sources,
}

impl Instance {
    /// This runtime's places, by key.
    pub fn places(&self) -> Vec<(&'static str, &Path)> {
        self.runtime.0.sources().iter().map(|s| (s.key, self.sources.get(s.key))).collect()
    }

    /// Its records are there (the place that tells instances apart exists).
    pub fn present(&self) -> bool {
        match self.runtime.0.finding() {
            Some(f) => self.sources.get(f.identity).exists(),
            None => self.runtime.0.sources().iter().any(|s| self.sources.get(s.key).exists()),
        }
    }
}

/// A service process of a runtime: `(runtime, pid, its places)`.
type Service = (Runtime, i32, Vec<(&'static str, PathBuf)>);

struct Scan {
    proc: PathBuf,
    at: Instant,
    services: Vec<Service>,
}

static SCANNED: Mutex<Option<Scan>> = Mutex::new(None);

/// Every runtime instance `sources` leads to, in registry order: a configured runtime once, as configured;
/// any other from its services, known places and defaults, each place of records once.
pub fn instances(sources: &Sources) -> Vec<Instance> {
    // Scanned only if some runtime is not configured.
    let mut services_found: Option<Vec<Service>> = None;
    let mut out = Vec::new();
    for runtime in runtimes::all() {
        let keys = runtime.0.sources();
        if keys.iter().any(|s| sources.is_configured(s.key)) {
            out.push(Instance { runtime, how: How::Configured, sources: sources.clone() });
            continue;
        }
        let Some(finding) = runtime.0.finding() else {
            out.push(Instance { runtime, how: How::Default, sources: sources.clone() });
            continue;
        };
        let mut candidates: Vec<(How, Vec<(&'static str, PathBuf)>)> = Vec::new();
        for (r, pid, places) in services_found.get_or_insert_with(|| services(&sources.proc)).iter() {
            if *r == runtime {
                candidates.push((How::Process(*pid), places.clone()));
            }
        }
        for known in finding.known {
            if known.present_if.iter().all(|p| Path::new(p).exists()) {
                let places = known.places.iter().map(|(k, p)| (*k, PathBuf::from(p))).collect();
                candidates.push((How::Known(known.distribution), places));
            }
        }
        candidates.push((How::Default, Vec::new()));
        let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
        for (how, places) in candidates {
            let mut s = sources.clone();
            for (key, path) in places {
                if keys.iter().any(|k| k.key == key) {
                    s.set(key, path);
                }
            }
            s.configured.clear();
            s.configured.extend(sources.configured.iter().copied());
            if seen.insert(s.get(finding.identity).to_path_buf()) {
                out.push(Instance { runtime, how, sources: s });
            }
        }
    }
    out
}

/// The directories whose filesystems hold container layers, of every instance, each once.
pub fn layer_roots(sources: &Sources) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for instance in instances(sources) {
        for s in instance.runtime.0.sources().iter().filter(|s| s.layers) {
            let p = instance.sources.get(s.key).to_path_buf();
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// The service processes below `proc`, from a scan at most [`RESCAN`] old.
fn services(proc: &Path) -> Vec<Service> {
    let lock = || SCANNED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(scan) = lock().as_ref()
        && scan.proc == proc
        && scan.at.elapsed() < RESCAN
    {
        return scan.services.clone();
    }
    // Scanned with the lock released: a caller in a hurry never waits on another's reading of /proc.
    let services = scan(proc);
    *lock() = Some(Scan { proc: proc.to_path_buf(), at: Instant::now(), services: services.clone() });
    services
}

/// Every runtime service process below `proc` that shares our mount namespace (a path it names is then a
/// path of ours), with the places its command line and configuration file give.
fn scan(proc: &Path) -> Vec<Service> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(proc) else { return out };
    let own_namespace = std::fs::read_link(proc.join("self/ns/mnt")).ok();
    let mut pids: Vec<i32> =
        entries.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok())).collect();
    pids.sort_unstable();
    for pid in pids {
        let dir = proc.join(pid.to_string());
        let Some(comm) = read_small(&dir.join("comm")) else { continue };
        let comm = comm.trim_end_matches('\n');
        let Some(runtime) = runtimes::all().find(|r| r.0.finding().is_some_and(|f| f.comms.contains(&comm))) else {
            continue;
        };
        if std::fs::read_link(dir.join("ns/mnt")).ok() != own_namespace {
            tracing::debug!(pid, runtime = runtime.name(), "runtime service in another mount namespace: not read");
            continue;
        }
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else { continue };
        let args: Vec<String> =
            cmdline.split(|b| *b == 0).skip(1).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let root = dir.join("root");
        let read = |p: &Path| read_small(&root.join(p.strip_prefix("/").unwrap_or(p)));
        let Some(finding) = runtime.0.finding() else { continue };
        let places = (finding.from_service)(&args, &read);
        // A podman that is no API service is no instance.
        if places.is_empty() && finding.identity == "podman_socket" {
            continue;
        }
        out.push((runtime, pid, places));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn services_are_read_from_their_command_lines_and_config_files() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        let root = dir.path().join("rootfs");
        std::os::unix::fs::symlink(&root, dir.path().join("root-link")).unwrap();
        let service = |pid: i32, comm: &str, argv: &[&str]| {
            let d = proc.join(pid.to_string());
            write(&d.join("comm"), &format!("{comm}\n"));
            let mut cmdline = argv.join("\0");
            cmdline.push('\0');
            write(&d.join("cmdline"), &cmdline);
            std::os::unix::fs::symlink(&root, d.join("root")).unwrap();
        };
        service(10, "containerd", &["/usr/bin/containerd", "--config", "/etc/k.toml"]);
        service(11, "containerd-shim", &["containerd-shim-runc-v2", "-id", "x"]);
        service(12, "dockerd", &["/usr/bin/dockerd", "--data-root=/srv/docker"]);
        service(13, "podman", &["podman", "run", "x"]);
        write(&root.join("etc/k.toml"), "state = \"/run/k\"\n[grpc]\naddress = \"/run/k/k.sock\"\n");
        let found = scan(&proc);
        let names: Vec<(&str, i32)> = found.iter().map(|(r, pid, _)| (r.name(), *pid)).collect();
        assert_eq!(names, [("containerd", 10), ("docker", 12)]);
        assert_eq!(
            found[0].2,
            [("containerd_state", PathBuf::from("/run/k")), ("containerd_socket", PathBuf::from("/run/k/k.sock"))]
        );

        // Each found instance has the runtime's defaults where its service says nothing, and a runtime
        // with a configured key is read only there.
        let mut sources = Sources { proc: proc.clone(), ..Sources::default() };
        sources.set("storage", dir.path().join("storage"));
        let all = instances(&sources);
        let containerd: Vec<&Instance> = all.iter().filter(|i| i.runtime.name() == "containerd").collect();
        assert_eq!(containerd[0].how, How::Process(10));
        assert_eq!(containerd[0].sources.get("containerd_root"), Path::new("/var/lib/containerd"));
        assert_eq!(containerd[0].sources.get("containerd_state"), Path::new("/run/k"));
        assert_eq!(containerd.last().unwrap().how, How::Default);
        assert_eq!(containerd.last().unwrap().sources.get("containerd_state"), Path::new("/run/containerd"));
        let crio: Vec<&Instance> = all.iter().filter(|i| i.runtime.name() == "cri-o").collect();
        assert_eq!(crio.len(), 1);
        assert_eq!(crio[0].how, How::Configured);
        let docker: Vec<&Instance> = all.iter().filter(|i| i.runtime.name() == "docker").collect();
        assert_eq!(docker[0].sources.get("docker_root"), Path::new("/srv/docker"));
        assert!(layer_roots(&sources).contains(&PathBuf::from("/srv/docker")));
        assert!(layer_roots(&sources).contains(&dir.path().join("storage")));
    }
}
