//! Exec decisions (`FAN_OPEN_EXEC_PERM`): the decision on a file (its filesystem decided as a whole, or its
//! name by the host's policies, then a container's), denials remembered for a moment, the exec cache's offer
//! after an allow, and the alert gate: past `max_alerts_per_sec` a decision reads nothing and sends nothing.
#![forbid(unsafe_code)]

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::container::{InContainer, Lookup};
use super::denials::DenialKey;
use super::naming::{Named, Unnamed};
use super::verdict::{Findings, Resolved, Verdict};
use super::{Decider, Handled, MAX_PARKED, alerted_answer};
use crate::alert::rate_limit::Admit;
use crate::guard::{Decides, Guard};
use crate::host::procfs::ProcSubject;
use crate::policy::matcher::{DEFAULT_POSTURE_POLICY, Matcher, Outcome, RuleMeta, Scope, Subject};
use crate::sys::{self, FileFacts, Responder, Response};

impl Subject for ProcSubject {
    fn exe(&mut self) -> Option<&[u8]> {
        ProcSubject::exe(self)
    }

    fn uid(&mut self) -> Option<u32> {
        ProcSubject::uid(self)
    }
}

impl Decider {
    pub(super) fn handle_exec(
        &mut self,
        responder: &impl Responder,
        guard: &Guard,
        fd: BorrowedFd<'_>,
        pid: i32,
    ) -> Handled {
        let facts = sys::file_facts(fd);
        let now = Instant::now();
        let mut found = Findings::new(&mut self.bufs);
        let key = facts.as_ref().ok().and_then(|f| denial_key(guard, f, pid));
        let remembered = match (key.as_ref(), facts.as_ref()) {
            (Some(key), Ok(facts)) => self.remembered_denial(key, now, facts, &mut found),
            _ => None,
        };
        let mut subject = ProcSubject::new(pid);
        let fresh = remembered.is_none();
        let verdict = match remembered {
            Some(verdict) => verdict,
            None => self.decide_with(guard, fd, pid, facts, &mut subject, &mut found),
        };
        if verdict.resolved == Resolved::Asked {
            return Handled::Parked;
        }
        let Verdict { outcome, rule, resolved } = verdict;
        // An interpreter the kernel opens within an allowed exec is decided with it: the default posture does
        // not refuse it again (see `chain`). Every exec event of the caller takes what it awaited.
        let rule = match self.chain.take(pid) {
            Some(awaited)
                if rule.as_deref().is_some_and(decided_by_posture)
                    && let Some(facts) = found.facts.as_ref()
                    && self.chain.is_awaited(
                        &self.procs,
                        pid,
                        &awaited,
                        facts,
                        found.named.as_ref().is_some_and(Named::in_read_only_layer),
                    ) =>
            {
                None
            }
            _ => rule,
        };
        // Remembered only when nothing but what the key holds decided it (see `denials`).
        let remember = fresh && outcome == Outcome::Block && resolved != Resolved::Failed && !subject.was_read();
        let Some(rule) = rule else {
            self.answer(responder, fd, Response::Allow);
            self.counters.allowed.fetch_add(1, Ordering::Relaxed);
            // After the answer: the interpreter's exec-open comes once the kernel goes on with this exec.
            if allow_posture_in_force(guard, &found) {
                self.chain.expect_from_file(fd, pid);
            }
            // Only path-decided files (the name is known) can be cached; after the answer, never instead.
            if resolved == Resolved::Yes
                && !self.bufs.canonical.is_empty()
                && layer_cacheable(guard, &found)
                && let (Some(feed), Some(facts)) = (self.cache.as_mut(), found.facts.as_ref())
            {
                feed.offer(&guard.config.matcher, fd, facts, &self.bufs.canonical);
            }
            return Handled::Answered;
        };
        self.count(outcome);
        // Past `max_alerts_per_sec` the writer drops the alert anyway: answer at once, read nothing, send
        // nothing. The writer applies the same limit and writes the AlertThreshold notice (it gets the first
        // alert past the limit for that, complete, since at a window boundary the two clocks may differ by the
        // queue's delay and the writer may write it).
        let admit = self.gate.admit_with(guard.config.daemon.max_alerts_per_sec, now);
        if admit == Admit::Drop {
            self.answer(responder, fd, alerted_answer(outcome));
            self.counters.alerts_dropped_throttle.fetch_add(1, Ordering::Relaxed);
            self.remember_exec_for_open_guard(guard, fd, pid, outcome, &found);
            if remember && let Some(key) = key {
                self.remember_denial(key, now, &rule, &found);
            }
            return Handled::Answered;
        }
        // The one /proc read before the answer, and only for an exec that raises an alert: once answered, a
        // blocked caller exits within microseconds and an audited one becomes the program it executes, so
        // its executable, parent and uid must be taken while the kernel still holds it. These reads touch
        // kernel memory only (no marked file, no lock the caller holds); allowed execs never pay for them.
        // The file's name is taken now too (see `name_before_answer`). Also for the first alert past the limit:
        // the writer's window may differ from ours by the queue's delay, and whatever it writes must be complete.
        let process = (self.process_info)(pid);
        self.name_before_answer(guard, fd, pid, resolved);
        self.answer(responder, fd, alerted_answer(outcome));
        self.remember_exec_for_open_guard(guard, fd, pid, outcome, &found);
        if remember && let Some(key) = key {
            self.remember_denial(key, now, &rule, &found);
        }
        self.queue_alert(outcome, rule, pid, process, "FAN_OPEN_EXEC_PERM", &found);
        Handled::Answered
    }

