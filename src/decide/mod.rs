//! The decision path: read a batch of permission events, decide each against the current [`Guard`], answer
//! the kernel, and only then gather what the alert needs and hand it on without waiting.
//!
//! Rules for this module: no logging and no locks before the answer; no allocation for an allowed exec on a
//! filesystem decided as a whole; /proc is read before the answer only when a rule needs the caller's
//! executable or uid, or when the exec raises an alert (see `exec`). Nothing here may panic on input: the
//! kernel lets everything through if we die.
//!
//! This file holds the loop and the order every event follows (decide, answer, then alert); each kind of
//! decision has a file of its own: `exec` (and the alert gate), `open` (the open guard), `file_rules` (the
//! host's file rules, before the open guard), `naming` (a file's
//! name through mounts, other namespaces and overlay layers), `container` (the caller's container and its
//! policies), `recent` (the execs whose opens raise no second alert), `verdict` (what a decision gives, and
//! what one event found).
#![forbid(unsafe_code)]

pub mod applet;
mod chain;
mod container;
pub mod denials;
mod exec;
mod file_rules;
pub mod interp;
pub mod lookup;
mod naming;
mod open;
pub mod opener;
mod recent;
pub mod rules;
pub mod sniff;
#[cfg(test)]
mod test_scene;
mod verdict;

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use crate::alert::ExecAlert;
use crate::alert::rate_limit::RateLimiter;
use crate::containers;
use crate::guard::Guard;
use crate::guard::ctr_marks::FirstExecMarks;
use crate::guard::exec_cache::Feed;
use crate::guard::scopes::{ContainerScope, Scopes};
use crate::host::procfs::{self, ProcessInfo};
use crate::policy::matcher::{Outcome, RuleMeta};
use crate::stats::Counters;
use crate::sys::{self, Event, FanotifyGroup, Mask, PATH_BUF_LEN, ProcDirs, Responder, Response};
use chain::ExecChain;
use container::CallerContainers;
use denials::Denials;
use lookup::Lookups;
use naming::{MountMemory, Scratch};
use recent::RecentExecs;
use sniff::HEAD_LEN;
use verdict::{Findings, Resolved, unresolved_rule};

/// Events kept unanswered while their container is being looked up (see `lookup`); past it, a container is
/// looked up on the decision thread, as it was before.
const MAX_PARKED: usize = 256;

/// The decision thread's state. What one event finds out lives in a value of its own (`exec::Findings`),
/// made for each event; what lasts is here: buffers allocated once (the decision path allocates nothing in
/// steady state), and what earlier events taught (mounts, containers, denials, recent execs).
pub struct Decider {
    /// Events of this process are allowed at once: the daemon must never wait on its own marks.
    own_pid: i32,
    /// The buffers files are named into.
    bufs: Scratch,
    /// `/proc` and `/proc/self/fd`, opened once: names are read relative to them.
    procs: Arc<ProcDirs>,
    /// Mounts of overlay layers and of other namespaces files were found through.
    mounts: MountMemory,
    /// The callers' containers, the containers first seen here, and the marks placed at a first exec.
    containers: CallerContainers,
    /// The running containers and the container policies that select each.
    scopes: Arc<ArcSwap<Scopes>>,
    unresolved: Arc<RuleMeta>,
    alerts: mpsc::Sender<ExecAlert>,
    counters: Arc<Counters>,
    /// The exec cache's feed, when the cache is on.
    cache: Option<Feed>,
    /// The writer's alert limit, applied here first so that alerts it would drop cost nothing.
    gate: RateLimiter,
    head: [u8; HEAD_LEN],
    /// What the opener's executable name is read into (taken out while the open guard judges the opener).
    exe_buf: Option<Box<[u8; PATH_BUF_LEN]>>,
    /// Recent execs that raised an alert.
    recent: RecentExecs,
    /// Allowed execs awaiting their interpreter's exec-open (under an Allow posture only).
    chain: ExecChain,
    /// Execs refused a moment ago, refused again without naming the file again (see `denials`).
    denials: Denials<ContainerScope>,
    /// Reads the caller's facts for an alert: [`procfs::process_info`]. Unit tests put a reader here that
    /// counts its calls, to see which paths read /proc and which do not.
    process_info: fn(i32) -> ProcessInfo,
    /// Asks the runtimes about a container off this thread (see `lookup`); `None`: asked here, waiting.
    lookups: Option<Lookups>,
    /// Events waiting, unanswered, for their container's lookup; decided again when answers come.
    parked: Vec<Event>,
}

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    Answered,
    /// Kept unanswered until its container's lookup answers.
    Parked,
}

