//! The tokio side of alerts: takes [`ExecAlert`]s off the bounded channel, applies `max_alerts_per_sec`,
//! appends JSON lines to the alert log and writes a structured log line for each. A log that cannot be
//! written costs alerts (counted), never decisions. Once a second the writer checks that its file still has a
//! name: a removed log is recreated and refilled with the lines of the last second, so an alert written after
//! the removal is not lost. Drops are reported in the daemon's log at most once a minute (`drop_report`).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use crate::alert::drop_report::{DropReporter, REPORT_EVERY};
use crate::alert::rate_limit::{Admit, RateLimiter};
use crate::alert::stream::Subscribers;
use crate::alert::{Alert, ExecAlert, Origin};
use crate::containers::{ContainerInfo, Runtime, describe_on_host, parse_cgroup};
use crate::policy::matcher::Outcome;
use crate::stats::Counters;

/// Requests from the daemon's control loop.
#[derive(Debug)]
pub enum Control {
    /// Reopen the log (logrotate moved it) with possibly new settings after a reload.
    Reopen { path: PathBuf, origin: Origin, max_per_sec: u32 },
    /// A notice about the daemon itself (a `SystemEvent` alert): `operation` names what happened.
    SystemEvent { operation: &'static str, message: String },
}

pub struct AlertSink {
    subscribers: Subscribers,
    path: PathBuf,
    file: Option<File>,
    origin: Origin,
    limiter: RateLimiter,
    counters: Arc<Counters>,
    last_error_log: Option<Instant>,
    /// Containers already described: their runtime files are read once per container, not per alert.
    containers: HashMap<String, ContainerInfo>,
    /// Lines written since the last check that the file still has a name: written again if it lost it.
    recent: Vec<String>,
    recent_bytes: usize,
    /// A copy of every line for the process's stdout (`run --alert-stdout`): what a cluster's log pipeline
    /// collects from a container.
    stdout: Option<File>,
}

/// A host runs a bounded number of containers at a time; past this many, the cache starts over.
const CONTAINER_CACHE_MAX: usize = 1024;

/// Replayed into a recreated log at most this much (a second of alerts at the default rate is far less).
const RECENT_MAX_BYTES: usize = 4 << 20;

impl AlertSink {
    pub fn new(
        path: PathBuf,
        origin: Origin,
        max_per_sec: u32,
        counters: Arc<Counters>,
        subscribers: Subscribers,
    ) -> Self {
        let limiter = RateLimiter::new(max_per_sec);
        let mut sink = Self {
            subscribers,
            path,
            file: None,
            origin,
            limiter,
            counters,
            last_error_log: None,
            containers: HashMap::new(),
            recent: Vec::new(),
            recent_bytes: 0,
            stdout: None,
        };
        sink.reopen();
        sink
    }

    /// Also writes every line to stdout. Fails when stdout cannot be duplicated (it is closed).
    pub fn with_stdout(mut self) -> std::io::Result<Self> {
        use std::os::fd::AsFd;
        self.stdout = Some(File::from(std::io::stdout().as_fd().try_clone_to_owned()?));
        Ok(self)
    }

    fn reopen(&mut self) {
        self.forget_recent();
        self.file = match open_log(&self.path) {
            Ok(f) => Some(f),
            Err(e) => {
                self.report_error(&e);
                None
            }
        };
    }

