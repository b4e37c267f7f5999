//! Host settings that decide what fanotify can see, reported by `noexecd check`: exec from a memfd and
//! filesystems mounted inside unprivileged user namespaces never reach a mark, so a host that allows them has
//! a way around the guard that only a sysctl closes. The assessment is a pure function over the values read.

use std::path::Path;

/// The sysctl values that matter, as read from /proc/sys (trimmed); `None` when the file does not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sysctls {
    pub memfd_noexec: Option<String>,
    pub max_user_namespaces: Option<String>,
    /// Debian and Ubuntu kernels only: 0 restricts user namespaces to CAP_SYS_ADMIN.
    pub unprivileged_userns_clone: Option<String>,
    /// Ubuntu 23.10+: 1 makes AppArmor deny unprivileged user namespaces unless a profile allows them.
    pub apparmor_restrict_unprivileged_userns: Option<String>,
}

impl Sysctls {
    /// Reads this host's values (of the caller's pid namespace for vm.memfd_noexec).
    pub fn read() -> Self {
        let get = |name: &str| {
            std::fs::read_to_string(Path::new("/proc/sys").join(name.replace('.', "/")))
                .ok()
                .map(|s| s.trim().to_owned())
        };
        Self {
            memfd_noexec: get("vm.memfd_noexec"),
            max_user_namespaces: get("user.max_user_namespaces"),
            unprivileged_userns_clone: get("kernel.unprivileged_userns_clone"),
            apparmor_restrict_unprivileged_userns: get("kernel.apparmor_restrict_unprivileged_userns"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Warning,
    Info,
}

/// One line of advice: what is open and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub text: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefix = match self.level {
            Level::Warning => "warning",
            Level::Info => "info",
        };
        write!(f, "{prefix}: {}", self.text)
    }
}

fn warning(text: String) -> Finding {
    Finding { level: Level::Warning, text }
}

/// What the sysctl values leave open. Values that do not parse count as the unsafe setting.
pub fn assess(s: &Sysctls) -> Vec<Finding> {
    let mut out = Vec::new();
    match s.memfd_noexec.as_deref() {
        Some("2") => {}
        None => out.push(warning(
            "vm.memfd_noexec is not available (kernel older than 6.3): a program run from a memfd (memfd_create + \
             fexecve) never opens a file fanotify can see; fix: a kernel with vm.memfd_noexec, set to 2, or an LSM \
             rule against memfd exec"
                .to_owned(),
        )),
        Some(v) => out.push(warning(format!(
            "vm.memfd_noexec = {v}: a program run from a memfd (memfd_create + fexecve) never opens a file \
             fanotify can see; fix: sysctl -w vm.memfd_noexec=2 (and vm.memfd_noexec = 2 in /etc/sysctl.d/)"
        ))),
    }
    let userns_max = s.max_user_namespaces.as_deref().map(|v| v.parse::<u64>().unwrap_or(u64::MAX));
    let debian_off = s.unprivileged_userns_clone.as_deref() == Some("0");
    let apparmor_on = s.apparmor_restrict_unprivileged_userns.as_deref() == Some("1");
    if userns_max.is_some_and(|n| n > 0) && !debian_off && !apparmor_on {
        let debian =
            if s.unprivileged_userns_clone.is_some() { " or sysctl -w kernel.unprivileged_userns_clone=0" } else { "" };
        out.push(warning(format!(
            "unprivileged user namespaces are allowed (user.max_user_namespaces = {}): a tmpfs mounted inside one \
             is a filesystem no mark covers; fix: sysctl -w user.max_user_namespaces=0{debian} (breaks rootless \
             containers and some browser sandboxes)",
            s.max_user_namespaces.as_deref().unwrap_or_default()
        )));
    }
    out
}

/// CAP_SYS_PTRACE's bit in the capability sets of `/proc/PID/status`.
const CAP_SYS_PTRACE: u32 = 19;

/// What this process's own capabilities leave it unable to see, from its `/proc/self/status` text: without
/// `CAP_SYS_PTRACE` the `/proc/PID/exe` of another user's process (or of one holding capabilities this
/// process lacks) cannot be read, so the open guard cannot tell a reader from an interpreter and refuses
/// (doubt never lets a file in scope run), and a `read_only` file rule cannot read the open's flags.
pub fn own_capabilities(status: &str) -> Vec<Finding> {
    let effective =
        status.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    match effective {
        Some(caps) if caps & (1 << CAP_SYS_PTRACE) != 0 => Vec::new(),
        _ => vec![warning(
            "this process lacks CAP_SYS_PTRACE: /proc/PID/exe and /proc/PID/syscall of other users' processes \
             cannot be read, so the open guard refuses every open of a loadable ELF or script-like file in \
             protected scope by such a process (it cannot tell a reader from an interpreter), from_source rules \
             count as matching, and read_only file rules count every open as a write; fix: give the daemon \
             CAP_SYS_PTRACE (the shipped unit and DaemonSet do), or set [open_guard] enabled = false to trade \
             these refusals for the open guard's routes"
                .to_owned(),
        )],
    }
}

/// Protected paths on a filesystem mounted noexec already: the kernel refuses those execs before fanotify.
pub fn noexec_mounts<'a>(protected: impl IntoIterator<Item = &'a str>) -> Vec<Finding> {
    noexec_findings(protected, mounted_noexec)
}