impl Decider {
    pub fn new(alerts: mpsc::Sender<ExecAlert>, counters: Arc<Counters>) -> Self {
        let own_pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        Self {
            own_pid,
            bufs: Scratch::default(),
            procs: Arc::new(ProcDirs::open()),
            mounts: MountMemory::default(),
            containers: CallerContainers::new(containers::container_of(own_pid).map(|(_, id)| id)),
            scopes: Arc::new(ArcSwap::from_pointee(Scopes::default())),
            unresolved: unresolved_rule(),
            alerts,
            counters,
            head: [0u8; HEAD_LEN],
            exe_buf: Some(Box::new([0u8; PATH_BUF_LEN])),
            recent: RecentExecs::default(),
            chain: ExecChain::default(),
            denials: Denials::default(),
            cache: None,
            gate: RateLimiter::new(u32::MAX),
            process_info: procfs::process_info,
            lookups: None,
            parked: Vec::new(),
        }
    }

    /// Looks containers up on a thread of its own, so that an event waiting for its container's runtime
    /// holds up no other event. Call it on the thread that will decide (it is the one the lookups wake).
    pub fn look_up_off_thread(mut self) -> Self {
        match Lookups::start(sys::Waker::current()) {
            Ok(lookups) => self.lookups = Some(lookups),
            Err(e) => tracing::warn!(
                "cannot start the container lookup thread ({e}): containers are looked up while the kernel waits"
            ),
        }
        self
    }

    /// Reads the containers (and the container policies selecting each) from `scopes`, which the daemon keeps
    /// up to date.
    pub fn with_scopes(mut self, scopes: Arc<ArcSwap<Scopes>>) -> Self {
        self.scopes = scopes;
        self
    }

    /// Marks a container's own mounts in protected scope at its first exec, through `marks`.
    pub fn with_marker(mut self, marks: FirstExecMarks) -> Self {
        self.containers.set_first_marks(marks);
        self
    }

    /// Offers allowed files to the kernel-side exec cache (see `exec_cache`).
    pub fn with_cache(mut self, feed: Option<Feed>) -> Self {
        self.cache = feed;
        self
    }

    /// Start of a batch: must run before the policy snapshot for the batch is loaded.
    pub fn begin_batch(&mut self) {
        if let Some(feed) = self.cache.as_mut() {
            feed.begin_batch();
        }
    }

    /// Decides and answers one event through `responder` (the fanotify group), then queues its alert if it
    /// needs one; or keeps it, unanswered, while its container is being looked up (`take_answers`).
    pub fn handle(&mut self, responder: &impl Responder, guard: &Guard, event: Event) {
        let handled = match event.fd.as_ref() {
            Some(fd) if event.is_permission() => self.handle_permission(responder, guard, fd.as_fd(), &event),
            _ => return,
        };
        if handled == Handled::Parked {
            self.parked.push(event);
        }
    }

    fn handle_permission(
        &mut self,
        responder: &impl Responder,
        guard: &Guard,
        fd: BorrowedFd<'_>,
        event: &Event,
    ) -> Handled {
        if event.pid == self.own_pid {
            self.answer(responder, fd, Response::Allow);
            return Handled::Answered;
        }
        if !event.mask.contains(Mask::FAN_OPEN_EXEC_PERM) {
            return self.handle_open(responder, guard, fd, event.pid);
        }
        self.handle_exec(responder, guard, fd, event.pid)
    }

    /// Takes the lookup thread's answers, if any came, and decides again every event that waited: those whose
    /// container is still being looked up wait on. Cheap when nothing came (one look at a channel).
    pub fn take_answers(&mut self, responder: &impl Responder, guard: &Guard) {
        let Some(lookups) = self.lookups.as_mut() else { return };
        let answers = lookups.take_answers();
        if answers.is_empty() {
            return;
        }
        for (id, found) in answers {
            self.containers.first_sight(guard, &id, found);
        }
        for event in std::mem::take(&mut self.parked) {
            self.handle(responder, guard, event);
        }
    }

