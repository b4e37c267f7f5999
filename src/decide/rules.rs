//! The open guard's rules about the opener, pure: which argv slot names an interpreter's script
//! ([`script_arg`]), what the environment asks the loader to map ([`loader_env`]), and the [`Route`] an open
//! was judged to be. Code that runs without exec (`ld.so /tmp/x`, `LD_PRELOAD`, `dlopen`, `sh /tmp/x`,
//! `python3 /tmp/x.py`) raises only FAN_OPEN_PERM. An open is a route to running the file when:
//! - the opener is the dynamic loader and the file is a loadable ELF (ET_EXEC or ET_DYN);
//! - the opener is any other program that is not an allowed ELF reader (cat, cp, tar, ld, ...) and the file
//!   is a loadable ELF: that is `LD_PRELOAD`, `dlopen` or an mmap(PROT_EXEC) of it;
//! - the opener is an interpreter whose argv names this file as its script (first non-option argument).
//!
//! Everything else is allowed: relocatable objects (ET_REL: compiler input, never loaded) and empty files
//! without looking further, any other file read by a program that is not an interpreter, and an interpreter
//! reading a file that is not its script (`python3 -c "open('/tmp/data.csv')"`). Nothing here does I/O;
//! `opener` reads /proc.

use crate::policy::open_guard::Syntax;

/// How each interpreter's argv is read (kept beside the argv rules that use it).
impl Syntax {
    /// Short options (single letters) that end option parsing with "no script file" (the code comes from argv
    /// or a module).
    pub(super) fn code_flags(self) -> &'static [u8] {
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
    pub(super) fn value_flags(self) -> &'static [u8] {
        match self {
            Syntax::Shell => b"oO",
            Syntax::Python => b"WX",
            Syntax::Perl => b"I",
            Syntax::Ruby => b"IrCE",
            Syntax::Php => b"cdz",
            Syntax::Node => b"r",
            Syntax::Generic => b"",
        }
    }

    /// Short options whose value, if any, is the rest of their argument, never the next one (`perl -Mstrict`,
    /// `perl -d:Foo`, `ruby -W2`): `perl -C x.pl` and `ruby -W x.rb` run x.
    pub(super) fn attached_flags(self) -> &'static [u8] {
        match self {
            Syntax::Perl => b"MmxdDiFCV",
            Syntax::Ruby => b"FKTWx",
            _ => b"",
        }
    }

    /// Short options followed by optional digits only (`perl -l0`, `-0777`): `perl -lne` is `-l -n -e`.
    pub(super) fn digit_flags(self) -> &'static [u8] {
        match self {
            Syntax::Perl | Syntax::Ruby => b"l0",
            _ => b"",
        }
    }

    /// Long options that take the next argument as their value.
    pub(super) fn long_value_options(self) -> &'static [&'static [u8]] {
        match self {
            Syntax::Shell => &[b"--rcfile", b"--init-file"],
            Syntax::Python => &[b"--check-hash-based-pycs"],
            Syntax::Node => &[b"--require", b"--import", b"--loader", b"--experimental-loader", b"--input-type"],
            _ => &[],
        }
    }

    pub(super) fn long_code_options(self) -> &'static [&'static [u8]] {
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
        let mut i = 0;
        while let Some(flag) = cluster.get(i) {
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
            if syntax.attached_flags().contains(flag) {
                break;
            }
            i += 1;
            if syntax.digit_flags().contains(flag) {
                i += skip_digits(cluster.get(i..).unwrap_or_default());
            }
        }
    }
    ScriptArg::NoFile
}

/// How many bytes of `rest` are the digits of `-l0`/`-0777`/`-0x1ff`.
pub(super) fn skip_digits(rest: &[u8]) -> usize {
    let hex = rest.first() == Some(&b'x');
    let start = usize::from(hex);
    start + rest.iter().skip(start).take_while(|b| if hex { b.is_ascii_hexdigit() } else { b.is_ascii_digit() }).count()
}