/// statvfs: whether the filesystem holding `p` is mounted noexec (false when `p` does not exist).
fn mounted_noexec(p: &str) -> bool {
    use nix::sys::statvfs::{FsFlags, statvfs};
    statvfs(Path::new(p)).is_ok_and(|v| v.flags().contains(FsFlags::ST_NOEXEC))
}

fn noexec_findings<'a>(protected: impl IntoIterator<Item = &'a str>, noexec: impl Fn(&str) -> bool) -> Vec<Finding> {
    protected
        .into_iter()
        .filter(|p| noexec(p))
        .map(|p| Finding {
            level: Level::Info,
            text: format!(
                "{p} is on a filesystem mounted noexec: the kernel refuses execs there before fanotify sees them, \
                 so those attempts raise no alert"
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_without_cap_sys_ptrace_is_told_what_it_cannot_see() {
        let with = "Name:\tnoexecd\nCapEff:\t000001ffffffffff\n";
        assert!(own_capabilities(with).is_empty());
        let unit = format!("CapEff:\t{:016x}\n", (1u64 << 21) | (1 << 19) | (1 << 2) | (1 << 29) | (1 << 0));
        assert!(own_capabilities(&unit).is_empty(), "the unit's set has it");
        let container = "CapEff:\t00000000a82425fb\n";
        let f = own_capabilities(container);
        assert_eq!(f.len(), 1, "podman's defaults and SYS_ADMIN lack it");
        assert!(f[0].to_string().starts_with("warning: this process lacks CAP_SYS_PTRACE"), "{}", f[0]);
        assert_eq!(own_capabilities("no such line").len(), 1, "unknown counts as missing");
    }

    fn sysctls(memfd: Option<&str>, max: Option<&str>, clone: Option<&str>, apparmor: Option<&str>) -> Sysctls {
        Sysctls {
            memfd_noexec: memfd.map(str::to_owned),
            max_user_namespaces: max.map(str::to_owned),
            unprivileged_userns_clone: clone.map(str::to_owned),
            apparmor_restrict_unprivileged_userns: apparmor.map(str::to_owned),
        }
    }

    fn texts(s: &Sysctls) -> Vec<String> {
        assess(s).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn closed_host_has_no_findings() {
        assert!(assess(&sysctls(Some("2"), Some("0"), None, None)).is_empty());
        assert!(assess(&sysctls(Some("2"), Some("15000"), Some("0"), None)).is_empty());
        assert!(assess(&sysctls(Some("2"), Some("15000"), None, Some("1"))).is_empty());
        // No user namespaces in this kernel at all.
        assert!(assess(&sysctls(Some("2"), None, None, None)).is_empty());
    }

    #[test]
    fn memfd_exec_allowed_or_unknown_warns_with_the_fix() {
        for v in ["0", "1", "junk"] {
            let t = texts(&sysctls(Some(v), Some("0"), None, None));
            assert_eq!(t.len(), 1, "{t:?}");
            assert!(t[0].starts_with(&format!("warning: vm.memfd_noexec = {v}: ")), "{t:?}");
            assert!(t[0].contains("fix: sysctl -w vm.memfd_noexec=2"), "{t:?}");
        }
        let t = texts(&sysctls(None, Some("0"), None, None));
        assert_eq!(t.len(), 1, "{t:?}");
        assert!(t[0].starts_with("warning: vm.memfd_noexec is not available"), "{t:?}");
    }

    #[test]
    fn user_namespaces_warn_unless_a_switch_restricts_them() {
        let t = texts(&sysctls(Some("2"), Some("96364"), None, None));
        assert_eq!(t.len(), 1, "{t:?}");
        assert!(
            t[0].starts_with("warning: unprivileged user namespaces are allowed (user.max_user_namespaces = 96364)")
        );
        assert!(t[0].contains("fix: sysctl -w user.max_user_namespaces=0 ("), "{t:?}");
        // Debian's switch present and on: named in the fix.
        let t = texts(&sysctls(Some("2"), Some("10"), Some("1"), Some("0")));
        assert_eq!(t.len(), 1, "{t:?}");
        assert!(t[0].contains("or sysctl -w kernel.unprivileged_userns_clone=0"), "{t:?}");
        // Unparsable limit: assume open.
        assert_eq!(texts(&sysctls(Some("2"), Some("x"), None, None)).len(), 1);
    }

    #[test]
    fn both_open_gives_two_lines_memfd_first() {
        let t = texts(&sysctls(Some("0"), Some("5"), Some("1"), None));
        assert_eq!(t.len(), 2, "{t:?}");
        assert!(t[0].contains("memfd") && t[1].contains("user namespaces"), "{t:?}");
        assert!(t.iter().all(|l| !l.contains('\n')), "one line each: {t:?}");
    }

    #[test]
    fn noexec_mount_is_reported_as_info() {
        let f = noexec_findings(["/proc/self", "/"], |p| p == "/proc/self");
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].level, Level::Info);
        assert!(f[0].to_string().starts_with("info: /proc/self is on a filesystem mounted noexec"), "{f:?}");
        // The real statvfs: a path that does not exist is not reported.
        assert!(noexec_mounts(["/nonexistent/noexecd-test"]).is_empty());
    }
}
