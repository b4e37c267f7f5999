//! systemd's notification protocol: READY, STATUS, WATCHDOG, STOPPING. A no-op without `$NOTIFY_SOCKET`.

use std::time::Duration;

use sd_notify::NotifyState;

use crate::stats::Snapshot;

/// How long a message systemd must see (READY, RELOADING, STOPPING, FDSTOREREMOVE) may wait for room in a
/// full notify queue. STATUS= and WATCHDOG=1 never wait.
pub const IMPORTANT_WAIT: Duration = Duration::from_secs(2);

pub fn ready(status: &str) {
    send_within(&[NotifyState::Ready, NotifyState::Status(status)], IMPORTANT_WAIT);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

pub fn reloading() {
    // Type=notify-reload wants MONOTONIC_USEC with RELOADING=1; Type=notify accepts it too.
    match sd_notify::NotifyState::monotonic_usec_now() {
        Ok(now) => send_within(&[NotifyState::Reloading, now], IMPORTANT_WAIT),
        Err(_) => send_within(&[NotifyState::Reloading], IMPORTANT_WAIT),
    }
}

pub fn stopping() {
    send_within(&[NotifyState::Stopping, NotifyState::Status("stopping: removing marks")], IMPORTANT_WAIT);
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// The watchdog interval systemd expects pings within, if it set one for us.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}

fn send(states: &[NotifyState<'_>]) {
    send_within(states, Duration::ZERO);
}

/// Sends `states`, waiting at most `wait` for room in the receiver's queue (zero: not at all).
pub fn send_within(states: &[NotifyState<'_>], wait: Duration) {
    // Without a notify socket this does nothing; a send error is not worth stopping the guard for.
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let mut msg = String::new();
    for s in states {
        msg.push_str(&s.to_string());
        msg.push('\n');
    }
    let _ = send_to(&socket, &msg, wait);
}

/// Sends one datagram, waiting at most `wait`. sd_notify's send waits without limit while the receiver's queue
/// is full: a service manager (or test) that stops reading would stall the whole tokio side (alerts, signals,
/// reloads, shutdown). A message that does not fit is dropped; the next STATUS= carries the totals anyway.
fn send_to(socket: &std::ffi::OsStr, msg: &str, wait: Duration) -> std::io::Result<()> {
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    if wait.is_zero() {
        sock.set_nonblocking(true)?;
    } else {
        // SO_SNDTIMEO bounds the wait for room in a full datagram queue.
        sock.set_write_timeout(Some(wait))?;
    }
    sock.connect(socket)?;
    sock.send(msg.as_bytes()).map(drop)
}

/// The STATUS= line: what `systemctl status` shows.
pub fn status_line(filesystems: usize, c: &Snapshot) -> String {
    let d = c.dropped;
    let dirs = match (c.open_dirs, c.open_dirs_capped_at) {
        (0, 0) => String::new(),
        (n, 0) => format!("; open guard marks {n} directories"),
        (n, cap) => format!(
            "; open guard marks {n} directories, CAP OF {cap} REACHED: newer directories are not open-guarded (exec guard whole)"
        ),
    };
    let line = format!(
        "guarding {filesystems} filesystem(s); exec allowed {}, blocked {}, audited {}; alerts written {}, dropped {} (queue {}, throttle {}, write {})",
        c.allowed,
        c.blocked,
        c.audited,
        c.alerts_written,
        d.total(),
        d.queue,
        d.throttle,
        d.write,
    );
    let failed = match c.marks_failed {
        0 => String::new(),
        n => format!("; marks failed {n} (see the log)"),
    };
    let grpc = match c.grpc_readers_dropped {
        0 => String::new(),
        n => format!("; gRPC readers dropped for falling behind {n}"),
    };
    let unreadable = match c.openers_unreadable {
        0 => String::new(),
        n => format!("; opens whose opener could not be read {n} (alerts with route=opener-unreadable)"),
    };
    line + &dirs + &failed + &grpc + &unreadable
}

/// What the status line adds about policy files that did not load: each one's `file:line:col`, and whether
/// its previous version stands in for it. Empty when every file loaded.
pub fn refused_files(refused: &[crate::policy::RefusedDropIn]) -> String {
    if refused.is_empty() {
        return String::new();
    }
    let each: Vec<String> = refused
        .iter()
        .map(|r| format!("{} ({})", r.place, if r.kept_previous { "previous version in force" } else { "left out" }))
        .collect();
    format!("; POLICY FILES NOT LOADED: {}", each.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_marks_show_in_the_status_line_once_there_are_any() {
        let none = status_line(2, &Snapshot::default());
        assert!(!none.contains("marks failed"), "{none}");
        let some = status_line(2, &Snapshot { marks_failed: 3, open_dirs: 5, ..Snapshot::default() });
        assert!(some.ends_with("; open guard marks 5 directories; marks failed 3 (see the log)"), "{some}");
    }

    #[test]
    fn a_receiver_that_stopped_reading_does_not_block_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        // The receive queue holds net.unix.max_dgram_qlen datagrams (512 by default): fill it.
        let full = (0..100_000).find_map(|_| send_to(path.as_os_str(), "STATUS=x\n", Duration::ZERO).err());
        assert_eq!(full.map(|e| e.kind()), Some(std::io::ErrorKind::WouldBlock));
        let started = std::time::Instant::now();
        let late = send_to(path.as_os_str(), "READY=1\n", Duration::from_millis(200)).unwrap_err();
        assert!(matches!(late.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{late:?}");
        assert!(started.elapsed() >= Duration::from_millis(150), "waited for room: {:?}", started.elapsed());
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STATUS=x\n");
        send_to(path.as_os_str(), "STATUS=y\n", Duration::ZERO).unwrap();
    }

    #[test]
    fn grpc_readers_cut_off_show_in_the_status_line_once_there_are_any() {
        let mut c = Snapshot::default();
        assert!(!status_line(1, &c).contains("gRPC"));
        c.grpc_readers_dropped = 2;
        assert!(status_line(1, &c).ends_with("; gRPC readers dropped for falling behind 2"));
    }

    #[test]
    fn refused_policy_files_on_the_status_line() {
        use crate::policy::RefusedDropIn;
        assert_eq!(refused_files(&[]), "");
        let r = |place: &str, kept_previous: bool| RefusedDropIn {
            file: "/p/a.toml".into(),
            place: place.to_owned(),
            error: format!("{place}: broken"),
            kept_previous,
        };
        assert_eq!(
            refused_files(&[r("/p/a.toml:4:8", true), r("/p/b.yaml:2:1", false)]),
            "; POLICY FILES NOT LOADED: /p/a.toml:4:8 (previous version in force), /p/b.yaml:2:1 (left out)"
        );
    }
}
