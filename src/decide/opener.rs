//! What the process behind a FAN_OPEN_PERM event is doing, read from /proc: is it the dynamic loader, an
//! ELF reader (with or without a preload library), or an interpreter loading the file as code (its argv
//! script, a startup file, a module from a search directory, a sourced `#!` script; `interp` parses where
//! from). A multi-call binary (busybox) is judged as its applet. Read only for files that could run (a
//! loadable ELF or a script-like text in protected scope); the verdict is [`judge`]'s.
//!
//! The opener waits in open(2) while we read: /proc/PID/exe, cmdline and environ need none of the locks it
//! holds there (cmdline and environ take its mm for reading; open holds no mm lock).

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::applet::applet;
use super::interp;
use super::rules::{Route, ScriptArg, loader_env, script_arg};
use super::sniff::FileKind;
use crate::guard::loaders::Loaders;
use crate::host::procfs;
use crate::policy::open_guard::{OpenGuardConfig, Syntax, file_name};
use crate::sys::{PATH_BUF_LEN, ProcDirs};

/// The file being opened, as the verdict needs it.
#[derive(Debug, Clone, Copy)]
pub struct OpenedFile {
    pub kind: FileKind,
    pub dev: u64,
    pub ino: u64,
}

/// Whether this open is a route to running the file in protected scope, and which. `None` allows it. `exe_buf`
/// holds the opener's executable name (read through `procs`); `name` gives the file's canonical path, asked for only when an interpreter's module search could have found it.
pub fn judge(
    config: &OpenGuardConfig,
    loaders: &Loaders,
    file: OpenedFile,
    pid: i32,
    procs: &ProcDirs,
    exe_buf: &mut [u8; PATH_BUF_LEN],
    name: &mut dyn FnMut() -> Vec<u8>,
) -> Option<Route> {
    let exe = match procs.pid_link(pid, b"exe", exe_buf) {
        Ok(exe) => exe,
        Err(_) if opener_gone(pid) => return None,
        Err(_) => return Some(Route::OpenerUnreadable),
    };
    let exe = exe.strip_suffix(b" (deleted)").unwrap_or(exe);
    // A multi-call binary is judged as the applet it runs; only it needs the command line this early.
    let multi_call = config.is_multi_call(exe);
    let cmdline = if multi_call { std::fs::read(format!("/proc/{pid}/cmdline")).ok()? } else { Vec::new() };
    let (program, args) = if multi_call {
        let a = applet(&cmdline, |n| {
            config.is_multi_call(n) || config.multi_call.iter().any(|p| n.starts_with(p.name.as_bytes()))
        });
        (a.name, Some(a.cmdline))
    } else {
        (exe, None)
    };
    match file.kind {
        FileKind::LoadableElf => {
            let exe_id = std::fs::metadata(format!("/proc/{pid}/exe")).ok().map(|m| (m.dev(), m.ino()));
            if exe_id.is_some_and(|id| loaders.contains(id)) {
                return Some(Route::Loader);
            }
            // A multi-call binary maps no ELF file itself (no dlopen; its loader, if any, is another program),
            // and runs its "noexec" applets (cp, cat) in a forked copy of its shell whose argv is still the
            // shell's: only a preload library can be loaded into it, as into a reader.
            if !config.is_elf_reader(program) && !multi_call {
                return Some(Route::SharedObject);
            }
            // A reader started with a preload library in scope opens that library before its own code runs: the
            // environment names this file, or a library directory on its filesystem (a planted libc.so.6).
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let env = loader_env(&environ);
            let named = env.libraries.iter().any(|lib| names_file(pid, lib, file.dev, file.ino));
            let dir_on_fs = env.library_dirs.iter().any(|dir| {
                let path = in_process_view(pid, dir);
                std::fs::metadata(Path::new(std::ffi::OsStr::from_bytes(&path))).is_ok_and(|m| m.dev() == file.dev)
            });
            (named || dir_on_fs).then_some(Route::PreloadedReader)
        }
        FileKind::Shebang | FileKind::Text | FileKind::Binary => {
            let syntax = config.interpreter(program)?;
            let own_cmdline;
            let args = match args {
                Some(args) => args,
                None => {
                    own_cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                    &own_cmdline
                }
            };
            let route = interpreter_route(syntax, args, file, pid, name, multi_call)?;
            (!package_scriptlet(config, pid)).then_some(route)
        }
        FileKind::OtherElf | FileKind::Empty => None,
    }
}

