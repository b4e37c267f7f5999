//! `noexecd explain PATH`: how the installed policy decides an exec of PATH (with `--open`, an open of PATH
//! for reading, or with `--write` for writing), offline, with the alert it would write. The policy is loaded as the daemon loads it: a drop-in that does not load is left out, with a
//! warning line (`noexecd check` fails on it).

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use crate::alert::{Alert, ExecAlert, FileAlert, Origin, open_data};
use crate::cli::explain_status;
use crate::error::{Error, Result};
use crate::guard::scopes::ContainerScope;
use crate::host::procfs::ProcessInfo;
use crate::policy;
use crate::policy::file_rules::{Access, FileMatcher};
use crate::policy::matcher::{KnownSubject, Matcher, Outcome, Scope};
use crate::policy::selector::Identity;

/// The offline decision for an exec of `path`, with the alert it would write.
pub struct Explanation {
    pub outcome: Outcome,
    pub text: String,
}

impl Explanation {
    /// The exit status `noexecd explain` reports this decision with.
    pub fn exit_status(&self) -> u8 {
        match self.outcome {
            Outcome::Allow => explain_status::ALLOWED,
            Outcome::Block => explain_status::BLOCKED,
            Outcome::Audit => explain_status::AUDITED,
        }
    }
}

pub fn explain(
    config_path: &Path,
    path: &Path,
    source: Option<&Path>,
    uid: Option<u32>,
    owner: Option<u32>,
    container: Option<&str>,
) -> Result<Explanation> {
    // As the daemon loads it: a drop-in that does not load is left out (and said so below), not a failure.
    let config = policy::load_each(config_path, &Path::to_path_buf, None)?;
    let scope = match container {
        Some(wanted) => Some(find_container(&config, wanted)?),
        None => None,
    };
    // The daemon sees the file the kernel opens: a relative name from here, through its symlinks. Inside a
    // container the path is the container's, as given.
    let resolved = match scope {
        Some(_) => Ok(path.to_owned()),
        None => std::fs::canonicalize(path).or_else(|_| std::path::absolute(path)),
    };
    let path = resolved.as_deref().unwrap_or(path);
    let owner = owner.unwrap_or_else(|| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).map(|m| m.uid()).unwrap_or(0)
    });
    let uid = uid.unwrap_or_else(|| nix::unistd::getuid().as_raw());
    let exe = source.map(|s| s.as_os_str().as_bytes().to_vec());
    let mut subject = KnownSubject { exe: exe.clone(), uid: Some(uid) };
    let bytes = path.as_os_str().as_bytes();
    let unselected = Matcher::new(Vec::new(), config.daemon.default_posture, config.daemon.mode);
    let matcher = match &scope {
        Some(s) => s.matcher.as_ref().unwrap_or(&unselected),
        None => &config.matcher,
    };
    let decision = matcher.decide(Scope::Path(bytes), owner, &mut subject);
    let mut text = String::new();
    for r in &config.refused {
        text.push_str(&format!(
            "warning: {} does not load, and a daemon started now leaves it out (one running keeps the version it last loaded): {}\n",
            r.file.display(),
            r.error
        ));
    }
    if let Some(s) = &scope {
        let c = &s.container;
        let policies = if s.policies.is_empty() { "none".to_owned() } else { s.policies.join(", ") };
        text.push_str(&format!(
            "container: {} ({}, {}), labels {}; container policies selecting it: {policies}\n",
            c.info.name.as_deref().unwrap_or("-"),
            crate::containers::runtime_name(c.info.runtime),
            c.info.id,
            c.display_labels()
        ));
    }
    let verdict = match decision.outcome {
        Outcome::Allow => "ALLOWED",
        Outcome::Block => "BLOCKED",
        Outcome::Audit => "AUDITED (runs, with an alert)",
    };
    text.push_str(&format!("{}: {verdict}\n", path.display()));
    match decision.rule {
        None => text.push_str("no rule matches: the exec runs and no alert is written\n"),
        Some(rule) => {
            text.push_str(&format!(
                "policy: {}\nrule: {} ({})\naction: {}\n",
                rule.policy,
                rule.origin,
                rule.action.as_str(),
                decision_action(decision.outcome)
            ));
            let alert = ExecAlert {
                when: SystemTime::now(),
                outcome: decision.outcome,
                rule: Arc::clone(rule),
                resource: bytes.to_vec(),
                pid: 0,
                process: ProcessInfo { exe: exe.unwrap_or_default(), uid: i64::from(uid), ..ProcessInfo::default() },
                hook: "FAN_OPEN_EXEC_PERM",
                container: scope.as_ref().map(|s| s.container.clone()),
                open: None,
            };
            let origin = Origin::for_config(&config);
            text.push_str("alert:\n");
            text.push_str(&Alert::for_exec(&alert, &origin).to_json_line());
        }
    }
    Ok(Explanation { outcome: decision.outcome, text })
}

/// What `explain` is asked about besides the file: who acts, and inside which container.
pub struct Asked<'a> {
    pub source: Option<&'a Path>,
    pub uid: Option<u32>,
    pub owner: Option<u32>,
    pub container: Option<&'a str>,
}

