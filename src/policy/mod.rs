//! Loading the configuration in two stages: parse each TOML file into [`raw`] structs, then validate and
//! compile everything into a [`Config`] holding an immutable [`Matcher`] for the host and the
//! [`ContainerPolicy`] list for containers ([`selector`]). Every error names `file:line:col` and says what
//! to write instead; nothing half-valid comes out.
#![forbid(unsafe_code)]

pub mod file_rules;
pub mod kubearmor;
pub mod lint;
pub mod located;
pub mod matcher;
pub mod open_guard;
pub mod raw;
pub mod selector;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Spanned;

use crate::error::{Error, PolicyError, Result};
use crate::policy::located::{Located, utf8};
use crate::policy::matcher::{Action, Matcher, Mode, Posture, Rule, RuleMeta, Target};
use file_rules::{FileMatcher, FileRule};
use open_guard::OpenGuardConfig;
use raw::{RawDaemon, RawFile, RawMeta, RawPolicy, RawSelector};
pub use selector::{ContainerFilePolicy, ContainerPolicy, Identity, Selector};

/// What happens to exec attempts while the daemon is down between a crash and its restart under systemd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// The fanotify group outlives the process in systemd's FD store; attempts wait for the restart.
    Closed,
    /// The kernel lets every exec through until the daemon is back.
    Open,
}

/// Where `noexecd run` serves live alerts unless `alert_socket` says otherwise.
pub const DEFAULT_ALERT_SOCKET: &str = "/run/noexecd/alerts.sock";

/// The `[daemon]` table, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    pub mode: Mode,
    pub alert_log: PathBuf,
    pub cluster_name: String,
    pub host_name: Option<String>,
    pub default_posture: Posture,
    /// What an open gets in a scope whose file rules include Allow rules, when none of them allows it.
    pub default_file_posture: Posture,
    pub max_alerts_per_sec: u32,
    pub policy_dir: PathBuf,
    pub fail_mode: FailMode,
    /// Where live alerts are served; `None` when set to "".
    pub alert_socket: Option<PathBuf>,
    /// Group allowed to read the socket besides root.
    pub alert_socket_group: Option<String>,
    /// Cache allowed execs in the kernel with inode ignore marks (see `exec_cache`).
    pub exec_cache: bool,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Enforce,
            alert_log: PathBuf::from("/var/log/noexecd/alerts.jsonl"),
            cluster_name: "default".to_owned(),
            host_name: None,
            default_posture: Posture::Audit,
            default_file_posture: Posture::Audit,
            max_alerts_per_sec: 100,
            policy_dir: PathBuf::from("/etc/noexecd/policy.d"),
            fail_mode: FailMode::Closed,
            alert_socket: Some(PathBuf::from(DEFAULT_ALERT_SOCKET)),
            alert_socket_group: None,
            exec_cache: true,
        }
    }
}

/// `[containers]`: where each runtime keeps its records (read to know the running containers and their
/// labels) and its image layers (the filesystems marked when container policies exist).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainersConfig {
    /// One path per key of every runtime's sources.
    pub sources: crate::containers::Sources,
}

impl ContainersConfig {
    /// The directories whose filesystems hold container layers: a mark there sees every exec in a container
    /// before any of its programs runs.
    /// Those of every runtime instance found on the node besides the configured ones.
    pub fn layer_roots(&self) -> Vec<PathBuf> {
        crate::containers::layer_roots(&self.sources)
    }
}

/// A loaded configuration: daemon settings and the compiled policy.
#[derive(Debug, Clone)]
pub struct Config {
    pub daemon: DaemonConfig,
    /// The host's policy: the rules of every policy without a `[policy.selector]`, and no other.
    pub matcher: Matcher,
    /// `[open_guard]`: what FAN_OPEN_PERM events on protected scope are checked for.
    pub open_guard: OpenGuardConfig,
    /// Every file that was read, main file first.
    pub files: Vec<PathBuf>,
    /// The host's file rules (`[policy.file]` of every policy without a `[policy.selector]`).
    pub file_matcher: FileMatcher,
    /// Those of them the daemon enforces ([`FileRule::not_enforced`]): what its decision thread decides
    /// opens with, and whose directories it marks.
    pub file_enforced: FileMatcher,
    /// How many host policies `matcher` and `file_matcher` hold.
    pub policy_count: usize,
    /// The policies with a `[policy.selector]` and process rules, in load order; their rules are in no host
    /// matcher.
    pub container_policies: Vec<ContainerPolicy>,
    /// The policies with a `[policy.selector]` and file rules, in load order.
    pub container_file_policies: Vec<ContainerFilePolicy>,
    /// Whether one of them has a file rule the daemon enforces: then the containers are read and their
    /// directories marked for it, and the decision thread asks which container an opener is in.
    pub container_files: bool,
    /// `[containers]`.
    pub containers: ContainersConfig,
    /// The text in force of each drop-in, by file: what [`load_each`] falls back to when the file no longer
    /// loads.
    pub drop_in_texts: BTreeMap<PathBuf, String>,
    /// The drop-ins [`load_each`] left out or kept at their previous version, in name order.
    pub refused: Vec<RefusedDropIn>,
}

/// A drop-in that did not load on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedDropIn {
    pub file: PathBuf,
    /// `file:line:col` of the error (`file` alone when it is not about a place in it).
    pub place: String,
    /// The whole error, place included.
    pub error: String,
    /// Its previous version (the text last loaded from it) is in force instead; otherwise none is.
    pub kept_previous: bool,
}

