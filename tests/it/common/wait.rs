//! Waiting on the daemon, not the clock: polling with a bound ([`wait_until`]), and the counters of the
//! status file the harness has every daemon write (`run --status-file`, rewritten every
//! [`STATUS_EVERY_MS`] ms): decided events, alerts, reloads, looks at the mount table and the runtimes.
//!
//! To assert that something did *not* happen (no alert), wait until the daemon has decided what the action
//! raised and its alert writer has caught up ([`Env::settle`]), then assert: had the alert been due, it
//! would be in the log by then.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::{Daemon, Env};

/// How often a wait looks again.
pub const POLL_EVERY: Duration = Duration::from_millis(10);
/// How long a wait on the daemon's status may take before the test fails.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// The status file's period the harness asks for (`NOEXECD_STATUS_EVERY_MS`).
pub const STATUS_EVERY_MS: &str = "20";

/// Polls `probe` until it gives a value, at most `limit`; `None` after that.
pub fn poll_until<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        // The polling interval of every wait in the harness: the one clock a wait needs.
        thread::sleep(POLL_EVERY);
    }
}

/// Polls `probe` until it gives a value; fails the test saying `what` was not seen within `limit`.
pub fn wait_until<T>(what: impl Display, limit: Duration, probe: impl FnMut() -> Option<T>) -> T {
    poll_until(limit, probe).unwrap_or_else(|| panic!("{what}: not within {limit:?}"))
}

/// The fields of the status file after its status line (`name=value` each; see the daemon's `StatusFile`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonStatus {
    pub line: String,
    pub fields: BTreeMap<String, u64>,
}

impl DaemonStatus {
    pub fn parse(text: &str) -> Option<DaemonStatus> {
        let mut lines = text.lines();
        let line = lines.next()?.to_owned();
        let mut fields = BTreeMap::new();
        for l in lines {
            let (name, value) = l.split_once('=')?;
            fields.insert(name.to_owned(), value.parse().ok()?);
        }
        fields.contains_key("updates").then_some(DaemonStatus { line, fields })
    }

    /// A field the daemon writes; a missing one fails the test.
    pub fn get(&self, name: &str) -> u64 {
        *self.fields.get(name).unwrap_or_else(|| panic!("no {name}= in the status file: {self:?}"))
    }

    /// Permission events answered with a decision.
    pub fn decided(&self) -> u64 {
        self.get("decided")
    }

    /// Every alert the decisions raised is written or dropped.
    pub fn alerts_caught_up(&self) -> bool {
        self.get("alerts_written") + self.get("alerts_dropped") >= self.get("alerted")
    }
}

/// A running daemon's status file as a test reads it: the file, the daemon's pid (a wait ends when it
/// exits) and its log (shown when a wait fails).
#[derive(Debug, Clone, Copy)]
pub struct StatusWatch<'a> {
    pub path: &'a Path,
    pub pid: i32,
    pub log: &'a Path,
}

