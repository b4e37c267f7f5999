//! Execs that raised an alert a moment ago, so that the FAN_OPEN_PERM events that follow from the same exec
//! raise no second alert: for an audited exec, the file's own open and a `#!` interpreter opening its script
//! (allowed); for a blocked one, the caller reading the file to explain the failure (bash does; still
//! judged, not alerted).
#![forbid(unsafe_code)]

use crate::sys::FileFacts;

/// Execs remembered: a ring, the oldest replaced first.
const RECENT_EXECS: usize = 16;

/// An exec that raised an alert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct RecentExec {
    pid: i32,
    dev: u64,
    ino: u64,
    /// Whether the exec was blocked (else audited).
    blocked: bool,
}

/// The last [`RECENT_EXECS`] execs that raised an alert.
#[derive(Debug, Default)]
pub struct RecentExecs {
    ring: [RecentExec; RECENT_EXECS],
    next: usize,
}

impl RecentExecs {
    /// Remembers that process `pid` exec'd the file `facts` describes, with an alert.
    pub fn remember(&mut self, pid: i32, facts: &FileFacts, blocked: bool) {
        if let Some(slot) = self.ring.get_mut(self.next % RECENT_EXECS) {
            *slot = RecentExec { pid, dev: facts.dev, ino: facts.ino, blocked };
        }
        self.next = self.next.wrapping_add(1);
    }

    /// Whether process `pid` recently exec'd this file with an alert: `Some(blocked)`.
    pub fn find(&self, pid: i32, facts: &FileFacts) -> Option<bool> {
        self.ring.iter().rev().find(|r| r.pid == pid && r.dev == facts.dev && r.ino == facts.ino).map(|r| r.blocked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn facts_of(path: &std::path::Path) -> FileFacts {
        crate::sys::file_facts(std::fs::File::open(path).unwrap().as_fd()).unwrap()
    }

    #[test]
    fn an_exec_is_found_by_its_caller_and_file_until_the_ring_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        let (a, b) = (facts_of(&a), facts_of(&b));
        let mut recent = RecentExecs::default();
        assert_eq!(recent.find(7, &a), None);
        recent.remember(7, &a, true);
        recent.remember(8, &b, false);
        assert_eq!(recent.find(7, &a), Some(true));
        assert_eq!(recent.find(8, &b), Some(false));
        assert_eq!(recent.find(8, &a), None, "another caller");
        assert_eq!(recent.find(7, &b), None, "another file");
        for pid in 100..100 + RECENT_EXECS as i32 {
            recent.remember(pid, &b, false);
        }
        assert_eq!(recent.find(7, &a), None, "pushed out of the ring");
    }
}
