//! The containers running now, each with the container policies that select it and their compiled matcher.
//! Built on the tokio side from the runtimes' records (`containers::discover`) and the policy, swapped in
//! whole; the decision thread only reads it. A container no policy selects is kept too (its alerts still
//! carry its name, image and labels), with no matcher.

use std::collections::HashMap;
use std::sync::Arc;

use crate::containers::Container;
use crate::policy::Config;
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
}

impl ContainerScope {
    /// `container` with the container policies of `config` that select it.
    pub fn new(config: &Config, container: Container) -> Self {
        let identity = Identity { labels: container.labels.clone(), name: container.name.clone() };
        let selected = config.selecting(&identity);
        let policies =
            selected.iter().filter_map(|&i| config.container_policies.get(i).map(|p| p.name.clone())).collect();
        let matcher = (!selected.is_empty()).then(|| config.container_matcher(&selected));
        Self { container, policies, matcher }
    }
}

/// Every known container, by id.
#[derive(Debug, Default)]
pub struct Scopes {
    by_id: HashMap<String, Arc<ContainerScope>>,
}

impl Scopes {
    pub fn build(config: &Config, containers: Vec<Container>) -> Self {
        let by_id = containers.into_iter().map(|c| (c.id.clone(), Arc::new(ContainerScope::new(config, c)))).collect();
        Self { by_id }
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
        all.sort_by(|a, b| a.container.id.cmp(&b.container.id));
        all
    }
}
