//! The `[open_guard]` settings: which programs are interpreters (and how their argv names a script), which
//! may read loadable ELF files, which parents may run package scriptlets, which programs are multi-call
//! binaries (judged by the applet they run); with their defaults and validation.

use toml::Spanned;

use super::located::Located;
use super::raw::RawOpenGuard;
use crate::error::PolicyError;

/// How an interpreter's command line names its script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// sh, bash, dash, zsh, ksh: `-c` runs a string, `-s` reads stdin, `-o`/`+o`/`-O`/`+O` take a value.
    Shell,
    /// python: `-c` string, `-m` module, `-W`/`-X` take a value.
    Python,
    /// perl: `-e`/`-E` string; `-I`/`-M`/`-m` take a value attached or next.
    Perl,
    /// ruby: `-e` string; `-I`/`-r`/`-C` take a value.
    Ruby,
    /// php: `-r` code; `-f FILE` names the script; `-c`/`-d`/`-z` take a value.
    Php,
    /// node: `-e`/`-p`/`--eval`/`--print` code; `-r`/`--require`/`--import` take a value.
    Node,
    /// Any other interpreter: the first argument not starting with `-`.
    Generic,
}

impl Syntax {
    /// The syntax for an interpreter named in the policy (`python3` → Python).
    pub fn for_name(name: &str) -> Syntax {
        let stem = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
        match stem {
            "sh" | "bash" | "dash" | "ash" | "hush" | "zsh" | "ksh" | "mksh" | "pdksh" | "yash" | "busybox" => {
                Syntax::Shell
            }
            "python" | "pypy" => Syntax::Python,
            "perl" => Syntax::Perl,
            "ruby" => Syntax::Ruby,
            "php" | "php-cli" => Syntax::Php,
            "node" | "nodejs" => Syntax::Node,
            _ => Syntax::Generic,
        }
    }
}

/// A program name the policy lists (`python3`, `*-ld.bfd`), matched against an executable's file name.
#[derive(Debug, Clone)]
pub struct ProgramName {
    pub name: String,
    glob: Option<globset::GlobMatcher>,
}

impl ProgramName {
    /// `name` is a file name, optionally a glob (`*`, `?`, `[...]`).
    pub fn new(name: &str) -> Result<Self, globset::Error> {
        let glob = if name.contains(['*', '?', '[', '{']) {
            Some(globset::GlobBuilder::new(name).literal_separator(true).build()?.compile_matcher())
        } else {
            None
        };
        Ok(Self { name: name.to_owned(), glob })
    }

    /// Whether an executable's file name is this program: the same name, a match of the glob, or the name
    /// followed by a version (`python3` matches `python3.11`, `perl` matches `perl5.36.0`).
    pub fn matches(&self, file_name: &[u8]) -> bool {
        if let Some(glob) = &self.glob {
            return std::str::from_utf8(file_name).is_ok_and(|n| glob.is_match(n));
        }
        // The first byte alone rules out nearly every listed name, without a call to compare the rest (this runs
        // for every name listed, on every open of a file that could run).
        let name = self.name.as_bytes();
        if name.first().is_some_and(|first| file_name.first() != Some(first)) {
            return false;
        }
        // Only a version may follow the name: `python3.11`, `perl5.36.0`, never `python3-config`.
        file_name.strip_prefix(name).is_some_and(|rest| rest.iter().all(|&b| b.is_ascii_digit() || b == b'.'))
    }
}

/// The file name of a path (the bytes after the last `/`).
pub fn file_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

/// The `[open_guard]` settings, validated.
#[derive(Debug, Clone)]
pub struct OpenGuardConfig {
    /// Whether protected filesystems get FAN_OPEN_PERM marks at all.
    pub enabled: bool,
    /// Programs that run scripts named on their command line.
    pub interpreters: Vec<ProgramName>,
    /// Programs allowed to open loadable ELF files in protected scope (they read them, never map them).
    pub elf_readers: Vec<ProgramName>,
    /// Parents (by process name, `comm`) whose root-owned interpreter children may run scripts in protected
    /// scope: package managers write their maintainer scriptlets to /var/tmp and run `sh /var/tmp/rpm-tmp.X`.
    pub script_parents: Vec<ProgramName>,
    /// Multi-call binaries (busybox, toybox): one executable that runs the applet its argv names, judged as
    /// that applet (`sh`, `cat`, `awk`), never by its own name.
    pub multi_call: Vec<ProgramName>,
    /// Directories the open guard marks at most (on filesystems shared with the rest of the system): kernel
    /// marks and the daemon's memory stay bounded whatever users create; past it, one `SystemEvent` alert.
    pub max_directories: usize,
}

