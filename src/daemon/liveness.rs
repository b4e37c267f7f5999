//! The status file a container's liveness probe reads (`noexecd status`): rewritten every [`LIVE_EVERY`]
//! while the decision thread is alive (its heartbeat moves, or it waits for events: see
//! `stats::decision_alive`), so a stalled decision thread (or a stalled control loop) leaves it to age.
//!
//! Its first line is the status line; the lines after it are [`StatusFile`]'s fields, `name=value` each, for
//! a program that waits on the daemon (the integration tests) rather than on the clock.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::stats::Snapshot;

pub const LIVE_EVERY: Duration = Duration::from_secs(2);

/// Sets how often the status file is rewritten, in milliseconds (10 to 2000), instead of [`LIVE_EVERY`]:
/// a test waiting on the daemon's counters waits one period for a fresh view.
pub const EVERY_MS_VAR: &str = "NOEXECD_STATUS_EVERY_MS";

/// The period of the status file: [`LIVE_EVERY`], or what [`EVERY_MS_VAR`] says within its bounds.
pub fn period() -> Duration {
    std::env::var(EVERY_MS_VAR)
        .ok()
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .map_or(LIVE_EVERY, |ms| Duration::from_millis(ms).clamp(Duration::from_millis(10), LIVE_EVERY))
}

/// What the status file holds after its status line, one `name=value` line per field, in this order.
/// Counters only grow while the daemon runs; each starts at 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusFile {
    /// Rewrites of the file since the start, this one included: a reader that read `updates=u` and then
    /// sees `u + 2` or more holds counters read after its first read.
    pub updates: u64,
    /// Permission events (exec and open) answered, the daemon's own included: every answer written.
    pub decided: u64,
    /// Of those, the ones that raised an alert (blocked or audited, throttled or not).
    pub alerted: u64,
    /// Alerts the writer wrote (its `SystemEvent` notices included).
    pub alerts_written: u64,
    /// Alerts dropped: the queue was full, past `max_alerts_per_sec`, or the log could not be written.
    pub alerts_dropped: u64,
    /// The policy in force: changes with every reload and mount change that installed a new one.
    pub policy_generation: u64,
    /// Reloads finished (SIGHUP or a changed configuration), applied or rejected.
    pub reloads: u64,
    /// Looks at the mount table finished (a protected mount that appeared before one began is marked
    /// when it ends).
    pub mount_checks: u64,
    /// Looks at the container runtimes finished, each followed by the marks of the containers selected
    /// and of their open-guard directories.
    pub scope_refreshes: u64,
    /// Directories carrying the open guard's marks.
    pub open_dirs: u64,
}

impl StatusFile {
    /// The fields as `name=value` lines.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let fields = [
            ("updates", self.updates),
            ("decided", self.decided),
            ("alerted", self.alerted),
            ("alerts_written", self.alerts_written),
            ("alerts_dropped", self.alerts_dropped),
            ("policy_generation", self.policy_generation),
            ("reloads", self.reloads),
            ("mount_checks", self.mount_checks),
            ("scope_refreshes", self.scope_refreshes),
            ("open_dirs", self.open_dirs),
        ];
        for (name, value) in fields {
            let _ = writeln!(out, "{name}={value}");
        }
        out
    }

    /// The decision thread's and the alert writer's counters of `counters`; the rest stays as it is.
    pub fn with_counters(self, counters: &Snapshot) -> Self {
        Self {
            decided: counters.answered,
            alerted: counters.blocked + counters.audited,
            alerts_written: counters.alerts_written,
            alerts_dropped: counters.dropped.total(),
            open_dirs: counters.open_dirs,
            ..self
        }
    }
}

/// Replaces `path` whole (a new file renamed over it): a reader never sees half a line.
pub fn write_status(path: &Path, line: &str, fields: &StatusFile) -> Result<()> {
    let err = |source| Error::WriteFile { path: path.to_owned(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(line.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.write_all(fields.render().as_bytes()))
        .map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_status_line_comes_first_then_one_field_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status");
        let counters =
            Snapshot { answered: 8, allowed: 5, blocked: 2, audited: 1, alerts_written: 3, ..Snapshot::default() };
        let fields = StatusFile { updates: 7, reloads: 1, ..StatusFile::default() }.with_counters(&counters);
        write_status(&path, "guarding 1 filesystem(s)", &fields).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("guarding 1 filesystem(s)"));
        let rest: Vec<&str> = lines.collect();
        assert_eq!(
            rest,
            [
                "updates=7",
                "decided=8",
                "alerted=3",
                "alerts_written=3",
                "alerts_dropped=0",
                "policy_generation=0",
                "reloads=1",
                "mount_checks=0",
                "scope_refreshes=0",
                "open_dirs=0"
            ]
        );
    }
}
