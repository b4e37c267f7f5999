//! systemd's notification protocol: READY, STATUS, WATCHDOG, STOPPING. A no-op without `$NOTIFY_SOCKET`.
#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::decide::Counters;

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

pub fn reloading() {
    // Type=notify-reload wants MONOTONIC_USEC with RELOADING=1; Type=notify accepts it too.
    match sd_notify::NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping: removing marks")]);
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// The watchdog interval systemd expects pings within, if it set one for us.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}

fn send(states: &[NotifyState<'_>]) {
    // Without a notify socket this does nothing; a send error is not worth stopping the guard for.
    let _ = sd_notify::notify(states);
}

/// The STATUS= line: what `systemctl status` shows.
pub fn status_line(filesystems: usize, c: &Counters) -> String {
    format!(
        "guarding {filesystems} filesystem(s); exec allowed {}, blocked {}, audited {}; alerts written {}, dropped {} (queue {}, throttle {}, write {})",
        c.allowed.load(Ordering::Relaxed),
        c.blocked.load(Ordering::Relaxed),
        c.audited.load(Ordering::Relaxed),
        c.alerts_written.load(Ordering::Relaxed),
        c.alerts_dropped(),
        c.alerts_dropped_queue.load(Ordering::Relaxed),
        c.alerts_dropped_throttle.load(Ordering::Relaxed),
        c.alerts_dropped_write.load(Ordering::Relaxed),
    )
}
