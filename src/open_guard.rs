//! The open-time guard, pure part: what a file in protected scope is (from its first bytes) and what the
//! process opening it is doing (from its executable's name and argv), and the verdict from both.
//!
//! Code that runs without exec (`ld.so /tmp/x`, `LD_PRELOAD`, `dlopen`, `sh /tmp/x`, `python3 /tmp/x.py`)
//! raises only FAN_OPEN_PERM. An open is a route to running the file when:
//! - the opener is the dynamic loader and the file is a loadable ELF (ET_EXEC or ET_DYN);
//! - the opener is any other program that is not an allowed ELF reader (cat, cp, tar, ld, ...) and the file
//!   is a loadable ELF: that is `LD_PRELOAD`, `dlopen` or an mmap(PROT_EXEC) of it;
//! - the opener is an interpreter whose argv names this file as its script (first non-option argument).
//!
//! Everything else is allowed: relocatable objects (ET_REL: compiler input, never loaded) and empty files
//! without looking further, any other file read by a program that is not an interpreter, and an interpreter
//! reading a file that is not its script (`python3 -c "open('/tmp/data.csv')"`). Content alone never clears
//! a non-ELF file: interpreters run files with NUL bytes and polyglots. Nothing here does I/O; `opener`
//! reads /proc.
#![forbid(unsafe_code)]

/// How many bytes of a file the guard reads to sniff it.
pub const HEAD_LEN: usize = 64;

/// What a file is, by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// ELF of type ET_EXEC or ET_DYN: an executable or shared object the loader can map.
    LoadableElf,
    /// Any other ELF (ET_REL object files, core dumps): never mapped for execution.
    OtherElf,
    /// Starts with `#!`.
    Shebang,
    /// Text without a `#!` line: may be a script (`sh /tmp/x`) or data (`/tmp/data.csv`).
    Text,
    /// Anything else that is not empty. Still a possible script: bash, dash, perl, ruby, php and node run a
    /// file with NUL bytes after its first line, bash runs the lines after a binary first line (a PNG/shell
    /// polyglot), and python runs a zip file. Only the opener can tell.
    Binary,
    /// An empty file: nothing to run.
    Empty,
}

impl FileKind {
    /// Whether an interpreter could run it as a script: anything but an ELF or an empty file.
    pub fn script_like(self) -> bool {
        matches!(self, FileKind::Shebang | FileKind::Text | FileKind::Binary)
    }

    /// Whether this kind can ever be a route to running code (else the open is allowed with no /proc read).
    pub fn may_run(self) -> bool {
        self == FileKind::LoadableElf || self.script_like()
    }
}

const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;

/// Sniffs the first bytes of a file (`head` holds what pread at offset 0 returned, at most [`HEAD_LEN`]).
pub fn sniff(head: &[u8]) -> FileKind {
    if let Some(ident) = head.strip_prefix(b"\x7fELF") {
        // e_ident[EI_DATA] (offset 5) gives the byte order of e_type (offset 16).
        let e_type = match (ident.get(1), head.get(16..18)) {
            (Some(1), Some(&[a, b])) => u16::from_le_bytes([a, b]),
            (Some(2), Some(&[a, b])) => u16::from_be_bytes([a, b]),
            _ => return FileKind::OtherElf,
        };
        return if e_type == ET_EXEC || e_type == ET_DYN { FileKind::LoadableElf } else { FileKind::OtherElf };
    }
    if head.starts_with(b"#!") {
        return FileKind::Shebang;
    }
    if head.is_empty() {
        return FileKind::Empty;
    }
    if head.iter().all(|&b| is_text_byte(b)) {
        return FileKind::Text;
    }
    FileKind::Binary
}

