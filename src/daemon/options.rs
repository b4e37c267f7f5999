//! How `noexecd run` is started beyond its configuration file: the settings a container deployment needs
//! (a Kubernetes DaemonSet passes them as arguments and the downward API's environment).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::policy::{self, Config};
use crate::sys::ContainerRoot;

#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    /// Join the mount namespace of pid 1 (the host's init, with the host's pid namespace) before anything
    /// else: every path the daemon marks, names and reads is then the host's, except the configuration,
    /// its policy directory and the status file, which stay the container's.
    pub host_namespace: bool,
    /// Reload when the configuration file or a file of the policy directory changes (a Kubernetes
    /// ConfigMap update swaps a `..data` symlink); without it only SIGHUP reloads.
    pub watch_config: bool,
    /// Write the status line here every few seconds while the decision thread keeps waking up; `noexecd
    /// status` (a liveness probe) fails when it gets old.
    pub status_file: Option<PathBuf>,
    /// Copy every alert line to stdout, beside `alert_log`.
    pub alert_stdout: bool,
    /// `HostName` and `ClusterName` of every alert, over the configuration's `host_name` and
    /// `cluster_name` (a DaemonSet gives the node name through the downward API).
    pub host_name: Option<String>,
    pub cluster_name: Option<String>,
    /// `noexecd hold`'s socket (a path of the daemon's own filesystem, like the status file): the group is
    /// handed to it and taken back from it, as systemd's FD store does on a host.
    pub hold_socket: Option<PathBuf>,
    /// Serve KubeArmor's gRPC LogService here (`alert::grpc`).
    pub grpc: Option<std::net::SocketAddr>,
    /// With `host_namespace`: the supervisor kills and forks the daemon again when the status file is older
    /// than this (a hung decision thread or control loop, a stopped process).
    pub stall_after: Option<Duration>,
    /// With `host_namespace`: the supervisor serves an HTTP liveness and readiness endpoint here (the kubelet's
    /// `httpGet` probes).
    pub health_listen: Option<SocketAddr>,
}

/// Where the daemon finds its container's files once it runs in the host's mount namespace.
#[derive(Debug, Default)]
pub(crate) struct Files {
    root: Option<ContainerRoot>,
}

impl Files {
    pub(crate) fn new(root: Option<ContainerRoot>) -> Self {
        Self { root }
    }

    /// A path of the daemon's own filesystem (its container's, after joining the host's namespace).
    pub(crate) fn own(&self, path: &Path) -> PathBuf {
        match &self.root {
            Some(root) => root.path_of(path),
            None => path.to_owned(),
        }
    }

    /// The configuration and its drop-ins, with the options' names over the file's. Each drop-in loads on
    /// its own: one that does not is logged and left out, or kept at its version in `previous`.
    pub(crate) fn load(
        &self,
        config_path: &Path,
        options: &RunOptions,
        previous: Option<&Config>,
    ) -> crate::error::Result<Config> {
        let mut config = policy::load_each(&self.own(config_path), &|dir| self.own(dir), previous)?;
        for r in &config.refused {
            if r.kept_previous {
                tracing::error!(file = %r.file.display(), at = %r.place, error = %r.error, "policy file does not load; its previous version stays in force");
            } else {
                tracing::error!(file = %r.file.display(), at = %r.place, error = %r.error, "policy file does not load; left out, the other files apply");
            }
        }
        let unenforced = config.file_rules_not_enforced();
        if unenforced > 0 {
            tracing::warn!("{}", policy::file_rules::not_enforced_summary(unenforced));
        }
        if let Some(name) = &options.host_name {
            config.daemon.host_name = Some(name.clone());
        }
        if let Some(name) = &options.cluster_name {
            config.daemon.cluster_name.clone_from(name);
        }
        Ok(config)
    }
}
