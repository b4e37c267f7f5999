//! `noexecd check`: validates the configuration and prints what the daemon would mark and how each mark is
//! decided, then the host settings that leave a way around fanotify. No fanotify call.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::guard::Guard;
use crate::host::hardening;
use crate::host::mounts::MountTable;
use crate::policy;
use crate::policy::matcher::{Mode, Posture};

/// Validates the configuration and prints, per filesystem to mark, one tab-separated line:
/// `mark <mount point> dev=<maj>:<min> fstype=<type> decides=<path|filesystem> protects=<paths>`, then per
/// container policy `container-policy <name> selector=<labels;namespace;containers> rules=<n>`.
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
    for p in &guard.config.container_policies {
        let (name, selector, rules) = (&p.name, p.selector.describe(), p.rules.len());
        w(out, format!("container-policy\t{name}\tselector={selector}\trules={rules}"))?;
    }
    // The daemon answers its own opens at once, so this works; but alerts kept where the policy protects are
    // kept where attackers write.
    let log = guard.config.daemon.alert_log.as_os_str().as_bytes();
    if !guard.config.matcher.untouched_by_rules(log) {
        writeln!(
            err,
            "warning: alert_log {} lies in protected scope: it works, but the alerts then live where attackers write; put it under /var/log",
            guard.config.daemon.alert_log.display()
        )
        .map_err(|source| Error::WriteFile { path: "stderr".into(), source })?;
    }
    let protected = guard.targets.iter().flat_map(|t| t.protects.iter().map(String::as_str));
    let findings =
        hardening::assess(&hardening::Sysctls::read()).into_iter().chain(hardening::noexec_mounts(protected));
    for f in findings {
        writeln!(err, "{f}").map_err(|source| Error::WriteFile { path: "stderr".into(), source })?;
    }
    Ok(())
}