/// Printable ASCII, common whitespace, ESC, and any byte of a multibyte UTF-8 (or legacy 8-bit) text.
fn is_text_byte(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b | 0x20..=0x7e | 0x80..=0xff)
}

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
            "sh" | "bash" | "dash" | "ash" | "zsh" | "ksh" | "mksh" | "pdksh" | "yash" | "busybox" => Syntax::Shell,
            "python" | "pypy" => Syntax::Python,
            "perl" => Syntax::Perl,
            "ruby" => Syntax::Ruby,
            "php" | "php-cli" => Syntax::Php,
            "node" | "nodejs" => Syntax::Node,
            _ => Syntax::Generic,
        }
    }

    /// Short options (single letters) that end option parsing with "no script file" (the code comes from argv
    /// or a module).
    fn code_flags(self) -> &'static [u8] {
        match self {
            Syntax::Shell => b"cs",
            Syntax::Python => b"cm",
            Syntax::Perl => b"eE",
            Syntax::Ruby => b"e",
            Syntax::Php => b"r",
            Syntax::Node => b"ep",
            Syntax::Generic => b"ce",
        }
    }

    /// Short options that take a value (attached or as the next argument).
    fn value_flags(self) -> &'static [u8] {
        match self {
            Syntax::Shell => b"oO",
            Syntax::Python => b"WX",
            Syntax::Perl => b"IMmlxCd",
            Syntax::Ruby => b"IrCEFKTUWx",
            Syntax::Php => b"cdz",
            Syntax::Node => b"r",
            Syntax::Generic => b"",
        }
    }

    /// Long options that take the next argument as their value.
    fn long_value_options(self) -> &'static [&'static [u8]] {
        match self {
            Syntax::Shell => &[b"--rcfile", b"--init-file"],
            Syntax::Node => &[b"--require", b"--import", b"--loader", b"--experimental-loader", b"--input-type"],
            _ => &[],
        }
    }

    fn long_code_options(self) -> &'static [&'static [u8]] {
        match self {
            Syntax::Node => &[b"--eval", b"--print"],
            _ => &[],
        }
    }
}

/// What an interpreter's argv says it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptArg<'a> {
    /// This file (as the interpreter will open it: relative to its working directory).
    File(&'a [u8]),
    /// Code from the command line, a module, or stdin: no script file in argv.
    NoFile,
}

/// Finds the script an interpreter runs from its `/proc/PID/cmdline` (NUL-separated, argv[0] first).
pub fn script_arg(syntax: Syntax, cmdline: &[u8]) -> ScriptArg<'_> {
    let mut args = cmdline.split(|&b| b == 0).skip(1).peekable();
    // A trailing NUL leaves one empty piece at the end.
    while let Some(arg) = args.next() {
        if arg.is_empty() && args.peek().is_none() {
            break;
        }
        if arg == b"--" {
            return args.next().filter(|a| !a.is_empty()).map_or(ScriptArg::NoFile, ScriptArg::File);
        }
        if arg == b"-" {
            return ScriptArg::NoFile;
        }
        if arg.starts_with(b"--") {
            if syntax.long_code_options().iter().any(|o| long_matches(arg, o)) {
                return ScriptArg::NoFile;
            }
            if syntax.long_value_options().contains(&arg) {
                args.next();
            }
            continue;
        }
        let shell_plus = syntax == Syntax::Shell && arg.first() == Some(&b'+');
        let Some(cluster) = arg.strip_prefix(b"-").or_else(|| if shell_plus { arg.get(1..) } else { None }) else {
            return ScriptArg::File(arg);
        };
        if syntax == Syntax::Php && cluster.first() == Some(&b'f') {
            let attached = cluster.get(1..).unwrap_or_default();
            let file = if attached.is_empty() { args.next().unwrap_or_default() } else { attached };
            return if file.is_empty() { ScriptArg::NoFile } else { ScriptArg::File(file) };
        }
        for (i, flag) in cluster.iter().enumerate() {
            if syntax.code_flags().contains(flag) {
                return ScriptArg::NoFile;
            }
            if syntax.value_flags().contains(flag) {
                // The value is the rest of this argument, or the next argument.
                if cluster.get(i + 1..).is_none_or(<[u8]>::is_empty) {
                    args.next();
                }
                break;
            }
        }
    }
    ScriptArg::NoFile
}