/// `max_directories` unless the policy says otherwise.
pub const DEFAULT_MAX_DIRECTORIES: usize = 262_144;
/// The largest `max_directories` taken: each directory costs a kernel mark in each of two groups.
pub const MAX_MAX_DIRECTORIES: i64 = 4_194_304;

/// The multi-call binaries judged by their applet unless the policy says otherwise.
pub const DEFAULT_MULTI_CALL: &[&str] = &["busybox", "toybox"];

/// The package managers that run scriptlets from /var/tmp or /tmp (rpm's `%_tmppath` is /var/tmp; dnf, yum,
/// zypper and PackageKit run them through librpm in their own process).
pub const DEFAULT_SCRIPT_PARENTS: &[&str] =
    &["rpm", "rpmbuild", "rpm-ostree", "dnf", "dnf-3", "dnf5", "microdnf", "yum", "zypper", "packagekitd", "dpkg"];

/// The interpreters watched unless the policy says otherwise.
pub const DEFAULT_INTERPRETERS: &[&str] = &[
    "sh", "bash", "dash", "ash", "hush", "zsh", "ksh", "mksh", "python", "python2", "python3", "pypy", "pypy3", "perl",
    "ruby", "php", "node", "nodejs", "lua", "tclsh", "wish", "awk", "gawk", "mawk",
];

/// The programs allowed to read loadable ELF files in protected scope unless the policy says otherwise:
/// copying, archiving, hashing, inspecting, linking.
pub const DEFAULT_ELF_READERS: &[&str] = &[
    "cat",
    "cp",
    "mv",
    "dd",
    "install",
    "rsync",
    "scp",
    "sftp-server",
    "tar",
    "cpio",
    "gzip",
    "gunzip",
    "bzip2",
    "xz",
    "zstd",
    "lz4",
    "zip",
    "unzip",
    "7z",
    "sha1sum",
    "sha224sum",
    "sha256sum",
    "sha384sum",
    "sha512sum",
    "md5sum",
    "b2sum",
    "cksum",
    "sum",
    "cmp",
    "diff",
    "od",
    "hexdump",
    "xxd",
    "head",
    "tail",
    "less",
    "more",
    "grep",
    "wc",
    "file",
    "strings",
    "objdump",
    "readelf",
    "nm",
    "size",
    "strip",
    "objcopy",
    "ar",
    "ranlib",
    "as",
    "ld",
    "ld.bfd",
    "ld.gold",
    "ld.lld",
    "lld",
    "mold",
    "collect2",
    "*-ld",
    "*-ld.bfd",
    "*-ld.gold",
    "*-as",
    "*-objdump",
    "*-readelf",
    "*-nm",
    "*-strip",
    "*-objcopy",
    "*-ar",
    "gdb",
    "clamscan",
];

impl Default for OpenGuardConfig {
    /// The default lists, their globs compiled once per process (every load of a policy starts from them;
    /// a debug build takes tens of milliseconds to compile them).
    fn default() -> Self {
        static DEFAULT: std::sync::LazyLock<OpenGuardConfig> = std::sync::LazyLock::new(|| {
            let names = |list: &[&str]| list.iter().filter_map(|n| ProgramName::new(n).ok()).collect();
            OpenGuardConfig {
                enabled: true,
                interpreters: names(DEFAULT_INTERPRETERS),
                elf_readers: names(DEFAULT_ELF_READERS),
                script_parents: names(DEFAULT_SCRIPT_PARENTS),
                multi_call: names(DEFAULT_MULTI_CALL),
                max_directories: DEFAULT_MAX_DIRECTORIES,
            }
        });
        DEFAULT.clone()
    }
}

impl OpenGuardConfig {
    /// The interpreter an executable (or a multi-call binary's applet) is, if any (its argv syntax comes
    /// from the listed name).
    pub fn interpreter(&self, exe: &[u8]) -> Option<Syntax> {
        let name = file_name(exe);
        self.interpreters.iter().find(|p| p.matches(name)).map(|p| Syntax::for_name(&p.name))
    }

    /// Whether an executable is a multi-call binary (see `multi_call`).
    pub fn is_multi_call(&self, exe: &[u8]) -> bool {
        let name = file_name(exe);
        self.multi_call.iter().any(|p| p.matches(name))
    }

    /// Whether a process named `comm` is a package manager whose scriptlets may run (see `script_parents`).
    pub fn is_script_parent(&self, comm: &[u8]) -> bool {
        self.script_parents.iter().any(|p| p.matches(comm))
    }

    pub fn is_elf_reader(&self, exe: &[u8]) -> bool {
        let name = file_name(exe);
        self.elf_readers.iter().any(|p| p.matches(name))
    }
}