impl RefusedDropIn {
    fn new(file: &Path, error: &Error, kept_previous: bool) -> Self {
        let place = match error {
            Error::Policy(p) => format!("{}:{}:{}", p.file.display(), p.line, p.col),
            Error::ParseKubeArmor { path, line, col, .. } | Error::ConvertKubeArmor { path, line, col, .. } => {
                format!("{}:{line}:{col}", path.display())
            }
            Error::ConfigNotUtf8 { path, at } | Error::KubeArmorNotUtf8 { path, at } => {
                format!("{}:{}:{}", path.display(), at.line, at.col)
            }
            _ => file.display().to_string(),
        };
        Self { file: file.to_owned(), place, error: error.to_string(), kept_previous }
    }
}

impl Config {
    /// The shallow Block and Audit patterns of every policy, host and container ([`lint`]).
    pub fn lints(&self) -> Vec<lint::Lint> {
        let containers = self.container_policies.iter().flat_map(|p| p.rules.iter());
        lint::rules(self.matcher.rules().iter().chain(containers))
    }

    /// The indexes (into `container_policies`, ascending) of the container policies that select `id`.
    pub fn selecting(&self, id: &Identity) -> Vec<usize> {
        selector::selecting(&self.container_policies, id)
    }

    /// The matcher for a container selected by `selected` (from [`Config::selecting`]): those policies'
    /// rules only, with the host's default posture and mode.
    pub fn container_matcher(&self, selected: &[usize]) -> Matcher {
        selector::matcher_for(&self.container_policies, selected, self.daemon.default_posture, self.daemon.mode)
    }

    /// The indexes (into `container_file_policies`, ascending) of the container policies with file rules
    /// that select `id`.
    pub fn selecting_files(&self, id: &Identity) -> Vec<usize> {
        self.container_file_policies
            .iter()
            .enumerate()
            .filter(|(_, p)| p.selector.selects(id))
            .map(|(i, _)| i)
            .collect()
    }

    /// The file matcher for a container selected by `selected` (from [`Config::selecting_files`]): those
    /// policies' file rules only, with the default file posture and the mode.
    pub fn container_file_matcher(&self, selected: &[usize]) -> FileMatcher {
        selector::file_matcher_for(
            &self.container_file_policies,
            selected,
            self.daemon.default_file_posture,
            self.daemon.mode,
        )
    }

    /// Those of [`Config::container_file_matcher`]'s rules the daemon enforces ([`FileRule::not_enforced`]):
    /// what its decision thread decides a container's opens with, and whose directories it marks through the
    /// container's root. `None` when there is none.
    pub fn container_file_enforced(&self, selected: &[usize]) -> Option<FileMatcher> {
        let all = self.container_file_matcher(selected);
        let enforced: Vec<FileRule> = all.rules().iter().filter(|r| r.not_enforced(true).is_none()).cloned().collect();
        (!enforced.is_empty()).then(|| FileMatcher::new(enforced, self.daemon.default_file_posture, self.daemon.mode))
    }

    /// Whether the daemon reads the running containers: for container policies' process rules, or for their
    /// file rules it enforces.
    pub fn reads_containers(&self) -> bool {
        !self.container_policies.is_empty() || self.container_files
    }

    /// How many file rules, host or container, this build does not enforce.
    pub fn file_rules_not_enforced(&self) -> usize {
        self.file_matcher.rules().len() - self.file_enforced.rules().len()
            + self
                .container_file_policies
                .iter()
                .flat_map(|p| p.rules.iter())
                .filter(|r| r.not_enforced(true).is_some())
                .count()
    }
}

/// Loads the main configuration file and every `*.toml` (and KubeArmor `*.yaml`/`*.yml`) in its policy
/// directory, in name order.
pub fn load(path: &Path) -> Result<Config> {
    load_rooted(path, &Path::to_path_buf)
}

/// [`load`] where the policy directory the configuration names is reached through `dir_of`: a daemon that
/// joined the host's mount namespace reads its container's `policy_dir` through an fd to the container's root.
pub fn load_rooted(path: &Path, dir_of: &dyn Fn(&Path) -> PathBuf) -> Result<Config> {
    let text = read_config(path, false)?;
    load_from(path, &text, Some((dir_of, DropIns::AllOrNothing)))
}

/// [`load_rooted`] for the daemon: the main file still loads whole or fails, but each drop-in loads or is
/// left out on its own ([`Config::refused`]), so that one broken file of a shared policy directory does
/// not hold back the others. A drop-in that no longer loads keeps the version `previous` had in force.
pub fn load_each(path: &Path, dir_of: &dyn Fn(&Path) -> PathBuf, previous: Option<&Config>) -> Result<Config> {
    let text = read_config(path, false)?;
    let previous = previous.map(|p| &p.drop_in_texts);
    load_from(path, &text, Some((dir_of, DropIns::Each { previous })))
}

/// How drop-ins that do not load are taken.
#[derive(Clone, Copy)]
enum DropIns<'p> {
    /// The first one fails the whole load (`check`, `explain`).
    AllOrNothing,
    /// Each is left out on its own, or replaced by its text in `previous`.
    Each { previous: Option<&'p BTreeMap<PathBuf, String>> },
}

