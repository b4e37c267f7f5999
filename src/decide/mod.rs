//! The decision path: read a batch of permission events, decide each against the current [`Guard`], answer
//! the kernel, and only then gather what the alert needs and hand it on without waiting.
//!
//! Rules for this module: no logging and no locks before the answer; no allocation for an allowed exec on a
//! filesystem decided as a whole; /proc is read before the answer only when a rule needs the caller's
//! executable or uid, or when the exec raises an alert (see `handle`). Nothing here may panic on input: the
//! kernel lets everything through if we die.
#![forbid(unsafe_code)]

pub mod applet;
pub mod denials;
pub mod interp;
pub mod lookup;
pub mod opener;
pub mod rules;
pub mod sniff;

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use crate::alert::ExecAlert;
use crate::alert::rate_limit::{Admit, RateLimiter};
use crate::containers;
use crate::guard::ctr_mounts;
use crate::guard::exec_cache::Feed;
use crate::guard::scopes::{ContainerScope, Scopes};
use crate::guard::{Decides, Guard};
use crate::host::mounts::{Mount, foreign_mount_with};
use crate::host::overlay;
use crate::host::procfs::{self, ProcessInfo};
use crate::policy::matcher::{Action, Outcome, RuleMeta, Scope, Subject};
use crate::stats::Counters;
use crate::sys::{self, Event, FanotifyGroup, FileFacts, Mask, PATH_BUF_LEN, ProcDirs, Responder, Response};
use denials::{DenialKey, Denials};
use lookup::Lookups;
use opener::OpenedFile;
use sniff::{HEAD_LEN, sniff};

/// Execs remembered so that the FAN_OPEN_PERM events that follow from the same exec raise no second alert:
/// for an audited exec, the file's own open and a `#!` interpreter opening its script (allowed); for a
/// blocked one, the caller reading the file to explain the failure (bash does; still judged, not alerted).
const RECENT_EXECS: usize = 16;

/// Containers remembered from their first exec until the daemon's list has them; past this, started over.
const FIRST_SEEN_MAX: usize = 256;

/// Slots of the table of mounts found to be overlay layers' private mounts (see `Decider::layer_mounts`).
const LAYER_MOUNTS: usize = 64;

/// Slots of the table of callers' containers (see `Decider::container_of`).
const PID_CONTAINERS: usize = 256;

/// Slots of the table of mounts of other namespaces, remembered by unique mount id (see
/// `Decider::foreign_mounts`).
const FOREIGN_MOUNTS: usize = 64;

/// Containers whose own mounts this thread has marked at its first sight of them; past this, started over
/// (marking again changes nothing).
const MARKED_MAX: usize = 256;

/// Events kept unanswered while their container is being looked up (see `lookup`); past it, a container is
/// looked up on the decision thread, as it was before.
const MAX_PARKED: usize = 256;

/// The open guard's mark on a container's protected directory, placed at a container's first exec.
const CONTAINER_DIR_MASK: Mask = Mask::FAN_OPEN_PERM.union(Mask::FAN_EVENT_ON_CHILD);

/// The rule alerts name when a file on a guarded filesystem could not be located.
fn unresolved_rule() -> Arc<RuleMeta> {
    Arc::new(RuleMeta {
        policy: "noexecd-unresolvable-path".to_owned(),
        action: Action::Block,
        severity: 5,
        tags: vec!["noexecd".to_owned()],
        message: "Exec denied: the file's path could not be resolved on a guarded filesystem".to_owned(),
        origin: "built in".to_owned(),
    })
}

/// Reusable buffers: the decision path allocates nothing in steady state.
pub struct Decider {
    /// Events of this process are allowed at once: the daemon must never wait on its own marks.
    own_pid: i32,
    /// The container this daemon runs in (a Kubernetes DaemonSet's pod), if any: container policies never
    /// decide in it, so the guard cannot be turned against its own probe and restart; host policies still do.
    own_container: Option<String>,
    path_buf: Box<[u8; PATH_BUF_LEN]>,
    /// `/proc` and `/proc/self/fd`, opened once: names are read relative to them.
    procs: Arc<ProcDirs>,
    scratch: Vec<u8>,
    canonical: Vec<u8>,
    /// The file's name inside its overlay layer when it was reached through one (a container's path).
    layer_name: Vec<u8>,
    /// Whether the layer `layer_name` was found in is a lower (read-only) layer of every overlay we know.
    layer_read_only: bool,
    /// (mount id, device) of mounts through which a file was last found in our overlays' layers, direct-mapped
    /// by mount id, with the layer it was found in: a layer's private mount is in no namespace's table, so for
    /// these the layers are tried before reading the caller's whole mountinfo (what a denial in a container
    /// mostly cost), that layer first (a layer's private mount shows that one layer). The mount id is only a
    /// hint (the kernel reuses it): the layer lookup checks device and inode, and when it finds nothing the
    /// caller's table is read as before; only the same mount, by its unique id, is trusted without a lookup
    /// (see `LayerMount::known`).
    layer_mounts: [LayerMount; LAYER_MOUNTS],
    /// Mounts of other namespaces (a container's rootfs, PrivateTmp) found in a caller's mountinfo, direct-mapped
    /// by unique mount id: reading a container's whole mountinfo per event was most of what a denial inside a
    /// container cost. A unique id is never reused, and a remembered mount is used only where its answer is
    /// checked (see `resolve_with`); otherwise the caller's mountinfo is read as before.
    foreign_mounts: Vec<Option<ForeignMount>>,
    /// What `/proc/PID/cgroup` and `/proc/PID/mountinfo` are read into.
    proc_buf: Vec<u8>,
    /// The container of a caller, direct-mapped by pid (see `container_of`).
    pid_containers: Vec<Option<PidContainer>>,
    /// The running containers and the container policies that select each.
    scopes: Arc<ArcSwap<Scopes>>,
    /// The caller's container, when the current decision looked it up.
    container: Option<Arc<ContainerScope>>,
    /// Containers looked up here because the daemon's list did not have them yet (their first exec), and
    /// those no runtime knew (`None`): each is asked for once.
    first_seen: HashMap<String, Option<Arc<ContainerScope>>>,
    /// The current file lies on a container's private mount: no host path names it, so no host rule decides
    /// it (only the container's policies, by `layer_name`).
    host_unnamed: bool,
    /// The container whose private mount holds the current file, when the caller is not in it (a host
    /// process reaching it through `/proc/PID/root`).
    owner: Option<Arc<ContainerScope>>,
    /// Marks a selected container's own mounts at its first exec (see `mark_container_mounts`); `None` in
    /// unit tests.
    marker: Option<Arc<FanotifyGroup>>,
    /// Containers whose mounts were marked here.
    marked: HashSet<String>,
    unresolved: Arc<RuleMeta>,
    alerts: mpsc::Sender<ExecAlert>,
    counters: Arc<Counters>,
    /// The exec cache's feed, when the cache is on.
    cache: Option<Feed>,
    /// statx of the current file, when it was read.
    facts: Option<FileFacts>,
    /// The writer's alert limit, applied here first so that alerts it would drop cost nothing.
    gate: RateLimiter,
    head: [u8; HEAD_LEN],
    /// What the opener's executable name is read into (taken out while the open guard judges the opener).
    exe_buf: Option<Box<[u8; PATH_BUF_LEN]>>,
    /// Recent execs that raised an alert, a ring.
    recent_execs: [RecentExec; RECENT_EXECS],
    recent_next: usize,
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

/// A container's policies, as far as they are known now.
enum ScopeLookup {
    Known(Option<Arc<ContainerScope>>),
    /// Being looked up by the lookup thread.
    Asked,
}

/// A mount of another namespace, by the unique id of the mount (`STATX_MNT_ID_UNIQUE`) and the device of the
/// file found through it.
#[derive(Debug, Clone)]
struct ForeignMount {
    unique: u64,
    file_dev: u64,
    mount: Mount,
}

/// An exec that raised an alert, remembered so that the opens that follow from it raise no second one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct RecentExec {
    pid: i32,
    dev: u64,
    ino: u64,
    /// Whether the exec was blocked (else audited).
    blocked: bool,
}