pub(super) fn validate(at: &Located<'_>, raw: &RawOpenGuard) -> Result<OpenGuardConfig, PolicyError> {
    let mut out = OpenGuardConfig::default();
    if let Some(enabled) = raw.enabled {
        out.enabled = enabled;
    }
    if let Some(list) = &raw.interpreters {
        out.interpreters = names(at, list, "interpreters", "python3")?;
    }
    if let Some(list) = &raw.elf_readers {
        out.elf_readers = names(at, list, "elf_readers", "sha256sum")?;
    }
    if let Some(list) = &raw.script_parents {
        out.script_parents = names(at, list, "script_parents", "rpm")?;
    }
    if let Some(list) = &raw.multi_call {
        out.multi_call = names(at, list, "multi_call", "busybox")?;
    }
    if let Some(max) = &raw.max_directories {
        let n = *max.get_ref();
        if !(1..=MAX_MAX_DIRECTORIES).contains(&n) {
            return Err(at.error(max.span(), format!("max_directories = {n} is out of range: write a number of directories from 1 to {MAX_MAX_DIRECTORIES}, such as {DEFAULT_MAX_DIRECTORIES} (the default)")));
        }
        out.max_directories = n as usize;
    }
    Ok(out)
}

/// Program file names (`python3`, `*-ld.bfd`): not paths, not empty, valid globs.
fn names(
    at: &Located<'_>,
    list: &[Spanned<String>],
    key: &str,
    example: &str,
) -> Result<Vec<ProgramName>, PolicyError> {
    list.iter()
        .map(|entry| {
            let name = entry.get_ref();
            if name.is_empty() {
                return Err(at.error(entry.span(), format!("{key} holds an empty name: write a program's file name such as \"{example}\"")));
            }
            if name.contains('/') || name.contains('\0') {
                return Err(at.error(entry.span(), format!("{key} entry \"{name}\" is a path: write the program's file name alone, such as \"{example}\" (it matches the executable's name in any directory)")));
            }
            ProgramName::new(name).map_err(|e| {
                at.error(entry.span(), format!("{key} entry \"{name}\" is not a valid glob: {}", e.kind()))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_managers_are_script_parents_by_default_and_shells_are_not() {
        let c = OpenGuardConfig::default();
        for comm in ["rpm", "dnf", "yum", "zypper", "dpkg", "packagekitd"] {
            assert!(c.is_script_parent(comm.as_bytes()), "{comm}");
        }
        for comm in ["bash", "sh", "python3", "nginx", "rpmx", ""] {
            assert!(!c.is_script_parent(comm.as_bytes()), "{comm}");
        }
    }

    #[test]
    fn program_names_match_versions_and_globs() {
        let p = ProgramName::new("python3").unwrap();
        assert!(p.matches(b"python3"));
        assert!(p.matches(b"python3.11"));
        assert!(!p.matches(b"python3-config"));
        assert!(!p.matches(b"python"));
        let perl = ProgramName::new("perl").unwrap();
        assert!(perl.matches(b"perl5.36.0"));
        assert!(!perl.matches(b"perldoc"));
        let ld = ProgramName::new("*-ld.bfd").unwrap();
        assert!(ld.matches(b"x86_64-linux-gnu-ld.bfd"));
        assert!(!ld.matches(b"ld.so"));
        assert_eq!(Syntax::for_name("python3"), Syntax::Python);
        assert_eq!(Syntax::for_name("perl"), Syntax::Perl);
        assert_eq!(Syntax::for_name("dash"), Syntax::Shell);
    }

    #[test]
    fn defaults_classify_common_programs() {
        let c = OpenGuardConfig::default();
        assert_eq!(c.interpreter(b"/usr/bin/python3.11"), Some(Syntax::Python));
        assert_eq!(c.interpreter(b"/usr/bin/dash"), Some(Syntax::Shell));
        assert_eq!(c.interpreter(b"/usr/bin/cat"), None);
        assert!(c.is_elf_reader(b"/usr/bin/sha256sum"));
        assert!(c.is_elf_reader(b"/usr/bin/x86_64-linux-gnu-ld.bfd"));
        assert!(!c.is_elf_reader(b"/usr/bin/python3.11"));
        assert!(!c.is_elf_reader(b"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"));
        assert!(c.is_multi_call(b"/usr/bin/busybox") && c.is_multi_call(b"/bin/toybox"));
        assert!(!c.is_multi_call(b"/usr/bin/bash"));
        // busybox is judged by its applet: its own name is no interpreter.
        assert_eq!(c.interpreter(b"/usr/bin/busybox"), None);
        assert_eq!(c.interpreter(b"hush"), Some(Syntax::Shell));
    }
}