/// Reads a configuration file or a drop-in (`yaml`: a KubeArmor one) as text: bytes, then UTF-8 checked, so
/// that a byte that is not UTF-8 is refused with its place.
fn read_config(path: &Path, yaml: bool) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| Error::ReadConfig { path: path.to_owned(), source })?;
    config_text(path, bytes, yaml)
}

fn config_text(path: &Path, bytes: Vec<u8>, yaml: bool) -> Result<String> {
    utf8(bytes).map_err(|at| {
        let path = path.to_owned();
        if yaml { Error::KubeArmorNotUtf8 { path, at } } else { Error::ConfigNotUtf8 { path, at } }
    })
}

/// Parses configuration text alone, without its policy directory: for tests and tools.
pub fn load_str(name: &Path, text: &str) -> Result<Config> {
    load_from(name, text, None)
}

/// Whether the loader takes configuration text, and if not where and why it refuses it: what a KubeArmor
/// conversion asks of each policy it writes ([`kubearmor::Validate`]).
pub fn validate_str(name: &Path, text: &str) -> Result<()> {
    load_str(name, text).map(drop)
}

/// Loads every policy of a converted KubeArmor file as `noexecd import` writes it, each error moved back to
/// the YAML value it came from.
pub fn check_imported(c: &kubearmor::Conversion) -> Result<()> {
    for p in &c.policies {
        load_str(&c.file, p.toml()).map_err(|e| p.relocate(&c.file, e))?;
    }
    Ok(())
}

/// Where a configuration's policy directory is reached (see [`load_rooted`]).
type DirOf<'a> = &'a dyn Fn(&Path) -> PathBuf;

fn load_from(path: &Path, text: &str, drop_ins: Option<(DirOf<'_>, DropIns<'_>)>) -> Result<Config> {
    let mut loader = Loader::default();
    let (daemon, open_guard, containers) = loader.main(path, text)?;
    if let Some((dir_of, how)) = drop_ins {
        for file in drop_in_files(&dir_of(&daemon.policy_dir))? {
            let loaded =
                read_config(&file, kubearmor::is_yaml(&file)).and_then(|text| loader.drop_in_alone(&file, text));
            let error = match (loaded, how) {
                (Ok(()), _) => continue,
                (Err(e), DropIns::AllOrNothing) => return Err(e),
                (Err(e), DropIns::Each { .. }) => e,
            };
            let before = match how {
                DropIns::Each { previous: Some(previous) } => previous.get(&file),
                _ => None,
            };
            let kept = before.is_some_and(|text| loader.drop_in_alone(&file, text.clone()).is_ok());
            loader.refused.push(RefusedDropIn::new(&file, &error, kept));
        }
    }
    Ok(loader.finish(daemon, open_guard, containers))
}

/// [`load_from`] with drop-ins given as (file, text) instead of read from `policy_dir`.
#[cfg(test)]
fn load_with_drop_ins(path: &Path, text: &str, drop_ins: &[(PathBuf, String)]) -> Result<Config> {
    let mut loader = Loader::default();
    let (daemon, open_guard, containers) = loader.main(path, text)?;
    for (file, text) in drop_ins {
        loader.drop_in_alone(file, text.clone())?;
    }
    Ok(loader.finish(daemon, open_guard, containers))
}

fn drop_in_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::ReadPolicyDir { path: dir.to_owned(), source });
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::ReadPolicyDir { path: dir.to_owned(), source })?;
        let path = entry.path();
        if (path.extension().is_some_and(|e| e == "toml") || kubearmor::is_yaml(&path)) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Names are unique within a scope, as KubeArmor's are within a kind and a namespace: a host policy and a
/// container policy may share one (the shipped `ksp-block-exec-inside-tmp`), and so may container policies
/// of different namespaces (the shipped one, of none, and KubeArmor's example for `wordpress-mysql`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum PolicyScope {
    Host,
    Container { namespace: Option<String> },
}

#[derive(Default)]
struct Loader {
    /// The host's rules.
    rules: Vec<Rule>,
    /// The host's file rules.
    file_rules: Vec<FileRule>,
    containers: Vec<ContainerPolicy>,
    file_containers: Vec<ContainerFilePolicy>,
    names: HashMap<(PolicyScope, String), String>,
    files: Vec<PathBuf>,
    drop_in_texts: BTreeMap<PathBuf, String>,
    refused: Vec<RefusedDropIn>,
}

impl Loader {
    /// The main file: its `[daemon]` and `[open_guard]` tables and its policies.
    fn main(&mut self, path: &Path, text: &str) -> Result<(DaemonConfig, OpenGuardConfig, ContainersConfig)> {
        let main = self.parse(path, text)?;
        let daemon = match &main.daemon {
            Some(d) => validate_daemon(&Located { file: path, text }, d.get_ref())?,
            None => DaemonConfig::default(),
        };
        let open_guard = match &main.open_guard {
            Some(g) => open_guard::validate(&Located { file: path, text }, g.get_ref())?,
            None => OpenGuardConfig::default(),
        };
        let containers = match &main.containers {
            Some(c) => validate_containers(&Located { file: path, text }, c.get_ref())?,
            None => ContainersConfig::default(),
        };
        self.add_policies(path, text, main.policy)?;
        Ok((daemon, open_guard, containers))
    }

