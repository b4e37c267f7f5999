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
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let mut msg = String::new();
    for s in states {
        msg.push_str(&s.to_string());
        msg.push('\n');
    }
    let _ = send_to(&socket, &msg);
}

/// Sends one datagram without waiting. sd_notify's blocking send waits while the receiver's queue is full: a
/// service manager (or test) that stops reading would stall the whole tokio side (alerts, signals, reloads).
/// A message that does not fit is dropped; the next STATUS= carries the running totals anyway.
fn send_to(socket: &std::ffi::OsStr, msg: &str) -> std::io::Result<()> {
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    sock.connect(socket)?;
    sock.send(msg.as_bytes()).map(drop)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receiver_that_stopped_reading_does_not_block_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        // The receive queue holds net.unix.max_dgram_qlen datagrams (512 by default): fill it.
        let full = (0..100_000).find_map(|_| send_to(path.as_os_str(), "STATUS=x\n").err());
        assert_eq!(full.map(|e| e.kind()), Some(std::io::ErrorKind::WouldBlock));
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STATUS=x\n");
        send_to(path.as_os_str(), "STATUS=y\n").unwrap();
    }
}
