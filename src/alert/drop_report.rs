//! Lost alerts reach the daemon's log as one line with the counts since the previous line, at most once a
//! minute: a full disk or an alert storm must be visible without flooding the journal.

use std::time::{Duration, Instant};

use crate::stats::Counters;
pub use crate::stats::Dropped;

/// The shortest time between two report lines.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct DropReporter {
    reported: Dropped,
    last_line: Option<Instant>,
    every: Duration,
}

impl DropReporter {
    pub fn new(every: Duration) -> Self {
        Self { reported: Dropped::default(), last_line: None, every }
    }

    /// The drops since the last report, when there are some and a report is due.
    pub fn due(&mut self, now: Instant, current: Dropped) -> Option<Dropped> {
        if current.total() == self.reported.total() {
            return None;
        }
        if self.last_line.is_some_and(|t| now.duration_since(t) < self.every) {
            return None;
        }
        let delta = current.since(&self.reported);
        self.reported = current;
        self.last_line = Some(now);
        Some(delta)
    }

    /// Writes the line when one is due.
    pub fn report(&mut self, now: Instant, counters: &Counters) {
        let current = counters.snapshot().dropped;
        if let Some(d) = self.due(now, current) {
            tracing::warn!(
                queue = d.queue,
                throttle = d.throttle,
                write = d.write,
                total_dropped = current.total(),
                "alerts dropped since the last report: {} (queue {}, throttle {}, write {}); decisions are not affected",
                d.total(),
                d.queue,
                d.throttle,
                d.write
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(queue: u64, throttle: u64, write: u64) -> Dropped {
        Dropped { queue, throttle, write }
    }

    #[test]
    fn first_drop_is_reported_at_once_then_at_most_once_a_minute_with_the_delta() {
        let mut r = DropReporter::new(REPORT_EVERY);
        let t0 = Instant::now();
        assert_eq!(r.due(t0, d(0, 0, 0)), None, "nothing dropped: no line");
        assert_eq!(r.due(t0, d(0, 0, 3)), Some(d(0, 0, 3)));
        assert_eq!(r.due(t0 + Duration::from_secs(1), d(0, 2, 9)), None, "within the minute");
        assert_eq!(r.due(t0 + Duration::from_secs(59), d(1, 2, 9)), None, "within the minute");
        assert_eq!(r.due(t0 + Duration::from_secs(60), d(1, 2, 10)), Some(d(1, 2, 7)), "since the last line");
        assert_eq!(r.due(t0 + Duration::from_secs(200), d(1, 2, 10)), None, "no new drops: no line");
        assert_eq!(r.due(t0 + Duration::from_secs(201), d(1, 2, 11)), Some(d(0, 0, 1)), "quiet minute: at once");
    }
}