    /// One file of `policy_dir`, whole or not at all: a file that fails leaves nothing of itself behind.
    fn drop_in_alone(&mut self, file: &Path, text: String) -> Result<()> {
        let saved = (self.rules.len(), self.containers.len(), self.files.len(), self.names.clone());
        let saved_files = (self.file_rules.len(), self.file_containers.len());
        match self.drop_in(file, &text) {
            Ok(()) => {
                self.drop_in_texts.insert(file.to_owned(), text);
                Ok(())
            }
            Err(e) => {
                self.rules.truncate(saved.0);
                self.containers.truncate(saved.1);
                self.files.truncate(saved.2);
                self.names = saved.3;
                self.file_rules.truncate(saved_files.0);
                self.file_containers.truncate(saved_files.1);
                Err(e)
            }
        }
    }

    /// One file of `policy_dir`: policies only.
    fn drop_in(&mut self, file: &Path, text: &str) -> Result<()> {
        // A KubeArmor YAML file is converted to TOML; errors about that text are moved back into the YAML.
        let yaml = if kubearmor::is_yaml(file) { Some(kubearmor::drop_in(file, text, validate_str)?) } else { None };
        let text = yaml.as_ref().map_or(text, |y| y.text.as_str());
        let relocate = |e: Error| match &yaml {
            Some(y) => y.relocate(e),
            None => e,
        };
        let parsed = self.parse(file, text).map_err(relocate)?;
        let at = Located { file, text };
        if let Some(d) = &parsed.daemon {
            return Err(at
                .error(d.span(), "the [daemon] table belongs in the main configuration file; a policy.d file holds [[policy]] tables only")
                .into());
        }
        if let Some(c) = &parsed.containers {
            return Err(at
                .error(c.span(), "the [containers] table belongs in the main configuration file; a policy.d file holds [[policy]] tables only")
                .into());
        }
        if let Some(g) = &parsed.open_guard {
            return Err(at
                .error(g.span(), "the [open_guard] table belongs in the main configuration file; a policy.d file holds [[policy]] tables only")
                .into());
        }
        let (before, before_containers) = (self.rules.len(), self.containers.len());
        let (before_files, before_file_containers) = (self.file_rules.len(), self.file_containers.len());
        self.add_policies(file, text, parsed.policy).map_err(relocate)?;
        if let Some(y) = &yaml {
            y.relocate_rules(self.rules.get_mut(before..).unwrap_or_default());
            for c in self.containers.get_mut(before_containers..).unwrap_or_default() {
                y.relocate_rules(&mut c.rules);
                c.origin = y.relocated(&c.origin).unwrap_or_else(|| c.origin.clone());
            }
            let host_files = self.file_rules.get_mut(before_files..).unwrap_or_default();
            y.relocate_rules(host_files.iter_mut().map(|f| &mut f.rule));
            for c in self.file_containers.get_mut(before_file_containers..).unwrap_or_default() {
                y.relocate_rules(c.rules.iter_mut().map(|f| &mut f.rule));
                c.origin = y.relocated(&c.origin).unwrap_or_else(|| c.origin.clone());
            }
        }
        Ok(())
    }

    fn finish(self, daemon: DaemonConfig, open_guard: OpenGuardConfig, containers: ContainersConfig) -> Config {
        let policy_count = self.names.keys().filter(|(scope, _)| *scope == PolicyScope::Host).count();
        let matcher = Matcher::new(self.rules, daemon.default_posture, daemon.mode);
        let enforced = self.file_rules.iter().filter(|r| r.not_enforced(false).is_none()).cloned().collect();
        let file_enforced = FileMatcher::new(enforced, daemon.default_file_posture, daemon.mode);
        let file_matcher = FileMatcher::new(self.file_rules, daemon.default_file_posture, daemon.mode);
        let container_policies = self.containers;
        let container_files =
            self.file_containers.iter().flat_map(|p| p.rules.iter()).any(|r| r.not_enforced(true).is_none());
        Config {
            daemon,
            matcher,
            open_guard,
            files: self.files,
            file_matcher,
            file_enforced,
            policy_count,
            container_policies,
            container_file_policies: self.file_containers,
            container_files,
            containers,
            drop_in_texts: self.drop_in_texts,
            refused: self.refused,
        }
    }

