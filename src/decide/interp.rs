//! Where an interpreter takes code from besides the script its argv names, pure: its command line and
//! environment (`/proc/PID/cmdline`, `/proc/PID/environ`) in, [`Sources`] out. `opener` compares them with the
//! opened file by inode; nothing here does I/O.
//!
//! - **Startup files**: files run whatever the interpreter is asked to do: `BASH_ENV`, `ENV`, the rc files of
//!   `$HOME` and `$ZDOTDIR` (`rc_dirs`), `bash --rcfile`; `PYTHONSTARTUP`; a path given to `ruby -r`, `node -r`/`--require`/
//!   `--import`/`--loader` (also through `RUBYOPT` and `NODE_OPTIONS`); php's `-d auto_prepend_file=`;
//!   `LUA_INIT=@file`.
//! - **Search directories**: where modules are looked up: `PYTHONPATH`, `PYTHONHOME`, the user site
//!   (`PYTHONUSERBASE` or `$HOME/.local`), python's working directory when the code comes from `-c`, `-m` or
//!   stdin (`sys.path[0]`); `PERL5LIB`, `PERLLIB`, `perl -I`, `-Mlib=` (also through `PERL5OPT`); `RUBYLIB`,
//!   `ruby -I`; `NODE_PATH`, `$HOME/.node_modules`, `$HOME/.node_libraries`, `./node_modules` for code from `-e`;
//!   the directory of a path given to `-r`/`--require`; php's `-d include_path=`, `PHPRC`, `PHP_INI_SCAN_DIR`;
//!   `LUA_PATH`, `LUA_CPATH`, `AWKPATH`, `TCLLIBPATH`. An interpreter loads from them only files with its
//!   module suffixes ([`is_module`]): a `.py` below `PYTHONPATH` is code, a `.csv` is data.

use super::rules::skip_digits;
use crate::policy::open_guard::Syntax;

/// The files and directories an interpreter loads code from at startup or through its module search.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sources {
    /// Files it runs at startup, as it will open them (relative names from its working directory).
    pub startup_files: Vec<Vec<u8>>,
    /// Directories it imports modules from.
    pub search_dirs: Vec<Vec<u8>>,
    /// Search entries that may be an archive opened itself (a zip on `PYTHONPATH`; also in `search_dirs`).
    pub search_archives: Vec<Vec<u8>>,
    /// Directories whose rc files it runs at startup (`$HOME`: `.bashrc`, `.profile`, ...), with their names:
    /// the opener looks at the names only when the directory is on the opened file's filesystem.
    pub rc_dirs: Vec<(Vec<u8>, &'static [&'static [u8]])>,
}

/// The rc files a shell reads from `$HOME` (interactive, login, or, for zsh's `.zshenv`, always).
pub const SHELL_RC: &[&[u8]] = &[
    b".bashrc",
    b".bash_profile",
    b".bash_login",
    b".bash_logout",
    b".profile",
    b".shrc",
    b".kshrc",
    b".mkshrc",
    b".zshenv",
    b".zshrc",
    b".zprofile",
    b".zlogin",
    b".zlogout",
];

/// zsh's rc files, read from `$ZDOTDIR` when it is set.
pub const ZSH_RC: &[&[u8]] = &[b".zshenv", b".zshrc", b".zprofile", b".zlogin", b".zlogout"];

/// Whether the interpreter loads a file of this name as a module from a search directory.
pub fn is_module(syntax: Syntax, file_name: &[u8]) -> bool {
    let suffixes: &[&[u8]] = match syntax {
        // Shells have no module search (`. name` searches PATH for any file: see `Route::Sourced`).
        Syntax::Shell => &[],
        Syntax::Python => &[b".py", b".pyc", b".pyw", b".pth", b".so"],
        Syntax::Perl => &[b".pm", b".pl", b".pmc", b".al", b".ix", b".so"],
        Syntax::Ruby => &[b".rb", b".so"],
        Syntax::Node => &[b".js", b".mjs", b".cjs", b".json", b".node"],
        Syntax::Php => &[b".php", b".inc", b".ini", b".phar"],
        Syntax::Generic => &[b".lua", b".awk", b".tcl", b".so"],
    };
    suffixes.iter().any(|s| file_name.len() > s.len() && file_name.ends_with(s))
}