    /// A denial of this very exec remembered a moment ago, `found` as `decide_with` would leave it: the file's
    /// name, its container. Forgotten when the container's selection has changed since.
    fn remembered_denial(
        &mut self,
        key: &DenialKey,
        now: Instant,
        facts: &FileFacts,
        found: &mut Findings,
    ) -> Option<Verdict> {
        let denial = self.denials.find(key, now)?;
        if let Some(scope) = denial.container.as_ref() {
            // The scope `scope_of` would give now, by the same steps: the daemon's list, else the first sight.
            let id = scope.container.info.id.as_str();
            let scopes = self.scopes.load();
            let current = scopes.get(id).or_else(|| self.containers.first_seen(id).and_then(Option::as_ref));
            if !current.is_some_and(|c| Arc::ptr_eq(c, scope)) {
                self.denials.forget(key);
                return None;
            }
        }
        let rule = Arc::clone(&denial.rule);
        found.container = denial.container.clone();
        found.named = Some(Named::Host);
        found.facts = Some(*facts);
        self.bufs.canonical.extend_from_slice(&denial.name);
        Some(Verdict { outcome: Outcome::Block, rule: Some(rule), resolved: Resolved::Yes })
    }

    /// Remembers the denial just made, named by `canonical` (not when no name was found for it).
    fn remember_denial(&mut self, key: DenialKey, now: Instant, rule: &Arc<RuleMeta>, found: &Findings) {
        if !self.bufs.canonical.is_empty() {
            self.denials.remember(key, now, rule, &self.bufs.canonical, found.container.as_ref());
        }
    }

    /// With the open guard on, the opens that follow an alerted exec of the same file are not alerted again.
    /// A container's exec raises its event on the image layer's real file, while the caller's own opens of it
    /// (bash reading a file whose exec failed, to say why) come through the container's overlay, another
    /// inode: that one, found through the caller's root by the name the container sees, is remembered too.
    fn remember_exec_for_open_guard(
        &mut self,
        guard: &Guard,
        fd: BorrowedFd<'_>,
        pid: i32,
        outcome: Outcome,
        found: &Findings,
    ) {
        if !guard.config.open_guard.enabled {
            return;
        }
        let blocked = outcome == Outcome::Block;
        let Some(facts) = found.facts.or_else(|| sys::file_facts(fd).ok()) else { return };
        self.recent.remember(pid, &facts, blocked);
        if found.named.as_ref().is_some_and(Named::in_container)
            && let Ok(seen) = self.procs.pid_path_facts(pid, &self.bufs.layer_name)
            && (seen.dev, seen.ino) != (facts.dev, facts.ino)
        {
            self.recent.remember(pid, &seen, blocked);
        }
    }

    /// Decides the file behind `fd` (its statx `facts`) executed or opened by `pid`, whose executable and uid
    /// `subject` reads when a rule asks; what it finds goes into `found`.
    pub(super) fn decide_with(
        &mut self,
        guard: &Guard,
        fd: BorrowedFd<'_>,
        pid: i32,
        facts: std::io::Result<FileFacts>,
        subject: &mut ProcSubject,
        found: &mut Findings,
    ) -> Verdict {
        let matcher = &guard.config.matcher;
        let Ok(facts) = facts else {
            // The alert's best name: the kernel's (see `naming::best_known_name`).
            if let Ok(raw) = self.procs.fd_path(fd, &mut self.bufs.path_buf) {
                self.bufs.canonical.clear();
                self.bufs.canonical.extend_from_slice(raw);
            }
            return self.unresolvable(guard);
        };
        found.facts = Some(facts);
        let whole_fs = match guard.target_of(fd, &facts).map(|t| &t.decides) {
            Some(Decides::Filesystem { below }) => Some(below.as_slice()),
            // Path-decided, or a device we did not expect on a marked filesystem: decide by path.
            Some(Decides::Path) | None => None,
        };
        if let Some(below) = whole_fs {
            let d = matcher.decide(Scope::Below(below), facts.uid, subject);
            return Verdict { outcome: d.outcome, rule: d.rule.cloned(), resolved: Resolved::NotYet };
        }
        let named = match self.name(guard, fd, pid, &facts) {
            Ok(named) => named,
            Err(_) => return self.unresolvable(guard),
        };
        let host = if named.host_unnamed() {
            // A container's private mount: host rules never decide a container's paths.
            Verdict { outcome: Outcome::Allow, rule: None, resolved: Resolved::Yes }
        } else {
            let d = matcher.decide(Scope::Path(&self.bufs.canonical), facts.uid, subject);
            Verdict { outcome: d.outcome, rule: d.rule.cloned(), resolved: Resolved::Yes }
        };
        let in_container = named.in_container();
        found.named = Some(named);
        if !in_container || !guard.config.reads_containers() {
            return host;
        }
        let lookup = Lookup {
            procs: &self.procs,
            scopes: &self.scopes,
            thread: if self.parked.len() < MAX_PARKED { self.lookups.as_mut() } else { None },
        };
        match self.containers.decide(guard, &host, pid, facts.uid, subject, found, &mut self.bufs, lookup) {
            InContainer::Host => host,
            InContainer::Decided(inside) => inside,
            InContainer::Unresolvable => self.unresolvable(guard),
            InContainer::Asked => {
                Verdict { outcome: Outcome::Block, rule: Some(self.unresolved.clone()), resolved: Resolved::Asked }
            }
        }
    }