    fn parse(&mut self, file: &Path, text: &str) -> Result<RawFile> {
        self.files.push(file.to_owned());
        toml::from_str::<RawFile>(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim().replace('\n', " ");
            Error::Policy(Located { file, text }.error(span, hint_for_toml(&message)))
        })
    }

    fn add_policies(&mut self, file: &Path, text: &str, policies: Vec<Spanned<RawPolicy>>) -> Result<()> {
        let at = Located { file, text };
        for policy in policies {
            let span = policy.span();
            let policy = policy.into_inner();
            let name = policy.name.get_ref().trim().to_owned();
            if name.is_empty() {
                return Err(at.error(policy.name.span(), "policy name is empty: write name = \"my-policy\"").into());
            }
            let namespace = policy.selector.as_ref().and_then(|s| s.get_ref().namespace.as_ref());
            let (scope, kind) = match (&policy.selector, namespace) {
                (None, _) => (PolicyScope::Host, "policy"),
                (Some(_), ns) => {
                    (PolicyScope::Container { namespace: ns.map(|n| n.get_ref().clone()) }, "container policy")
                }
            };
            let origin = at.origin(policy.name.span());
            let key = (scope, name.clone());
            if let Some(first) = self.names.get(&key) {
                let within = match namespace {
                    Some(ns) => format!(" in namespace \"{}\"", ns.get_ref()),
                    None => String::new(),
                };
                return Err(at
                    .error(policy.name.span(), format!("duplicate {kind} name \"{name}\"{within} (first defined at {first}); give each [[policy]] its own name"))
                    .into());
            }
            self.names.insert(key, origin.clone());
            let mut rules = Vec::new();
            compile_policy(&at, &name, &policy, &mut rules)?;
            let mut file_rules = Vec::new();
            compile_file_section(&at, &name, &policy, &mut file_rules)?;
            if rules.is_empty() && file_rules.is_empty() {
                return Err(at
                    .error(span, format!("{kind} \"{name}\" has no rules; add for example\n  [[policy.process.match_directories]]\n  dir = \"/tmp/\"\n  recursive = true"))
                    .into());
            }
            match &policy.selector {
                None => {
                    self.rules.append(&mut rules);
                    self.file_rules.append(&mut file_rules);
                }
                Some(raw) => {
                    let selector = compile_selector(&at, raw.get_ref())?;
                    if !file_rules.is_empty() {
                        self.file_containers.push(ContainerFilePolicy {
                            name: name.clone(),
                            selector: selector.clone(),
                            rules: file_rules,
                            origin: origin.clone(),
                        });
                    }
                    if !rules.is_empty() {
                        self.containers.push(ContainerPolicy { name, selector, rules, origin });
                    }
                }
            }
        }
        Ok(())
    }
}

/// toml's messages are good; add what to write for the common ones.
fn hint_for_toml(message: &str) -> String {
    if message.starts_with("unknown field") {
        format!(
            "{message}; remove it or fix its spelling (keys are snake_case: match_directories, owner_only, from_source)"
        )
    } else {
        message.to_owned()
    }
}

fn validate_daemon(at: &Located<'_>, d: &RawDaemon) -> Result<DaemonConfig, PolicyError> {
    let mut out = DaemonConfig::default();
    if let Some(mode) = &d.mode {
        out.mode = match mode.get_ref().to_ascii_lowercase().as_str() {
            "enforce" => Mode::Enforce,
            "audit" => Mode::Audit,
            _ => {
                return Err(at.error(
                    mode.span(),
                    format!("mode \"{}\" is not known: write \"enforce\" or \"audit\"", mode.get_ref()),
                ));
            }
        };
    }
    if let Some(log) = &d.alert_log {
        out.alert_log = absolute(at, log, "alert_log", "/var/log/noexecd/alerts.jsonl")?;
    }
    if let Some(c) = &d.cluster_name {
        out.cluster_name.clone_from(c);
    }
    out.host_name.clone_from(&d.host_name);
    if let Some(p) = &d.default_posture {
        out.default_posture = match p.get_ref().to_ascii_lowercase().as_str() {
            "audit" => Posture::Audit,
            "block" => Posture::Block,
            _ => {
                return Err(at.error(
                    p.span(),
                    format!("default_posture \"{}\" is not known: write \"audit\" or \"block\"", p.get_ref()),
                ));
            }
        };
    }
    if let Some(p) = &d.default_file_posture {
        out.default_file_posture = match p.get_ref().to_ascii_lowercase().as_str() {
            "audit" => Posture::Audit,
            "block" => Posture::Block,
            _ => {
                return Err(at.error(
                    p.span(),
                    format!("default_file_posture \"{}\" is not known: write \"audit\" or \"block\"", p.get_ref()),
                ));
            }
        };
    }
    if let Some(n) = &d.max_alerts_per_sec {
        out.max_alerts_per_sec = u32::try_from(*n.get_ref()).ok().filter(|n| *n >= 1).ok_or_else(|| {
            at.error(
                n.span(),
                format!("max_alerts_per_sec = {} is out of range: write a number from 1 to 4294967295", n.get_ref()),
            )
        })?;
    }
    if let Some(dir) = &d.policy_dir {
        out.policy_dir = absolute(at, dir, "policy_dir", "/etc/noexecd/policy.d")?;
    }
    if let Some(sock) = &d.alert_socket {
        out.alert_socket = if sock.get_ref().is_empty() {
            None
        } else {
            Some(absolute(at, sock, "alert_socket", DEFAULT_ALERT_SOCKET)?)
        };
    }
    out.alert_socket_group = d.alert_socket_group.clone().filter(|g| !g.is_empty());
    if let Some(c) = d.exec_cache {
        out.exec_cache = c;
    }
    if let Some(f) = &d.fail_mode {
        out.fail_mode = match f.get_ref().to_ascii_lowercase().as_str() {
            "closed" => FailMode::Closed,
            "open" => FailMode::Open,
            _ => {
                return Err(at.error(
                    f.span(),
                    format!("fail_mode \"{}\" is not known: write \"closed\" or \"open\"", f.get_ref()),
                ));
            }
        };
    }
    Ok(out)
}

fn validate_containers(at: &Located<'_>, raw: &raw::RawContainers) -> Result<ContainersConfig, PolicyError> {
    let mut out = ContainersConfig::default();
    for (key, value) in raw {
        let Some(source) = crate::containers::runtimes::sources().find(|s| s.key == key) else {
            let known: Vec<String> = crate::containers::runtimes::sources().map(|s| format!("`{}`", s.key)).collect();
            return Err(at.error(value.span(), format!("unknown field `{key}`, expected one of {}", known.join(", "))));
        };
        out.sources.set(source.key, absolute(at, value, key, source.default)?);
    }
    Ok(out)
}