/// Whether a directory given as the script runs the program inside it: `python3 DIR` runs `DIR/__main__.py`,
/// `node DIR` its `package.json`'s main or `index.js`.
pub fn runs_directories(syntax: Syntax) -> bool {
    matches!(syntax, Syntax::Python | Syntax::Node)
}

/// An option an interpreter was given before its script, with its value (empty when it takes none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt<'a> {
    Short(u8, &'a [u8]),
    Long(&'a [u8], &'a [u8]),
}

/// Whether code given with `-c`/`-e` ends the options (the rest are the code's arguments).
fn code_ends_options(syntax: Syntax) -> bool {
    !matches!(syntax, Syntax::Perl | Syntax::Ruby | Syntax::Node)
}

/// Walks the options of `args` (argv without argv[0]) with the same rules as `script_arg`, calling `visit`
/// for each; returns whether a script file ended them (else the code comes from `-c`/`-e`/`-m` or stdin).
fn scan<'a>(syntax: Syntax, args: &[&'a [u8]], visit: &mut dyn FnMut(Opt<'a>)) -> bool {
    let mut args = args.iter().copied();
    while let Some(arg) = args.next() {
        if arg == b"--" {
            return args.next().is_some_and(|a| !a.is_empty());
        }
        if arg == b"-" || arg.is_empty() {
            return false;
        }
        if arg.starts_with(b"--") {
            let (name, attached) = match arg.iter().position(|&b| b == b'=') {
                Some(i) => (arg.get(..i).unwrap_or_default(), arg.get(i + 1..)),
                None => (arg, None),
            };
            if syntax.long_code_options().contains(&name) {
                if attached.is_none() {
                    args.next();
                }
                if code_ends_options(syntax) {
                    return false;
                }
                continue;
            }
            let value = match attached {
                Some(v) => v,
                None if syntax.long_value_options().contains(&name) => args.next().unwrap_or_default(),
                None => b"",
            };
            visit(Opt::Long(name, value));
            continue;
        }
        let shell_plus = syntax == Syntax::Shell && arg.first() == Some(&b'+');
        let Some(cluster) = arg.strip_prefix(b"-").or_else(|| if shell_plus { arg.get(1..) } else { None }) else {
            return true;
        };
        if syntax == Syntax::Php && cluster.first() == Some(&b'f') {
            return true;
        }
        let mut i = 0;
        while let Some(&flag) = cluster.get(i) {
            let rest = cluster.get(i + 1..).unwrap_or_default();
            if syntax.code_flags().contains(&flag) {
                // Python's `-m mod`, like `-c`, runs code found from the working directory.
                if rest.is_empty() {
                    args.next();
                }
                if code_ends_options(syntax) {
                    return false;
                }
                break;
            }
            if syntax.value_flags().contains(&flag) {
                let value = if rest.is_empty() { args.next().unwrap_or_default() } else { rest };
                visit(Opt::Short(flag, value));
                break;
            }
            if syntax.attached_flags().contains(&flag) {
                visit(Opt::Short(flag, rest));
                break;
            }
            visit(Opt::Short(flag, b""));
            i += 1;
            if syntax.digit_flags().contains(&flag) {
                i += skip_digits(rest);
            }
        }
    }
    false
}

/// What the interpreter's options changed about its environment's reading (python's `-I`, `-E`, `-P`, `-s`).
#[derive(Debug, Default, Clone, Copy)]
struct PythonFlags {
    ignore_env: bool,
    safe_path: bool,
    no_user_site: bool,
}

