//! `noexecd notify`: run in a user's desktop session, it follows the daemon's alert socket and shows a
//! desktop notification for each blocked exec, at most one every few seconds (the rest are summed up in
//! the next one). It reconnects when the daemon restarts.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncBufReadExt;

/// One notice per this interval; blocked execs in between are counted into the next.
pub const MIN_GAP: Duration = Duration::from_secs(3);
const RECONNECT_EVERY: Duration = Duration::from_secs(2);

/// A desktop notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub summary: String,
    pub body: String,
}

/// The notice for an alert line, if it is a Block.
pub fn notice_for(line: &str) -> Option<Notice> {
    let v: Value = serde_json::from_str(line).ok()?;
    if v.get("Action")?.as_str()? != "Block" {
        return None;
    }
    let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let resource = field("Resource");
    let source = field("Source");
    let by = if source.is_empty() { String::new() } else { format!(" by {source}") };
    let mut body = format!("{resource} was not allowed to run{by} (policy {}).", field("PolicyName"));
    let message = field("Message");
    if !message.is_empty() {
        body.push('\n');
        body.push_str(&message);
    }
    Some(Notice { summary: "noexecd blocked an execution".to_owned(), body })
}

/// At most one notice per gap; what was held back is announced with the next one.
#[derive(Debug)]
pub struct NoticeLimiter {
    gap: Duration,
    last: Option<Instant>,
    held_back: u32,
}

impl NoticeLimiter {
    pub fn new(gap: Duration) -> Self {
        Self { gap, last: None, held_back: 0 }
    }

    /// The notice to show now, if any.
    pub fn offer(&mut self, mut notice: Notice, now: Instant) -> Option<Notice> {
        if self.last.is_some_and(|t| now.duration_since(t) < self.gap) {
            self.held_back += 1;
            return None;
        }
        if self.held_back > 0 {
            notice.body.push_str(&format!("\n(and {} more blocked since the last notice)", self.held_back));
            self.held_back = 0;
        }
        self.last = Some(now);
        Some(notice)
    }

    /// A summary of held-back notices once the gap has passed with nothing new.
    pub fn flush(&mut self, now: Instant) -> Option<Notice> {
        if self.held_back == 0 || self.last.is_some_and(|t| now.duration_since(t) < self.gap) {
            return None;
        }
        let n = std::mem::take(&mut self.held_back);
        self.last = Some(now);
        Some(Notice {
            summary: "noexecd blocked more executions".to_owned(),
            body: format!("{n} more blocked; see `noexecd logs`."),
        })
    }
}

async fn show(n: &Notice) {
    let shown = notify_rust::Notification::new()
        .appname("noexecd")
        .summary(&n.summary)
        .body(&n.body)
        .icon("security-high")
        .urgency(notify_rust::Urgency::Critical)
        .show_async()
        .await;
    if let Err(e) = shown {
        tracing::warn!(error = %e, "cannot show a desktop notification (is a notification server running in this session?)");
    }
}

/// Runs `noexecd notify` until killed.
pub fn run_blocking(socket: &Path) -> crate::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| crate::Error::Runtime { what: "tokio runtime", source })?;
    runtime.block_on(run(socket));
    Ok(())
}

/// Follows `socket` forever.
pub async fn run(socket: &Path) {
    let mut limiter = NoticeLimiter::new(MIN_GAP);
    loop {
        match tokio::net::UnixStream::connect(socket).await {
            Ok(stream) => {
                tracing::info!(socket = %socket.display(), "following alerts");
                let mut lines = tokio::io::BufReader::new(stream).lines();
                let mut tick = tokio::time::interval(MIN_GAP);
                loop {
                    tokio::select! {
                        line = lines.next_line() => match line {
                            Ok(Some(line)) => {
                                if let Some(n) = notice_for(&line).and_then(|n| limiter.offer(n, Instant::now())) {
                                    show(&n).await;
                                }
                            }
                            _ => break,
                        },
                        _ = tick.tick() => {
                            if let Some(n) = limiter.flush(Instant::now()) {
                                show(&n).await;
                            }
                        }
                    }
                }
                tracing::info!("the daemon closed the alert socket; reconnecting");
            }
            Err(e) => tracing::debug!(error = %e, socket = %socket.display(), "alert socket not reachable yet"),
        }
        tokio::time::sleep(RECONNECT_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = include_str!("../../tests/golden/alert-block.json");
    const AUDIT: &str = include_str!("../../tests/golden/alert-audit.json");

    #[test]
    fn only_blocks_make_notices() {
        let n = notice_for(BLOCK).unwrap();
        assert_eq!(n.summary, "noexecd blocked an execution");
        assert_eq!(
            n.body,
            "/tmp/payload was not allowed to run by /usr/bin/bash (policy ksp-block-exec-inside-tmp).\nAlert! Execution attempted inside tmp folder"
        );
        assert!(notice_for(AUDIT).is_none());
        assert!(notice_for("garbage").is_none());
    }

    #[test]
    fn limiter_holds_back_and_sums_up() {
        let mut l = NoticeLimiter::new(Duration::from_secs(3));
        let t0 = Instant::now();
        let n = || Notice { summary: "s".into(), body: "b".into() };
        assert!(l.offer(n(), t0).is_some());
        assert!(l.offer(n(), t0 + Duration::from_secs(1)).is_none());
        assert!(l.offer(n(), t0 + Duration::from_secs(2)).is_none());
        assert!(l.flush(t0 + Duration::from_secs(2)).is_none());
        let summary = l.flush(t0 + Duration::from_secs(4)).unwrap();
        assert_eq!(summary.body, "2 more blocked; see `noexecd logs`.");
        assert!(l.offer(n(), t0 + Duration::from_secs(5)).is_none());
        let next = l.offer(n(), t0 + Duration::from_secs(8)).unwrap();
        assert!(next.body.ends_with("(and 1 more blocked since the last notice)"), "{}", next.body);
    }
}