fn long_matches(arg: &[u8], option: &[u8]) -> bool {
    arg == option || arg.strip_prefix(option).is_some_and(|rest| rest.first() == Some(&b'='))
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
        // Only a version may follow the name: `python3.11`, `perl5.36.0`, never `python3-config`.
        file_name
            .strip_prefix(self.name.as_bytes())
            .is_some_and(|rest| rest.iter().all(|&b| b.is_ascii_digit() || b == b'.'))
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
}

/// The package managers that run scriptlets from /var/tmp or /tmp (rpm's `%_tmppath` is /var/tmp; dnf, yum,
/// zypper and PackageKit run them through librpm in their own process).
pub const DEFAULT_SCRIPT_PARENTS: &[&str] =
    &["rpm", "rpmbuild", "rpm-ostree", "dnf", "dnf-3", "dnf5", "microdnf", "yum", "zypper", "packagekitd", "dpkg"];

/// The interpreters watched unless the policy says otherwise.
pub const DEFAULT_INTERPRETERS: &[&str] = &[
    "sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "busybox", "python", "python2", "python3", "pypy", "pypy3",
    "perl", "ruby", "php", "node", "nodejs", "lua", "tclsh", "wish", "awk", "gawk", "mawk",
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
    fn default() -> Self {
        let names = |list: &[&str]| list.iter().filter_map(|n| ProgramName::new(n).ok()).collect();
        Self {
            enabled: true,
            interpreters: names(DEFAULT_INTERPRETERS),
            elf_readers: names(DEFAULT_ELF_READERS),
            script_parents: names(DEFAULT_SCRIPT_PARENTS),
        }
    }
}

impl OpenGuardConfig {
    /// The interpreter an executable is, if any (its argv syntax comes from the listed name).
    pub fn interpreter(&self, exe: &[u8]) -> Option<Syntax> {
        let name = file_name(exe);
        self.interpreters.iter().find(|p| p.matches(name)).map(|p| Syntax::for_name(&p.name))
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

/// Why an open was judged a route to running the file; goes into the alert's `Data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The dynamic loader opened a loadable ELF (`ld.so /tmp/x`).
    Loader,
    /// A program that is not an ELF reader opened a loadable ELF (`LD_PRELOAD`, `dlopen`, mmap).
    SharedObject,
    /// An ELF reader opened a loadable ELF while its environment names a preload or audit library.
    PreloadedReader,
    /// An interpreter opened the script its argv names (`sh /tmp/x`, `python3 /tmp/x.py`).
    Interpreter,
}

impl Route {
    /// The alert's `Data` value.
    pub fn data(self) -> &'static str {
        match self {
            Route::Loader => "FAN_OPEN_PERM route=loader",
            Route::SharedObject => "FAN_OPEN_PERM route=shared-object",
            Route::PreloadedReader => "FAN_OPEN_PERM route=preloaded-reader",
            Route::Interpreter => "FAN_OPEN_PERM route=interpreter",
        }
    }
}

/// What an environment (`/proc/PID/environ`) asks the loader to map besides the program's own libraries.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LoaderEnv<'a> {
    /// `LD_PRELOAD` and `LD_AUDIT` entries (separated by `:` or spaces).
    pub libraries: Vec<&'a [u8]>,
    /// `LD_LIBRARY_PATH` directories.
    pub library_dirs: Vec<&'a [u8]>,
}

impl LoaderEnv<'_> {
    pub fn is_empty(&self) -> bool {
        self.libraries.is_empty() && self.library_dirs.is_empty()
    }
}

fn entries(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b':' || b == b' ').filter(|e| !e.is_empty())
}

pub fn loader_env(environ: &[u8]) -> LoaderEnv<'_> {
    let mut out = LoaderEnv::default();
    for var in environ.split(|&b| b == 0) {
        if let Some(v) = var.strip_prefix(b"LD_PRELOAD=").or_else(|| var.strip_prefix(b"LD_AUDIT=")) {
            out.libraries.extend(entries(v));
        } else if let Some(v) = var.strip_prefix(b"LD_LIBRARY_PATH=") {
            out.library_dirs.extend(entries(v));
        }
    }
    out
}