fn absolute(at: &Located<'_>, value: &Spanned<String>, key: &str, example: &str) -> Result<PathBuf, PolicyError> {
    let v = value.get_ref();
    if !v.starts_with('/') {
        return Err(
            at.error(value.span(), format!("{key} \"{v}\" is relative: write an absolute path such as \"{example}\""))
        );
    }
    Ok(PathBuf::from(v))
}

/// `[policy.selector]`: labels (KubeArmor's `kubearmor.io/container.name` among them read as `containers`),
/// namespace, container names.
fn compile_selector(at: &Located<'_>, raw: &RawSelector) -> Result<Selector, PolicyError> {
    let mut out = Selector::default();
    let mut names_from_label = None;
    for (key, value) in raw.match_labels.as_ref().map(Spanned::get_ref).into_iter().flatten() {
        let k = key.get_ref();
        if k.trim().is_empty() {
            return Err(at.error(key.span(), "label name is empty: write a label such as app = \"wordpress\""));
        }
        if k.contains(|c: char| c.is_whitespace() || c == '=') {
            return Err(at.error(
                key.span(),
                format!("label name \"{k}\" holds a space or '=': write the label's name alone, such as app"),
            ));
        }
        if k == selector::KUBEARMOR_CONTAINER_LABEL {
            let names = selector::kubearmor_container_names(value.get_ref());
            names_from_label = Some((names, value.span()));
            continue;
        }
        out.match_labels.insert(k.clone(), value.get_ref().clone());
    }
    if let Some(ns) = &raw.namespace {
        if ns.get_ref().trim().is_empty() {
            return Err(at.error(ns.span(), "namespace is empty: write the Kubernetes namespace, such as \"wordpress-mysql\", or leave namespace out to select in every namespace"));
        }
        out.namespace = Some(ns.get_ref().clone());
    }
    if let Some(list) = &raw.containers {
        if list.get_ref().is_empty() {
            return Err(at.error(
                list.span(),
                "containers is empty: name the containers, or leave containers out to select every container",
            ));
        }
        for c in list.get_ref() {
            if c.get_ref().trim().is_empty() {
                return Err(
                    at.error(c.span(), "container name is empty: write the container's name, such as \"wordpress\"")
                );
            }
            out.containers.push(c.get_ref().clone());
        }
    }
    if let Some((names, span)) = names_from_label {
        if raw.containers.is_some() {
            return Err(at.error(
                span,
                format!(
                    "containers are named twice, by containers and by {}: keep one",
                    selector::KUBEARMOR_CONTAINER_LABEL
                ),
            ));
        }
        out.containers = names;
    }
    for e in &raw.match_expressions {
        out.expressions.push(compile_expression(at, e.get_ref())?);
    }
    Ok(out)
}

/// One `[[policy.selector.match_expressions]]`: the keys and operators KubeArmor's CRDs accept.
fn compile_expression(at: &Located<'_>, raw: &raw::RawExpression) -> Result<selector::Expression, PolicyError> {
    use selector::{ExpressionKey, Operator};
    let key = match raw.key.get_ref().as_str() {
        "label" => ExpressionKey::Label,
        "namespace" => ExpressionKey::Namespace,
        k => {
            return Err(at.error(
                raw.key.span(),
                format!("match_expressions key \"{k}\" is not known: write \"label\" (values \"app=nginx\") or \"namespace\" (values are namespaces)"),
            ));
        }
    };
    let operator = match raw.operator.get_ref().as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        o => {
            return Err(at.error(
                raw.operator.span(),
                format!("operator \"{o}\" is not one KubeArmor has: write \"In\" or \"NotIn\" (KubeArmor's CRDs refuse Exists and DoesNotExist; to require a label whatever its value, list its values with In)"),
            ));
        }
    };
    let mut values = Vec::new();
    for v in raw.values.get_ref() {
        let text = v.get_ref();
        if key == ExpressionKey::Label && text.split_once('=').is_none_or(|(k, _)| k.trim().is_empty()) {
            return Err(at.error(
                v.span(),
                format!("label expression value \"{text}\" is not name=value: write it as \"app=nginx\""),
            ));
        }
        if key == ExpressionKey::Namespace && text.trim().is_empty() {
            return Err(at.error(v.span(), "namespace is empty: write the Kubernetes namespace, such as \"nginx1\""));
        }
        values.push(text.clone());
    }
    if values.is_empty() && !(key == ExpressionKey::Namespace && operator == Operator::NotIn) {
        return Err(at.error(
            raw.values.span(),
            "values is empty: list what the expression selects (an empty NotIn list is for namespace only: every namespace)",
        ));
    }
    Ok(selector::Expression { key, operator, values })
}

/// action, severity, tags and message with the innermost level winning.
struct Meta {
    action: Action,
    severity: u8,
    tags: Vec<String>,
    message: String,
}

