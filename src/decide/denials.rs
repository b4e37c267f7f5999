//! Denials remembered for a moment. A refused program is often tried again at once by the same process: a
//! shell loop, a supervisor restarting it, an attacker probing. Where the path decides, naming the file again
//! (a readlink of `/proc/self/fd/N` and the mapping through its mount) is most of what such a denial costs; a
//! remembered one costs a lookup here.
//!
//! Only refusals are remembered, so an entry that has gone stale can refuse an exec, never let one run. It is
//! known by everything the decision was a function of: the caller (its container, for a container policy),
//! the file by device and inode, its status change time (a rename, a link, a chown or chmod, a write all move
//! it), the mount it was reached through (another mount may name it otherwise), and the guard it was decided
//! under (a reload or a mount change builds a new one). What none of these shows, a parent directory renamed
//! out of protected scope, holds for [`REMEMBERED_FOR`] at most. Decisions that read the caller's executable
//! or uid are never remembered.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::policy::matcher::RuleMeta;

/// Slots of the table: direct-mapped, a new denial takes the place of the one in its slot.
const SLOTS: usize = 64;

/// How long a denial is remembered.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(1);

/// What a denial was decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenialKey {
    pub pid: i32,
    pub dev: u64,
    pub ino: u64,
    pub changed_ns: i64,
    pub mnt_id: u64,
    /// [`crate::guard::Guard::generation`].
    pub guard: u64,
}

impl DenialKey {
    fn slot(&self) -> usize {
        let mixed = (self.ino ^ self.dev.rotate_left(32) ^ u64::from(self.pid.unsigned_abs()))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        usize::try_from(mixed >> 58).unwrap_or(0) % SLOTS
    }
}

/// A remembered denial: the rule that refused, the file's name for the alert, and the caller's container (its
/// scope when the decision was made; `C` is the scope type, kept generic so that the table is tested alone).
#[derive(Debug)]
pub struct Denial<C> {
    key: DenialKey,
    until: Instant,
    pub rule: Arc<RuleMeta>,
    pub name: Vec<u8>,
    pub container: Option<Arc<C>>,
}

/// The table. Allocates only when a slot is first filled or a longer name comes: a slot keeps its buffer.
#[derive(Debug)]
pub struct Denials<C> {
    slots: Vec<Option<Denial<C>>>,
}

impl<C> Default for Denials<C> {
    fn default() -> Self {
        Self { slots: std::iter::repeat_with(|| None).take(SLOTS).collect() }
    }
}

impl<C> Denials<C> {
    /// The denial remembered for `key`, if it is still fresh at `now`.
    pub fn find(&self, key: &DenialKey, now: Instant) -> Option<&Denial<C>> {
        self.slots.get(key.slot())?.as_ref().filter(|d| d.key == *key && now < d.until)
    }

    /// Remembers a denial made at `now`.
    pub fn remember(
        &mut self,
        key: DenialKey,
        now: Instant,
        rule: &Arc<RuleMeta>,
        name: &[u8],
        container: Option<&Arc<C>>,
    ) {
        let Some(slot) = self.slots.get_mut(key.slot()) else { return };
        let until = now + REMEMBERED_FOR;
        match slot {
            Some(d) => {
                d.key = key;
                d.until = until;
                if !Arc::ptr_eq(&d.rule, rule) {
                    d.rule = Arc::clone(rule);
                }
                d.name.clear();
                d.name.extend_from_slice(name);
                d.container = container.cloned();
            }
            None => {
                *slot = Some(Denial {
                    key,
                    until,
                    rule: Arc::clone(rule),
                    name: name.to_vec(),
                    container: container.cloned(),
                })
            }
        }
    }

    /// Forgets the denial remembered for `key` (its container's selection changed).
    pub fn forget(&mut self, key: &DenialKey) {
        if let Some(slot) = self.slots.get_mut(key.slot())
            && slot.as_ref().is_some_and(|d| d.key == *key)
        {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::matcher::Action;

    fn rule() -> Arc<RuleMeta> {
        Arc::new(RuleMeta {
            policy: "p".to_owned(),
            action: Action::Block,
            severity: 1,
            tags: vec![],
            message: String::new(),
            origin: String::new(),
        })
    }

    fn key() -> DenialKey {
        DenialKey { pid: 42, dev: 8, ino: 1234, changed_ns: 99, mnt_id: 30, guard: 1 }
    }

    #[test]
    fn a_denial_is_found_by_everything_it_was_decided_on_and_only_while_fresh() {
        let mut t: Denials<()> = Denials::default();
        let now = Instant::now();
        t.remember(key(), now, &rule(), b"/tmp/x", None);
        let found = t.find(&key(), now).expect("just remembered");
        assert_eq!(found.name, b"/tmp/x");
        assert_eq!(found.rule.policy, "p");
        let others = [
            DenialKey { pid: 43, ..key() },
            DenialKey { dev: 9, ..key() },
            DenialKey { ino: 1235, ..key() },
            DenialKey { changed_ns: 100, ..key() },
            DenialKey { mnt_id: 31, ..key() },
            DenialKey { guard: 2, ..key() },
        ];
        for other in others {
            assert!(t.find(&other, now).is_none(), "{other:?}");
        }
        assert!(t.find(&key(), now + REMEMBERED_FOR).is_none(), "stale after its time");
        t.forget(&key());
        assert!(t.find(&key(), now).is_none());
    }

    #[test]
    fn a_slot_taken_over_keeps_only_the_new_denial() {
        let mut t: Denials<u8> = Denials::default();
        let now = Instant::now();
        let colliding = (0..100_000u64)
            .map(|ino| DenialKey { ino, ..key() })
            .find(|k| k.slot() == key().slot() && *k != key())
            .expect("64 slots collide");
        t.remember(key(), now, &rule(), b"/tmp/a-longer-name", Some(&Arc::new(7)));
        t.remember(colliding, now, &rule(), b"/tmp/b", None);
        assert!(t.find(&key(), now).is_none());
        let found = t.find(&colliding, now).expect("the newer one");
        assert_eq!(found.name, b"/tmp/b");
        assert!(found.container.is_none());
    }
}