#[cfg(test)]
mod tests {

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

    use super::*;

    fn elf(class_data: u8, e_type: u16) -> Vec<u8> {
        let mut h = vec![0u8; HEAD_LEN];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = class_data;
        let t = if class_data == 2 { e_type.to_be_bytes() } else { e_type.to_le_bytes() };
        h[16..18].copy_from_slice(&t);
        h
    }

    #[test]
    fn sniff_tells_loadable_elf_from_objects() {
        assert_eq!(sniff(&elf(1, ET_EXEC)), FileKind::LoadableElf);
        assert_eq!(sniff(&elf(1, ET_DYN)), FileKind::LoadableElf);
        assert_eq!(sniff(&elf(2, ET_DYN)), FileKind::LoadableElf);
        assert_eq!(sniff(&elf(1, 1)), FileKind::OtherElf, "ET_REL");
        assert_eq!(sniff(&elf(1, 4)), FileKind::OtherElf, "ET_CORE");
        assert_eq!(sniff(&elf(9, ET_DYN)), FileKind::OtherElf, "unknown byte order");
        assert_eq!(sniff(b"\x7fELF\x02\x01"), FileKind::OtherElf, "truncated header");
    }

    #[test]
    fn sniff_reads_the_real_loader_and_true() {
        let head = |p: &str| std::fs::read(p).map(|b| b[..HEAD_LEN].to_vec());
        if let Ok(h) = head("/bin/true") {
            assert_eq!(sniff(&h), FileKind::LoadableElf);
        }
    }

    #[test]
    fn sniff_tells_scripts_text_and_data() {
        assert_eq!(sniff(b"#!/bin/sh\necho hi\n"), FileKind::Shebang);
        assert_eq!(sniff(b"echo hi\n"), FileKind::Text);
        assert_eq!(sniff("print('h\u{e9}')\n".as_bytes()), FileKind::Text);
        assert_eq!(sniff(b"a,b\n1,2\n"), FileKind::Text);
        assert_eq!(sniff(b""), FileKind::Empty);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0"), FileKind::Binary);
        assert_eq!(sniff(b"PK\x03\x04\x14\0"), FileKind::Binary);
        assert_eq!(sniff(b"echo hi\n\0\n"), FileKind::Binary);
        assert!(!FileKind::Empty.may_run() && !FileKind::OtherElf.may_run());
        // bash runs `echo hi` from a file with a NUL byte after its first line, python runs a zip file:
        // binary content is no proof that no interpreter runs it.
        assert!(FileKind::Binary.script_like() && FileKind::Binary.may_run());
        assert!(FileKind::Text.may_run() && FileKind::LoadableElf.may_run());
    }

    fn argv(args: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for a in args {
            v.extend_from_slice(a.as_bytes());
            v.push(0);
        }
        v
    }

    fn script(syntax: Syntax, args: &[&str]) -> Option<String> {
        let line = argv(args);
        match script_arg(syntax, &line) {
            ScriptArg::File(f) => Some(String::from_utf8(f.to_vec()).unwrap()),
            ScriptArg::NoFile => None,
        }
    }

    #[test]
    fn shells_name_their_script_after_options() {
        let s = |a: &[&str]| script(Syntax::Shell, a);
        assert_eq!(s(&["sh", "/tmp/x"]).as_deref(), Some("/tmp/x"));
        assert_eq!(s(&["bash", "-x", "-e", "/tmp/x", "arg"]).as_deref(), Some("/tmp/x"));
        assert_eq!(s(&["bash", "-o", "pipefail", "x"]).as_deref(), Some("x"));
        assert_eq!(s(&["bash", "+o", "pipefail", "x"]).as_deref(), Some("x"));
        assert_eq!(s(&["bash", "--norc", "--rcfile", "/etc/rc", "x"]).as_deref(), Some("x"));
        assert_eq!(s(&["bash", "--", "-x"]).as_deref(), Some("-x"));
        assert_eq!(s(&["bash", "-c", "cat /tmp/x"]), None);
        assert_eq!(s(&["bash", "-ec", "cat /tmp/x"]), None);
        assert_eq!(s(&["sh", "-s", "a"]), None);
        assert_eq!(s(&["bash"]), None);
        assert_eq!(s(&["-bash"]), None, "login shell");
        assert_eq!(s(&["sh", "-"]), None);
    }