/// The code sources of an interpreter of `syntax`, from its command line (NUL-separated, argv[0] first: the
/// applet's for a multi-call binary) and environment (NUL-separated `NAME=value`).
pub fn sources(syntax: Syntax, cmdline: &[u8], environ: &[u8]) -> Sources {
    let mut out = Sources::default();
    let mut py = PythonFlags::default();
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).skip(1).collect();
    let has_script = scan(syntax, &args, &mut |o| option(syntax, o, &mut out, &mut py));
    let env = |name: &[u8]| env_var(environ, name).filter(|v| !v.is_empty());
    let home = env(b"HOME");
    match syntax {
        Syntax::Shell => {
            // bash and sh expand parameters in these (`BASH_ENV='$HOME/.env'`).
            out.startup_files.extend([env(b"BASH_ENV"), env(b"ENV")].into_iter().flatten().map(|v| expand(v, environ)));
            out.rc_dirs.extend(home.map(|h| (h.to_vec(), SHELL_RC)));
            out.rc_dirs.extend(env(b"ZDOTDIR").map(|z| (z.to_vec(), ZSH_RC)));
        }
        Syntax::Python => {
            if !py.ignore_env {
                out.startup_files.extend(env(b"PYTHONSTARTUP").map(<[u8]>::to_vec));
                let path = list(env(b"PYTHONPATH"), b':');
                out.search_archives.extend(path.iter().cloned());
                out.search_dirs.extend(path);
                out.search_dirs.extend(list(env(b"PYTHONHOME"), b':'));
                py.safe_path |= env(b"PYTHONSAFEPATH").is_some();
                py.no_user_site |= env(b"PYTHONNOUSERSITE").is_some();
            }
            if !py.no_user_site {
                let base = if py.ignore_env { None } else { env(b"PYTHONUSERBASE").map(<[u8]>::to_vec) };
                out.search_dirs.extend(base.or_else(|| home.map(|h| join(h, b".local"))));
            }
            if !has_script && !py.safe_path {
                out.search_dirs.push(b".".to_vec());
            }
        }
        Syntax::Perl => {
            if let Some(opts) = env(b"PERL5OPT") {
                // Each word is a switch, its `-` optional.
                let words: Vec<Vec<u8>> = split_words(opts)
                    .into_iter()
                    .map(|w| if w.starts_with(b"-") { w } else { [&b"-"[..], &w].concat() })
                    .collect();
                scan_words(syntax, &words, &mut out, &mut py);
            }
            for var in [&b"PERL5LIB"[..], b"PERLLIB"] {
                out.search_dirs.extend(list(env(var), b':'));
            }
        }
        Syntax::Ruby => {
            if let Some(opts) = env(b"RUBYOPT") {
                scan_words(syntax, &split_words(opts), &mut out, &mut py);
            }
            out.search_dirs.extend(list(env(b"RUBYLIB"), b':'));
        }
        Syntax::Node => {
            if let Some(opts) = env(b"NODE_OPTIONS") {
                scan_words(syntax, &split_words(opts), &mut out, &mut py);
            }
            out.search_dirs.extend(list(env(b"NODE_PATH"), b':'));
            if let Some(home) = home {
                out.search_dirs.extend([join(home, b".node_modules"), join(home, b".node_libraries")]);
            }
            if !has_script {
                out.search_dirs.push(b"node_modules".to_vec());
            }
        }
        Syntax::Php => {
            for var in [&b"PHPRC"[..], b"PHP_INI_SCAN_DIR"] {
                out.search_dirs.extend(list(env(var), b':'));
            }
        }
        Syntax::Generic => {
            for var in [&b"LUA_INIT"[..], b"LUA_INIT_5_4", b"LUA_INIT_5_3", b"LUA_INIT_5_2", b"LUA_INIT_5_1"] {
                out.startup_files.extend(env(var).and_then(|v| v.strip_prefix(b"@")).map(<[u8]>::to_vec));
            }
            for var in [&b"LUA_PATH"[..], b"LUA_CPATH", b"LUA_PATH_5_4", b"LUA_CPATH_5_4"] {
                // Templates such as `/tmp/?.lua`: the directory before the `?`.
                out.search_dirs.extend(list(env(var), b';').into_iter().filter_map(|t| parent(&t).map(<[u8]>::to_vec)));
            }
            out.search_dirs.extend(list(env(b"AWKPATH"), b':'));
            out.search_dirs.extend(list(env(b"TCLLIBPATH"), b' '));
        }
    }
    out
}