/// The offline decision of the file rules for an open of `path` (`write`: for writing, `O_WRONLY`), with the
/// alert it would write.
pub fn explain_open(config_path: &Path, path: &Path, write: bool, asked: &Asked<'_>) -> Result<Explanation> {
    let config = policy::load_each(config_path, &Path::to_path_buf, None)?;
    let scope = match asked.container {
        Some(wanted) => Some(find_container(&config, wanted)?),
        None => None,
    };
    let resolved = match scope {
        Some(_) => Ok(path.to_owned()),
        None => std::fs::canonicalize(path).or_else(|_| std::path::absolute(path)),
    };
    let path = resolved.as_deref().unwrap_or(path);
    let owner = asked.owner.unwrap_or_else(|| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).map(|m| m.uid()).unwrap_or(0)
    });
    let uid = asked.uid.unwrap_or_else(|| nix::unistd::getuid().as_raw());
    let exe = asked.source.map(|s| s.as_os_str().as_bytes().to_vec());
    let mut subject = KnownSubject { exe: exe.clone(), uid: Some(uid) };
    let bytes = path.as_os_str().as_bytes();
    let container_matcher = scope.as_ref().map(|s| {
        let c = &s.container.info;
        let id = Identity { labels: c.labels.clone(), name: c.name.clone() };
        let selected = config.selecting_files(&id);
        let names: Vec<String> =
            selected.iter().filter_map(|&i| config.container_file_policies.get(i)).map(|p| p.name.clone()).collect();
        (config.container_file_matcher(&selected), names)
    });
    let matcher: &FileMatcher = match &container_matcher {
        Some((m, _)) => m,
        None => &config.file_matcher,
    };
    let flags = if write { libc::O_WRONLY } else { libc::O_RDONLY };
    let access = Access::from_open_flags(u64::try_from(flags).ok());
    let decision = matcher.decide(bytes, access, owner, &mut subject);
    let mut text = String::new();
    for r in &config.refused {
        text.push_str(&format!(
            "warning: {} does not load, and a daemon started now leaves it out (one running keeps the version it last loaded): {}\n",
            r.file.display(),
            r.error
        ));
    }
    if let (Some(s), Some((_, names))) = (&scope, &container_matcher) {
        let c = &s.container;
        let policies = if names.is_empty() { "none".to_owned() } else { names.join(", ") };
        text.push_str(&format!(
            "container: {} ({}, {}), labels {}; container policies with file rules selecting it: {policies}\n",
            c.info.name.as_deref().unwrap_or("-"),
            crate::containers::runtime_name(c.info.runtime),
            c.info.id,
            c.display_labels()
        ));
    }
    let verdict = match decision.outcome {
        Outcome::Allow => "ALLOWED",
        Outcome::Block => "BLOCKED",
        Outcome::Audit => "AUDITED (opens, with an alert)",
    };
    let mode = if write { "writing" } else { "reading" };
    text.push_str(&format!("{} (open for {mode}): {verdict}\n", path.display()));
    match decision.rule {
        None => text.push_str("no file rule matches: the open goes through and no alert is written\n"),
        Some(rule) => {
            text.push_str(&format!(
                "policy: {}\nrule: {} ({})\naction: {}\n",
                rule.policy,
                rule.origin,
                rule.action.as_str(),
                decision_action(decision.outcome)
            ));
            let container = scope.is_some();
            let why = match matcher.rules().iter().find(|r| Arc::ptr_eq(&r.rule.meta, rule)) {
                Some(r) => r.not_enforced(container),
                None => (!container).then_some("the host's default file posture is not enforced by this build"),
            };
            if let Some(why) = why {
                text.push_str(&format!("note: {why}: the daemon lets this open through and writes no alert\n"));
            }
            let alert = FileAlert {
                when: SystemTime::now(),
                outcome: decision.outcome,
                rule: Arc::clone(rule),
                resource: bytes.to_vec(),
                data: open_data("SYS_OPENAT", Some(libc::AT_FDCWD), flags.unsigned_abs()),
                pid: 0,
                process: ProcessInfo { exe: exe.unwrap_or_default(), uid: i64::from(uid), ..ProcessInfo::default() },
            };
            let origin = Origin::for_config(&config);
            let mut line = Alert::for_file(&alert, &origin);
            if let Some(s) = &scope {
                line = line.in_container(&s.container.info, None);
            }
            text.push_str("alert:\n");
            text.push_str(&line.to_json_line());
        }
    }
    Ok(Explanation { outcome: decision.outcome, text })
}

/// The running container `wanted` names (an id of at least 12 hex digits, or a name), with the container
/// policies that select it.
fn find_container(config: &policy::Config, wanted: &str) -> Result<ContainerScope> {
    let all = crate::containers::discover(&config.containers.sources);
    let by_id = wanted.len() >= 12 && wanted.bytes().all(|b| b.is_ascii_hexdigit());
    let found = all
        .into_iter()
        .find(|c| if by_id { c.info.id.starts_with(wanted) } else { c.info.name.as_deref() == Some(wanted) });
    match found {
        Some(c) => Ok(ContainerScope::new(config, c)),
        None => Err(Error::NoSuchContainer { wanted: wanted.to_owned() }),
    }
}

fn decision_action(o: Outcome) -> &'static str {
    match o {
        Outcome::Allow => "Allow",
        Outcome::Block => "Block",
        Outcome::Audit => "Audit",
    }
}
