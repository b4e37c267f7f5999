//! The daemon's counters: written by the decision thread and the alert writer (relaxed atomics: they are
//! statistics), read by the status line, the watchdog and the drop report through one [`Snapshot`].
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared with the status line and the watchdog. Relaxed: they are statistics.
#[derive(Debug, Default)]
pub struct Counters {
    /// Every permission event answered (each answer written, whatever it was): what a program waiting on the
    /// daemon (the integration tests) counts.
    pub answered: AtomicU64,
    pub allowed: AtomicU64,
    pub blocked: AtomicU64,
    pub audited: AtomicU64,
    pub unresolved: AtomicU64,
    pub alerts_written: AtomicU64,
    pub alerts_dropped_queue: AtomicU64,
    pub alerts_dropped_throttle: AtomicU64,
    pub alerts_dropped_write: AtomicU64,
    pub answer_errors: AtomicU64,
    /// Advanced by the decision thread before and after every read of the group: odd while it waits for events,
    /// even while it decides. The watchdog and the liveness file ask [`decision_alive`].
    pub heartbeat: AtomicU64,
    /// Directories carrying the open guard's inode marks (written by the directory tracker).
    pub open_dirs: AtomicU64,
    /// The tracker's cap when it was reached (directories past it carry no open mark), else 0.
    pub open_dirs_capped_at: AtomicU64,
    /// Marks the kernel refused (each is logged with its path: `guard::marks::MarkFailures`).
    pub marks_failed: AtomicU64,
    /// Open-guard events whose opener's executable could not be read (judged a route to running the file:
    /// refused where a Block rule covers it). Without `CAP_SYS_PTRACE`, every open of another process.
    pub openers_unreadable: AtomicU64,
    /// gRPC `WatchAlerts` readers cut off for falling behind (each then reconnects or stays gone).
    pub grpc_readers_dropped: AtomicU64,
}

impl Counters {
    /// Every counter, read once.
    pub fn snapshot(&self) -> Snapshot {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            answered: read(&self.answered),
            allowed: read(&self.allowed),
            blocked: read(&self.blocked),
            audited: read(&self.audited),
            unresolved: read(&self.unresolved),
            alerts_written: read(&self.alerts_written),
            dropped: Dropped {
                queue: read(&self.alerts_dropped_queue),
                throttle: read(&self.alerts_dropped_throttle),
                write: read(&self.alerts_dropped_write),
            },
            answer_errors: read(&self.answer_errors),
            open_dirs: read(&self.open_dirs),
            open_dirs_capped_at: read(&self.open_dirs_capped_at),
            marks_failed: read(&self.marks_failed),
            grpc_readers_dropped: read(&self.grpc_readers_dropped),
            openers_unreadable: read(&self.openers_unreadable),
        }
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub answered: u64,
    pub allowed: u64,
    pub blocked: u64,
    pub audited: u64,
    pub unresolved: u64,
    pub alerts_written: u64,
    pub dropped: Dropped,
    pub answer_errors: u64,
    pub open_dirs: u64,
    pub open_dirs_capped_at: u64,
    pub marks_failed: u64,
    pub grpc_readers_dropped: u64,
    pub openers_unreadable: u64,
}

/// Alerts dropped, by cause: the bounded queue was full, past `max_alerts_per_sec`, or the log could not
/// be written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    pub queue: u64,
    pub throttle: u64,
    pub write: u64,
}

impl Dropped {
    pub fn total(&self) -> u64 {
        self.queue + self.throttle + self.write
    }

    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            queue: self.queue.saturating_sub(earlier.queue),
            throttle: self.throttle.saturating_sub(earlier.throttle),
            write: self.write.saturating_sub(earlier.write),
        }
    }
}

/// Whether the decision thread was alive between two readings of its heartbeat: it moved, or the thread is
/// waiting in read(2) (odd), where an event queued makes the read return at once. Stuck anywhere else, the
/// heartbeat stays even and unmoved.
pub fn decision_alive(before: Option<u64>, now: u64) -> bool {
    before != Some(now) || now % 2 == 1
}

#[cfg(test)]
mod heartbeat_tests {
    use super::decision_alive;

    #[test]
    fn a_thread_waiting_for_events_is_alive_and_one_stuck_deciding_is_not() {
        assert!(decision_alive(None, 0), "the first reading has nothing to compare with");
        assert!(decision_alive(Some(4), 6), "moved");
        assert!(decision_alive(Some(5), 5), "waiting in read the whole time");
        assert!(!decision_alive(Some(6), 6), "deciding the whole time: stuck");
    }
}