/// Scans option words from an environment variable (`PERL5OPT`, `RUBYOPT`, `NODE_OPTIONS`) as if they were on
/// the command line.
fn scan_words(syntax: Syntax, words: &[Vec<u8>], out: &mut Sources, py: &mut PythonFlags) {
    let args: Vec<&[u8]> = words.iter().map(Vec::as_slice).collect();
    scan(syntax, &args, &mut |o| option(syntax, o, out, py));
}

/// What one option adds to the sources.
fn option(syntax: Syntax, opt: Opt<'_>, out: &mut Sources, py: &mut PythonFlags) {
    match (syntax, opt) {
        (Syntax::Shell, Opt::Long(b"--rcfile" | b"--init-file", file)) if !file.is_empty() => {
            out.startup_files.push(file.to_vec());
        }
        (Syntax::Python, Opt::Short(b'I', _)) => {
            *py = PythonFlags { ignore_env: true, safe_path: true, no_user_site: true }
        }
        (Syntax::Python, Opt::Short(b'E', _)) => py.ignore_env = true,
        (Syntax::Python, Opt::Short(b'P', _)) => py.safe_path = true,
        (Syntax::Python, Opt::Short(b's', _)) => py.no_user_site = true,
        (Syntax::Perl | Syntax::Ruby, Opt::Short(b'I', dir)) if !dir.is_empty() => out.search_dirs.push(dir.to_vec()),
        (Syntax::Perl, Opt::Short(b'M' | b'm', module)) => {
            if let Some(dirs) = module.strip_prefix(b"lib=") {
                out.search_dirs.extend(list(Some(dirs), b','));
            }
        }
        (Syntax::Ruby | Syntax::Node, Opt::Short(b'r', what)) => required(what, out),
        (Syntax::Node, Opt::Long(b"--require" | b"--import" | b"--loader" | b"--experimental-loader", what)) => {
            required(what, out);
        }
        (Syntax::Php, Opt::Short(b'd', setting)) => {
            if let Some(file) =
                setting.strip_prefix(b"auto_prepend_file=").or_else(|| setting.strip_prefix(b"auto_append_file="))
            {
                out.startup_files.extend(list(Some(file), b'\0'));
            } else if let Some(dirs) = setting.strip_prefix(b"include_path=") {
                out.search_dirs.extend(list(Some(dirs), b':'));
            }
        }
        _ => {}
    }
}

/// A module to load first (`ruby -r`, `node --require`): a path names a startup file, and its directory is
/// searched (`-r /tmp/x` loads `/tmp/x.rb`); a bare name is found through the search directories.
fn required(what: &[u8], out: &mut Sources) {
    let what = what.strip_prefix(b"file://").unwrap_or(what);
    if !what.contains(&b'/') {
        return;
    }
    out.startup_files.push(what.to_vec());
    out.search_dirs.extend(parent(what).map(<[u8]>::to_vec));
}

/// The directory part of a path (`/tmp/x` → `/tmp`, `/x` → `/`, `./x` → `.`); `None` without a `/`.
fn parent(path: &[u8]) -> Option<&[u8]> {
    let i = path.iter().rposition(|&b| b == b'/')?;
    Some(if i == 0 { b"/" } else { path.get(..i).unwrap_or_default() })
}

/// The value of `NAME` in an environment block; the first one, as getenv(3) finds it.
fn env_var<'a>(environ: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    environ.split(|&b| b == 0).find_map(|var| var.strip_prefix(name).and_then(|v| v.strip_prefix(b"=")))
}

