//! `noexecd check`: validates the configuration and prints what the daemon would mark and how each mark is
//! decided, the writable directories no rule protects, then the host settings that leave a way around
//! fanotify. No fanotify call.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::containers;
use crate::error::{Error, Result};
use crate::guard::scopes::Scopes;
use crate::guard::{Guard, marks};
use crate::host::dircount;
use crate::host::hardening;
use crate::host::mounts::MountTable;
use crate::host::writable::{self, Cover};
use crate::policy;
use crate::policy::file_rules::FileMatcher;
use crate::policy::matcher::{Action, DEFAULT_POSTURE_POLICY, KnownSubject, Matcher, Mode, Posture, Scope};

/// Validates the configuration and prints, per filesystem to mark, one tab-separated line:
/// `mark <mount point> dev=<maj>:<min> fstype=<type> decides=<path|filesystem> protects=<paths>`, then per
/// file rule `file-rule <host|container> <kind> <target> <action> [read_only] [owner_only] [from_source=...]
/// policy=<name> <origin>` (a container policy's after its `container-file-policy <name> selector=... rules=<n>`),
/// per container policy `container-policy <name> selector=<labels;namespace;containers> rules=<n>`, per running
/// container `container <id> ...` followed by a `container-mount <id> <mount>` line per mount of its own that
/// is marked for it, then one
/// `writable ...` line per writable directory no rule protects ([`writable::Found::line`]).
/// On `err`, one `warning: <file:line:col>: ...` line per Block or Audit pattern that leaves deeper paths of
/// its directory open (`/tmp/*`), one `warning:` (or `info:`) line per host setting that leaves a way around fanotify open, and a
/// `warning:` summing up the writable directories. Findings never change the result: only an invalid
/// configuration is an error.
pub fn check(config_path: &Path, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let config = policy::load(config_path)?;
    let (mountinfo, mounts) = MountTable::read_self().map_err(Error::ReadMounts)?;
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
    let file_rules =
        config.file_matcher.rules().len() + config.container_file_policies.iter().map(|p| p.rules.len()).sum::<usize>();
    let lints = config.lints();
    let guard = Guard::build(config, mounts)?;
    for l in &lints {
        writeln!(err, "warning: {}: {}", l.origin, l.message)
            .map_err(|source| Error::WriteFile { path: "stderr".into(), source })?;
    }
    let w = |out: &mut dyn Write, s: String| {
        writeln!(out, "{s}").map_err(|source| Error::WriteFile { path: "stdout".into(), source })
    };
    let file_part = if file_rules == 0 {
        String::new()
    } else {
        let posture = match guard.config.daemon.default_file_posture {
            Posture::Audit => "audit",
            Posture::Block => "block",
        };
        let unenforced = guard.config.file_rules_not_enforced();
        format!("; {file_rules} file rules ({unenforced} not enforced by this build), default file posture {posture}")
    };
    w(
        out,
        format!(
            "policy OK: {policies} policies, {rules} rules from {files} file(s); mode {mode}; default posture {posture}{file_part}"
        ),
    )?;
    // What the file rules protect, one line each: `file-rule <policy scope> <kind> <target> <action> [read_only]
    // [owner_only] [from_source=...] policy=<name> <origin>`.
    for r in guard.config.file_matcher.rules() {
        let enforced = r.not_enforced(false).map_or("enforced".to_owned(), |why| format!("not-enforced: {why}"));
        w(out, format!("file-rule\thost\t{}\t{enforced}", FileMatcher::describe(r)))?;
    }
    for p in &guard.config.container_file_policies {
        let (name, selector, rules) = (&p.name, p.selector.describe(), p.rules.len());
        w(out, format!("container-file-policy\t{name}\tselector={selector}\trules={rules}"))?;
        for r in &p.rules {
            let enforced = r.not_enforced(true).map_or("enforced".to_owned(), |why| format!("not-enforced: {why}"));
            w(out, format!("file-rule\tcontainer\t{}\t{enforced}", FileMatcher::describe(r)))?;
        }
    }
    let unenforced = guard.config.file_rules_not_enforced();
    if unenforced > 0 {
        writeln!(err, "warning: {}", crate::policy::file_rules::not_enforced_summary(unenforced))
            .map_err(|source| Error::WriteFile { path: "stderr".into(), source })?;
    }
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
    // The runtime instances read: configured, found by their service processes, at a distribution's known
    // place, or at their defaults.
    let runtime_lines = crate::cmd::containers::runtime_lines(&guard.config.containers.sources);
    let no_runtime = runtime_lines.iter().all(|l| l.starts_with("runtime\tnone") || l.ends_with("\tabsent"));
    for line in &runtime_lines {
        w(out, line.clone())?;
    }
    if guard.config.reads_containers() && no_runtime {
        writeln!(
            err,
            "warning: container policies exist but no container runtime that tells labels was found (no containerd, CRI-O, dockerd or podman service running, none at a known place): no container is selected; set its places in [containers]"
        )
        .map_err(|source| Error::WriteFile { path: "stderr".into(), source })?;
    }
    // The containers running now, with the container policies that select each: their execs are seen on
    // the `mark` lines whose protects= names `containers:<layer root>`.
    if guard.config.reads_containers() {
        let scopes =
            Scopes::build(&guard.config, containers::discover(&guard.config.containers.sources), &guard.mounts);
        for s in scopes.all() {
            let c = &s.container;
            let policies = if s.policies.is_empty() { "-".to_owned() } else { s.policies.join(",") };
            w(
                out,
                format!(
                    "container\t{}\truntime={}\tname={}\tlabels={}\tpolicies={policies}",
                    c.info.id,
                    containers::runtime_name(c.info.runtime),
                    c.info.name.as_deref().unwrap_or("-"),
                    c.display_labels()
                ),
            )?;
            // Its own mounts in protected scope, each marked for it: `<mount point>:<fstype>:private[,whole]`
            // (marked through the container's root; whole: the open guard is on that mark) or `:host` (a
            // bind of a host filesystem, marked through our mount of it).
            for m in &s.mounts {
                w(out, format!("container-mount\t{}\t{}", c.info.id, m.describe()))?;
            }
            // Under its default file posture (an Allow file rule selects it): every open on these mounts is
            // decided by its file rules.
            if s.file_posture() {
                let mounts: Vec<String> =
                    s.posture_mounts.iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect();
                w(out, format!("container-file-posture\t{}\t{}", c.info.id, mounts.join(",")))?;
            }
        }
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
    if !guard.config.container_policies.is_empty() {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let release = release.trim();
        if !kernel_at_least(release, 6, 5) {
            writeln!(
                err,
                "warning: Linux {release}: container policies need Linux 6.5 to see a container's execs on its image layers from its first program; here a container is guarded only once noexecd knows it (up to 500 ms after it starts)"
            )
            .map_err(|source| Error::WriteFile { path: "stderr".into(), source })?;
        }
    }
    // The daemon marks at most max_directories below the open guard's roots; past it, newer directories are
    // not guarded against sh/ld.so/LD_PRELOAD (the exec guard is whole).
    let roots = guard.open_inode_roots();
    if !roots.is_empty() {
        let cap = guard.config.open_guard.max_directories;
        let mut left = cap;
        let mut total = 0usize;
        for root in &roots {
            let n = dircount::count_dirs(root, left);
            total += n;
            left = left.saturating_sub(n);
            if total > cap {
                break;
            }
        }
        let shown = roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(",");
        if total > cap {
            writeln!(
                err,
                "warning: open guard: more than max_directories = {cap} directories below {shown}: the daemon marks {cap}, raises one SystemEvent alert (OpenGuardDirectoryCap) and says so in its status; files in the directories past the cap can be run by sh, ld.so or LD_PRELOAD (exec stays guarded). Raise [open_guard] max_directories or make the directory its own mount"
            )
            .map_err(|source| Error::WriteFile { path: "stderr".into(), source })?;
        } else {
            w(out, format!("open-guard-dirs	{total}	max_directories={cap}	roots={shown}"))?;
        }
        // A root that is a mount's root also gets a mount mark, which sees a file in a directory made there a
        // moment ago; the others have the window, and the bind that closes it is said here.
        for m in guard.open_mounts() {
            w(out, format!("open-guard-mount	{}", m.path.display()))?;
        }
        for root in guard.open_roots_without_mount().into_iter().filter(|r| r.is_dir()) {
            writeln!(err, "warning: {}", marks::unmounted_root_remedy(&root))
                .map_err(|source| Error::WriteFile { path: "stderr".into(), source })?;
        }
    }
    let accounts = writable::Accounts::read();
    let report = writable::find(&mountinfo, &accounts, writable::Limits::default(), &mut |dir, dev| {
        cover(&guard.config.matcher, &guard.mounts, guard.target_for(dev).is_some(), dir.as_os_str().as_bytes())
    });
    for f in &report.found {
        w(out, f.line(&accounts))?;
    }
    let protected = guard.targets.iter().flat_map(|t| t.protects.iter().map(String::as_str));
    let findings =
        hardening::assess(&hardening::Sysctls::read()).into_iter().chain(hardening::noexec_mounts(protected));
    let mut e = |s: String| writeln!(err, "{s}").map_err(|source| Error::WriteFile { path: "stderr".into(), source });
    for f in findings {
        e(f.to_string())?;
    }
    for line in writable_summary(&report) {
        e(line)?;
    }
    Ok(())
}

/// The exec the policy is asked about for a writable directory: uid 65534 runs a file named `x` that it owns
/// (so `owner_only` does not stop it), from a program no `from_source` names.
const PROBE_UID: u32 = 65534;
const PROBE_EXE: &[u8] = b"/nonexistent/noexecd-check-probe";
const PROBE_NAME: &[u8] = b"x";

/// How the policy treats what a writer could put in `dir`: [`Cover::Below`] when a Block rule matches every
/// file below it, [`Cover::Here`] when a Block rule (or the default posture `block`) stops both a file put
/// directly in it and one in a subdirectory the writer makes, else [`Cover::None`]. The rule's action
/// counts, not the mode: in `mode = "audit"` a rule that names the directory still covers it. `guarded`:
/// the directory's filesystem is marked (the default posture applies only there).
fn cover(matcher: &Matcher, mounts: &MountTable, guarded: bool, dir: &[u8]) -> Cover {
    if !guarded {
        return Cover::None;
    }
    let mut canonical = Vec::new();
    let mapped =
        mounts.containing(dir).is_some_and(|via| mounts.canonical_path(via, dir, &mut Vec::new(), &mut canonical));
    if !mapped {
        canonical = dir.to_vec();
    }
    if canonical.last() != Some(&b'/') {
        canonical.push(b'/');
    }
    let decide = |scope: Scope<'_>| {
        let mut subject = KnownSubject { exe: Some(PROBE_EXE.to_vec()), uid: Some(PROBE_UID) };
        matcher.decide(scope, PROBE_UID, &mut subject).rule.filter(|r| r.action == Action::Block).cloned()
    };
    // Below: only a rule of the policy, never the default posture (an Allow rule inside draws a line that a
    // whole-directory question does not see).
    if decide(Scope::Below(&canonical)).is_some_and(|r| r.policy != DEFAULT_POSTURE_POLICY) {
        return Cover::Below;
    }
    let file = [canonical.as_slice(), PROBE_NAME].concat();
    let nested = [canonical.as_slice(), PROBE_NAME, b"/", PROBE_NAME].concat();
    if decide(Scope::Path(&file)).is_some() && decide(Scope::Path(&nested)).is_some() {
        Cover::Here
    } else {
        Cover::None
    }
}

