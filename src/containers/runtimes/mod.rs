//! The container runtimes noexecd reads, one file each (what each must provide: [`ContainerRuntime`]).
//! Adding a runtime is a file here and a line in [`RUNTIMES`].

pub(crate) mod containerd;
pub(crate) mod containerd_api;
pub(crate) mod crio;
pub(crate) mod docker;
pub(crate) mod podman;
pub(crate) mod services;

use std::collections::BTreeMap;

use super::runtime::{ContainerRuntime, Runtime, Source, Sources};

/// Every runtime, in the order they are asked: a container two runtimes report (dockerd on the host's
/// containerd) is listed as the first one tells it, and a cgroup component two runtimes' forms match is the
/// first one's.
pub static RUNTIMES: [&dyn ContainerRuntime; 4] =
    [&docker::Docker, &podman::Podman, &containerd::Containerd, &crio::CriO];

/// Every runtime as a [`Runtime`] handle.
pub fn all() -> impl Iterator<Item = Runtime> {
    RUNTIMES.iter().map(|r| Runtime(*r))
}

/// Every runtime's [`Source`]s, in registry order.
pub fn sources() -> impl Iterator<Item = &'static Source> {
    RUNTIMES.iter().flat_map(|r| r.sources().iter())
}

/// The runtimes' own defaults, `/proc` for pids.
impl Default for Sources {
    fn default() -> Self {
        let paths: BTreeMap<&'static str, std::path::PathBuf> = sources().map(|s| (s.key, s.default.into())).collect();
        Sources { paths, configured: std::collections::BTreeSet::new(), proc: "/proc".into() }
    }
}

impl Sources {
    /// Every source at `dir/<key>` (for tests: runtimes found nowhere, or each at a place of its own).
    #[cfg(test)]
    pub fn under(dir: &std::path::Path) -> Self {
        let paths = sources().map(|s| (s.key, dir.join(s.key))).collect();
        let configured = sources().map(|s| s.key).collect();
        Sources { paths, configured, proc: dir.join("proc") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys_are_unique() {
        let mut names: Vec<&str> = all().map(Runtime::name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RUNTIMES.len());
        let mut keys: Vec<&str> = sources().map(|s| s.key).collect();
        let n = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), n, "a [containers] key belongs to one runtime");
        assert!(sources().all(|s| s.default.starts_with('/')));
    }
}