    /// Names the file open at `fd` into the decider's buffers (see `naming`).
    pub(super) fn name(
        &mut self,
        guard: &Guard,
        fd: BorrowedFd<'_>,
        pid: i32,
        facts: &FileFacts,
    ) -> Result<Named, Unnamed> {
        self.mounts.name(guard, &self.procs, &self.scopes, &mut self.bufs, fd, pid, facts)
    }

    fn unresolvable(&mut self, guard: &Guard) -> Verdict {
        self.counters.unresolved.fetch_add(1, Ordering::Relaxed);
        let d = guard.config.matcher.apply_mode(Outcome::Block, &self.unresolved);
        Verdict { outcome: d.outcome, rule: d.rule.cloned(), resolved: Resolved::Failed }
    }
}

/// Whether Allow rules turned on a default posture in the scope that decided: the host's, or the caller's
/// container's.
fn allow_posture_in_force(guard: &Guard, found: &Findings) -> bool {
    guard.config.matcher.whitelist()
        || found.container.as_ref().and_then(|c| c.matcher.as_ref()).is_some_and(Matcher::whitelist)
}

/// The origin the matcher gives its default posture's rule (no rule of a file has it: theirs are
/// `file:line:col`).
const POSTURE_ORIGIN: &str = "[daemon] default_posture";

/// Whether the default posture made the decision (not a rule of a policy, whatever its name).
fn decided_by_posture(rule: &RuleMeta) -> bool {
    rule.policy == DEFAULT_POSTURE_POLICY && rule.origin == POSTURE_ORIGIN
}

/// Whether a file reached through a container's overlay may go to the exec cache (which checks the host path
/// itself). An inode mark holds in every container of the image, so with container policies loaded a layer
/// file is never cached: a container's first exec must raise its event, as that is where the decision thread
/// marks the container's protected directories and own mounts before its first instruction (an image's
/// entrypoint cached by an earlier container of that image would start the next one unseen, its `/tmp`
/// unguarded until the daemon's next look at the containers).
/// The same with file rules in container policies (their directories are marked there too). A file of a
/// container's upper layer is never cached: the container writes there.
fn layer_cacheable(guard: &Guard, found: &Findings) -> bool {
    match found.named.as_ref().filter(|n| n.in_container()) {
        None => true,
        Some(named) => named.in_read_only_layer() && !guard.config.reads_containers(),
    }
}

/// What a denial of the exec of this file by `pid` would be remembered by (`None`: the kernel did not say which
/// mount it was reached through).
fn denial_key(guard: &Guard, facts: &FileFacts, pid: i32) -> Option<DenialKey> {
    Some(DenialKey {
        pid,
        dev: facts.dev,
        ino: facts.ino,
        changed_ns: facts.changed_ns,
        mnt_id: facts.mnt_id?,
        guard: guard.generation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::matcher::{Action, KnownSubject, Mode, Posture, Rule, Target};

    fn rule(policy: &str, dir: &str, action: Action) -> Rule {
        Rule {
            target: Target::Dir { dir: dir.as_bytes().to_vec(), recursive: true },
            owner_only: false,
            from_source: Vec::new(),
            meta: Arc::new(RuleMeta {
                policy: policy.to_owned(),
                action,
                severity: 5,
                tags: Vec::new(),
                message: String::new(),
                origin: "policy.toml:3:1".to_owned(),
            }),
        }
    }

    #[test]
    fn only_the_default_posture_itself_counts_as_the_posture() {
        // A policy may be named like the posture: its Block rule still wins over an interpreter's pairing.
        let m = Matcher::new(
            vec![rule("allow-bin", "/bin/", Action::Allow), rule(DEFAULT_POSTURE_POLICY, "/opt/", Action::Block)],
            Posture::Block,
            Mode::Enforce,
        );
        let mut who = KnownSubject::default();
        let posture = m.decide(Scope::Path(b"/lib/ld.so"), 0, &mut who).rule.cloned().unwrap();
        assert!(decided_by_posture(&posture), "{posture:?}");
        let named_alike = m.decide(Scope::Path(b"/opt/x"), 0, &mut who).rule.cloned().unwrap();
        assert!(!decided_by_posture(&named_alike));
        assert!(m.decide(Scope::Path(b"/bin/sh"), 0, &mut who).rule.is_none());
    }
}