fn long_matches(arg: &[u8], option: &[u8]) -> bool {
    arg == option || arg.strip_prefix(option).is_some_and(|rest| rest.first() == Some(&b'='))
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
    /// An interpreter opened the script its argv names (`sh /tmp/x`, `python3 /tmp/x.py`, `busybox sh /tmp/x`),
    /// or the program inside the directory its argv names (`python3 /tmp/dir`: its `__main__.py`).
    Interpreter,
    /// An interpreter opened a file it runs at startup, named by its environment or options (`BASH_ENV`,
    /// `PYTHONSTARTUP`, `NODE_OPTIONS=--require`, `ruby -r /tmp/x.rb`, `$HOME/.bashrc` with HOME in scope).
    StartupFile,
    /// An interpreter opened a module file below a search directory its environment or options name
    /// (`PYTHONPATH`, `PERL5LIB`, `NODE_PATH`, `RUBYLIB`, `perl -I`, `ruby -I`; python's working directory for
    /// `-c`/`-m`).
    ModulePath,
    /// A shell opened a `#!` script that is not its own argv script: `.`/`source` of it (or a redirect from
    /// it, which a shell cannot be told apart from).
    Sourced,
    /// The opener's executable could not be read (`/proc/PID/exe` refused: a daemon without `CAP_SYS_PTRACE`,
    /// an LSM that denies it, a thread group whose leader has exited): nothing tells a reader from an
    /// interpreter, and doubt never lets a file in scope run.
    OpenerUnreadable,
}

impl Route {
    /// The alert's `Data` value.
    pub fn data(self) -> &'static str {
        match self {
            Route::Loader => "FAN_OPEN_PERM route=loader",
            Route::SharedObject => "FAN_OPEN_PERM route=shared-object",
            Route::PreloadedReader => "FAN_OPEN_PERM route=preloaded-reader",
            Route::Interpreter => "FAN_OPEN_PERM route=interpreter",
            Route::StartupFile => "FAN_OPEN_PERM route=startup-file",
            Route::ModulePath => "FAN_OPEN_PERM route=module-path",
            Route::Sourced => "FAN_OPEN_PERM route=sourced",
            Route::OpenerUnreadable => "FAN_OPEN_PERM route=opener-unreadable",
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
    use super::*;

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
        assert_eq!(script(Syntax::Perl, &["perl", "-lane", "print"]), None);
        // Options whose value can only be attached never take the script as their value.
        for opt in ["-l", "-l0", "-C", "-d", "-d:Foo", "-0777", "-Mstrict", "-T", "-W"] {
            assert_eq!(script(Syntax::Perl, &["perl", opt, "x.pl"]).as_deref(), Some("x.pl"), "perl {opt}");
        }
        for opt in ["-U", "-W", "-W2", "-l", "-Kn", "-x", "-a"] {
            assert_eq!(script(Syntax::Ruby, &["ruby", opt, "x.rb"]).as_deref(), Some("x.rb"), "ruby {opt}");
        }
        assert_eq!(script(Syntax::Ruby, &["ruby", "-C", ".", "-E", "utf-8", "x.rb"]).as_deref(), Some("x.rb"));
        assert_eq!(
            script(Syntax::Python, &["python3", "--check-hash-based-pycs", "always", "x.py"]).as_deref(),
            Some("x.py")
        );
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
    fn preload_variables_are_seen() {
        let e =
            loader_env(b"PATH=/bin\0LD_PRELOAD=/tmp/x.so /tmp/y.so\0LD_AUDIT=a.so\0LD_LIBRARY_PATH=/opt/lib::/tmp\0");
        assert_eq!(e.libraries, vec![&b"/tmp/x.so"[..], b"/tmp/y.so", b"a.so"]);
        assert_eq!(e.library_dirs, vec![&b"/opt/lib"[..], b"/tmp"]);
        assert_eq!(loader_env(b"PATH=/bin\0LD_PRELOAD=\0HOME=/root\0"), LoaderEnv::default());
        assert_eq!(loader_env(b""), LoaderEnv::default());
    }
}
