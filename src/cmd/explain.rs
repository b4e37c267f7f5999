//! `noexecd explain PATH`: how the installed policy decides an exec of PATH, offline, with the alert it
//! would write.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use crate::alert::{Alert, ExecAlert, Origin};
use crate::cli::explain_status;
use crate::error::Result;
use crate::host::procfs::ProcessInfo;
use crate::policy;
use crate::policy::matcher::{KnownSubject, Outcome, Scope};

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
                container: None,
            };
            let origin = Origin::for_config(&config);
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
