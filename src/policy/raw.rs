//! The TOML file as serde sees it: one struct per table, unknown keys refused, every value that validation
//! may reject wrapped in `Spanned` so its error can name `file:line:col`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub daemon: Option<Spanned<RawDaemon>>,
    pub open_guard: Option<Spanned<RawOpenGuard>>,
    pub containers: Option<Spanned<RawContainers>>,
    #[serde(default)]
    pub policy: Vec<Spanned<RawPolicy>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub mode: Option<Spanned<String>>,
    pub alert_log: Option<Spanned<String>>,
    pub cluster_name: Option<String>,
    pub host_name: Option<String>,
    pub default_posture: Option<Spanned<String>>,
    pub default_file_posture: Option<Spanned<String>>,
    pub max_alerts_per_sec: Option<Spanned<i64>>,
    pub policy_dir: Option<Spanned<String>>,
    pub fail_mode: Option<Spanned<String>>,
    pub alert_socket: Option<Spanned<String>>,
    pub alert_socket_group: Option<String>,
    pub exec_cache: Option<bool>,
}

/// `[containers]`: where the container runtimes keep their records and their image layers. The keys are the
/// runtimes' sources (`containers::runtimes`); validation refuses any other.
pub type RawContainers = BTreeMap<String, Spanned<String>>;

/// `[open_guard]`: code loaded without exec (loader, preload, dlopen, interpreters).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpenGuard {
    pub enabled: Option<bool>,
    pub interpreters: Option<Vec<Spanned<String>>>,
    pub elf_readers: Option<Vec<Spanned<String>>>,
    pub script_parents: Option<Vec<Spanned<String>>>,
    pub multi_call: Option<Vec<Spanned<String>>>,
    pub max_directories: Option<Spanned<i64>>,
}

/// `action`, `severity`, `tags`, `message`: settable at policy, section and rule level; the innermost wins.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawMeta {
    pub action: Option<Spanned<String>>,
    pub severity: Option<Spanned<i64>>,
    pub tags: Option<Vec<String>>,
    pub message: Option<String>,
}

// serde cannot combine `flatten` with `deny_unknown_fields`, so each level lists the meta keys itself and
// hands them over through `meta()`.
macro_rules! with_meta {
    ($(#[$attr:meta])* pub struct $name:ident { $($field:tt)* }) => {
        $(#[$attr])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($field)*
            pub action: Option<Spanned<String>>,
            pub severity: Option<Spanned<i64>>,
            pub tags: Option<Vec<String>>,
            pub message: Option<String>,
        }
        impl $name {
            pub fn meta(&self) -> RawMeta {
                RawMeta {
                    action: self.action.clone(),
                    severity: self.severity.clone(),
                    tags: self.tags.clone(),
                    message: self.message.clone(),
                }
            }
        }
    };
}

with_meta! {
    /// One `[[policy]]` table. With a `[policy.selector]` it is a container policy.
    pub struct RawPolicy {
        pub name: Spanned<String>,
        pub selector: Option<Spanned<RawSelector>>,
        pub process: Option<Spanned<RawProcess>>,
        pub file: Option<Spanned<RawFileSection>>,
    }
}

/// `[policy.selector]`: the containers a container policy applies to (KubeArmorPolicy's `spec.selector`
/// and `metadata.namespace`). Empty: every container.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSelector {
    pub match_labels: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    pub namespace: Option<Spanned<String>>,
    pub containers: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub match_expressions: Vec<Spanned<RawExpression>>,
}

/// One `[[policy.selector.match_expressions]]`: KubeArmor's `selector.matchExpressions` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpression {
    pub key: Spanned<String>,
    pub operator: Spanned<String>,
    pub values: Spanned<Vec<Spanned<String>>>,
}

with_meta! {
    /// `[policy.process]`: KubeArmor's `spec.process`.
    pub struct RawProcess {
        #[serde(default)]
        pub match_paths: Vec<Spanned<RawMatchPath>>,
        #[serde(default)]
        pub match_directories: Vec<Spanned<RawMatchDirectory>>,
        #[serde(default)]
        pub match_patterns: Vec<Spanned<RawMatchPattern>>,
    }
}

with_meta! {
    pub struct RawMatchPath {
        pub path: Option<Spanned<String>>,
        pub execname: Option<Spanned<String>>,
        #[serde(default)]
        pub owner_only: bool,
        #[serde(default)]
        pub from_source: Vec<Spanned<String>>,
    }
}

with_meta! {
    pub struct RawMatchDirectory {
        pub dir: Spanned<String>,
        #[serde(default)]
        pub recursive: bool,
        #[serde(default)]
        pub owner_only: bool,
        #[serde(default)]
        pub from_source: Vec<Spanned<String>>,
    }
}

with_meta! {
    pub struct RawMatchPattern {
        pub pattern: Spanned<String>,
        #[serde(default)]
        pub owner_only: bool,
    }
}

with_meta! {
    /// `[policy.file]`: KubeArmor's `spec.file`.
    pub struct RawFileSection {
        #[serde(default)]
        pub match_paths: Vec<Spanned<RawFileMatchPath>>,
        #[serde(default)]
        pub match_directories: Vec<Spanned<RawFileMatchDirectory>>,
        #[serde(default)]
        pub match_patterns: Vec<Spanned<RawFileMatchPattern>>,
    }
}

with_meta! {
    pub struct RawFileMatchPath {
        pub path: Spanned<String>,
        #[serde(default)]
        pub read_only: bool,
        #[serde(default)]
        pub owner_only: bool,
        #[serde(default)]
        pub from_source: Vec<Spanned<String>>,
    }
}

with_meta! {
    pub struct RawFileMatchDirectory {
        pub dir: Spanned<String>,
        #[serde(default)]
        pub recursive: bool,
        #[serde(default)]
        pub read_only: bool,
        #[serde(default)]
        pub owner_only: bool,
        #[serde(default)]
        pub from_source: Vec<Spanned<String>>,
    }
}

with_meta! {
    pub struct RawFileMatchPattern {
        pub pattern: Spanned<String>,
        #[serde(default)]
        pub read_only: bool,
        #[serde(default)]
        pub owner_only: bool,
    }
}