fn merge(at: &Located<'_>, levels: &[RawMeta]) -> Result<Meta, PolicyError> {
    let mut out = Meta { action: Action::Block, severity: 1, tags: Vec::new(), message: String::new() };
    for level in levels {
        if let Some(a) = &level.action {
            out.action = match a.get_ref().to_ascii_lowercase().as_str() {
                "block" => Action::Block,
                "audit" => Action::Audit,
                "allow" => Action::Allow,
                _ => {
                    return Err(at.error(
                        a.span(),
                        format!("action \"{}\" is not known: write \"Block\", \"Audit\" or \"Allow\"", a.get_ref()),
                    ));
                }
            };
        }
        if let Some(s) = &level.severity {
            out.severity = u8::try_from(*s.get_ref()).ok().filter(|s| (1..=10).contains(s)).ok_or_else(|| {
                at.error(s.span(), format!("severity {} is out of range: write a number from 1 to 10", s.get_ref()))
            })?;
        }
        if let Some(t) = &level.tags {
            out.tags.clone_from(t);
        }
        if let Some(m) = &level.message {
            out.message.clone_from(m);
        }
    }
    Ok(out)
}

fn compile_policy(at: &Located<'_>, name: &str, policy: &RawPolicy, rules: &mut Vec<Rule>) -> Result<(), PolicyError> {
    let Some(process) = &policy.process else {
        return Ok(());
    };
    let section = process.get_ref();
    let outer = [policy.meta(), section.meta()];
    let mut push = |span: Range<usize>,
                    inner: RawMeta,
                    target: Target,
                    owner_only: bool,
                    from_source: Vec<Vec<u8>>|
     -> Result<(), PolicyError> {
        let m = merge(at, &[outer[0].clone(), outer[1].clone(), inner])?;
        let meta = RuleMeta {
            policy: name.to_owned(),
            action: m.action,
            severity: m.severity,
            tags: m.tags,
            message: m.message,
            origin: at.origin(span),
        };
        rules.push(Rule { target, owner_only, from_source, meta: Arc::new(meta) });
        Ok(())
    };
    for entry in &section.match_paths {
        let r = entry.get_ref();
        let target = match (&r.path, &r.execname) {
            (Some(path), None) => {
                let path_text = normalized(at, path, "path", "/usr/local/bin/tool")?;
                if path_text.ends_with('/') {
                    return Err(at.error(path.span(), format!("path \"{path_text}\" ends with '/': a match_paths entry names a file; write \"{}\" or use match_directories", path_text.trim_end_matches('/'))));
                }
                Target::Path(path_text.into_bytes())
            }
            (None, Some(name)) => exec_name(at, name)?,
            (Some(_), Some(name)) => {
                return Err(at.error(
                    name.span(),
                    "a match_paths entry has path and execname: keep one (a second entry can hold the other)",
                ));
            }
            (None, None) => {
                return Err(
                    at.error(entry.span(), "a match_paths entry needs path = \"/usr/bin/apt\" or execname = \"apt\"")
                );
            }
        };
        let sources = from_source(at, &r.from_source)?;
        push(entry.span(), r.meta(), target, r.owner_only, sources)?;
    }
    for entry in &section.match_directories {
        let r = entry.get_ref();
        let dir = normalized(at, &r.dir, "dir", "/tmp/")?;
        if !dir.ends_with('/') {
            return Err(at.error(r.dir.span(), format!("dir \"{dir}\" must end with '/': write \"{dir}/\"")));
        }
        let sources = from_source(at, &r.from_source)?;
        push(
            entry.span(),
            r.meta(),
            Target::Dir { dir: dir.into_bytes(), recursive: r.recursive },
            r.owner_only,
            sources,
        )?;
    }
    for entry in &section.match_patterns {
        let r = entry.get_ref();
        let target = pattern(at, &r.pattern)?;
        push(entry.span(), r.meta(), target, r.owner_only, Vec::new())?;
    }
    Ok(())
}

/// `[policy.file]`: its rules, with the same checks as process rules and `read_only`.
fn compile_file_section(
    at: &Located<'_>,
    name: &str,
    policy: &RawPolicy,
    rules: &mut Vec<FileRule>,
) -> Result<(), PolicyError> {
    let Some(section) = &policy.file else {
        return Ok(());
    };
    let section = section.get_ref();
    let outer = [policy.meta(), section.meta()];
    let mut push = |span: Range<usize>,
                    inner: RawMeta,
                    target: Target,
                    flags: (bool, bool),
                    from_source: Vec<Vec<u8>>|
     -> Result<(), PolicyError> {
        let m = merge(at, &[outer[0].clone(), outer[1].clone(), inner])?;
        let meta = RuleMeta {
            policy: name.to_owned(),
            action: m.action,
            severity: m.severity,
            tags: m.tags,
            message: m.message,
            origin: at.origin(span),
        };
        let (read_only, owner_only) = flags;
        rules.push(FileRule { rule: Rule { target, owner_only, from_source, meta: Arc::new(meta) }, read_only });
        Ok(())
    };
    for entry in &section.match_paths {
        let r = entry.get_ref();
        let path = normalized(at, &r.path, "path", "/etc/shadow")?;
        if path.ends_with('/') {
            return Err(at.error(r.path.span(), format!("path \"{path}\" ends with '/': a match_paths entry names a file; write \"{}\" or use match_directories", path.trim_end_matches('/'))));
        }
        let sources = from_source(at, &r.from_source)?;
        push(entry.span(), r.meta(), Target::Path(path.into_bytes()), (r.read_only, r.owner_only), sources)?;
    }
    for entry in &section.match_directories {
        let r = entry.get_ref();
        let dir = normalized(at, &r.dir, "dir", "/etc/ssh/")?;
        if !dir.ends_with('/') {
            return Err(at.error(r.dir.span(), format!("dir \"{dir}\" must end with '/': write \"{dir}/\"")));
        }
        let sources = from_source(at, &r.from_source)?;
        let target = Target::Dir { dir: dir.into_bytes(), recursive: r.recursive };
        push(entry.span(), r.meta(), target, (r.read_only, r.owner_only), sources)?;
    }
    for entry in &section.match_patterns {
        let r = entry.get_ref();
        let target = pattern(at, &r.pattern)?;
        push(entry.span(), r.meta(), target, (r.read_only, r.owner_only), Vec::new())?;
    }
    Ok(())
}