impl StatusWatch<'_> {
    /// What the status file says now, if the daemon wrote it yet.
    pub fn status(&self) -> Option<DaemonStatus> {
        read_status(self.path)
    }

    fn log_text(&self) -> String {
        fs::read(self.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// Whether the daemon has exited (a zombie not yet waited for counts), read without waiting for it.
    pub fn has_ended(&self) -> bool {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        // "pid (comm) S ...": the state follows the last ')'.
        stat.rsplit_once(')').is_none_or(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    }

    /// The status written after this call began (two rewrites on: the first may hold counters read before).
    pub fn fresh_status(&self) -> DaemonStatus {
        let first = self.wait_status("a status file", |_| true);
        let after = first.get("updates") + 2;
        self.wait_status(format_args!("a status file rewritten after updates={}", first.get("updates")), |s| {
            s.get("updates") >= after
        })
    }

    /// Waits until the status file satisfies `want`; fails the test naming `what` (and showing the last
    /// status and the daemon's log) after [`STATUS_TIMEOUT`], or at once when the daemon has exited.
    pub fn wait_status(&self, what: impl Display, want: impl Fn(&DaemonStatus) -> bool) -> DaemonStatus {
        self.wait_status_within(STATUS_TIMEOUT, what, want)
    }

    /// [`StatusWatch::wait_status`] with a bound of its own.
    pub fn wait_status_within(
        &self,
        limit: Duration,
        what: impl Display,
        want: impl Fn(&DaemonStatus) -> bool,
    ) -> DaemonStatus {
        let mut last = None;
        let got = poll_until(limit, || {
            let now = self.status();
            if let Some(s) = now.as_ref().filter(|s| want(s)) {
                return Some(Ok(s.clone()));
            }
            last = now.or(last.take());
            self.has_ended().then_some(Err(()))
        });
        match got {
            Some(Ok(s)) => s,
            Some(Err(())) => panic!("waiting for {what}: the daemon exited; last status {last:?}\n{}", self.log_text()),
            None => panic!("waiting for {what}: not within {limit:?}; last status {last:?}\n{}", self.log_text()),
        }
    }

    /// Waits until the daemon has decided `n` events more than `before` (a fresh status read before the
    /// action).
    pub fn wait_decided(&self, before: &DaemonStatus, n: u64) -> DaemonStatus {
        let want = before.decided() + n;
        self.wait_status(format_args!("decided >= {want}"), |s| s.decided() >= want)
    }

    /// Waits for a whole pass of `field` (`mount_checks`, `scope_refreshes`, `reloads`) begun after the
    /// value `before` was read: the pass under way then may have missed what the test did since.
    pub fn wait_generation_after(&self, field: &str, before: u64) -> DaemonStatus {
        self.wait_status(format_args!("{field} >= {}", before + 2), |s| s.get(field) >= before + 2)
    }

    /// Waits until every alert the decisions so far raised is written (or dropped).
    pub fn settle(&self) -> DaemonStatus {
        let fresh = self.fresh_status();
        let decided = fresh.decided();
        self.wait_status("the alert writer to catch up with the decisions", |s| {
            s.decided() >= decided && s.alerts_caught_up()
        })
    }
}

impl Daemon {
    pub fn watch(&self) -> StatusWatch<'_> {
        StatusWatch { path: &self.status_path, pid: self.pid, log: &self.stderr_path }
    }
}

fn read_status(path: &Path) -> Option<DaemonStatus> {
    DaemonStatus::parse(&fs::read_to_string(path).ok()?)
}

impl Env {
    fn watch(&self) -> StatusWatch<'_> {
        self.daemon.as_ref().expect("daemon running").watch()
    }

    /// [`StatusWatch::settle`] of the running daemon; nothing when none runs (none can write an alert then).
    pub fn settle(&self) {
        if let Some(d) = self.daemon.as_ref()
            && !d.watch().has_ended()
        {
            d.watch().settle();
        }
    }

    /// [`StatusWatch::fresh_status`] of the running daemon.
    pub fn fresh_status(&self) -> DaemonStatus {
        self.watch().fresh_status()
    }

    /// [`StatusWatch::wait_status`] of the running daemon.
    pub fn wait_status(&self, what: impl Display, want: impl Fn(&DaemonStatus) -> bool) -> DaemonStatus {
        self.watch().wait_status(what, want)
    }

    /// [`StatusWatch::wait_status_within`] of the running daemon.
    pub fn wait_status_within(
        &self,
        limit: Duration,
        what: impl Display,
        want: impl Fn(&DaemonStatus) -> bool,
    ) -> DaemonStatus {
        self.watch().wait_status_within(limit, what, want)
    }

    /// [`StatusWatch::wait_decided`] of the running daemon.
    pub fn wait_decided(&self, before: &DaemonStatus, n: u64) -> DaemonStatus {
        self.watch().wait_decided(before, n)
    }

    /// [`StatusWatch::wait_generation_after`] of the running daemon.
    pub fn wait_generation_after(&self, field: &str, before: u64) -> DaemonStatus {
        self.watch().wait_generation_after(field, before)
    }

    /// Waits until `n` directories more than `before` (a fresh status's `open_dirs`, read before they were
    /// made) carry the open guard's marks.
    pub fn wait_open_dirs(&self, before: &DaemonStatus, n: u64) -> DaemonStatus {
        let want = before.get("open_dirs") + n;
        self.wait_status(format_args!("open_dirs >= {want}"), |s| s.get("open_dirs") >= want)
    }
}