    /// Before the decision thread ends: no event may be left unanswered (a group handed to `noexecd hold`
    /// would keep its caller waiting), so those still waiting are decided here, looking their containers up
    /// on this thread.
    pub fn finish(&mut self, responder: &impl Responder, guard: &Guard) {
        self.lookups = None;
        for event in std::mem::take(&mut self.parked) {
            self.handle(responder, guard, event);
        }
    }

    // The order rules: every event is decided, then answered, and only then alerted.

    /// Names a file decided with its whole filesystem, for its alert, while the caller still exists: a refused
    /// caller exits at once, and with it the mount namespace its path may need (PrivateTmp, `unshare -m`,
    /// a container), read through its /proc/PID/mountinfo.
    fn name_before_answer(&mut self, guard: &Guard, fd: BorrowedFd<'_>, pid: i32, resolved: Resolved) {
        if resolved == Resolved::NotYet {
            self.name_for_alert(guard, fd, pid);
        }
    }

    /// The file's name in `canonical`, for an alert; best effort (how it was named does not matter then).
    fn name_for_alert(&mut self, guard: &Guard, fd: BorrowedFd<'_>, pid: i32) {
        if let Ok(facts) = sys::file_facts(fd) {
            let _ = self.name(guard, fd, pid, &facts);
        }
    }

    fn answer(&self, responder: &impl Responder, fd: BorrowedFd<'_>, answer: Response) {
        if responder.respond(fd, answer).is_err() {
            self.counters.answer_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.counters.answered.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self, outcome: Outcome) {
        let counter = if outcome == Outcome::Block { &self.counters.blocked } else { &self.counters.audited };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Hands the alert of a blocked or audited attempt, named by `canonical`, to the writer without waiting:
    /// after the answer, never before.
    fn queue_alert(
        &self,
        outcome: Outcome,
        rule: Arc<RuleMeta>,
        pid: i32,
        process: ProcessInfo,
        hook: &'static str,
        found: &Findings,
    ) {
        let resource = self.bufs.canonical.clone();
        let container = found.container.as_ref().map(|s| s.container.clone());
        let alert =
            ExecAlert { when: SystemTime::now(), outcome, rule, resource, pid, process, hook, container, open: None };
        if self.alerts.try_send(alert).is_err() {
            self.counters.alerts_dropped_queue.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The answer to an event that raises an alert: a block is denied with an audit record; an audited exec is
/// allowed.
fn alerted_answer(outcome: Outcome) -> Response {
    if outcome == Outcome::Block { Response::DenyAudited } else { Response::Allow }
}

/// The decision thread: blocks in read(2) on the group, answers everything queued, and leaves once `stop` is
/// set and a wake signal ([`sys::wake_thread`]) has found the queue empty.
///
/// The heartbeat moves twice per read: it is odd while the thread waits in read(2) (where a queued event makes
/// the read return at once, so a waiting thread is a live one) and even while it decides. See
/// [`crate::stats::decision_alive`].
pub fn run_loop(group: &FanotifyGroup, shared: &ArcSwap<Guard>, stop: &AtomicBool, mut decider: Decider) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut events: Vec<Event> = Vec::with_capacity(4096);
    loop {
        events.clear();
        decider.counters.heartbeat.fetch_add(1, Ordering::Relaxed);
        let read = group.read_events(&mut buf, &mut events);
        decider.counters.heartbeat.fetch_add(1, Ordering::Relaxed);
        match read {
            Ok(_) => {
                decider.begin_batch();
                let guard = shared.load();
                for event in events.drain(..) {
                    decider.handle(group, &guard, event);
                }
                decider.take_answers(group, &guard);
            }
            // EINTR (the wake signal, with nothing queued) or a failed read: only `stop` ends the loop.
            Err(_) if stop.load(Ordering::Acquire) => {
                decider.finish(group, &shared.load());
                return;
            }
            // Woken by the lookup thread with answers, or by a stop that has not been seen yet.
            Err(_) => decider.take_answers(group, &shared.load()),
        }
    }
}

#[cfg(test)]
mod tests;