/// An absolute path with no empty, `.` or `..` components: the kernel never names a file any other way, so
/// a rule written otherwise would never match.
fn normalized(at: &Located<'_>, value: &Spanned<String>, key: &str, example: &str) -> Result<String, PolicyError> {
    let v = value.get_ref();
    if !v.starts_with('/') {
        return Err(
            at.error(value.span(), format!("{key} \"{v}\" is relative: write an absolute path such as \"{example}\""))
        );
    }
    let inner = v.trim_start_matches('/').trim_end_matches('/');
    if v.len() > 1 && inner.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(at.error(
            value.span(),
            format!("{key} \"{v}\" is not a normalized path: write it without '//', '/./' or '/../'"),
        ));
    }
    if v.contains('\0') {
        return Err(at.error(value.span(), format!("{key} contains a NUL byte")));
    }
    Ok(v.clone())
}

/// `execname`: a file name, matched in every directory.
fn exec_name(at: &Located<'_>, value: &Spanned<String>) -> Result<Target, PolicyError> {
    let n = value.get_ref();
    if n.is_empty() || n == "." || n == ".." || n.contains(['/', '\0']) {
        return Err(at.error(
            value.span(),
            format!("execname \"{n}\" is not a file name: write the program's name alone, such as \"apt\" (a path goes in path)"),
        ));
    }
    Ok(Target::Name(n.clone().into_bytes()))
}

fn from_source(at: &Located<'_>, sources: &[Spanned<String>]) -> Result<Vec<Vec<u8>>, PolicyError> {
    sources
        .iter()
        .map(|s| {
            let p = normalized(at, s, "from_source", "/usr/sbin/apache2")?;
            if p.ends_with('/') {
                return Err(at.error(s.span(), format!("from_source \"{p}\" names a directory: write the executable's path, such as \"/usr/sbin/apache2\"")));
            }
            Ok(p.into_bytes())
        })
        .collect()
}

fn pattern(at: &Located<'_>, value: &Spanned<String>) -> Result<Target, PolicyError> {
    let p = value.get_ref();
    if !p.starts_with('/') {
        return Err(at.error(
            value.span(),
            format!("pattern \"{p}\" is relative: write an absolute glob such as \"/tmp/**/*.sh\""),
        ));
    }
    let glob = globset::GlobBuilder::new(p)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| at.error(value.span(), format!("pattern \"{p}\" is not a valid glob: {}; `*` stays within one path component, `**` must stand alone between slashes (\"/tmp/**/x\")", e.kind())))?;
    let literal_prefix = file_rules::pattern_directory(p);
    Ok(Target::Pattern { glob: glob.compile_matcher(), literal_prefix: literal_prefix.as_bytes().to_vec() })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod mutation_tests;

#[cfg(test)]
mod containers_table_tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn load(text: &str) -> Result<Config> {
        load_str(
            Path::new("p.toml"),
            &format!("{text}\n[[policy]]\nname = \"p\"\n[[policy.process.match_paths]]\npath = \"/tmp/x\"\n"),
        )
    }

    #[test]
    fn every_key_of_the_runtimes_is_read_and_defaults_stay() {
        let c =
            load("[containers]\ndocker_root = \"/d\"\ncontainerd_root = \"/c\"\npodman_socket = \"/p.sock\"").unwrap();
        let s = &c.containers.sources;
        assert_eq!(s.get("docker_root"), Path::new("/d"));
        assert_eq!(s.get("podman_socket"), Path::new("/p.sock"));
        assert_eq!(s.get("containerd_state"), Path::new("/run/containerd"));
        assert_eq!(s.get("storage"), Path::new("/var/lib/containers/storage"));
        assert_eq!(
            c.containers.layer_roots(),
            [Path::new("/d"), Path::new("/c"), Path::new("/var/lib/containers/storage")]
        );
        let d = load("").unwrap();
        assert_eq!(d.containers.sources, crate::containers::Sources::default());
    }

    #[test]
    fn unknown_keys_and_relative_paths_are_refused_where_they_stand() {
        let Err(Error::Policy(e)) = load("[containers]\ndocker_rot = \"/d\"") else { panic!("accepted") };
        assert!(e.message.contains("unknown field `docker_rot`, expected one of `docker_root`"), "{e}");
        assert_eq!(e.line, 2, "{e}");
        let Err(Error::Policy(e)) = load("[containers]\nstorage = \"var/lib\"") else { panic!("accepted") };
        assert!(e.message.contains("storage \"var/lib\" is relative"), "{e}");
        assert!(load("[containers]\nstorage = 3").is_err());
    }
}
