//! The containers running now, each with the container policies that select it and their compiled matcher.
//! Built on the tokio side from the runtimes' records (`containers::discover`) and the policy, swapped in
//! whole; the decision thread only reads it. A container no policy selects is kept too (its alerts still
//! carry its name, image and labels), with no matcher.

use std::collections::HashMap;
use std::sync::Arc;

use crate::containers::Container;
use crate::guard::ctr_mounts::{self, ContainerMount};
use crate::guard::marks::OpenRoot;
use crate::host::mounts::MountTable;
use crate::host::overlay::Layer;
use crate::policy::Config;
use crate::policy::file_rules::FileMatcher;
use crate::policy::matcher::Matcher;
use crate::policy::selector::Identity;

/// One running container and what the policy says inside it.
#[derive(Debug)]
pub struct ContainerScope {
    pub container: Container,
    /// The names of the container policies that select it, in policy order.
    pub policies: Vec<String>,
    /// Their rules (paths inside the container); `None` when no policy selects it.
    pub matcher: Option<Matcher>,
    /// The file rules the daemon enforces of the container policies that select it (paths inside the
    /// container); `None` when there is none.
    pub files: Option<FileMatcher>,
    /// Its own mounts in protected scope (a tmpfs at /tmp, a bind at /var/tmp), read from its first pid's
    /// mountinfo when the scope was built ([`ctr_mounts`]); none for a container no policy selects.
    pub mounts: Vec<ContainerMount>,
    /// The layers of its rootfs overlay, read with `mounts` (upper first); none for a container no policy
    /// selects.
    pub layers: Vec<Layer>,
    /// Where its mounts of files are (`ctr_mounts::posture_mounts`), when its file rules turn the default
    /// file posture on: each gets a mount mark, and every open there is decided.
    pub posture_mounts: Vec<Vec<u8>>,
}

impl ContainerScope {
    /// `container` with the container policies of `config` that select it.
    pub fn new(config: &Config, container: Container) -> Self {
        let identity = Identity { labels: container.info.labels.clone(), name: container.info.name.clone() };
        let selected = config.selecting(&identity);
        let mut policies: Vec<String> =
            selected.iter().filter_map(|&i| config.container_policies.get(i).map(|p| p.name.clone())).collect();
        let matcher = (!selected.is_empty()).then(|| config.container_matcher(&selected));
        let files = if config.container_files {
            let selected = config.selecting_files(&identity);
            for name in selected.iter().filter_map(|&i| config.container_file_policies.get(i).map(|p| &p.name)) {
                if !policies.contains(name) {
                    policies.push(name.clone());
                }
            }
            config.container_file_enforced(&selected)
        } else {
            None
        };
        Self { container, policies, matcher, files, mounts: Vec::new(), layers: Vec::new(), posture_mounts: Vec::new() }
    }

    /// The same, with its mounts in protected scope read through process `pid` (one of its processes) and
    /// classified against our mount table `host`, and the layers of its rootfs.
    pub fn with_mounts(mut self, host: &MountTable, pid: i32) -> Self {
        if self.matcher.is_none() && self.files.is_none() {
            return self;
        }
        let Some(text) = ctr_mounts::mountinfo_of(pid) else { return self };
        if let Some(m) = &self.matcher {
            self.mounts = ctr_mounts::find(m, &text, host);
        }
        self.layers = ctr_mounts::rootfs_layers(&text);
        if self.file_posture() {
            self.posture_mounts = ctr_mounts::posture_mounts(&text);
        }
        self
    }

    /// Whether its file rules turn the default file posture on (an Allow file rule of a policy selecting it).
    pub fn file_posture(&self) -> bool {
        self.files.as_ref().is_some_and(FileMatcher::whitelist)
    }

    /// The open guard's directories of this container (see [`ctr_mounts::open_roots`]).
    pub fn open_roots(&self) -> Vec<OpenRoot> {
        match &self.matcher {
            Some(m) => ctr_mounts::open_roots(m, self.container.init_pid, &self.mounts, &self.layers),
            None => Vec::new(),
        }
    }

    /// The directories of this container its file rules reach (see [`ctr_mounts::file_roots`]).
    pub fn file_roots(&self) -> Vec<OpenRoot> {
        match &self.files {
            Some(f) => ctr_mounts::file_roots(f, self.container.init_pid, &self.mounts, &self.layers),
            None => Vec::new(),
        }
    }
}

/// Every known container, by id.
#[derive(Debug, Default)]
pub struct Scopes {
    by_id: HashMap<String, Arc<ContainerScope>>,
    /// The private mounts of the selected containers, by mount id: a file there reached from outside the
    /// container (`/proc/PID/root/tmp/x` from the host) is decided by the container that owns it.
    private: HashMap<u64, (u64, Arc<ContainerScope>)>,
}

impl Scopes {
    /// `host`: our mount table, which tells a container's private mounts from binds of host directories.
    pub fn build(config: &Config, containers: Vec<Container>, host: &MountTable) -> Self {
        let mut private = HashMap::new();
        let by_id = containers
            .into_iter()
            .map(|c| {
                let pid = c.init_pid;
                let scope = Arc::new(ContainerScope::new(config, c).with_mounts(host, pid));
                for m in scope.mounts.iter().filter(|m| m.private) {
                    private.insert(m.id, (m.dev, scope.clone()));
                }
                (scope.container.info.id.clone(), scope)
            })
            .collect();
        Self { by_id, private }
    }

    /// The selected container whose private mount `mount_id` holds a file of device `dev`.
    pub fn owner_of_private(&self, mount_id: u64, dev: u64) -> Option<&Arc<ContainerScope>> {
        self.private.get(&mount_id).filter(|(d, _)| *d == dev).map(|(_, s)| s)
    }

    pub fn get(&self, id: &str) -> Option<&Arc<ContainerScope>> {
        self.by_id.get(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Every container, sorted by id.
    pub fn all(&self) -> Vec<&Arc<ContainerScope>> {
        let mut all: Vec<_> = self.by_id.values().collect();
        all.sort_by(|a, b| a.container.info.id.cmp(&b.container.info.id));
        all
    }
}