/// Whether the opener has gone (killed while it waited): its answer reaches no one, so no refusal and no
/// alert. A process that is still there but whose executable cannot be read is not gone.
fn opener_gone(pid: i32) -> bool {
    std::fs::symlink_metadata(format!("/proc/{pid}/stat")).is_err()
}

/// How an interpreter opening a script-like file in scope would run it, if it would: as the script its argv
/// names (or the program in the directory it names), a startup file, a module found through a search
/// directory, or (a shell) a `#!` script it sources. The environment is read only when argv did not decide.
fn interpreter_route(
    syntax: Syntax,
    cmdline: &[u8],
    file: OpenedFile,
    pid: i32,
    name: &mut dyn FnMut() -> Vec<u8>,
    multi_call: bool,
) -> Option<Route> {
    let script = match script_arg(syntax, cmdline) {
        ScriptArg::File(arg) if names_file(pid, arg, file.dev, file.ino) => return Some(Route::Interpreter),
        ScriptArg::File(arg) => Some(arg),
        ScriptArg::NoFile => None,
    };
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let sources = interp::sources(syntax, cmdline, &environ);
    if sources.startup_files.iter().any(|f| names_file(pid, f, file.dev, file.ino)) {
        return Some(Route::StartupFile);
    }
    // An rc file can be this file only if its directory (a $HOME in scope) is on the file's filesystem: one
    // stat per directory rather than one per rc file.
    for (dir, names) in &sources.rc_dirs {
        if stat(pid, dir).is_some_and(|(dev, _, _)| dev == file.dev)
            && names.iter().any(|rc| names_file(pid, &interp::join(dir, rc), file.dev, file.ino))
        {
            return Some(Route::StartupFile);
        }
    }
    // An archive named as a search entry (a zip on PYTHONPATH) is opened itself, whatever its name.
    if sources.search_archives.iter().any(|a| names_file(pid, a, file.dev, file.ino)) {
        return Some(Route::ModulePath);
    }
    // Directories are compared only for a file with a module suffix: a data file costs no stat here.
    let program_dir = script.filter(|_| interp::runs_directories(syntax));
    if program_dir.is_some() || !sources.search_dirs.is_empty() {
        let path = name();
        if interp::is_module(syntax, file_name(&path)) {
            let ancestors = ancestors(&path);
            let below =
                |dir: &[u8]| stat(pid, dir).is_some_and(|(dev, ino, is_dir)| is_dir && ancestors.contains(&(dev, ino)));
            if program_dir.is_some_and(below) {
                return Some(Route::Interpreter);
            }
            if sources.search_dirs.iter().any(|d| below(d)) {
                return Some(Route::ModulePath);
            }
        }
    }
    // A shell reading a `#!` script that is not its own: `.`/`source` (a redirect from it is refused too; a
    // shell cannot be told to be doing one or the other when it opens the file). Not a multi-call binary's
    // shell: its `cat` and `cp` run in a forked copy of it, with its argv, and read scripts as data.
    (syntax == Syntax::Shell && file.kind == FileKind::Shebang && !multi_call).then_some(Route::Sourced)
}

/// (device, inode) of every directory above `path` (a canonical path in our namespace), nearest first.
fn ancestors(path: &[u8]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(i) = rest.iter().rposition(|&b| b == b'/') {
        rest = rest.get(..i).unwrap_or_default();
        let dir = if rest.is_empty() { &b"/"[..] } else { rest };
        if let Ok(m) = std::fs::metadata(Path::new(std::ffi::OsStr::from_bytes(dir))) {
            out.push((m.dev(), m.ino()));
        }
        if out.len() >= MAX_DEPTH {
            break;
        }
    }
    out
}

/// Directories above a file looked at for the module search, at most.
const MAX_DEPTH: usize = 64;

/// (device, inode, is a directory) of a file as process `pid` names it, symlinks followed.
fn stat(pid: i32, name: &[u8]) -> Option<(u64, u64, bool)> {
    let path = in_process_view(pid, name);
    let m = std::fs::metadata(Path::new(std::ffi::OsStr::from_bytes(&path))).ok()?;
    Some((m.dev(), m.ino(), m.is_dir()))
}