    /// At most one error line a minute: a full disk must not flood the journal.
    fn report_error(&mut self, e: &std::io::Error) {
        let now = Instant::now();
        if self.last_error_log.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60)) {
            self.last_error_log = Some(now);
            let dropped = self.counters.snapshot().dropped.write;
            tracing::error!(path = %self.path.display(), error = %e, dropped_so_far = dropped, "cannot write the alert log; alerts are dropped and counted, decisions go on");
        }
    }

    fn forget_recent(&mut self) {
        self.recent.clear();
        self.recent_bytes = 0;
    }

    /// Called once a second: if the open log was removed (no name left), recreate it and write the lines of
    /// the last second again, which went only to the removed file. A renamed log keeps being written until
    /// SIGHUP, as logrotate expects.
    pub fn check_removed(&mut self) {
        let removed = self.file.as_ref().is_some_and(|f| f.metadata().is_ok_and(|m| m.nlink() == 0));
        if !removed {
            self.forget_recent();
            return;
        }
        let replay = std::mem::take(&mut self.recent);
        let overflowed = self.recent_bytes >= RECENT_MAX_BYTES;
        self.reopen();
        let mut replayed = 0usize;
        if let Some(f) = self.file.as_mut() {
            for line in &replay {
                if append_whole(f, line.as_bytes()).is_err() {
                    break;
                }
                replayed += 1;
            }
        }
        tracing::warn!(
            path = %self.path.display(),
            replayed,
            recent_lines = replay.len(),
            replay_buffer_overflowed = overflowed,
            "the alert log was removed while open; recreated it and wrote the last second's alerts again"
        );
    }

    pub fn control(&mut self, c: Control) {
        match c {
            Control::Reopen { path, origin, max_per_sec } => {
                self.path = path;
                self.origin = origin;
                if self.limiter.max_per_sec() != max_per_sec {
                    self.limiter = RateLimiter::new(max_per_sec);
                }
                self.reopen();
            }
            Control::SystemEvent { operation, message } => {
                let notice = Alert::system_event(SystemTime::now(), &self.origin, operation, message);
                self.append(&notice.to_json_line(), false);
            }
        }
    }

    pub fn write(&mut self, a: &ExecAlert) {
        match self.limiter.admit(Instant::now()) {
            Admit::Write => {}
            Admit::DropAndNotify => {
                self.counters.alerts_dropped_throttle.fetch_add(1, Ordering::Relaxed);
                let notice = Alert::threshold(SystemTime::now(), &self.origin, self.limiter.max_per_sec());
                tracing::warn!(
                    max_alerts_per_sec = self.limiter.max_per_sec(),
                    "alert threshold crossed; dropping alerts for the rest of this second"
                );
                self.append(&notice.to_json_line(), false);
                return;
            }
            Admit::Drop => {
                self.counters.alerts_dropped_throttle.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut alert = Alert::for_exec(a, &self.origin);
        if let Some(c) = &a.container {
            // Known to the decision path with everything the runtime tells (podman's labels included).
            alert = alert.in_container(&c.info, a.process.ns_pid);
        } else if let Some((runtime, id)) = parse_cgroup(&a.process.cgroup) {
            alert = alert.in_container(self.container(runtime, &id), a.process.ns_pid);
        }
        let verdict = if a.outcome == Outcome::Block { "exec blocked" } else { "exec audited" };
        tracing::warn!(
            policy = %alert.policy_name,
            action = %alert.action,
            resource = %alert.resource,
            source = %alert.source,
            pid = alert.pid,
            uid = alert.uid,
            container = %alert.container_id,
            "{verdict}"
        );
        self.append(&alert.to_json_line(), true);
    }

    fn container(&mut self, runtime: Runtime, id: &str) -> &ContainerInfo {
        if self.containers.len() >= CONTAINER_CACHE_MAX && !self.containers.contains_key(id) {
            self.containers.clear();
        }
        self.containers.entry(id.to_owned()).or_insert_with(|| describe_on_host(runtime, id.to_owned()))
    }

    fn append(&mut self, line: &str, counts: bool) {
        self.subscribers.publish(&Arc::from(line));
        if let Some(out) = self.stdout.as_mut()
            && let Err(e) = append_whole(out, line.as_bytes())
        {
            // A pipe whose reader went away: the file and the socket still get the alert.
            self.report_error(&e);
        }
        if self.file.is_none() {
            self.reopen();
        }
        let result = match self.file.as_mut() {
            Some(f) => append_whole(f, line.as_bytes()),
            None => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "alert log is not open")),
        };
        match result {
            Ok(()) => {
                if counts {
                    self.counters.alerts_written.fetch_add(1, Ordering::Relaxed);
                }
                if self.recent_bytes < RECENT_MAX_BYTES {
                    self.recent_bytes += line.len();
                    self.recent.push(line.to_owned());
                }
            }
            Err(e) => {
                if counts {
                    self.counters.alerts_dropped_write.fetch_add(1, Ordering::Relaxed);
                }
                // Drop the handle: a removed or rotated file is recreated on the next alert.
                self.file = None;
                self.report_error(&e);
            }
        }
    }
}