/// `value` with `$NAME` and `${NAME}` replaced from the environment (unset: empty), as a shell expands
/// `BASH_ENV` and `ENV`; anything else (`$(...)`, `${NAME:-x}`) is kept as written.
fn expand(value: &[u8], environ: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.iter().position(|&b| b == b'$') {
        out.extend_from_slice(rest.get(..i).unwrap_or_default());
        let after = rest.get(i + 1..).unwrap_or_default();
        let is_name = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
        let (name, used) = match after.strip_prefix(b"{") {
            Some(inner) => match inner.iter().position(|&b| b == b'}') {
                Some(end) if inner.get(..end).is_some_and(|n| !n.is_empty() && n.iter().all(is_name)) => {
                    (inner.get(..end).unwrap_or_default(), end + 2)
                }
                _ => (&b""[..], 0),
            },
            None => {
                let n = after.iter().take_while(|b| is_name(b)).count();
                (after.get(..n).unwrap_or_default(), n)
            }
        };
        if used == 0 {
            out.push(b'$');
            rest = after;
            continue;
        }
        out.extend_from_slice(env_var(environ, name).unwrap_or_default());
        rest = after.get(used..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
    out
}

/// The non-empty entries of a `sep`-separated list.
fn list(value: Option<&[u8]>, sep: u8) -> Vec<Vec<u8>> {
    value.map_or_else(Vec::new, |v| v.split(|&b| b == sep).filter(|e| !e.is_empty()).map(<[u8]>::to_vec).collect())
}

pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = dir.to_vec();
    if !out.ends_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// Splits an options variable into words: whitespace separates, double quotes group (`NODE_OPTIONS` allows
/// `--require "/tmp/a b.js"`), a backslash inside quotes escapes the next byte.
fn split_words(value: &[u8]) -> Vec<Vec<u8>> {
    let mut words = Vec::new();
    let mut word = Vec::new();
    let (mut quoted, mut escaped, mut in_word) = (false, false, false);
    for &b in value {
        if escaped {
            word.push(b);
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
            in_word = true;
        } else if !quoted && b.is_ascii_whitespace() {
            if in_word {
                words.push(std::mem::take(&mut word));
                in_word = false;
            }
        } else {
            word.push(b);
            in_word = true;
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nul(parts: &[&str]) -> Vec<u8> {
        parts.iter().flat_map(|p| p.bytes().chain([0])).collect()
    }

    fn of(syntax: Syntax, argv: &[&str], env: &[&str]) -> Sources {
        sources(syntax, &nul(argv), &nul(env))
    }

    fn strs(v: &[Vec<u8>]) -> Vec<String> {
        v.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect()
    }

    #[test]
    fn shells_run_their_startup_files() {
        let s = of(Syntax::Shell, &["bash", "-c", ":"], &["PATH=/bin", "BASH_ENV=/tmp/x"]);
        assert_eq!(strs(&s.startup_files), ["/tmp/x"]);
        assert!(s.search_dirs.is_empty());
        let s = of(Syntax::Shell, &["sh", "-i"], &["ENV=/tmp/e", "HOME=/tmp/h/", "ZDOTDIR=/tmp/z"]);
        assert_eq!(strs(&s.startup_files), ["/tmp/e"]);
        assert_eq!(s.rc_dirs, vec![(b"/tmp/h/".to_vec(), SHELL_RC), (b"/tmp/z".to_vec(), ZSH_RC)]);
        assert!(SHELL_RC.contains(&&b".bashrc"[..]) && ZSH_RC.contains(&&b".zshenv"[..]));
        assert_eq!(join(b"/tmp/h/", b".bashrc"), b"/tmp/h/.bashrc");
        let s = of(Syntax::Shell, &["bash", "-c", ":"], &["D=/tmp/d", "BASH_ENV=${D}/a:$D/b$NONE$(x)$"]);
        assert_eq!(strs(&s.startup_files), ["/tmp/d/a:/tmp/d/b$(x)$"], "parameters are expanded as bash does");
        let s = of(Syntax::Shell, &["bash", "--rcfile", "/tmp/rc", "-i"], &[]);
        assert_eq!(strs(&s.startup_files), ["/tmp/rc"]);
        assert_eq!(of(Syntax::Shell, &["bash", "/opt/x"], &["BASH_ENV="]), Sources::default());
    }

    #[test]
    fn python_searches_its_path_its_user_site_and_for_code_its_working_directory() {
        let env = ["PYTHONPATH=/tmp/lib::/opt/lib", "PYTHONSTARTUP=/tmp/s.py", "HOME=/tmp/h"];
        let s = of(Syntax::Python, &["python3", "-c", "import x"], &env);
        assert_eq!(strs(&s.startup_files), ["/tmp/s.py"]);
        assert_eq!(strs(&s.search_dirs), ["/tmp/lib", "/opt/lib", "/tmp/h/.local", "."]);
        assert_eq!(strs(&s.search_archives), ["/tmp/lib", "/opt/lib"], "a zip on PYTHONPATH is opened itself");
        let s = of(Syntax::Python, &["python3", "-m", "mod"], &[]);
        assert_eq!(strs(&s.search_dirs), ["."], "-m searches the working directory");
        let s = of(Syntax::Python, &["python3", "/opt/x.py"], &env);
        assert_eq!(strs(&s.search_dirs), ["/tmp/lib", "/opt/lib", "/tmp/h/.local"], "a script: its own directory");
        let s = of(Syntax::Python, &["python3", "-I", "-c", "import x"], &env);
        assert_eq!(s, Sources::default(), "isolated: no environment, no user site, no working directory");
        let s = of(Syntax::Python, &["python3", "-Es", "-c", "x"], &env);
        assert_eq!(strs(&s.search_dirs), ["."]);
        let s = of(Syntax::Python, &["python3", "-P", "-c", "x"], &["PYTHONNOUSERSITE=1", "HOME=/h"]);
        assert!(s.search_dirs.is_empty());
    }

    #[test]
    fn perl_ruby_node_options_and_their_variables() {
        let s = of(Syntax::Perl, &["perl", "-I/tmp/a", "-I", "/tmp/b", "-Mlib=/tmp/c,/tmp/d", "-e", "1"], &[]);
        assert_eq!(strs(&s.search_dirs), ["/tmp/a", "/tmp/b", "/tmp/c", "/tmp/d"]);
        let s = of(Syntax::Perl, &["perl", "-e", "1"], &["PERL5OPT=-Mstrict I/tmp/o", "PERL5LIB=/tmp/l"]);
        assert_eq!(strs(&s.search_dirs), ["/tmp/o", "/tmp/l"]);
        let s = of(Syntax::Ruby, &["ruby", "-r", "/tmp/x", "-rjson", "-I/tmp/i", "-e", "1"], &["RUBYOPT=-r./y"]);
        assert_eq!(strs(&s.startup_files), ["/tmp/x", "./y"]);
        assert_eq!(strs(&s.search_dirs), ["/tmp", "/tmp/i", "."]);
        let s = of(Syntax::Ruby, &["ruby", "x.rb"], &["RUBYLIB=/tmp/r"]);
        assert_eq!(strs(&s.search_dirs), ["/tmp/r"]);
        let env = ["NODE_OPTIONS=--require \"/tmp/a b.js\" --import=file:///tmp/m.mjs -r x", "NODE_PATH=/tmp/n"];
        let s = of(Syntax::Node, &["node", "-e", "1"], &env);
        assert_eq!(strs(&s.startup_files), ["/tmp/a b.js", "/tmp/m.mjs"]);
        assert_eq!(strs(&s.search_dirs), ["/tmp", "/tmp", "/tmp/n", "node_modules"]);
        let s = of(Syntax::Node, &["node", "--require=/tmp/r.js", "app.js"], &[]);
        assert_eq!(strs(&s.startup_files), ["/tmp/r.js"]);
        assert_eq!(strs(&s.search_dirs), ["/tmp"]);
    }

    #[test]
    fn php_and_generic_interpreters() {
        let s =
            of(Syntax::Php, &["php", "-d", "auto_prepend_file=/tmp/p.php", "-dinclude_path=/tmp/i", "-r", "1"], &[]);
        assert_eq!(strs(&s.startup_files), ["/tmp/p.php"]);
        assert_eq!(strs(&s.search_dirs), ["/tmp/i"]);
        let s = of(Syntax::Generic, &["lua", "-e", "x"], &["LUA_INIT=@/tmp/i.lua", "LUA_PATH=/tmp/?.lua;;"]);
        assert_eq!(strs(&s.startup_files), ["/tmp/i.lua"]);
        assert_eq!(strs(&s.search_dirs), ["/tmp"]);
        let s = of(Syntax::Generic, &["lua"], &["LUA_INIT=print(1)", "AWKPATH=/tmp/a"]);
        assert!(s.startup_files.is_empty(), "inline code is not a file");
        assert_eq!(strs(&s.search_dirs), ["/tmp/a"]);
    }

    #[test]
    fn module_names_are_told_from_data() {
        assert!(is_module(Syntax::Python, b"x.py") && is_module(Syntax::Python, b"evil.pth"));
        assert!(!is_module(Syntax::Python, b"data.csv") && !is_module(Syntax::Python, b".py"));
        assert!(is_module(Syntax::Perl, b"Foo.pm") && !is_module(Syntax::Perl, b"x.txt"));
        assert!(is_module(Syntax::Node, b"index.js") && is_module(Syntax::Node, b"package.json"));
        assert!(is_module(Syntax::Ruby, b"x.rb") && !is_module(Syntax::Shell, b"x.sh"));
    }

    #[test]
    fn option_words_split_like_the_interpreters_do() {
        let w = split_words(br#"  --a  "b c" d\e "f\"g" "" "#);
        assert_eq!(strs(&w), ["--a", "b c", "d\\e", "f\"g", ""]);
        assert!(split_words(b"").is_empty());
    }

    mod no_panic_on_input {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// argv and environ bytes of any shape, for every syntax.
            #[test]
            fn sources_take_any_bytes(cmdline in proptest::collection::vec(any::<u8>(), 0..300),
                                       environ in proptest::collection::vec(any::<u8>(), 0..300)) {
                for syntax in [Syntax::Shell, Syntax::Python, Syntax::Perl, Syntax::Ruby, Syntax::Php, Syntax::Node, Syntax::Generic] {
                    let _ = sources(syntax, &cmdline, &environ);
                    let _ = is_module(syntax, &cmdline);
                    let _ = crate::decide::rules::script_arg(syntax, &cmdline);
                }
                let _ = crate::decide::applet::applet(&cmdline, |n| n.starts_with(b"busybox"));
            }

            /// Option-like words, with the flags each syntax knows, reach every branch of the scanner.
            #[test]
            fn sources_take_option_soup(words in proptest::collection::vec(
                proptest::sample::select(vec!["-", "--", "-c", "-e", "-I", "-I/x", "-Mlib=/a,b", "-r", "/tmp/x",
                    "--require", "--import=a/b", "-l0", "-0x", "-d", "auto_prepend_file=/p", "-lane", "+o", "-f",
                    "--rcfile", "-x", "\u{ff}", ""]), 0..8)) {
                let mut cmdline = b"x\0".to_vec();
                for w in &words {
                    cmdline.extend_from_slice(w.as_bytes());
                    cmdline.push(0);
                }
                let env = format!("NODE_OPTIONS={0}\0RUBYOPT={0}\0PERL5OPT={0}\0HOME=/h\0", words.join(" "));
                for syntax in [Syntax::Shell, Syntax::Python, Syntax::Perl, Syntax::Ruby, Syntax::Php, Syntax::Node, Syntax::Generic] {
                    let _ = sources(syntax, &cmdline, env.as_bytes());
                }
            }
        }
    }
}