/// A root interpreter started by a package manager (`script_parents`, by its parent's process name): rpm runs
/// every maintainer scriptlet as `/bin/sh /var/tmp/rpm-tmp.XXXXXX`. Only for root: an unprivileged user
/// running rpm with a package of their own would otherwise have a way to run scripts from /tmp.
fn package_scriptlet(config: &OpenGuardConfig, pid: i32) -> bool {
    if procfs::uid(pid) != Some(0) {
        return false;
    }
    let Some(ppid) = procfs::ppid(pid) else { return false };
    let comm = std::fs::read(format!("/proc/{ppid}/comm")).unwrap_or_default();
    let comm = comm.strip_suffix(b"\n").unwrap_or(&comm);
    config.is_script_parent(comm)
}

/// Whether `arg`, as process `pid` would open it (relative to its working directory and root), is the file
/// (dev, ino). Follows symlinks like the interpreter's open does.
///
/// Through a container's overlay the event names the layer's real file, while the name the opener gave is
/// the overlay's file: the overlay reports the real file's inode number (its layers on one filesystem, as
/// every runtime's storage is) under a device of its own. Same inode on an overlay counts as this file.
fn names_file(pid: i32, arg: &[u8], dev: u64, ino: u64) -> bool {
    let path = in_process_view(pid, arg);
    let path = Path::new(std::ffi::OsStr::from_bytes(&path));
    match std::fs::metadata(path) {
        Ok(m) if m.ino() == ino => m.dev() == dev || on_overlay(path),
        _ => false,
    }
}

fn on_overlay(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC)
}