/// Appends `line` whole or not at all: after a short write (a full disk), the partial line is cut off again,
/// so the log stays one JSON object per line.
fn append_whole(f: &mut File, line: &[u8]) -> std::io::Result<()> {
    let mut done = 0usize;
    while let Some(rest) = line.get(done..).filter(|r| !r.is_empty()) {
        match f.write(rest) {
            Ok(0) => return Err(cut_partial(f, done, std::io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(cut_partial(f, done, e)),
        }
    }
    Ok(())
}

fn cut_partial(f: &File, written: usize, e: std::io::Error) -> std::io::Error {
    if written > 0
        && let Ok(m) = f.metadata()
    {
        // Shrinking a file allocates nothing: this works on a full filesystem.
        let _ = f.set_len(m.len().saturating_sub(written as u64));
    }
    e
}

fn open_log(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).mode(0o640).open(path)
}

/// The writer task: runs until the alert channel closes (the decision thread is gone), then returns.
pub async fn run(
    mut sink: AlertSink,
    mut alerts: mpsc::Receiver<ExecAlert>,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let mut batch = Vec::with_capacity(256);
    let mut drops = DropReporter::new(REPORT_EVERY);
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            Some(c) = control.recv() => sink.control(c),
            _ = second.tick() => {
                sink.check_removed();
                drops.report(Instant::now(), &sink.counters);
            }
            n = alerts.recv_many(&mut batch, 256) => {
                if n == 0 {
                    return;
                }
                for a in batch.drain(..) {
                    sink.write(&a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_log_is_recreated_with_the_last_seconds_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        let counters = Arc::new(Counters::default());
        let origin = Origin { cluster_name: "default".into(), host_name: "h".into() };
        let mut sink = AlertSink::new(path.clone(), origin, 100, counters.clone(), Subscribers::default());
        let alert = test_alert();
        sink.write(&alert);
        sink.check_removed();
        // Removed with one line; then two alerts go to the removed file before the check.
        std::fs::remove_file(&path).unwrap();
        sink.write(&alert);
        sink.write(&alert);
        assert!(!path.exists());
        sink.check_removed();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2, "the two lines since the last check");
        sink.write(&alert);
        sink.check_removed();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
        assert_eq!(counters.alerts_written.load(Ordering::Relaxed), 4, "replayed lines are not counted twice");
        assert_eq!(counters.snapshot().dropped.total(), 0);
    }

    #[test]
    fn append_whole_writes_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        let mut f = open_log(&path).unwrap();
        append_whole(&mut f, b"{}\n").unwrap();
        append_whole(&mut f, b"").unwrap();
        // A read-only handle fails on the first byte: nothing to cut, the error comes back.
        let mut ro = File::open(&path).unwrap();
        assert!(append_whole(&mut ro, b"{}\n").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"{}\n");
    }

    fn test_alert() -> ExecAlert {
        ExecAlert {
            when: SystemTime::now(),
            outcome: Outcome::Block,
            rule: Arc::new(crate::policy::matcher::RuleMeta {
                policy: "p".into(),
                action: crate::policy::matcher::Action::Block,
                severity: 1,
                tags: vec![],
                message: String::new(),
                origin: String::new(),
            }),
            resource: b"/tmp/x".to_vec(),
            pid: 1,
            process: crate::host::procfs::ProcessInfo::default(),
            hook: "FAN_OPEN_EXEC_PERM",
            container: None,
            open: None,
        }
    }

    #[test]
    fn unwritable_log_counts_drops_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/alerts.jsonl");
        let counters = Arc::new(Counters::default());
        let origin = Origin { cluster_name: "default".into(), host_name: "h".into() };
        let mut sink = AlertSink::new(path.clone(), origin, 100, counters.clone(), Subscribers::default());
        let alert = test_alert();
        sink.write(&alert);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        // Replace the log's directory with a file: the log cannot be reopened.
        std::fs::remove_dir_all(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub"), b"").unwrap();
        sink.reopen();
        sink.write(&alert);
        assert_eq!(counters.alerts_dropped_write.load(Ordering::Relaxed), 1);
        std::fs::remove_file(dir.path().join("sub")).unwrap();
        sink.write(&alert);
        assert_eq!(counters.alerts_written.load(Ordering::Relaxed), 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }
}
