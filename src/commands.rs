//! `check` and `explain`: what the daemon would do, without fanotify.
#![forbid(unsafe_code)]

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use crate::alert::{Alert, ExecAlert, Origin};
use crate::error::{Error, Result};
use crate::guard::Guard;
use crate::hardening;
use crate::matcher::{KnownSubject, Mode, Outcome, Posture, Scope};
use crate::mounts::MountTable;
use crate::policy;
use crate::procfs::ProcessInfo;

/// Validates the configuration and prints, per filesystem to mark, one tab-separated line:
/// `mark <mount point> dev=<maj>:<min> fstype=<type> decides=<path|filesystem> protects=<paths>`.
/// On `err`, one `warning:` (or `info:`) line per host setting that leaves a way around fanotify open.
pub fn check(config_path: &Path, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let config = policy::load(config_path)?;
    let (_, mounts) = MountTable::read_self().map_err(Error::ReadMounts)?;
    let files = config.files.len();
    let rules = config.matcher.rules().len();
    let policies = config.policy_count;
    let mode = match config.matcher.mode() {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    };
    let posture = if config.matcher.whitelist() {
        match config.matcher.posture() {
            Posture::Audit => "audit (Allow rules present)",
            Posture::Block => "block (Allow rules present)",
        }
    } else {
        "not used (no Allow rules)"
    };
    let guard = Guard::build(config, mounts)?;
    let w = |out: &mut dyn Write, s: String| {
        writeln!(out, "{s}").map_err(|source| Error::WriteFile { path: "stdout".into(), source })
    };
    w(
        out,
        format!(
            "policy OK: {policies} policies, {rules} rules from {files} file(s); mode {mode}; default posture {posture}"
        ),
    )?;
    for t in &guard.targets {
        w(
            out,
            format!(
                "mark\t{}\tdev={}:{}\tfstype={}\tdecides={}\tprotects={}",
                t.mount_point.display(),
                libc::major(t.dev),
                libc::minor(t.dev),
                t.fstype,
                t.decides,
                t.protects.join(",")
            ),
        )?;
    }
    let protected = guard.targets.iter().flat_map(|t| t.protects.iter().map(String::as_str));
    let findings =
        hardening::assess(&hardening::Sysctls::read()).into_iter().chain(hardening::noexec_mounts(protected));
    for f in findings {
        writeln!(err, "{f}").map_err(|source| Error::WriteFile { path: "stderr".into(), source })?;
    }
    Ok(())
}

/// The offline decision for an exec of `path`, with the alert it would write.
pub struct Explanation {
    pub outcome: Outcome,
    pub text: String,
}

pub fn explain(
    config_path: &Path,
    path: &Path,
    source: Option<&Path>,
    uid: Option<u32>,
    owner: Option<u32>,
) -> Result<Explanation> {
    let config = policy::load(config_path)?;
    // The daemon sees the file the kernel opens: a relative name from here, through its symlinks.
    let resolved = std::fs::canonicalize(path).or_else(|_| std::path::absolute(path));
    let path = resolved.as_deref().unwrap_or(path);
    let owner = owner.unwrap_or_else(|| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).map(|m| m.uid()).unwrap_or(0)
    });
    let uid = uid.unwrap_or_else(|| nix::unistd::getuid().as_raw());
    let exe = source.map(|s| s.as_os_str().as_bytes().to_vec());
    let mut subject = KnownSubject { exe: exe.clone(), uid: Some(uid) };
    let bytes = path.as_os_str().as_bytes();
    let decision = config.matcher.decide(Scope::Path(bytes), owner, &mut subject);
    let mut text = String::new();
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
            };
            let origin = Origin {
                cluster_name: config.daemon.cluster_name.clone(),
                host_name: config.daemon.host_name.clone().unwrap_or_else(|| {
                    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
                }),
            };
            text.push_str("alert:\n");
            text.push_str(&Alert::for_exec(&alert, &origin).to_json_line());
        }
    }
    Ok(Explanation { outcome: decision.outcome, text })
}

fn decision_action(o: Outcome) -> &'static str {
    match o {
        Outcome::Allow => "Allow",
        Outcome::Block => "Block",
        Outcome::Audit => "Audit",
    }
}