/// The `stderr` lines about writable directories: a `warning:` when there are any or when the walk stopped
/// before it was done, and an `info:` saying what was searched.
fn writable_summary(r: &writable::Report) -> Vec<String> {
    let mut lines = Vec::new();
    let n = r.found.len();
    if n > 0 {
        let dirs = if n == 1 { "directory" } else { "directories" };
        lines.push(format!(
            "warning: {n} writable {dirs} that no rule protects (the `writable` lines on stdout): a non-root user \
             can put a program there and run it; fix: add each cover= line as a [[policy.process.match_directories]] \
             of a Block policy, or take the write permission away (nothing below a listed directory is listed)"
        ));
    }
    if let Some(stop) = r.stopped {
        let why = match stop {
            writable::Stop::Time => format!("its time budget of {:.1} s", r.limits.budget.as_secs_f64()),
            writable::Stop::Entries => format!("its limit of {} directory entries", r.limits.max_entries),
        };
        lines.push(format!(
            "warning: the search for writable directories stopped at {why}: directories it did not reach are not \
             listed"
        ));
    }
    let unreadable = if r.unreadable > 0 { format!(", {} could not be read", r.unreadable) } else { String::new() };
    lines.push(format!(
        "info: searched {} directories ({} entries) on {} filesystems for writable places in {:.2} s{unreadable}",
        r.dirs,
        r.entries,
        r.mounts,
        r.elapsed.as_secs_f64()
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(text: &str) -> Matcher {
        policy::load_str(Path::new("t.toml"), text).unwrap().matcher
    }

    fn shipped() -> Matcher {
        matcher(include_str!("../../config/noexecd.toml"))
    }

    fn rule(body: &str) -> String {
        format!("[[policy]]\nname = \"p\"\n{body}")
    }

    fn dirs(dir: &str, extra: &str) -> String {
        rule(&format!("[[policy.process.match_directories]]\ndir = \"{dir}\"\nrecursive = true\n{extra}"))
    }

    fn root_only() -> MountTable {
        MountTable::parse(b"1 0 254:0 / / rw - ext4 /dev/vda rw\n3 1 254:0 /tmp /mnt/bind rw - ext4 /dev/vda rw\n")
    }

    fn of(m: &Matcher, dir: &str) -> Cover {
        cover(m, &root_only(), true, dir.as_bytes())
    }

    #[test]
    fn the_shipped_policy_covers_run_lock_and_not_php_sessions() {
        let m = shipped();
        for d in ["/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/run/lock/lvm", "/tmp/.X11-unix"] {
            assert_eq!(of(&m, d), Cover::Below, "{d}");
        }
        for d in ["/var/lib/php/sessions", "/run", "/", "/var/lock-other", "/run/lockx"] {
            assert_eq!(of(&m, d), Cover::None, "{d}");
        }
        assert_eq!(of(&m, "/mnt/bind"), Cover::Below, "a bind mount of /tmp is decided as /tmp");
        assert_eq!(cover(&m, &root_only(), false, b"/tmp"), Cover::None, "not on a marked filesystem");
    }

    #[test]
    fn only_a_block_that_holds_for_any_program_and_owner_covers() {
        let flat = matcher(&rule("[[policy.process.match_directories]]\ndir = \"/srv/up/\"\n"));
        assert_eq!(of(&flat, "/srv/up"), Cover::None, "a writer makes a subdirectory: not recursive is not enough");
        let glob = matcher(&rule("[[policy.process.match_patterns]]\npattern = \"/srv/up/**\"\n"));
        assert_eq!(of(&glob, "/srv/up"), Cover::Here, "blocks a file and one in a new subdirectory; walk on");
        let sh = matcher(&rule("[[policy.process.match_patterns]]\npattern = \"/srv/up/*.sh\"\n"));
        assert_eq!(of(&sh, "/srv/up"), Cover::None, "the writer picks the name");
        let source = matcher(&dirs("/srv/up/", "from_source = [\"/usr/sbin/apache2\"]\n"));
        assert_eq!(of(&source, "/srv/up"), Cover::None, "any other program runs it");
        let owner = matcher(&dirs("/srv/up/", "owner_only = true\n"));
        assert_eq!(of(&owner, "/srv/up"), Cover::None, "the writer owns what it writes");
        let audit = matcher(&dirs("/srv/up/", "").replace("name = \"p\"\n", "name = \"p\"\naction = \"Audit\"\n"));
        assert_eq!(of(&audit, "/srv/up"), Cover::None, "an Audit rule lets it run");
        let audit_mode = matcher(&format!("[daemon]\nmode = \"audit\"\n{}", dirs("/srv/up/", "")));
        assert_eq!(of(&audit_mode, "/srv/up"), Cover::Below, "audit mode: the rule still names it");
    }

    #[test]
    fn the_default_posture_block_covers_files_but_never_a_whole_subtree() {
        let text = "[daemon]\ndefault_posture = \"block\"\n[[policy]]\nname = \"ok\"\naction = \"Allow\"\n\
                    [[policy.process.match_directories]]\ndir = \"/opt/ok/\"\nrecursive = true\n";
        let m = matcher(text);
        assert_eq!(of(&m, "/srv/up"), Cover::Here);
        assert_eq!(of(&m, "/opt/ok"), Cover::None, "allowed");
        let audit = matcher(&text.replace("\"block\"", "\"audit\""));
        assert_eq!(of(&audit, "/srv/up"), Cover::None);
    }

    #[test]
    fn summary_warns_once_for_findings_and_once_for_a_cut_walk() {
        let mut r =
            writable::find(b"", &writable::Accounts::default(), writable::Limits::default(), &mut |_, _| Cover::None);
        let lines = writable_summary(&r);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("info: searched 0 directories"), "{lines:?}");
        r.found.push(writable::Found {
            path: "/run/lock".into(),
            stat: writable::DirStat { mode: 0o1777, uid: 0, gid: 0 },
            writers: vec![writable::Writer::Everyone],
            fstype: "tmpfs".into(),
            noexec: false,
        });
        r.stopped = Some(writable::Stop::Time);
        let lines = writable_summary(&r);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("warning: 1 writable directory that no rule protects"), "{lines:?}");
        assert!(lines[1].starts_with("warning: the search for writable directories stopped at its time budget"));
        assert!(lines.iter().all(|l| !l.contains('\n')));
    }
}

/// Whether a kernel release (`6.18.44-fc`, `5.15.0-91-generic`) is at least `major.minor`.
fn kernel_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => true,
    }
}

#[cfg(test)]
mod kernel_tests {
    use super::kernel_at_least;

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert!(kernel_at_least("6.18.44-fc-v1045", 6, 5));
        assert!(kernel_at_least("6.5.0", 6, 5));
        assert!(!kernel_at_least("6.1.0-28-amd64", 6, 5));
        assert!(!kernel_at_least("5.15.0-91-generic", 6, 5));
        assert!(kernel_at_least("", 6, 5), "unknown: no warning");
    }
}
