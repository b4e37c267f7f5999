//! `noexecd handover`: asks the daemon systemd runs to hand its fanotify group to the binary now installed
//! (`daemon::handover` tells what the daemon does), and waits until the new daemon guards.
//!
//! While the group waits in systemd's store for the new daemon, every exec on a guarded filesystem waits too,
//! `systemctl` included: this command watches the old process end through /proc alone, and asks systemd
//! about the new one only after that (those execs wait a moment, until the new daemon answers).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::daemon::handover::{REFUSED_FILE, SIGNAL};
use crate::error::{Error, Result};

const POLL: Duration = Duration::from_millis(50);

/// What systemd says about the unit.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UnitState {
    pub main_pid: i32,
    pub active: String,
    pub sub: String,
    pub status: String,
}

impl UnitState {
    /// From `systemctl show -p MainPID -p ActiveState -p SubState -p StatusText` (`Name=value` lines).
    pub fn parse(text: &str) -> Self {
        let mut state = UnitState::default();
        for line in text.lines() {
            let Some((name, value)) = line.split_once('=') else { continue };
            match name {
                "MainPID" => state.main_pid = value.trim().parse().unwrap_or(0),
                "ActiveState" => state.active = value.to_owned(),
                "SubState" => state.sub = value.to_owned(),
                "StatusText" => state.status = value.to_owned(),
                _ => {}
            }
        }
        state
    }

    fn running(&self) -> bool {
        self.main_pid > 0 && self.active == "active" && self.sub == "running"
    }
}

fn ask(unit: &str) -> Result<UnitState> {
    let out = Command::new("systemctl")
        .args(["show", "-p", "MainPID", "-p", "ActiveState", "-p", "SubState", "-p", "StatusText", "--", unit])
        .output()
        .map_err(|source| Error::AskSystemd { unit: unit.to_owned(), source })?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(Error::AskSystemd { unit: unit.to_owned(), source: std::io::Error::other(why) });
    }
    Ok(UnitState::parse(&String::from_utf8_lossy(&out.stdout)))
}

/// Whether `pid` catches `SIGUSR1` (`SigCgt:` of /proc/PID/status): a daemon older than the hand-over
/// would die of it, and its restart would wait on a group that exempts the old binary only.
pub fn catches(status: &str, signal: i32) -> bool {
    let Some(mask) = status.lines().find_map(|l| l.strip_prefix("SigCgt:")) else { return false };
    u64::from_str_radix(mask.trim(), 16).is_ok_and(|m| signal >= 1 && m & (1u64 << (signal - 1)) != 0)
}

/// Asks `unit`'s daemon to hand over and waits, at most `within`, for the new one to run. Returns what to
/// print: the old and the new process, and the new daemon's status line (its version first).
pub fn handover(unit: &str, within: Duration) -> Result<String> {
    let fail = |why: String| Error::HandOver { unit: unit.to_owned(), why };
    let before = ask(unit)?;
    if !before.running() {
        return Err(fail(format!(
            "it is not running (ActiveState={}, SubState={}): nothing to hand over; `systemctl start {unit}` starts it",
            before.active, before.sub
        )));
    }
    let pid = before.main_pid;
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    if !catches(&proc_status, SIGNAL as i32) {
        return Err(fail(format!(
            "its daemon (pid {pid}) does not take hand-overs (a version before them); `systemctl restart {unit}` starts the new binary, with a gap in the guard while it restarts"
        )));
    }
    match std::fs::remove_file(REFUSED_FILE) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(format!("cannot remove {REFUSED_FILE}, where a refusal is reported: {e}"))),
    }
    kill(Pid::from_raw(pid), SIGNAL).map_err(|e| fail(format!("cannot signal its daemon (pid {pid}): {e}")))?;
    let deadline = Instant::now() + within;
    // The old daemon checks the new binary, then exits, or refuses and keeps guarding.
    while Path::new(&format!("/proc/{pid}")).exists() {
        if let Ok(reason) = std::fs::read_to_string(REFUSED_FILE)
            && !reason.trim().is_empty()
        {
            return Err(fail(format!(
                "REFUSED: the daemon (pid {pid}, {}) keeps guarding with its policy: {}",
                before.status.split(':').next().unwrap_or("noexecd"),
                reason.trim()
            )));
        }
        if Instant::now() >= deadline {
            return Err(fail(format!(
                "its daemon (pid {pid}) neither handed over nor refused within {} s",
                within.as_secs()
            )));
        }
        std::thread::sleep(POLL);
    }
    loop {
        let now = ask(unit)?;
        if now.running() && now.main_pid != pid {
            return Ok(format!(
                "noexecd handover: {unit}: pid {pid} handed over to pid {}: {}",
                now.main_pid, now.status
            ));
        }
        if now.active == "failed" || now.active == "inactive" {
            return Err(fail(format!(
                "the new daemon did not start (ActiveState={}, SubState={}); see journalctl -u {unit}",
                now.active, now.sub
            )));
        }
        if Instant::now() >= deadline {
            return Err(fail(format!(
                "the new daemon was not running {} s after the old one exited (ActiveState={}, SubState={})",
                within.as_secs(),
                now.active,
                now.sub
            )));
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemctl_show_is_read_by_name() {
        let s = UnitState::parse("MainPID=42\nActiveState=active\nSubState=running\nStatusText=noexecd 0.1.0: a=b\n");
        assert_eq!(s.main_pid, 42);
        assert!(s.running());
        assert_eq!(s.status, "noexecd 0.1.0: a=b");
        assert!(!UnitState::parse("MainPID=0\nActiveState=inactive\nSubState=dead\n").running());
    }

    #[test]
    fn a_caught_signal_is_read_from_sigcgt() {
        // SIGUSR1 is 10: bit 9.
        assert!(catches("Name:\tx\nSigCgt:\t0000000000000200\n", 10));
        assert!(!catches("Name:\tx\nSigCgt:\t0000000000000800\n", 10));
        assert!(!catches("Name:\tx\n", 10));
    }
}