/// `arg` as seen from our namespace: absolute names go through `/proc/PID/root`, relative ones through
/// `/proc/PID/cwd`; `/proc/self/...`, `/dev/fd/N` and `/dev/stdin` mean the opener's, not ours (the symlinks
/// behind them would resolve in our process).
pub fn in_process_view(pid: i32, arg: &[u8]) -> Vec<u8> {
    let pid_dir = format!("/proc/{pid}");
    let mut out = Vec::with_capacity(arg.len() + 32);
    let fd_alias = match arg {
        b"/dev/stdin" => Some(&b"fd/0"[..]),
        b"/dev/stdout" => Some(&b"fd/1"[..]),
        b"/dev/stderr" => Some(&b"fd/2"[..]),
        _ => None,
    };
    if let Some(fd) = fd_alias {
        out.extend_from_slice(pid_dir.as_bytes());
        out.push(b'/');
        out.extend_from_slice(fd);
    } else if let Some(rest) = arg.strip_prefix(b"/dev/fd/") {
        out.extend_from_slice(pid_dir.as_bytes());
        out.extend_from_slice(b"/fd/");
        out.extend_from_slice(rest);
    } else if let Some(rest) = arg.strip_prefix(b"/proc/self/").or_else(|| arg.strip_prefix(b"/proc/thread-self/")) {
        out.extend_from_slice(pid_dir.as_bytes());
        out.push(b'/');
        out.extend_from_slice(rest);
    } else if arg.starts_with(b"/") {
        out.extend_from_slice(pid_dir.as_bytes());
        out.extend_from_slice(b"/root");
        out.extend_from_slice(arg);
    } else {
        out.extend_from_slice(pid_dir.as_bytes());
        out.extend_from_slice(b"/cwd/");
        out.extend_from_slice(arg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_seen_from_the_opener() {
        assert_eq!(in_process_view(7, b"/tmp/x"), b"/proc/7/root/tmp/x");
        assert_eq!(in_process_view(7, b"x.py"), b"/proc/7/cwd/x.py");
        assert_eq!(in_process_view(7, b"/proc/self/fd/3"), b"/proc/7/fd/3");
        assert_eq!(in_process_view(7, b"/dev/stdin"), b"/proc/7/fd/0");
        assert_eq!(in_process_view(7, b"/dev/fd/5"), b"/proc/7/fd/5");
    }

    /// A real process (`sleep`) plays the interpreter: its environment and working directory are read from
    /// /proc as the daemon would; its command line is the one given.
    fn route_for(syntax: Syntax, cmdline: &[u8], env: &[(&str, &Path)], cwd: &Path, file: &Path) -> Option<Route> {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
            .current_dir(cwd)
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        // The environment is in place once the exec is done: the new executable shows before the new stack's
        // environment does (the loader sets it up after switching the executable).
        let exec_done = || {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e.ends_with("sleep"))
                && (env.is_empty() || std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|e| !e.is_empty()))
        };
        while !exec_done() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let m = std::fs::metadata(file).unwrap();
        let head = std::fs::read(file).unwrap();
        let kind = super::super::sniff::sniff(&head[..head.len().min(64)]);
        let opened = OpenedFile { kind, dev: m.dev(), ino: m.ino() };
        let canonical = file.canonicalize().unwrap();
        let mut name = || canonical.as_os_str().as_bytes().to_vec();
        let route = interpreter_route(syntax, cmdline, opened, pid, &mut name, false);
        let _ = child.kill();
        let _ = child.wait();
        route
    }

    #[test]
    fn startup_files_module_paths_and_sourced_scripts_are_told_from_data() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().canonicalize().unwrap();
        std::fs::create_dir(d.join("app")).unwrap();
        for (f, text) in [
            ("x", "echo hi\n"),
            ("x.sh", "#!/bin/sh\necho hi\n"),
            ("evil.py", "print(1)\n"),
            ("data.csv", "a,b\n"),
            ("app/__main__.py", "print(1)\n"),
        ] {
            std::fs::write(d.join(f), text).unwrap();
        }
        // Not above the files: python's working directory is searched for packages at any depth (`/` too).
        let elsewhere = Path::new("/proc");
        let x = d.join("x");
        let sh = |line: &[u8], env: &[(&str, &Path)], f: &Path| route_for(Syntax::Shell, line, env, elsewhere, f);
        assert_eq!(sh(b"bash\0-c\0:\0", &[("BASH_ENV", x.as_path())], &x), Some(Route::StartupFile));
        assert_eq!(sh(b"bash\0-c\0:\0", &[("HOME", d.as_path())], &x), None, "x is no rc file");
        assert_eq!(sh(b"bash\0-c\0:\0", &[], &x), None, "a text without #! read by a shell is data");
        assert_eq!(sh(b"bash\0-c\0:\0", &[], &d.join("x.sh")), Some(Route::Sourced));
        let py = |line: &[u8], env: &[(&str, &Path)], cwd: &Path, f: &str| {
            route_for(Syntax::Python, line, env, cwd, &d.join(f))
        };
        let import = b"python3\0-c\0import evil\0";
        assert_eq!(py(import, &[("PYTHONPATH", d.as_path())], elsewhere, "evil.py"), Some(Route::ModulePath));
        assert_eq!(py(import, &[("PYTHONPATH", d.as_path())], elsewhere, "data.csv"), None, "data below a search path");
        assert_eq!(py(import, &[], &d, "evil.py"), Some(Route::ModulePath), "-c searches the working directory");
        assert_eq!(py(b"python3\0-P\0-c\0x\0", &[], &d, "evil.py"), None, "-P does not");
        assert_eq!(py(import, &[], elsewhere, "evil.py"), None);
        assert_eq!(py(import, &[], Path::new("/"), "evil.py"), Some(Route::ModulePath), "`import tmp.x` from /");
        let app = [b"python3\0".as_slice(), d.join("app").as_os_str().as_bytes(), b"\0"].concat();
        assert_eq!(py(&app, &[], elsewhere, "app/__main__.py"), Some(Route::Interpreter), "a directory program");
        assert_eq!(py(&app, &[], elsewhere, "evil.py"), None, "outside the program's directory");
    }

    #[test]
    fn an_interpreter_naming_its_script_is_judged_by_inode() {
        let me = std::process::id() as i32;
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let m = std::fs::metadata(&exe).unwrap();
        assert!(names_file(me, exe.as_os_str().as_bytes(), m.dev(), m.ino()));
        assert!(!names_file(me, b"/nonexistent/x", m.dev(), m.ino()));
        // The test binary is neither an interpreter nor a reader: a loadable ELF it opens is a shared object.
        let file = OpenedFile { kind: FileKind::LoadableElf, dev: m.dev(), ino: m.ino() };
        let (procs, mut buf) = (ProcDirs::open(), Box::new([0u8; PATH_BUF_LEN]));
        let c = OpenGuardConfig::default();
        let l = Loaders::default();
        let mut no_name = || Vec::new();
        assert_eq!(judge(&c, &l, file, me, &procs, &mut buf, &mut no_name), Some(Route::SharedObject));
        let text = OpenedFile { kind: FileKind::Text, ..file };
        assert_eq!(judge(&c, &l, text, me, &procs, &mut buf, &mut no_name), None);
        let data = OpenedFile { kind: FileKind::Empty, ..file };
        assert_eq!(judge(&c, &l, data, i32::MAX, &procs, &mut buf, &mut no_name), None);
    }
}
