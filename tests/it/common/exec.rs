//! Running things: bounded commands (`run_bounded`), commands and shell snippets inside the test's namespace,
//! and exec attempts (`Exec`): a shell that prints its pid, then execs the target.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

use super::{Env, SYS_PATH, poll_until};

/// How long one exec attempt (or helper command) may take before it is killed.
pub const CMD_TIMEOUT_SECS: u32 = 20;
/// strerror(EPERM): what a shell prints for a denied exec, and an alert's `Result` for a Block.
pub const EPERM_TEXT: &str = "Operation not permitted";

// ---------------------------------------------------------------------------------------------------------
// Bounded commands

/// Result of a finished command.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.status, self.stdout, self.stderr)
    }
}

/// Runs `cmd` to completion, killing it after `limit`. Panics on a timeout.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let desc = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {desc}: {e}"));
    let out_reader = reader_thread(child.stdout.take().unwrap());
    let err_reader = reader_thread(child.stderr.take().unwrap());
    let Some(status) = poll_until(limit, || child.try_wait().unwrap()) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("command did not finish within {limit:?}: {desc}");
    };
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    Output {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

fn reader_thread<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

// ---------------------------------------------------------------------------------------------------------
// Inside the namespace

impl Env {
    /// Runs `argv` inside the namespace, bounded by `timeout`.
    pub fn run_in_ns<S: AsRef<OsStr>>(&self, argv: &[S]) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.env("PATH", SYS_PATH)
            .arg("-t")
            .arg(self.holder_pid.to_string())
            .args(["-m", "--", "timeout", "-k", "2"])
            .arg(CMD_TIMEOUT_SECS.to_string())
            .args(argv);
        run_bounded(&mut cmd, Duration::from_secs(u64::from(CMD_TIMEOUT_SECS) + 10))
    }

    /// Runs a shell snippet (setup: mounts, mkdir, ...) in the namespace; asserts success.
    pub fn sh(&self, script: &str) -> Output {
        let o = self.run_in_ns(&["sh", "-ec", script]);
        assert!(o.status.success(), "{}: setup command failed: {script}\n{o}", self.name);
        o
    }

    /// bash execs `target` itself (`exec "$1"`) from working directory `cwd`.
    pub fn bash_exec(&self, target: &Path, cwd: &Path) -> Exec {
        self.shell_exec("bash", &[], target, cwd)
    }

    /// dash execs `target` itself.
    pub fn dash_exec(&self, target: &Path, cwd: &Path) -> Exec {
        self.shell_exec("dash", &[], target, cwd)
    }

    /// `prefix` (e.g. `unshare -m --propagation private --`) then `shell -c 'cd; echo $$ $PPID; exec "$1"'`.
    pub fn shell_exec(&self, shell: &str, prefix: &[&str], target: &Path, cwd: &Path) -> Exec {
        self.shell_exec_with_setup(shell, prefix, "", target, cwd)
    }

    /// Like `shell_exec`, with `setup` shell code run first (in the same process, e.g. a mount after unshare).
    pub fn shell_exec_with_setup(&self, shell: &str, prefix: &[&str], setup: &str, target: &Path, cwd: &Path) -> Exec {
        let script = format!("{setup}\ncd \"$2\" || exit 99\necho \"$$ $PPID\"\nexec \"$1\"");
        let mut argv: Vec<OsString> = prefix.iter().map(OsString::from).collect();
        argv.extend([shell, "-c", &script, "noexecd-test"].iter().map(OsString::from));
        argv.push(target.as_os_str().to_owned());
        argv.push(cwd.as_os_str().to_owned());
        let out = self.run_in_ns(&argv);
        Exec::from_output(out)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Exec attempts

/// One exec attempt made by `sh -c 'echo "$$ $PPID"; exec "$1"'`.
#[derive(Debug)]
pub struct Exec {
    pub out: Output,
    /// The pid of the shell that called execve (and its parent), as it printed them.
    pub pid: i64,
    pub ppid: i64,
}

impl Exec {
    pub fn from_output(out: Output) -> Exec {
        let first = out.stdout.lines().next().unwrap_or("");
        let mut it = first.split_whitespace().map(|s| s.parse::<i64>());
        match (it.next(), it.next()) {
            (Some(Ok(pid)), Some(Ok(ppid))) => Exec { out, pid, ppid },
            _ => panic!("the exec helper did not print its pid (setup failed?)\n{out}"),
        }
    }

    /// Asserts the exec was denied with EPERM (the shell reports "Operation not permitted").
    pub fn assert_denied(&self, what: &str) {
        assert!(
            !self.out.status.success() && self.out.stderr.contains(EPERM_TEXT),
            "{what}: expected the exec to fail with EPERM ({EPERM_TEXT:?})\n{}",
            self.out
        );
    }

    /// Asserts bash's exec was denied with EPERM: bash exits 126 and prints the errno text.
    pub fn assert_denied_bash(&self, what: &str) {
        self.assert_denied(what);
        assert_eq!(self.out.code(), Some(126), "{what}: bash exits 126 on a denied exec\n{}", self.out);
    }

    /// Asserts the exec ran and exited 0.
    pub fn assert_ran(&self, what: &str) {
        assert!(
            self.out.status.success() && !self.out.stderr.contains(EPERM_TEXT),
            "{what}: expected the exec to run and exit 0\n{}",
            self.out
        );
    }
}
