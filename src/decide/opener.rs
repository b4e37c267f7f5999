//! What the process behind a FAN_OPEN_PERM event is doing, read from /proc: is it the dynamic loader, an
//! ELF reader (with or without a preload library), or an interpreter whose argv names the file. Read only
//! for files that could run (a loadable ELF or a script-like text in protected scope); the verdict is
//! [`judge`]'s.
//!
//! The opener waits in open(2) while we read: /proc/PID/exe, cmdline and environ need none of the locks it
//! holds there (cmdline and environ take its mm for reading; open holds no mm lock).

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::rules::{Route, ScriptArg, loader_env, script_arg};
use super::sniff::FileKind;
use crate::guard::loaders::Loaders;
use crate::host::procfs;
use crate::policy::open_guard::OpenGuardConfig;

/// The file being opened, as the verdict needs it.
#[derive(Debug, Clone, Copy)]
pub struct OpenedFile {
    pub kind: FileKind,
    pub dev: u64,
    pub ino: u64,
}

/// Whether this open is a route to running the file in protected scope, and which. `None` allows it.
pub fn judge(config: &OpenGuardConfig, loaders: &Loaders, file: OpenedFile, pid: i32) -> Option<Route> {
    let exe_path = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let exe = exe_path.as_os_str().as_bytes();
    let exe = exe.strip_suffix(b" (deleted)").unwrap_or(exe);
    // A multi-call binary is the applet its argv names: busybox's `cat` reads, its `sh` interprets.
    let multi = (base_name(exe) == MULTI_CALL).then(|| std::fs::read(format!("/proc/{pid}/cmdline")).ok()).flatten();
    let (program, applet_argv) = match multi.as_deref().and_then(applet) {
        Some((name, argv)) => (name, Some(argv)),
        None => (exe, None),
    };
    match file.kind {
        FileKind::LoadableElf => {
            let exe_id = std::fs::metadata(format!("/proc/{pid}/exe")).ok().map(|m| (m.dev(), m.ino()));
            if exe_id.is_some_and(|id| loaders.contains(id)) {
                return Some(Route::Loader);
            }
            // busybox maps no ELF file itself (no dlopen; its loader, if any, is another program), and runs its
            // "noexec" applets (cp, cat) in a forked copy of its shell whose argv is still the shell's: only
            // a preload library can be loaded into it, as into a reader.
            if !config.is_elf_reader(program) && base_name(exe) != MULTI_CALL {
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
            let read;
            let cmdline = match applet_argv {
                Some(argv) => argv,
                None => {
                    read = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                    read.as_slice()
                }
            };
            match script_arg(syntax, cmdline) {
                ScriptArg::File(arg) if names_file(pid, arg, file.dev, file.ino) => {
                    (!package_scriptlet(config, pid)).then_some(Route::Interpreter)
                }
                _ => None,
            }
        }
        FileKind::OtherElf | FileKind::Empty => None,
    }
}

/// The multi-call binary whose applets are told apart by argv.
const MULTI_CALL: &[u8] = b"busybox";

fn base_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

/// The applet a multi-call binary runs, from its `/proc/PID/cmdline`: argv[0]'s name (`cat`, a link to
/// busybox), or argv[1] when called by its own name (`busybox sh /tmp/x`); with the command line from that
/// argument on, as the applet's own argv.
fn applet(cmdline: &[u8]) -> Option<(&[u8], &[u8])> {
    let (argv0, rest) = match cmdline.iter().position(|&b| b == 0) {
        Some(i) => (cmdline.get(..i)?, cmdline.get(i + 1..)?),
        None => (cmdline, &b""[..]),
    };
    if base_name(argv0) != MULTI_CALL {
        return (!argv0.is_empty()).then(|| (base_name(argv0), cmdline));
    }
    let argv1 = rest.split(|&b| b == 0).next().filter(|a| !a.is_empty())?;
    Some((base_name(argv1), rest))
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
fn names_file(pid: i32, arg: &[u8], dev: u64, ino: u64) -> bool {
    let path = in_process_view(pid, arg);
    std::fs::metadata(Path::new(std::ffi::OsStr::from_bytes(&path))).is_ok_and(|m| m.dev() == dev && m.ino() == ino)
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

    #[test]
    fn a_busybox_applet_is_the_program() {
        assert_eq!(applet(b"cat\0/tmp/x\0"), Some((&b"cat"[..], &b"cat\0/tmp/x\0"[..])));
        assert_eq!(applet(b"/bin/sh\0/tmp/x\0"), Some((&b"sh"[..], &b"/bin/sh\0/tmp/x\0"[..])));
        assert_eq!(applet(b"busybox\0sh\0/tmp/x\0"), Some((&b"sh"[..], &b"sh\0/tmp/x\0"[..])));
        assert_eq!(applet(b"/bin/busybox\0"), None, "no applet: judged as busybox itself");
        assert_eq!(applet(b""), None);
        let config = OpenGuardConfig::default();
        assert!(config.is_elf_reader(b"cat") && config.interpreter(b"cat").is_none());
        assert!(config.interpreter(b"sh").is_some());
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
        assert_eq!(judge(&OpenGuardConfig::default(), &Loaders::default(), file, me), Some(Route::SharedObject));
        let text = OpenedFile { kind: FileKind::Text, ..file };
        assert_eq!(judge(&OpenGuardConfig::default(), &Loaders::default(), text, me), None);
        let data = OpenedFile { kind: FileKind::Empty, ..file };
        assert_eq!(judge(&OpenGuardConfig::default(), &Loaders::default(), data, i32::MAX), None);
    }
}
