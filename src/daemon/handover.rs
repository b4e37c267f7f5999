//! Handing the fanotify group to a new binary (a package upgrade or downgrade) instead of releasing it.
//! `noexecd handover` sends [`SIGNAL`] to the running daemon, which then:
//! - runs `<its binary's path> check --config <its configuration>`, bounded by [`CHECK_WITHIN`]: the file at
//!   the path it was started from is the new binary once the package manager has replaced it. A new binary
//!   that refuses the configuration (or does not run) leaves this daemon guarding with its policy: it logs an
//!   error, writes a `SystemEvent` alert (`HandOverRefused`) and the reason to [`REFUSED_FILE`], which the
//!   command reports;
//! - exempts the restart chain again, by path (the new binary's inode, its interpreter, systemd's executor);
//! - makes sure systemd's FD store holds the group (under `fail_mode = "open"` too, for the hand-over only);
//! - stops its decision thread once it has answered every event it read, lets the alert writer finish,
//!   and exits with the marks in place and the group kept. `Restart=always` starts the new binary with the
//!   stored group; what arrives in between waits in the group's queue for it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The signal that asks the daemon to hand over. Not SIGUSR2: that one wakes the decision thread (`sys::wake`).
pub const SIGNAL: nix::sys::signal::Signal = nix::sys::signal::Signal::SIGUSR1;

/// Where a refused hand-over leaves its reason (systemd's `RuntimeDirectory=`); `noexecd handover` removes it
/// before asking.
pub const REFUSED_FILE: &str = "/run/noexecd/handover-refused";

/// How long the new binary's check of the configuration may take.
pub const CHECK_WITHIN: Duration = Duration::from_secs(20);

/// How much of the check's error output the log, the alert and [`REFUSED_FILE`] carry.
const REASON_MAX: usize = 2000;

/// The path this daemon was started from, which a package manager replaces (`/proc/self/exe` then ends in
/// ` (deleted)`: the name is still the path).
pub fn start_path() -> Option<PathBuf> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let bytes = exe.as_os_str().as_encoded_bytes();
    let name = bytes.strip_suffix(b" (deleted)").unwrap_or(bytes);
    Some(PathBuf::from(String::from_utf8_lossy(name).into_owned()))
}

/// Runs `binary check --config config`, at most `within`; `Err` says why the new binary cannot take over.
pub fn check_binary(binary: &Path, config: &Path, within: Duration) -> Result<(), String> {
    let mut child = Command::new(binary)
        .arg("check")
        .arg("--config")
        .arg(config)
        // Systemd's variables are this daemon's: the check must not speak to systemd in its name.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    // Read on the side: a check that writes more than a pipe holds must not stall until the deadline.
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = stderr {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    });
    let deadline = Instant::now() + within;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("`{} check` did not finish within {} s", binary.display(), within.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => break Err(format!("cannot wait for `{} check`: {e}", binary.display())),
        }
    };
    let output = reader.join().unwrap_or_default();
    let status = status?;
    if status.success() {
        return Ok(());
    }
    let errors: Vec<&str> = output.lines().filter(|l| !l.starts_with("warning:") && !l.starts_with("info:")).collect();
    let mut reason =
        format!("`{} check --config {}` failed ({status}): {}", binary.display(), config.display(), errors.join(" / "));
    if reason.len() > REASON_MAX {
        let mut cut = REASON_MAX;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    Err(reason)
}

/// Leaves `reason` where `noexecd handover` looks.
pub fn report_refusal(reason: &str) {
    if let Err(e) = std::fs::write(REFUSED_FILE, format!("{reason}\n")) {
        tracing::warn!(path = REFUSED_FILE, error = %e, "cannot write why the hand-over was refused");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_that_fails_is_refused_with_its_error_output() {
        let why = check_binary(Path::new("/bin/false"), Path::new("/nonexistent.toml"), Duration::from_secs(5));
        assert!(why.is_err_and(|w| w.contains("/bin/false check --config /nonexistent.toml")));
    }

    #[test]
    fn a_binary_that_succeeds_is_accepted_and_a_missing_one_refused() {
        assert_eq!(check_binary(Path::new("/bin/true"), Path::new("/x.toml"), Duration::from_secs(5)), Ok(()));
        let missing = check_binary(Path::new("/nonexistent/noexecd"), Path::new("/x.toml"), Duration::from_secs(5));
        assert!(missing.is_err_and(|w| w.contains("cannot run /nonexistent/noexecd")));
    }

    #[test]
    fn a_check_that_hangs_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("slow");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let started = Instant::now();
        let why = check_binary(&script, Path::new("/x.toml"), Duration::from_millis(300));
        assert!(why.is_err_and(|w| w.contains("did not finish within")));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn the_start_path_is_this_executable() {
        assert_eq!(start_path(), std::fs::read_link("/proc/self/exe").ok());
    }
}