/// The decision on one file, before the answer.
#[derive(Debug)]
struct Verdict {
    outcome: Outcome,
    /// The rule (or default posture) that made the decision; `None`: allowed without an alert.
    rule: Option<Arc<RuleMeta>>,
    /// How the file's canonical path was looked up for the decision.
    resolved: Resolved,
}

/// Where the canonical path of the current file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolved {
    /// Not looked up (the filesystem is decided as a whole).
    NotYet,
    /// In `Decider::canonical`.
    Yes,
    /// Could not be found: the exec is denied.
    Failed,
    /// Not decided: the caller's container is being looked up, and the event must wait for it. Its outcome
    /// is a denial, so that a caller overlooking this refuses rather than allows.
    Asked,
}

impl Decider {
    pub fn new(alerts: mpsc::Sender<ExecAlert>, counters: Arc<Counters>) -> Self {
        Self {
            own_pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
            own_container: containers::container_of(i32::try_from(std::process::id()).unwrap_or(i32::MAX))
                .map(|(_, id)| id),
            path_buf: Box::new([0u8; PATH_BUF_LEN]),
            procs: Arc::new(ProcDirs::open()),
            scratch: Vec::with_capacity(PATH_BUF_LEN),
            canonical: Vec::with_capacity(PATH_BUF_LEN),
            layer_name: Vec::with_capacity(PATH_BUF_LEN),
            layer_read_only: false,
            layer_mounts: std::array::from_fn(|_| LayerMount::default()),
            foreign_mounts: vec![None; FOREIGN_MOUNTS],
            pid_containers: vec![None; PID_CONTAINERS],
            proc_buf: Vec::with_capacity(64 * 1024),
            scopes: Arc::new(ArcSwap::from_pointee(Scopes::default())),
            container: None,
            first_seen: HashMap::new(),
            host_unnamed: false,
            owner: None,
            marker: None,
            marked: HashSet::new(),
            unresolved: unresolved_rule(),
            alerts,
            counters,
            head: [0u8; HEAD_LEN],
            exe_buf: Some(Box::new([0u8; PATH_BUF_LEN])),
            recent_execs: [RecentExec::default(); RECENT_EXECS],
            recent_next: 0,
            denials: Denials::default(),
            cache: None,
            facts: None,
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

    /// Marks a selected container's own mounts in protected scope at its first exec, through `group`.
    pub fn with_marker(mut self, group: Arc<FanotifyGroup>) -> Self {
        self.marker = Some(group);
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

    fn handle_exec(&mut self, responder: &impl Responder, guard: &Guard, fd: BorrowedFd<'_>, pid: i32) -> Handled {
        let facts = sys::file_facts(fd);
        let now = Instant::now();
        let key = facts.as_ref().ok().and_then(|f| denial_key(guard, f, pid));
        let remembered = match (key.as_ref(), facts.as_ref()) {
            (Some(key), Ok(facts)) => self.remembered_denial(key, now, facts),
            _ => None,
        };
        let mut subject = ProcSubject::new(pid);
        let fresh = remembered.is_none();
        let verdict = match remembered {
            Some(verdict) => verdict,
            None => self.decide_with(guard, fd, pid, facts, &mut subject),
        };
        if verdict.resolved == Resolved::Asked {
            return Handled::Parked;
        }
        let Verdict { outcome, rule, resolved } = verdict;
        // Remembered only when nothing but what the key holds decided it (see `denials`).
        let remember = fresh && outcome == Outcome::Block && resolved != Resolved::Failed && !subject.was_read();
        let Some(rule) = rule else {
            self.answer(responder, fd, Response::Allow);
            self.counters.allowed.fetch_add(1, Ordering::Relaxed);
            // Only path-decided files (the name is known) can be cached; after the answer, never instead.
            if resolved == Resolved::Yes
                && self.layer_cacheable(guard)
                && let (Some(feed), Some(facts)) = (self.cache.as_mut(), self.facts.as_ref())
            {
                feed.offer(&guard.config.matcher, fd, facts, &self.canonical);
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
            self.remember_exec_for_open_guard(guard, fd, pid, outcome);
            if remember && let Some(key) = key {
                self.remember_denial(key, now, &rule);
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
        self.remember_exec_for_open_guard(guard, fd, pid, outcome);
        if remember && let Some(key) = key {
            self.remember_denial(key, now, &rule);
        }
        self.queue_alert(outcome, rule, pid, process, "FAN_OPEN_EXEC_PERM");
        Handled::Answered
    }

    /// A denial of this very exec remembered a moment ago, its state restored as `decide_with` would leave it:
    /// the file's name, its container. Forgotten when the container's selection has changed since.
    fn remembered_denial(&mut self, key: &DenialKey, now: Instant, facts: &FileFacts) -> Option<Verdict> {
        let denial = self.denials.find(key, now)?;
        if let Some(scope) = denial.container.as_ref() {
            // The scope `scope_of` would give now, by the same steps: the daemon's list, else the first sight.
            let id = scope.container.id.as_str();
            let scopes = self.scopes.load();
            let current = scopes.get(id).or_else(|| self.first_seen.get(id).and_then(Option::as_ref));
            if !current.is_some_and(|c| Arc::ptr_eq(c, scope)) {
                self.denials.forget(key);
                return None;
            }
        }
        let rule = Arc::clone(&denial.rule);
        self.container = denial.container.clone();
        self.canonical.clear();
        self.canonical.extend_from_slice(&denial.name);
        self.layer_name.clear();
        self.layer_read_only = false;
        self.host_unnamed = false;
        self.owner = None;
        self.facts = Some(*facts);
        Some(Verdict { outcome: Outcome::Block, rule: Some(rule), resolved: Resolved::Yes })
    }

    /// Remembers the denial just made, named by `self.canonical` (not when no name was found for it).
    fn remember_denial(&mut self, key: DenialKey, now: Instant, rule: &Arc<RuleMeta>) {
        if !self.canonical.is_empty() {
            self.denials.remember(key, now, rule, &self.canonical, self.container.as_ref());
        }
    }

    /// A FAN_OPEN_PERM event (the open guard): allowed at once unless the file could run (a loadable ELF or a
    /// script-like text, by its first bytes), is in protected scope, and the opener is running it (the
    /// loader, a non-reader mapping an ELF, an interpreter naming it in argv). Only then is /proc read.
    fn handle_open(&mut self, responder: &impl Responder, guard: &Guard, fd: BorrowedFd<'_>, pid: i32) -> Handled {
        let allow = |d: &Self| {
            d.answer(responder, fd, Response::Allow);
            d.counters.allowed.fetch_add(1, Ordering::Relaxed);
            Handled::Answered
        };
        if !guard.config.open_guard.enabled {
            return allow(self);
        }
        let Ok(facts) = sys::file_facts(fd) else { return allow(self) };
        let after_exec = self.recent_exec(pid, &facts);
        // An empty file has nothing to run now, as its first bytes would say: a file being created, most often.
        if !facts.is_regular() || facts.size == 0 || after_exec == Some(false) {
            return allow(self);
        }
        let n = sys::read_head(fd, &mut self.head).unwrap_or(0);
        let kind = sniff(self.head.get(..n).unwrap_or_default());
        if !kind.may_run() {
            return allow(self);
        }
        // The opener first: the marks put nearly every open we see in protected scope (a filesystem holding only
        // protected paths, or the protected directories themselves), and most openers are not running the file,
        // so this usually spares the name lookup. Both must say so for an alert, in either order.
        let file = OpenedFile { kind, dev: facts.dev, ino: facts.ino };
        // The file's name, for an interpreter's module search, is looked up only then. `procs` is shared, not
        // copied (an Arc), and the opener's executable name is read into the decider's buffer, taken out while
        // `name` borrows the decider: no allocation, and no 4 KiB cleared per open.
        let procs = Arc::clone(&self.procs);
        let mut exe_buf = self.exe_buf.take().unwrap_or_else(|| Box::new([0u8; PATH_BUF_LEN]));
        let mut name = || {
            self.resolve(guard, fd, pid);
            self.canonical.clone()
        };
        let config = &guard.config.open_guard;
        let route = opener::judge(config, &guard.loaders, file, pid, &procs, &mut exe_buf, &mut name);
        self.exe_buf = Some(exe_buf);
        let Some(route) = route else { return allow(self) };
        let Verdict { outcome, rule, resolved } =
            self.decide_with(guard, fd, pid, Ok(facts), &mut ProcSubject::new(pid));
        if resolved == Resolved::Asked {
            return Handled::Parked;
        }
        let Some(rule) = rule else { return allow(self) };
        if after_exec == Some(true) {
            // The exec of this file was just blocked and alerted; this is its caller looking at it.
            let answer = if outcome == Outcome::Block { Response::Deny } else { Response::Allow };
            self.answer(responder, fd, answer);
            return Handled::Answered;
        }
        let process = (self.process_info)(pid);
        self.name_before_answer(guard, fd, pid, resolved);
        self.answer(responder, fd, alerted_answer(outcome));
        self.count(outcome);
        // A refused open is often retried at once by the same process (bash reads a file whose exec failed to
        // explain why): judged again, alerted once.
        self.remember_exec(pid, &facts, outcome == Outcome::Block);
        self.queue_alert(outcome, rule, pid, process, route.data());
        Handled::Answered
    }

    /// Whether a file reached through a container's overlay may go to the exec cache (which checks the host path
    /// itself). An inode mark holds in every container, so with container policies loaded: only a file of a
    /// lower layer (no container can write, rename or create there: a change is a copy-up to its own upper
    /// layer) whose path inside the container no container policy's rule reaches, selecting or not. Which
    /// containers run, or start later, then changes nothing; a new policy comes with a reload, which flushes.
    fn layer_cacheable(&self, guard: &Guard) -> bool {
        if self.layer_name.is_empty() {
            return true;
        }
        match &guard.all_container_rules {
            None => true,
            Some(rules) => self.layer_read_only && rules.untouched_by_rules(&self.layer_name),
        }
    }

    /// Names a file decided with its whole filesystem, for its alert, while the caller still exists: a refused
    /// caller exits at once, and with it the mount namespace its path may need (PrivateTmp, `unshare -m`,
    /// a container), read through its /proc/PID/mountinfo.
    fn name_before_answer(&mut self, guard: &Guard, fd: BorrowedFd<'_>, pid: i32, resolved: Resolved) {
        if resolved == Resolved::NotYet {
            self.resolve(guard, fd, pid);
        }
    }

    fn count(&self, outcome: Outcome) {
        let counter = if outcome == Outcome::Block { &self.counters.blocked } else { &self.counters.audited };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// With the open guard on, the opens that follow an alerted exec of the same file are not alerted again.
    fn remember_exec_for_open_guard(&mut self, guard: &Guard, fd: BorrowedFd<'_>, pid: i32, outcome: Outcome) {
        if guard.config.open_guard.enabled
            && let Some(facts) = self.facts.or_else(|| sys::file_facts(fd).ok())
        {
            self.remember_exec(pid, &facts, outcome == Outcome::Block);
        }
    }

    fn remember_exec(&mut self, pid: i32, facts: &FileFacts, blocked: bool) {
        if let Some(slot) = self.recent_execs.get_mut(self.recent_next % RECENT_EXECS) {
            *slot = RecentExec { pid, dev: facts.dev, ino: facts.ino, blocked };
        }
        self.recent_next = self.recent_next.wrapping_add(1);
    }

    /// Whether this process recently exec'd this file with an alert: `Some(blocked)`.
    fn recent_exec(&self, pid: i32, facts: &FileFacts) -> Option<bool> {
        self.recent_execs
            .iter()
            .rev()
            .find(|r| r.pid == pid && r.dev == facts.dev && r.ino == facts.ino)
            .map(|r| r.blocked)
    }

    /// Hands the alert of a blocked or audited attempt, named by `self.canonical`, to the writer without waiting.
    fn queue_alert(&self, outcome: Outcome, rule: Arc<RuleMeta>, pid: i32, process: ProcessInfo, hook: &'static str) {
        let resource = self.canonical.clone();
        let container = self.container.as_ref().map(|s| s.container.clone());
        let alert = ExecAlert { when: SystemTime::now(), outcome, rule, resource, pid, process, hook, container };
        if self.alerts.try_send(alert).is_err() {
            self.counters.alerts_dropped_queue.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn answer(&self, responder: &impl Responder, fd: BorrowedFd<'_>, answer: Response) {
        if responder.respond(fd, answer).is_err() {
            self.counters.answer_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Decides the file behind `fd` (its statx `facts`) executed or opened by `pid`, whose executable and uid
    /// `subject` reads when a rule asks.
    fn decide_with(
        &mut self,
        guard: &Guard,
        fd: BorrowedFd<'_>,
        pid: i32,
        facts: std::io::Result<FileFacts>,
        subject: &mut ProcSubject,
    ) -> Verdict {
        self.canonical.clear();
        self.layer_name.clear();
        self.layer_read_only = false;
        self.container = None;
        self.host_unnamed = false;
        self.owner = None;
        self.facts = None;
        let matcher = &guard.config.matcher;
        let Ok(facts) = facts else {
            return self.unresolvable(guard);
        };
        self.facts = Some(facts);
        let whole_fs = match guard.target_of(fd, &facts).map(|t| &t.decides) {
            Some(Decides::Filesystem { below }) => Some(below.as_slice()),
            // Path-decided, or a device we did not expect on a marked filesystem: decide by path.
            Some(Decides::Path) | None => None,
        };
        if let Some(below) = whole_fs {
            let d = matcher.decide(Scope::Below(below), facts.uid, subject);
            return Verdict { outcome: d.outcome, rule: d.rule.cloned(), resolved: Resolved::NotYet };
        }
        if !self.resolve_with(guard, fd, pid, &facts) {
            return self.unresolvable(guard);
        }
        let host = if self.host_unnamed {
            // A container's private mount: host rules never decide a container's paths.
            Verdict { outcome: Outcome::Allow, rule: None, resolved: Resolved::Yes }
        } else {
            let d = matcher.decide(Scope::Path(&self.canonical), facts.uid, subject);
            Verdict { outcome: d.outcome, rule: d.rule.cloned(), resolved: Resolved::Yes }
        };
        if self.layer_name.is_empty() || guard.config.container_policies.is_empty() {
            return host;
        }
        self.decide_in_container(guard, host, pid, facts.uid, subject)
    }

    /// A file of a container's overlay, executed by a process of that container: the container policies that
    /// select the container decide its path inside the container; the stricter of that and the host's
    /// decision stands. The first exec of a container is decided so too: the layer's event comes before any
    /// of its programs runs.
    fn decide_in_container(
        &mut self,
        guard: &Guard,
        host: Verdict,
        pid: i32,
        owner: u32,
        subject: &mut ProcSubject,
    ) -> Verdict {
        let scope = match self.owner.take() {
            Some(owner) => owner,
            None => {
                let id = self.container_of(pid);
                // The daemon's own container (a DaemonSet pod) is never decided by container policies.
                if id.is_some() && self.own_container.as_deref() == id.as_deref() {
                    return host;
                }
                let Some(id) = id else {
                    // A private mount of no container known: no policy can decide it, and no host rule may.
                    return if self.host_unnamed { self.unresolvable(guard) } else { host };
                };
                // Not known yet (its first execs): when no container policy's rule can reach this file, which
                // policies select the container cannot change the answer, so the runtimes are not asked while
                // the kernel holds the exec (podman's API answers in tens of milliseconds, more while podman is
                // starting the very container, and every container start paid for it with its first program).
                // Its own mounts are still marked now, so that they are guarded from the first instruction.
                if !self.identity_may_matter(guard, &host)
                    && self.scopes.load().get(&id).is_none()
                    && !self.first_seen.contains_key(&*id)
                    && self.mark_unknown_container(guard, &id, pid)
                {
                    return host;
                }
                match self.scope_of(guard, &id) {
                    ScopeLookup::Known(Some(scope)) => {
                        self.mark_container_mounts(guard, &scope, pid);
                        scope
                    }
                    ScopeLookup::Known(None) if self.host_unnamed => return self.unresolvable(guard),
                    ScopeLookup::Known(None) => return host,
                    ScopeLookup::Asked => {
                        return Verdict {
                            outcome: Outcome::Block,
                            rule: Some(self.unresolved.clone()),
                            resolved: Resolved::Asked,
                        };
                    }
                }
            }
        };
        let inside = scope.matcher.as_ref().map(|m| {
            let d = m.decide(Scope::Path(&self.layer_name), owner, subject);
            Verdict { outcome: d.outcome, rule: d.rule.cloned(), resolved: Resolved::Yes }
        });
        self.container = Some(scope);
        match inside {
            Some(inside)
                if inside.rule.is_some()
                    && (host.rule.is_none() || strictness(inside.outcome) > strictness(host.outcome)) =>
            {
                // The alert names the file as the container sees it.
                self.canonical.clear();
                self.canonical.extend_from_slice(&self.layer_name);
                inside
            }
            _ => host,
        }
    }

    /// The id of the container process `pid` runs in (by its cgroup), `None` on the host. Remembered per pid
    /// with the pid's mount namespace, one readlink instead of reading and parsing its cgroup file: a pid
    /// given to another process, or a process that entered other namespaces, reads another namespace and is
    /// looked up again. (A caller waiting on its exec cannot move meanwhile; every container has a mount
    /// namespace of its own.)
    fn container_of(&mut self, pid: i32) -> Option<Arc<str>> {
        let ns = procfs::mount_namespace_with(&self.procs, pid);
        let slot = usize::try_from(pid.unsigned_abs()).unwrap_or(0) % PID_CONTAINERS;
        if let (Some(ns), Some(Some(known))) = (ns, self.pid_containers.get(slot))
            && (known.pid, known.mnt_ns) == (pid, ns)
        {
            return known.id.clone();
        }
        let id: Option<Arc<str>> =
            containers::container_of_with(&self.procs, pid, &mut self.proc_buf).map(|(_, id)| Arc::from(id));
        if let (Some(ns), Some(entry)) = (ns, self.pid_containers.get_mut(slot)) {
            *entry = Some(PidContainer { pid, mnt_ns: ns, id: id.clone() });
        }
        id
    }

    /// The container `id` and the policies that select it. One the daemon's list does not hold yet is being
    /// started now (this is its first exec that a container policy's rule could reach): the runtimes are asked
    /// once, by the lookup thread while the event waits (`Asked`), or here when there is none (or too many
    /// events wait already), so that its policies decide that program too. Bounded by the runtimes' own
    /// timeouts; never again for the same container.
    fn scope_of(&mut self, guard: &Guard, id: &str) -> ScopeLookup {
        if let Some(scope) = self.scopes.load().get(id) {
            return ScopeLookup::Known(Some(scope.clone()));
        }
        if let Some(seen) = self.first_seen.get(id) {
            return ScopeLookup::Known(seen.clone());
        }
        if self.parked.len() < MAX_PARKED
            && let Some(lookups) = self.lookups.as_mut()
            && lookups.ask(id, &guard.config.containers.sources)
        {
            return ScopeLookup::Asked;
        }
        let found = containers::discover(&guard.config.containers.sources).into_iter().find(|c| c.id == id);
        ScopeLookup::Known(self.first_sight(guard, id, found))
    }

    /// Remembers what the runtimes said of container `id` at its first sight.
    fn first_sight(
        &mut self,
        guard: &Guard,
        id: &str,
        found: Option<containers::Container>,
    ) -> Option<Arc<ContainerScope>> {
        let scope = found.map(|c| Arc::new(ContainerScope::new(&guard.config, c)));
        if self.first_seen.len() >= FIRST_SEEN_MAX {
            self.first_seen.clear();
        }
        self.first_seen.insert(id.to_owned(), scope.clone());
        scope
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
            self.first_sight(guard, &id, found);
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

    /// Whether the caller's container (which policies select it) may change the answer for the current file
    /// of a container's overlay: yes unless no rule of any container policy reaches its path inside the
    /// container (`Guard::all_container_rules`, as for the exec cache: no Allow rule, so no default posture,
    /// and the path outside every rule's scope). Then whatever policies select the container, none applies,
    /// and the host's decision stands as it is. Always yes on a private mount (a container no runtime knows is
    /// refused there) and when the host's decision raises an alert (which carries the container's fields).
    fn identity_may_matter(&self, guard: &Guard, host: &Verdict) -> bool {
        self.host_unnamed
            || host.rule.is_some()
            || !guard.all_container_rules.as_ref().is_some_and(|all| all.untouched_by_rules(&self.layer_name))
    }

    /// The first sight of a container the daemon's list does not have yet, when its identity does not matter
    /// for this file: marks what `mark_container_mounts` would, with the rules of every container policy
    /// together standing for the ones that will select it (a superset: an unselected container's directories
    /// marked cost events only, each decided with its real scope once it is known). `false` when the
    /// container has a private mount in that scope (a `--tmpfs /tmp`): how it is marked depends on its own
    /// policies (whether the whole mount is protected), so the container is looked up as before.
    fn mark_unknown_container(&mut self, guard: &Guard, id: &str, pid: i32) -> bool {
        let Some(all) = guard.all_container_rules.as_ref() else { return false };
        if self.marked.contains(id) {
            return true;
        }
        let (mounts, layers) = ctr_mounts::of_process(all, pid, &guard.mounts);
        if mounts.iter().any(|m| m.private) {
            return false;
        }
        if self.marked.len() >= MARKED_MAX {
            self.marked.clear();
        }
        self.marked.insert(id.to_owned());
        if let Some(group) = self.marker.as_ref()
            && guard.config.open_guard.enabled
        {
            for root in ctr_mounts::open_roots(all, pid, &mounts, &layers) {
                let _ = group.mark_inode(&root.path, CONTAINER_DIR_MASK);
            }
        }
        true
    }

    /// At the first exec this thread sees of a selected container (its first program, through its image
    /// layers), marks its private mounts in protected scope and its protected directories (not their
    /// subdirectories: the tokio side's rescan walks those), so that `--tmpfs /tmp` is guarded from the first
    /// instruction. Reads the caller's mountinfo and makes one fanotify_mark per mount: path lookups through
    /// `/proc/PID/root`, which raise no permission event. Binds of host directories wait for the tokio side's
    /// next look at the containers (their filesystem is marked through our own mount of it).
    fn mark_container_mounts(&mut self, guard: &Guard, scope: &ContainerScope, pid: i32) {
        let (Some(group), Some(matcher)) = (self.marker.as_ref(), scope.matcher.as_ref()) else { return };
        if self.marked.contains(&scope.container.id) {
            return;
        }
        if self.marked.len() >= MARKED_MAX {
            self.marked.clear();
        }
        self.marked.insert(scope.container.id.clone());
        let (mounts, layers) = ctr_mounts::of_process(matcher, pid, &guard.mounts);
        let open = guard.config.open_guard.enabled;
        for m in mounts.iter().filter(|m| m.private) {
            let extra = if open && m.whole { Mask::FAN_OPEN_PERM } else { Mask::empty() };
            let _ =
                group.mark_filesystem(&ctr_mounts::through_root(pid, &m.mount_point), Mask::FAN_OPEN_EXEC_PERM | extra);
        }
        if open {
            for root in ctr_mounts::open_roots(matcher, pid, &mounts, &layers) {
                let _ = group.mark_inode(&root.path, CONTAINER_DIR_MASK);
            }
        }
    }

    fn unresolvable(&mut self, guard: &Guard) -> Verdict {
        self.counters.unresolved.fetch_add(1, Ordering::Relaxed);
        let d = guard.config.matcher.apply_mode(Outcome::Block, &self.unresolved);
        Verdict { outcome: d.outcome, rule: d.rule.cloned(), resolved: Resolved::Failed }
    }

    /// Canonical path for the alert of a filesystem decided as a whole; best effort.
    fn resolve(&mut self, guard: &Guard, fd: BorrowedFd<'_>, pid: i32) {
        if let Ok(facts) = sys::file_facts(fd) {
            self.resolve_with(guard, fd, pid, &facts);
        }
    }

    /// Fills `self.canonical` with the file's name in our namespace, mapped through its filesystem's root.
    fn resolve_with(&mut self, guard: &Guard, fd: BorrowedFd<'_>, pid: i32, facts: &FileFacts) -> bool {
        self.canonical.clear();
        let Ok(raw) = self.procs.fd_path(fd, &mut self.path_buf) else {
            return false;
        };
        // The kernel appends " (deleted)" to an unlinked file's name; a live file may really be called that.
        // The link count was read before the name, so a file unlinked in between still shows nlink >= 1 (as
        // does one unlinked under a name while another hard link remains): then the suffixed name counts as
        // real only if it is this very file.
        let raw = match raw.strip_suffix(b" (deleted)") {
            Some(stripped) if facts.nlink == 0 || !names_this_file(raw, facts) => stripped,
            _ => raw,
        };
        let raw_len = raw.len();
        let Some(mnt_id) = facts.mnt_id else {
            return false;
        };
        // Our table is up to one mount poll old, and the kernel reuses a freed mount id at once: the id may now
        // be another mount's (a container's overlay layer taking the id of the last container's rootfs). A mount
        // of another filesystem than the file's, or one the name does not lie below, is not the file's mount.
        if let Some(via) = guard.mounts.by_id(mnt_id)
            && same_filesystem(guard, via.dev, fd, facts)
            && guard.mounts.canonical_path(via, raw, &mut self.scratch, &mut self.canonical)
        {
            return true;
        }
        let slot = usize::try_from(mnt_id).unwrap_or(0) % LAYER_MOUNTS;
        if let Some(entry) = self.layer_mounts.get_mut(slot)
            && (entry.mnt_id, entry.dev) == (mnt_id, facts.dev)
            && let Some(found) = entry.find(guard.mounts.overlay_layers(), fd, raw, facts)
        {
            let naming = LayerNaming {
                layer_name: &mut self.layer_name,
                read_only: &mut self.layer_read_only,
                scratch: &mut self.scratch,
                canonical: &mut self.canonical,
            };
            return naming.name(guard, raw, found);
        }
        // Reached through a mount of another namespace (a container, PrivateTmp, `unshare -m`).
        let containers = !guard.config.container_policies.is_empty();
        let unique = sys::mount_unique_id(fd);
        let slot = unique.map(|u| usize::try_from(u % FOREIGN_MOUNTS as u64).unwrap_or(0));
        let mut remembered = slot
            .and_then(|i| self.foreign_mounts.get_mut(i))
            .and_then(|e| e.take_if(|f| Some(f.unique) == unique && f.file_dev == facts.dev))
            .map(|f| f.mount);
        // A mount keeps its filesystem and root for its life, but it can be moved: trusted only when the name it
        // gives is this very file in our namespace, or when no name is possible either way (our table shows
        // nothing of its filesystem, so no mount point of it could name the file).
        if let Some(via) = remembered.as_ref() {
            let trusted = if guard.mounts.canonical_path(via, raw, &mut self.scratch, &mut self.canonical) {
                names_this_file(&self.canonical, facts)
            } else {
                guard.mounts.mounts_of(via.dev).next().is_none()
            };
            if !trusted {
                remembered = None;
            }
        }
        let via = remembered.or_else(|| foreign_mount_with(&self.procs, pid, mnt_id, &mut self.proc_buf));
        let found = self.name_through_foreign(guard, via.as_ref(), raw_len, mnt_id, pid, facts, containers);
        if let (Some(i), Some(unique), Some(mount)) = (slot, unique, via)
            && let Some(entry) = self.foreign_mounts.get_mut(i)
        {
            *entry = Some(ForeignMount { unique, file_dev: facts.dev, mount });
        }
        found
    }

    /// The rest of [`resolve_with`](Self::resolve_with) for a file reached through mount `via` of the caller's
    /// namespace (`None`: in no namespace's table), its raw name in `path_buf`.
    #[allow(clippy::too_many_arguments)]
    fn name_through_foreign(
        &mut self,
        guard: &Guard,
        via: Option<&Mount>,
        raw_len: usize,
        mnt_id: u64,
        pid: i32,
        facts: &FileFacts,
        containers: bool,
    ) -> bool {
        let raw = self.path_buf.get(..raw_len).unwrap_or_default();
        let slot = usize::try_from(mnt_id).unwrap_or(0) % LAYER_MOUNTS;
        match via {
            Some(via) if via.dev == facts.dev || guard.target_for(via.dev).is_some() => {
                let named = guard.mounts.canonical_path(via, raw, &mut self.scratch, &mut self.canonical);
                if containers {
                    // The mount is in the caller's namespace, which our root does not reach: the kernel names
                    // the file from that namespace's root, i.e. as the caller (a container) sees it. Whether the
                    // caller is in a container is for `decide_in_container` to find out.
                    self.layer_name.clear();
                    self.layer_name.extend_from_slice(raw);
                    // A superblock no mount of ours shows: a container's own tmpfs, for its policies alone.
                    self.host_unnamed =
                        !named && via.dev == facts.dev && guard.mounts.mounts_of(via.dev).next().is_none();
                    if self.host_unnamed {
                        // Its owner, whoever the caller is (a host process that entered the namespace too).
                        self.owner = self.scopes.load().owner_of_private(mnt_id, facts.dev).cloned();
                    }
                    return named || self.host_unnamed;
                }
                named
            }
            // In no namespace's table: a layer's private mount under an overlay (a container's rootfs). The
            // file is named by its layer's path on the host, so host rules decide host paths.
            _ => {
                // Or a selected container's private mount reached from outside it (`/proc/PID/root/tmp/x` from
                // the host): the container that owns it decides, by the path the container sees.
                if containers && let Some(owner) = self.scopes.load().owner_of_private(mnt_id, facts.dev) {
                    self.owner = Some(owner.clone());
                    self.host_unnamed = true;
                    self.layer_name.clear();
                    self.layer_name.extend_from_slice(raw);
                    return true;
                }
                let ours = overlay::file_in_layers(guard.mounts.overlay_layers(), None, raw, facts.dev, facts.ino);
                if let Some(found) = ours.as_ref()
                    && let Some(entry) = self.layer_mounts.get_mut(slot)
                {
                    *entry = LayerMount { mnt_id, dev: facts.dev, layer: found.layer, ..LayerMount::default() };
                }
                let Some(found) = ours.or_else(|| overlay::file_in_layers_of(pid, raw, facts.dev, facts.ino)) else {
                    return false;
                };
                let naming = LayerNaming {
                    layer_name: &mut self.layer_name,
                    read_only: &mut self.layer_read_only,
                    scratch: &mut self.scratch,
                    canonical: &mut self.canonical,
                };
                naming.name(guard, raw, found)
            }
        }
    }
}

/// The container (`None`: the host) of process `pid` while it is in mount namespace `mnt_ns`.
#[derive(Clone)]
struct PidContainer {
    pid: i32,
    mnt_ns: u64,
    id: Option<Arc<str>>,
}

/// A mount found to be an overlay layer's private mount: its id and device, and the layer (an index into the
/// mount table's overlay layers) the last file reached through it was in.
#[derive(Default)]
struct LayerMount {
    mnt_id: u64,
    dev: u64,
    layer: usize,
    /// Once a file was found in `layer` through it: its unique id and that layer's directory. A layer's private
    /// mount is the overlay's clone of that one directory, so while the unique id is the same (it never names
    /// another mount) and the table still has that directory at `layer`, a file reached through it is in
    /// that directory at the name the kernel gives: no lookup.
    known: Option<(u64, Vec<u8>)>,
}

impl LayerMount {
    /// Where the file `raw` (the kernel's name for `fd`, `facts`) reached through this mount lies.
    fn find(
        &mut self,
        layers: &[overlay::Layer],
        fd: BorrowedFd<'_>,
        raw: &[u8],
        facts: &FileFacts,
    ) -> Option<overlay::InLayer> {
        let unique = sys::mount_unique_id(fd);
        if let (Some((id, dir)), Some(unique)) = (self.known.as_ref(), unique)
            && *id == unique
            && layers.get(self.layer).is_some_and(|l| l.dir == *dir)
        {
            return overlay::in_layer(layers, self.layer, raw);
        }
        let found = overlay::file_in_layers(layers, Some(self.layer), raw, facts.dev, facts.ino)?;
        self.layer = found.layer;
        self.known = unique.zip(layers.get(found.layer).map(|l| l.dir.clone()));
        Some(found)
    }
}

/// Where the name of a file found in an overlay's layer goes: `layer_name` (its name inside the layer, the
/// container's path) and `canonical` (the layer's path on the host).
struct LayerNaming<'a> {
    layer_name: &'a mut Vec<u8>,
    read_only: &'a mut bool,
    scratch: &'a mut Vec<u8>,
    canonical: &'a mut Vec<u8>,
}

impl LayerNaming<'_> {
    fn name(self, guard: &Guard, raw: &[u8], found: overlay::InLayer) -> bool {
        self.layer_name.clear();
        self.layer_name.extend_from_slice(raw);
        *self.read_only = found.read_only;
        match guard.mounts.containing(&found.path) {
            Some(via) => guard.mounts.canonical_path(via, &found.path, self.scratch, self.canonical),
            None => false,
        }
    }
}

/// Whether a mount of device `mount_dev` (as mountinfo shows it) can hold the file open at `fd`: the same
/// device, or both on one marked filesystem (btrfs reports another st_dev than mountinfo, one per subvolume).
fn same_filesystem(guard: &Guard, mount_dev: u64, fd: BorrowedFd<'_>, facts: &FileFacts) -> bool {
    mount_dev == facts.dev
        || matches!((guard.target_for(mount_dev), guard.target_of(fd, facts)), (Some(a), Some(b)) if std::ptr::eq(a, b))
}

/// How strict an outcome is: a block over an audit over an allow.
fn strictness(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Allow => 0,
        Outcome::Audit => 1,
        Outcome::Block => 2,
    }
}

/// The answer to an event that raises an alert: a block is denied with an audit record; an audited exec is
/// allowed.
fn alerted_answer(outcome: Outcome) -> Response {
    if outcome == Outcome::Block { Response::DenyAudited } else { Response::Allow }
}

/// Whether `path` (in our namespace) is a name of the file `facts` describes. Used only for names ending in
/// " (deleted)": a path lookup, but never an open, so no fanotify event and no wait on a marked file.
fn names_this_file(path: &[u8], facts: &FileFacts) -> bool {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(std::ffi::OsStr::from_bytes(path))
        .is_ok_and(|m| m.dev() == facts.dev && m.ino() == facts.ino)
}

/// The calling process, read from /proc only when a rule asks.
struct ProcSubject {
    pid: i32,
    exe: Option<Option<Vec<u8>>>,
    uid: Option<Option<u32>>,
}

impl ProcSubject {
    fn new(pid: i32) -> Self {
        Self { pid, exe: None, uid: None }
    }

    /// Whether a rule asked for the caller's executable or uid (then the decision was the caller's too).
    fn was_read(&self) -> bool {
        self.exe.is_some() || self.uid.is_some()
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

impl Subject for ProcSubject {
    fn exe(&mut self) -> Option<&[u8]> {
        let pid = self.pid;
        self.exe.get_or_insert_with(|| procfs::exe(pid)).as_deref()
    }

    fn uid(&mut self) -> Option<u32> {
        let pid = self.pid;
        *self.uid.get_or_insert_with(|| procfs::uid(pid))
    }
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
mod tests {
    use super::*;

    #[test]
    fn proc_subject_reads_lazily_and_once() {
        let mut s = ProcSubject::new(std::process::id() as i32);
        assert!(s.exe.is_none());
        assert!(s.exe().is_some());
        assert_eq!(s.uid(), Some(nix::unistd::getuid().as_raw()));
        let mut gone = ProcSubject::new(i32::MAX);
        assert_eq!(gone.exe(), None);
        assert_eq!(gone.uid(), None);
    }

    #[test]
    fn a_name_ending_in_deleted_is_real_only_if_it_is_this_file() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("x (deleted)");
        std::fs::write(&real, b"").unwrap();
        let other = dir.path().join("y");
        std::fs::write(&other, b"").unwrap();
        let f = std::fs::File::open(&real).unwrap();
        let facts = sys::file_facts(f.as_fd()).unwrap();
        assert!(names_this_file(real.as_os_str().as_bytes(), &facts));
        assert!(!names_this_file(other.as_os_str().as_bytes(), &facts));
        assert!(!names_this_file(dir.path().join("gone (deleted)").as_os_str().as_bytes(), &facts));
    }

    /// `Decider::handle` driven through the `Responder` seam: events built from files of a temporary
    /// directory (real fds, real statx and /proc/self/fd names), answers recorded, no fanotify group, no root.
    mod handle {
        use super::*;
        use crate::host::mounts::MountTable;
        use std::cell::{Cell, RefCell};
        use std::os::fd::{AsRawFd, OwnedFd, RawFd};
        use std::os::unix::ffi::OsStrExt;
        use std::path::{Path, PathBuf};

        /// Blocks every exec below the test's directory.
        const BLOCK_DIR: &str = r#"
[[policy]]
name = "test-dir"
[[policy.process.match_directories]]
dir = "{dir}/"
recursive = true
"#;

        thread_local! {
            /// Calls of `counting_process_info` on this test's thread.
            static PROCESS_READS: Cell<usize> = const { Cell::new(0) };
        }

        /// The real /proc reader, counted.
        fn counting_process_info(pid: i32) -> ProcessInfo {
            PROCESS_READS.with(|n| n.set(n.get() + 1));
            procfs::process_info(pid)
        }

        fn process_reads() -> usize {
            PROCESS_READS.with(Cell::get)
        }

        /// One answer, with what had happened when it was given.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        struct Answered {
            fd: RawFd,
            answer: Response,
            alerts_queued: usize,
            process_reads: usize,
        }

        /// Records every answer; looks at the alert queue at the moment it is called.
        struct Recording<'a> {
            alerts: &'a mpsc::Receiver<ExecAlert>,
            answers: RefCell<Vec<Answered>>,
        }

        impl<'a> Recording<'a> {
            fn new(alerts: &'a mpsc::Receiver<ExecAlert>) -> Self {
                Self { alerts, answers: RefCell::new(Vec::new()) }
            }

            fn answers(&self) -> Vec<Answered> {
                self.answers.borrow().clone()
            }
        }

        impl Responder for Recording<'_> {
            fn respond(&self, fd: BorrowedFd<'_>, answer: Response) -> std::io::Result<()> {
                let alerts_queued = self.alerts.len();
                let a = Answered { fd: fd.as_raw_fd(), answer, alerts_queued, process_reads: process_reads() };
                self.answers.borrow_mut().push(a);
                Ok(())
            }
        }

        /// A file in a fresh directory, and what statx says of it.
        struct Scene {
            _dir: tempfile::TempDir,
            /// The directory's canonical name (what /proc/self/fd shows).
            dir: PathBuf,
            file: PathBuf,
            facts: FileFacts,
        }

        fn scene() -> Scene {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().canonicalize().unwrap();
            let file = dir.join("x");
            std::fs::write(&file, b"#!/bin/sh\necho hi\n").unwrap();
            let facts = sys::file_facts(std::fs::File::open(&file).unwrap().as_fd()).unwrap();
            assert!(facts.mnt_id.is_some(), "the kernel reports STATX_MNT_ID");
            Scene { _dir: tmp, dir, file, facts }
        }

        /// A Guard for `policy` (`{dir}` replaced by the scene's directory) whose mount table holds one
        /// mount: the scene file's filesystem at `/`, as mount `mount_id`. The filesystem is path-decided.
        fn guard(scene: &Scene, policy: &str, mount_id: u64) -> Guard {
            let policy = policy.replace("{dir}", scene.dir.to_str().unwrap());
            let config = crate::policy::load_str(Path::new("t.toml"), &policy).unwrap();
            let dev = scene.facts.dev;
            let line = format!("{mount_id} 0 {}:{} / / rw - ext4 /dev/test rw\n", libc::major(dev), libc::minor(dev));
            let guard = Guard::build(config, MountTable::parse(line.as_bytes())).unwrap();
            assert_eq!(guard.target_for(dev).map(|t| &t.decides), Some(&Decides::Path));
            guard
        }

        fn known_mount(scene: &Scene) -> u64 {
            scene.facts.mnt_id.unwrap()
        }

        /// A Decider whose alert queue is returned, reading /proc through `counting_process_info`.
        fn decider() -> (Decider, mpsc::Receiver<ExecAlert>, Arc<Counters>) {
            let (tx, rx) = mpsc::channel(16);
            let counters = Arc::new(Counters::default());
            let mut d = Decider::new(tx, counters.clone());
            d.process_info = counting_process_info;
            (d, rx, counters)
        }

        /// The test process plays the caller of exec: the Decider takes itself for pid 0, which no event has.
        fn as_another_process(d: &mut Decider) {
            d.own_pid = 0;
        }

        fn me() -> i32 {
            i32::try_from(std::process::id()).unwrap()
        }

        /// An exec event on `file` by `pid`, with a fresh fd of its own.
        fn exec_event(file: &Path, pid: i32) -> (Event, RawFd) {
            let fd = OwnedFd::from(std::fs::File::open(file).unwrap());
            let raw = fd.as_raw_fd();
            (Event { fd: Some(fd), pid, mask: Mask::FAN_OPEN_EXEC_PERM }, raw)
        }

        #[test]
        fn the_answer_comes_before_the_alert_is_queued() {
            let s = scene();
            let guard = guard(&s, BLOCK_DIR, known_mount(&s));
            let (mut d, mut rx, counters) = decider();
            as_another_process(&mut d);
            let rec = Recording::new(&rx);
            let (event, fd) = exec_event(&s.file, me());
            d.handle(&rec, &guard, event);
            // Answered once, on the event's fd, denied with an audit record; the caller's facts were read
            // before the answer and no alert was queued yet.
            let want = Answered { fd, answer: Response::DenyAudited, alerts_queued: 0, process_reads: 1 };
            assert_eq!(rec.answers(), vec![want]);
            drop(rec);
            let alert = rx.try_recv().expect("the alert is queued after the answer");
            assert_eq!(alert.outcome, Outcome::Block);
            assert_eq!(alert.rule.policy, "test-dir");
            assert_eq!(alert.resource, s.file.as_os_str().as_bytes());
            assert_eq!(alert.pid, me());
            assert_eq!(alert.hook, "FAN_OPEN_EXEC_PERM");
            let exe = std::fs::read_link("/proc/self/exe").unwrap();
            assert_eq!(alert.process.exe, exe.as_os_str().as_bytes(), "the facts read before the answer");
            assert!(rx.try_recv().is_err(), "one alert");
            assert_eq!(counters.blocked.load(Ordering::Relaxed), 1);
        }

        /// Denies the exec of `scene.dir/sub/x` three times as pid `me()`: before `sub` is renamed to `moved`,
        /// after (which leaves the file's ctime as it was), and after `change` ran on the moved file (or a new
        /// guard came, with `new_guard`). Returns the alerts' resources, all blocked.
        fn denied_thrice(policy: &str, change: impl Fn(&Path), new_guard: bool) -> Vec<Vec<u8>> {
            let s = scene();
            std::fs::create_dir(s.dir.join("sub")).unwrap();
            let file = s.dir.join("sub/x");
            std::fs::write(&file, b"#!/bin/sh\n").unwrap();
            let first = guard(&s, policy, known_mount(&s));
            let second = guard(&s, policy, known_mount(&s));
            let (mut d, mut rx, counters) = decider();
            as_another_process(&mut d);
            let rec = Recording::new(&rx);
            d.handle(&rec, &first, exec_event(&file, me()).0);
            std::fs::rename(s.dir.join("sub"), s.dir.join("moved")).unwrap();
            let moved = s.dir.join("moved/x");
            d.handle(&rec, &first, exec_event(&moved, me()).0);
            change(&moved);
            d.handle(&rec, if new_guard { &second } else { &first }, exec_event(&moved, me()).0);
            let answers: Vec<Response> = rec.answers().iter().map(|a| a.answer).collect();
            assert_eq!(answers, vec![Response::DenyAudited; 3]);
            assert_eq!(counters.blocked.load(Ordering::Relaxed), 3);
            drop(rec);
            let resources: Vec<Vec<u8>> = std::iter::from_fn(|| rx.try_recv().ok()).map(|a| a.resource).collect();
            assert_eq!(resources.len(), 3, "every attempt alerted");
            resources
        }

        fn name(s: &Path, rest: &str) -> Vec<u8> {
            s.parent().unwrap().parent().unwrap().join(rest).as_os_str().as_bytes().to_vec()
        }

        #[test]
        fn a_denial_repeated_at_once_is_named_from_memory_until_the_file_changes() {
            let chmod = |f: &Path| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o700)).unwrap();
            };
            let got = denied_thrice(BLOCK_DIR, chmod, false);
            let dir = |r: &str| name(&PathBuf::from(std::str::from_utf8(&got[0]).unwrap()), r);
            // The rename of a parent does not show in the file's ctime: the second denial is the first one
            // remembered, named as it was (see `denials`); the chmod moved the ctime, so the third is named anew.
            assert_eq!(got, vec![dir("sub/x"), dir("sub/x"), dir("moved/x")]);
        }

        #[test]
        fn a_new_guard_forgets_the_denials_made_under_the_last() {
            let got = denied_thrice(BLOCK_DIR, |_| {}, true);
            let dir = |r: &str| name(&PathBuf::from(std::str::from_utf8(&got[0]).unwrap()), r);
            assert_eq!(got, vec![dir("sub/x"), dir("sub/x"), dir("moved/x")]);
        }

        #[test]
        fn a_denial_that_read_the_callers_executable_is_never_remembered() {
            let exe = std::fs::read_link("/proc/self/exe").unwrap();
            let policy = format!(
                "[[policy]]\nname = \"by-source\"\n[[policy.process.match_directories]]\ndir = \"{{dir}}/\"\nrecursive = true\nfrom_source = [\"{}\"]\n",
                exe.display()
            );
            let got = denied_thrice(&policy, |_| {}, false);
            let dir = |r: &str| name(&PathBuf::from(std::str::from_utf8(&got[0]).unwrap()), r);
            assert_eq!(got, vec![dir("sub/x"), dir("moved/x"), dir("moved/x")]);
        }

        #[test]
        fn past_the_alert_limit_a_denial_reads_no_proc_and_queues_nothing() {
            let s = scene();
            let policy = format!("[daemon]\nmax_alerts_per_sec = 1\n{BLOCK_DIR}");
            let guard = guard(&s, &policy, known_mount(&s));
            let (mut d, rx, counters) = decider();
            as_another_process(&mut d);
            let rec = Recording::new(&rx);
            // The first alert of the second is written; the first past the limit is still sent complete (the
            // writer writes the threshold notice for it); from the next one on the gate drops them.
            for _ in 0..2 {
                d.handle(&rec, &guard, exec_event(&s.file, me()).0);
            }
            assert_eq!((process_reads(), rx.len()), (2, 2), "both admitted alerts read /proc and are queued");
            let (event, fd) = exec_event(&s.file, me());
            d.handle(&rec, &guard, event);
            let last = rec.answers().last().copied();
            let want = Answered { fd, answer: Response::DenyAudited, alerts_queued: 2, process_reads: 2 };
            assert_eq!(last, Some(want), "throttled: denied all the same, with no /proc read before the answer");
            assert_eq!(process_reads(), 2, "nor after it");
            assert_eq!(rx.len(), 2, "no alert queued");
            assert_eq!(counters.alerts_dropped_throttle.load(Ordering::Relaxed), 1);
            assert_eq!(counters.blocked.load(Ordering::Relaxed), 3);
        }

        #[test]
        fn the_daemons_own_execs_are_allowed_without_alert() {
            let s = scene();
            let guard = guard(&s, BLOCK_DIR, known_mount(&s));
            let (mut d, rx, counters) = decider();
            let rec = Recording::new(&rx);
            let (event, fd) = exec_event(&s.file, me());
            d.handle(&rec, &guard, event);
            let want = Answered { fd, answer: Response::Allow, alerts_queued: 0, process_reads: 0 };
            assert_eq!(rec.answers(), vec![want]);
            assert!(rx.is_empty(), "no alert");
            assert_eq!(counters.blocked.load(Ordering::Relaxed), 0);
            // The same exec by any other process is blocked: the pid alone let it through.
            as_another_process(&mut d);
            d.handle(&rec, &guard, exec_event(&s.file, me()).0);
            assert_eq!(rec.answers().last().map(|a| a.answer), Some(Response::DenyAudited));
        }

        #[test]
        fn an_unresolvable_path_on_a_guarded_filesystem_is_denied() {
            let s = scene();
            // The rule protects another directory of the same filesystem: by its name the file would be
            // allowed. But the file was opened through a mount the table does not know (as if through
            // another mount namespace), and the caller is gone (no such pid), so no name can be found.
            let policy = BLOCK_DIR.replace("{dir}", "/noexecd-test-protected");
            let gone = i32::MAX;
            let unknown_mount = known_mount(&s).wrapping_add(1_000_000);
            let guard = guard(&s, &policy, unknown_mount);
            let (mut d, mut rx, counters) = decider();
            let rec = Recording::new(&rx);
            let (event, fd) = exec_event(&s.file, gone);
            d.handle(&rec, &guard, event);
            let want = Answered { fd, answer: Response::DenyAudited, alerts_queued: 0, process_reads: 1 };
            assert_eq!(rec.answers(), vec![want]);
            drop(rec);
            let alert = rx.try_recv().expect("an alert");
            assert_eq!(alert.rule.policy, "noexecd-unresolvable-path");
            assert_eq!(alert.outcome, Outcome::Block);
            assert_eq!(alert.process, ProcessInfo { uid: -1, ..ProcessInfo::default() }, "a gone pid reads nothing");
            assert_eq!(counters.unresolved.load(Ordering::Relaxed), 1);
            // Through the mount the table knows, the same file resolves and is allowed.
            let known = self::guard(&s, &policy, known_mount(&s));
            let rec = Recording::new(&rx);
            d.handle(&rec, &known, exec_event(&s.file, gone).0);
            assert_eq!(rec.answers().iter().map(|a| a.answer).collect::<Vec<_>>(), vec![Response::Allow]);
            assert!(rx.is_empty());
        }

        #[test]
        fn a_mount_id_reused_since_the_table_was_read_does_not_name_the_file() {
            let s = scene();
            // The table is a moment old: the file's mount id is still listed as the mount that had it before (the
            // last container's overlay, another filesystem), and the file's own filesystem under another id.
            let policy = BLOCK_DIR.replace("{dir}", "/noexecd-test-protected");
            let config = crate::policy::load_str(Path::new("t.toml"), &policy).unwrap();
            let dev = s.facts.dev;
            let table = format!(
                "{id} 0 0:999 / /var/lib/containers/storage/overlay/abc/merged rw - overlay overlay rw\n\
                 {other} 0 {}:{} / / rw - ext4 /dev/test rw\n",
                libc::major(dev),
                libc::minor(dev),
                id = known_mount(&s),
                other = known_mount(&s).wrapping_add(1_000_000),
            );
            let guard = Guard::build(config, MountTable::parse(table.as_bytes())).unwrap();
            let (mut d, rx, counters) = decider();
            as_another_process(&mut d);
            let rec = Recording::new(&rx);
            d.handle(&rec, &guard, exec_event(&s.file, me()).0);
            // Named through the mount the file really is on (this process's mountinfo): allowed, not refused as
            // a file that cannot be named.
            assert_eq!(rec.answers().iter().map(|a| a.answer).collect::<Vec<_>>(), vec![Response::Allow]);
            assert_eq!(counters.unresolved.load(Ordering::Relaxed), 0);
            assert!(rx.is_empty());
        }

        /// A container policy for `app=wordpress` blocking execs below `/tmp/`; `{extra}` adds rules.
        const SELECTING: &str = r#"
[[policy]]
name = "host"
[[policy.process.match_directories]]
dir = "{dir}/"
recursive = true

[[policy]]
name = "ctr"
[policy.selector]
match_labels = { app = "wordpress" }
[[policy.process.match_directories]]
dir = "/tmp/"
recursive = true
{extra}
"#;

        #[test]
        fn an_unknown_containers_identity_matters_only_where_a_container_rule_reaches() {
            let s = scene();
            let g = guard(&s, &SELECTING.replace("{extra}", ""), known_mount(&s));
            let (mut d, _rx, _) = decider();
            let allowed = Verdict { outcome: Outcome::Allow, rule: None, resolved: Resolved::Yes };
            d.layer_name = b"/bin/true".to_vec();
            assert!(!d.identity_may_matter(&g, &allowed), "no container rule reaches /bin/true: no lookup");
            d.layer_name = b"/tmp/x".to_vec();
            assert!(d.identity_may_matter(&g, &allowed), "the policy's rule reaches /tmp/x: its selection decides");
            d.layer_name = b"/tmpx/y".to_vec();
            assert!(!d.identity_may_matter(&g, &allowed), "a directory rule reaches whole components only");
            d.layer_name = b"/bin/true".to_vec();
            let alerted = Verdict { outcome: Outcome::Block, rule: Some(unresolved_rule()), resolved: Resolved::Yes };
            assert!(d.identity_may_matter(&g, &alerted), "a host alert carries the container's fields");
            d.host_unnamed = true;
            assert!(d.identity_may_matter(&g, &allowed), "a private mount of an unknown container is refused");
            d.host_unnamed = false;
            // An Allow rule in a container policy is a default posture: it reaches every path.
            let posture = "[[policy]]\nname = \"ok\"\naction = \"Allow\"\n[policy.selector]\n\
                           match_labels = { app = \"other\" }\n[[policy.process.match_paths]]\npath = \"/bin/ok\"\n";
            let g = guard(&s, &SELECTING.replace("{extra}", posture), known_mount(&s));
            assert!(d.identity_may_matter(&g, &allowed), "an Allow rule decides /bin/true too");
        }
    }

    mod no_panic_on_input {
        use crate::alert::schema::display_bytes;
        use crate::host::mounts::{Mount, MountTable};
        use crate::policy::matcher::{KnownSubject, Scope};
        use proptest::prelude::*;

        const POLICY: &str = r#"
[[policy]]
name = "p"
[[policy.process.match_directories]]
dir = "/tmp/"
recursive = true
[[policy.process.match_patterns]]
pattern = "/var/**/x*"
[[policy.process.match_paths]]
path = "/opt/t"
owner_only = true
from_source = ["/usr/bin/bash"]
"#;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Everything the decision path does with bytes from the kernel or /proc, fed arbitrary bytes.
            #[test]
            fn decision_path_pieces_take_any_bytes(path in proptest::collection::vec(any::<u8>(), 0..600),
                                                    table in proptest::collection::vec(any::<u8>(), 0..600),
                                                    exe in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
                                                    uid in proptest::option::of(any::<u32>()),
                                                    owner in any::<u32>()) {
                let config = crate::policy::load_str(std::path::Path::new("p.toml"), POLICY).unwrap();
                let mut subject = KnownSubject { exe, uid };
                let _ = config.matcher.decide(Scope::Path(&path), owner, &mut subject);
                let _ = config.matcher.decide(Scope::Below(&path), owner, &mut subject);
                let _ = config.matcher.path_independent_below(&path);
                let parsed = MountTable::parse(&table);
                let _ = parsed.containing(&path);
                let via = Mount { id: 1, dev: 1, root: table.clone(), mount_point: path.clone(), fstype: String::new() };
                let (mut scratch, mut out) = (Vec::new(), Vec::new());
                let _ = parsed.canonical_path(&via, &path, &mut scratch, &mut out);
                let _ = MountTable::parse(b"1 0 8:1 / / rw - ext4 x rw\n").canonical_path(&via, &table, &mut scratch, &mut out);
                let _ = crate::sys::parse_header_for_tests(&path);
                let _ = crate::host::procfs::parse_status_for_tests(&path);
                let shown = display_bytes(&path);
                prop_assert!(shown.len() >= path.len());
            }
        }
    }
}