    #[test]
    fn python_perl_ruby_php_node_name_their_script() {
        assert_eq!(
            script(Syntax::Python, &["python3", "-u", "-W", "ignore", "/tmp/x.py"]).as_deref(),
            Some("/tmp/x.py")
        );
        assert_eq!(script(Syntax::Python, &["python3", "-Wignore", "-B", "x"]).as_deref(), Some("x"));
        assert_eq!(script(Syntax::Python, &["python3", "-c", "open('/tmp/d.csv')"]), None);
        assert_eq!(script(Syntax::Python, &["python3", "-Ic", "code"]), None);
        assert_eq!(script(Syntax::Python, &["python3", "-m", "http.server"]), None);
        assert_eq!(script(Syntax::Perl, &["perl", "-w", "-I", "/lib", "/tmp/x.pl"]).as_deref(), Some("/tmp/x.pl"));
        assert_eq!(script(Syntax::Perl, &["perl", "-MData::Dumper", "x"]).as_deref(), Some("x"));
        assert_eq!(script(Syntax::Perl, &["perl", "-ne", "print"]), None);
        assert_eq!(script(Syntax::Ruby, &["ruby", "-r", "json", "/tmp/x.rb"]).as_deref(), Some("/tmp/x.rb"));
        assert_eq!(script(Syntax::Ruby, &["ruby", "-e", "p 1"]), None);
        assert_eq!(script(Syntax::Php, &["php", "-f", "/tmp/x.php"]).as_deref(), Some("/tmp/x.php"));
        assert_eq!(script(Syntax::Php, &["php", "-d", "a=b", "/tmp/x.php"]).as_deref(), Some("/tmp/x.php"));
        assert_eq!(script(Syntax::Php, &["php", "-r", "echo 1;"]), None);
        assert_eq!(script(Syntax::Node, &["node", "--require", "m", "/tmp/x.js"]).as_deref(), Some("/tmp/x.js"));
        assert_eq!(script(Syntax::Node, &["node", "--eval=1"]), None);
        assert_eq!(script(Syntax::Node, &["node", "-p", "1"]), None);
        assert_eq!(script(Syntax::Generic, &["lua", "/tmp/x.lua"]).as_deref(), Some("/tmp/x.lua"));
    }

    #[test]
    fn script_arg_takes_any_bytes() {
        for line in [&b""[..], b"\0", b"\0\0\0", b"sh\0-o", b"php\0-f", b"sh\0--", b"\xff\0\xfe\0"] {
            for s in [Syntax::Shell, Syntax::Php, Syntax::Python, Syntax::Node] {
                let _ = script_arg(s, line);
            }
        }
        assert_eq!(script_arg(Syntax::Shell, b"sh\0\xff/x\0"), ScriptArg::File(b"\xff/x"));
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
    }

    #[test]
    fn preload_variables_are_seen() {
        let e =
            loader_env(b"PATH=/bin\0LD_PRELOAD=/tmp/x.so /tmp/y.so\0LD_AUDIT=a.so\0LD_LIBRARY_PATH=/opt/lib::/tmp\0");
        assert_eq!(e.libraries, vec![&b"/tmp/x.so"[..], b"/tmp/y.so", b"a.so"]);
        assert_eq!(e.library_dirs, vec![&b"/opt/lib"[..], b"/tmp"]);
        assert!(loader_env(b"PATH=/bin\0LD_PRELOAD=\0HOME=/root\0").is_empty());
        assert!(loader_env(b"").is_empty());
    }
}
