//! `max_alerts_per_sec`: one limiter type, applied twice. The decision thread's copy (its gate) drops an alert
//! past the limit before anything is read for it; the writer's copy decides what is written and when the
//! `AlertThreshold` notice goes out. Both see the same limit, so an alert the writer would drop costs nothing.

use std::time::{Duration, Instant};

/// Alerts within one second, KubeArmor style: past the limit, one AlertThreshold notice and silence.
#[derive(Debug)]
pub struct RateLimiter {
    max_per_sec: u32,
    window_start: Instant,
    count: u32,
    notified: bool,
}

/// What to do with the next alert.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Write,
    /// Drop it, but first write the threshold notice.
    DropAndNotify,
    Drop,
}

impl RateLimiter {
    pub fn max_per_sec(&self) -> u32 {
        self.max_per_sec
    }

    pub fn new(max_per_sec: u32) -> Self {
        Self { max_per_sec, window_start: Instant::now(), count: 0, notified: false }
    }

    /// [`admit`](Self::admit) under the limit `max_per_sec`, starting over when the limit changed (reload).
    pub fn admit_with(&mut self, max_per_sec: u32, now: Instant) -> Admit {
        if self.max_per_sec != max_per_sec {
            *self = Self::new(max_per_sec);
        }
        self.admit(now)
    }

    pub fn admit(&mut self, now: Instant) -> Admit {
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.count = 0;
            self.notified = false;
        }
        if self.count < self.max_per_sec {
            self.count += 1;
            Admit::Write
        } else if !self.notified {
            self.notified = true;
            Admit::DropAndNotify
        } else {
            Admit::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_admits_max_then_notifies_once_then_drops_until_next_second() {
        let mut l = RateLimiter::new(3);
        let t0 = l.window_start;
        let got: Vec<Admit> = (0..6).map(|_| l.admit(t0)).collect();
        assert_eq!(got, vec![Admit::Write, Admit::Write, Admit::Write, Admit::DropAndNotify, Admit::Drop, Admit::Drop]);
        assert_eq!(l.admit(t0 + Duration::from_millis(1001)), Admit::Write);
    }

    #[test]
    fn limiter_starts_over_when_the_limit_changes() {
        let mut l = RateLimiter::new(1);
        let t0 = l.window_start;
        assert_eq!(l.admit_with(1, t0), Admit::Write);
        assert_eq!(l.admit_with(1, t0), Admit::DropAndNotify);
        assert_eq!(l.admit_with(2, t0), Admit::Write, "a reload with a new limit starts a new window");
    }
}
