//! The daemon's control loop, on the tokio runtime: signals (reload, stop, hand-over), the mount watcher, the
//! runtimes' containers, the status file, systemd's notifications and watchdog, and the hand-over to `noexecd
//! hold` or systemd. It owns the marks; the decision thread only reads the guard it swaps in.

use super::handover;
use super::keeper::Keeper;
use super::liveness::{self, StatusFile};
use super::notify;
use super::options::{Files, RunOptions};
use super::version;
use super::watch::{self, Fingerprint};

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::alert::Origin;
use crate::alert::sink::Control;
use crate::containers;
use crate::error::{Error, Result};
use crate::guard::Guard;
use crate::guard::ctr_marks::ContainerMarks;
use crate::guard::dirtrack::OpenRoot;
use crate::guard::exec_cache::{Candidate, ExecCache};
use crate::guard::marks::{MarkFailure, Marks};
use crate::guard::scopes::Scopes;
use crate::host::mounts::MountTable;
use crate::stats::{self, Counters};

/// How often the mount table is compared with the last one seen: a new protected mount is marked within this.
pub(super) const MOUNT_POLL: Duration = Duration::from_millis(250);
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// How often the runtimes are asked which containers run: a container started since is selected within this
/// (its first exec is decided anyway: the decision path asks the runtimes about a container it does not know).
const CONTAINER_POLL: Duration = Duration::from_millis(500);

/// The control loop's state: everything reloads and mount changes touch.
pub(super) struct Controller {
    pub(super) config_path: PathBuf,
    pub(super) options: RunOptions,
    pub(super) files: Files,
    pub(super) shared: Arc<ArcSwap<Guard>>,
    /// The running containers and the container policies that select each.
    pub(super) scopes: Arc<ArcSwap<Scopes>>,
    pub(super) marks: Marks,
    /// The marks on selected containers' own mounts.
    pub(super) container_marks: ContainerMarks,
    /// Marks the decision thread found refused, to be logged here.
    pub(super) failed_marks: mpsc::Receiver<MarkFailure>,
    pub(super) mountinfo: Vec<u8>,
    pub(super) control: mpsc::UnboundedSender<Control>,
    pub(super) decision_alive: Arc<AtomicBool>,
    pub(super) cache: Option<ExecCache>,
    pub(super) cache_rx: Option<mpsc::Receiver<Candidate>>,
    /// Who keeps the group while we are down, and whether it holds it now.
    pub(super) keeper: Keeper,
    pub(super) held: bool,
    pub(super) fail_closed: bool,
    /// The control loop's own fields of the status file (the counters are read at each rewrite).
    pub(super) status: StatusFile,
    /// The new binary's check of the configuration, while a hand-over waits for it.
    pub(super) handover: Option<tokio::task::JoinHandle<std::result::Result<(), String>>>,
}

/// Why the control loop ended without an error.
pub(super) enum Ending {
    /// SIGTERM or SIGINT.
    Stop,
    /// A hand-over to the binary now at our start path: the group stays marked and stored.
    HandOver,
}

impl Controller {
    pub(super) async fn serve(&mut self, counters: &Counters, watchdog: Option<Duration>) -> Result<Ending> {
        let signal_err = |source| Error::Runtime { what: "signal handlers", source };
        let mut hup = signal(SignalKind::hangup()).map_err(signal_err)?;
        let mut term = signal(SignalKind::terminate()).map_err(signal_err)?;
        let mut int = signal(SignalKind::interrupt()).map_err(signal_err)?;
        let mut handover_signal = signal(SignalKind::from_raw(handover::SIGNAL as i32)).map_err(signal_err)?;
        let mut mount_tick = tokio::time::interval(MOUNT_POLL);
        self.container_marks.sync(&self.marks, &self.shared.load(), &self.scopes.load());
        let roots = open_roots(&self.shared.load(), &self.scopes.load());
        let marked = self.marks.sync_open_dirs(&roots);
        if !roots.is_empty() {
            tracing::info!(roots = ?roots, directories = marked, event_driven = self.marks.open_dirs_event_driven(), "open guard: marked protected directories");
        }
        let mut status_tick = tokio::time::interval(STATUS_EVERY);
        let mut container_tick = tokio::time::interval(CONTAINER_POLL);
        // A look that took longer than the period is followed by one period's pause, not a burst of looks.
        container_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The look at the runtimes under way: the loop goes on meanwhile (status file, signals, mounts), however
        // long a runtime takes to answer.
        let mut refreshing: Option<tokio::task::JoinHandle<()>> = None;
        if self.shared.load().config.reads_containers() {
            let sources = &self.shared.load().config.containers.sources;
            for socket in containers::events::containerd_sockets(sources) {
                tokio::spawn(containers::events::follow_containerd(socket));
            }
            for socket in containers::events::podman_sockets(sources) {
                tokio::spawn(containers::events::follow_podman(socket));
            }
        }
        // The first check comes one period from now: an immediate tick would find the heartbeat unmoved.
        let watchdog_period = watchdog.map_or(Duration::from_secs(3600), |w| w / 2);
        let mut watchdog_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + watchdog_period, watchdog_period);
        let mut last_heartbeat = counters.heartbeat.load(Ordering::Relaxed);
        let mut live_tick = tokio::time::interval(liveness::period());
        let mut live_heartbeat = None;
        let mut watch_tick = tokio::time::interval(watch::WATCH_EVERY);
        let mut watched = self.fingerprint();

        let filesystems = self.shared.load().targets.len();
        notify::ready(&self.status_text(filesystems, &counters.snapshot()));
        tracing::info!(config = %self.config_path.display(), filesystems, version = %version::version(), "noexecd is guarding");
        loop {
            tokio::select! {
                _ = hup.recv() => self.reload(),
                Some(candidate) = next_candidate(&mut self.cache_rx) => {
                    if let Some(cache) = self.cache.as_mut()
                        && let Err(why) = cache.consider(candidate, &self.shared.load(), &mut self.marks)
                    {
                        tracing::trace!(?why, "allowed exec not cached");
                    }
                }
                Some(failure) = self.failed_marks.recv() => failure.log(),
                _ = term.recv() => { tracing::info!("SIGTERM: stopping"); return Ok(Ending::Stop); }
                _ = int.recv() => { tracing::info!("SIGINT: stopping"); return Ok(Ending::Stop); }
                _ = handover_signal.recv() => self.begin_handover(),
                Some(checked) = next_check(&mut self.handover) => {
                    self.handover = None;
                    let checked = checked.unwrap_or_else(|e| Err(format!("the check could not be waited for: {e}")));
                    if self.finish_handover(checked) {
                        return Ok(Ending::HandOver);
                    }
                }
                _ = mount_tick.tick() => {
                    if !self.decision_alive.load(Ordering::Acquire) {
                        // Nothing answers the kernel any more: exit, so that it answers for us (or, with the
                        // group in systemd's FD store, the restarted daemon does).
                        return Err(Error::DecisionThreadDied);
                    }
                    self.check_mounts();
                    let renewed = self.marks.renew_exemptions();
                    if !renewed.is_empty() {
                        tracing::info!(files = ?renewed, "a file of the daemon's own restart was replaced (an upgrade): exempted the new one");
                    }
                    self.status.mount_checks += 1;
                }
                // A runtime's event says a container starts: read them at once, not at the next tick.
                () = containers::events::STARTED.notified() => container_tick.reset_immediately(),
                _ = container_tick.tick(), if refreshing.is_none() => {
                    let guard = self.shared.load_full();
                    let scopes = self.scopes.clone();
                    // The runtimes answer over sockets and files: off this thread, bounded by their timeouts.
                    refreshing = Some(tokio::task::spawn_blocking(move || refresh_scopes(&guard, &scopes)));
                }
                Some(looked) = next_refresh(&mut refreshing) => {
                    refreshing = None;
                    if let Err(e) = looked {
                        tracing::error!(error = %e, "the look at the runtimes ended abnormally; the containers known before are kept");
                    }
                    self.container_marks.sync(&self.marks, &self.shared.load(), &self.scopes.load());
                    // A container started or gone changes the open guard's roots (its protected directories):
                    // walked again only then; the directory tracker keeps up with the rest.
                    let roots = open_roots(&self.shared.load(), &self.scopes.load());
                    self.marks.sync_open_dirs(&roots);
                    self.status.scope_refreshes += 1;
                }
                _ = live_tick.tick(), if self.options.status_file.is_some() => {
                    let beat = counters.heartbeat.load(Ordering::Relaxed);
                    if stats::decision_alive(live_heartbeat, beat) {
                        self.write_status(&counters.snapshot());
                    }
                    live_heartbeat = Some(beat);
                }
                _ = watch_tick.tick(), if self.options.watch_config => {
                    let now = self.fingerprint();
                    if now != watched {
                        watched = now;
                        tracing::info!(config = %self.config_path.display(), "configuration files changed: reloading");
                        self.reload();
                    }
                }
                _ = status_tick.tick() => {
                    notify::status(&self.status_text(self.shared.load().targets.len(), &counters.snapshot()));
                    self.keep_group();
                }
                _ = watchdog_tick.tick(), if watchdog.is_some() => {
                    let beat = counters.heartbeat.load(Ordering::Relaxed);
                    if stats::decision_alive(Some(last_heartbeat), beat) {
                        notify::watchdog();
                    } else {
                        tracing::error!("the decision thread has not woken up for a whole watchdog interval; withholding WATCHDOG=1");
                    }
                    last_heartbeat = beat;
                }
            }
        }
    }

    /// Hands the group to `noexecd hold` again: a holder that was not listening yet at our start, or that
    /// restarted since and holds nothing, gets it within one status period.
    fn keep_group(&mut self) {
        if !self.fail_closed || !matches!(self.keeper, Keeper::Holder { .. }) {
            return;
        }
        let held = self.keeper.store(self.marks.group(), true);
        if held != self.held {
            log_holder(&self.keeper, held, true);
        }
        self.held = held;
    }

    /// What the configuration and its policy directory lead to now (for `--watch-config`).
    fn fingerprint(&self) -> Option<Fingerprint> {
        if !self.options.watch_config {
            return None;
        }
        let dir = self.files.own(&self.shared.load().config.daemon.policy_dir);
        Some(Fingerprint::take(&self.files.own(&self.config_path), &dir))
    }

    /// The status line, with the version and the policy files that did not load.
    fn status_text(&self, filesystems: usize, counters: &stats::Snapshot) -> String {
        let config = &self.shared.load().config;
        let file_rules = match config.file_rules_not_enforced() {
            0 => String::new(),
            n => format!("; {n} FILE RULES NOT ENFORCED by this build"),
        };
        format!("noexecd {}: ", version::version())
            + &notify::status_line(filesystems, counters)
            + &file_rules
            + &notify::refused_files(&config.refused)
    }

    /// SIGUSR1: checks the binary at our start path against the configuration, off this thread.
    fn begin_handover(&mut self) {
        if self.handover.is_some() {
            tracing::info!("hand-over asked again while the new binary's check runs");
            return;
        }
        if !matches!(self.keeper, Keeper::Systemd) {
            let reason = format!(
                "a hand-over needs systemd's FD store to carry the group (the group's keeper here: {})",
                self.keeper.name()
            );
            self.refuse_handover(&reason);
            return;
        }
        let Some(binary) = handover::start_path() else {
            self.refuse_handover("cannot read /proc/self/exe to find the binary to hand over to");
            return;
        };
        let config = self.files.own(&self.config_path);
        tracing::info!(binary = %binary.display(), config = %config.display(), "hand-over asked: checking the configuration with the new binary");
        self.handover =
            Some(tokio::task::spawn_blocking(move || handover::check_binary(&binary, &config, handover::CHECK_WITHIN)));
    }

    /// The new binary's check came back: true when the daemon is to exit for it.
    fn finish_handover(&mut self, checked: std::result::Result<(), String>) -> bool {
        if let Err(reason) = checked {
            self.refuse_handover(&reason);
            return false;
        }
        // The new binary (and its interpreter) are new inodes: exempt them before the group waits for them.
        let chain = self.keeper.restart_chain();
        tracing::info!(files = ?chain, "handing over: exempted the files the new binary's start exec-opens");
        self.marks.exempt(chain);
        true
    }

    fn refuse_handover(&mut self, reason: &str) {
        tracing::error!(reason, "hand-over refused: this daemon keeps guarding with its policy");
        let _ = self.control.send(Control::SystemEvent {
            operation: "HandOverRefused",
            message: format!("The running noexecd {} keeps guarding with its policy: {reason}", version::version()),
        });
        handover::report_refusal(reason);
    }

    fn write_status(&mut self, counters: &stats::Snapshot) {
        let Some(path) = &self.options.status_file else { return };
        let guard = self.shared.load();
        let line = self.status_text(guard.targets.len(), counters);
        self.status.updates += 1;
        self.status.policy_generation = guard.generation;
        let fields = self.status.with_counters(counters);
        if let Err(e) = liveness::write_status(&self.files.own(path), &line, &fields) {
            tracing::warn!(error = %e, "cannot write the status file; a liveness probe reading it will fail");
        }
    }

    /// SIGHUP: load the policy again and swap it in whole, or keep the old one. Reopen the alert log either way.
    fn reload(&mut self) {
        notify::reloading();
        let current = self.shared.load_full();
        let next = self
            .files
            .load(&self.config_path, &self.options, Some(&current.config))
            .and_then(|config| Guard::build(config, current.mounts.clone()));
        match next.and_then(|guard| self.install(guard, Change::Policy)) {
            Ok(()) => {
                refresh_scopes(&self.shared.load(), &self.scopes);
                self.container_marks.sync(&self.marks, &self.shared.load(), &self.scopes.load());
                let refused = self.shared.load().config.refused.len();
                tracing::info!(config = %self.config_path.display(), refused_files = refused, "policy reloaded")
            }
            Err(e) => {
                tracing::error!(error = %e, "reload rejected; the previous policy stays in force")
            }
        }
        let config = &self.shared.load().config;
        let _ = self.control.send(Control::Reopen {
            path: config.daemon.alert_log.clone(),
            origin: Origin::for_config(config),
            max_per_sec: config.daemon.max_alerts_per_sec,
        });
        notify::ready(&format!("noexecd {}: policy loaded from {}", version::version(), self.config_path.display()));
        self.status.reloads += 1;
    }

    /// A mount appeared or went away: recompute what to mark.
    fn check_mounts(&mut self) {
        let Ok((raw, mounts)) = MountTable::read_self() else {
            return;
        };
        if raw == self.mountinfo {
            // A container ends without a change here when its mounts were only its own (a `--tmpfs /tmp`):
            // the roots remembered from its first exec still hold its directories until a walk lets them go.
            self.marks.forget_due_first_exec_roots();
            return;
        }
        self.mountinfo = raw;
        let config = self.shared.load().config.clone();
        match Guard::build(config, mounts).and_then(|guard| self.install(guard, Change::Mounts)) {
            Ok(()) => tracing::debug!("mount table changed; marks updated"),
            Err(e) => {
                tracing::error!(error = %e, "mount table changed but the marks could not follow")
            }
        }
    }

    /// Marks first, then the swap, then unmarking: at no moment is a protected filesystem unmarked.
    fn install(&mut self, guard: Guard, change: Change) -> Result<()> {
        self.marks.add_filesystems(&guard)?;
        let guard = Arc::new(guard);
        self.shared.store(guard.clone());
        self.marks.set_open_roots(open_roots(&guard, &self.scopes.load()));
        self.marks.set_max_directories(guard.config.open_guard.max_directories);
        match (change, self.cache.as_mut()) {
            // Every inode mark was placed under the old policy: the exec cache's ignore marks and the open
            // guard's directory marks. One flush drops them all and puts back what stays (the exemptions of
            // our own restart), then the new directories are marked.
            (Change::Policy, Some(cache)) => cache.flush(&mut self.marks),
            (Change::Policy, None) => self.marks.flush_inode_marks(),
            // A mount change (every container start makes one): the directory marks follow by a resync, never
            // all dropped at once, as a flush would leave every protected directory unmarked for a moment; the
            // exec cache's ignore marks stay (`exec_cache`, rule 5).
            (Change::Mounts, cache) => {
                if let Some(cache) = cache {
                    cache.drop_candidates();
                }
                self.marks.follow_open_roots();
            }
        }
        self.marks.remove_stale_filesystems(&guard.targets);
        Ok(())
    }
}

/// What a new guard is installed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// A reload: another policy.
    Policy,
    /// The mount table changed; the policy is the same.
    Mounts,
}

/// Says whether `noexecd hold` keeps the group (systemd's store logs for itself).
pub(super) fn log_holder(keeper: &Keeper, held: bool, changed: bool) {
    let Keeper::Holder { holder, .. } = keeper else { return };
    let socket = holder.path().display();
    if held {
        tracing::info!(%socket, "fanotify group held by noexecd hold: exec attempts wait across a restart of this container (fail_mode = \"closed\")");
    } else if changed {
        tracing::warn!(%socket, "noexecd hold no longer keeps the fanotify group; a crash would let execs through until it does again");
    } else {
        tracing::warn!(%socket, "noexecd hold did not keep the fanotify group within 30 s of the start: guarding without it (asked again every 5 s); a crash would let execs through");
    }
}

/// Reads the running containers from every runtime and works out which container policies select each; logs
/// each container that comes or goes. Nothing to do without container policies.
pub(super) fn refresh_scopes(guard: &Guard, scopes: &ArcSwap<Scopes>) {
    let config = &guard.config;
    if !config.reads_containers() {
        if scopes.load().len() > 0 {
            scopes.store(Arc::new(Scopes::default()));
        }
        return;
    }
    let next = Scopes::build(config, containers::discover(&config.containers.sources), &guard.mounts);
    let before = scopes.load();
    for s in next.all() {
        if before.get(&s.container.info.id).is_none() {
            let c = &s.container;
            let mounts: Vec<String> = s.mounts.iter().map(|m| m.describe()).collect();
            tracing::info!(id = %c.info.id, name = c.info.name.as_deref().unwrap_or(""), image = c.info.image.as_deref().unwrap_or(""), labels = %c.display_labels(), policies = %s.policies.join(","), mounts = %mounts.join(","), "container");
        }
    }
    for s in before.all() {
        if next.get(&s.container.info.id).is_none() {
            tracing::info!(id = %s.container.info.id, "container gone");
        }
    }
    scopes.store(Arc::new(next));
}

/// The open guard's directories: the host's protected ones, those of each selected container, and those of the
/// host's and each container's file rules.
fn open_roots(guard: &Guard, scopes: &Scopes) -> Vec<OpenRoot> {
    let mut roots: Vec<OpenRoot> = guard.open_inode_roots().into_iter().map(OpenRoot::from).collect();
    if guard.config.open_guard.enabled {
        roots.extend(scopes.all().iter().flat_map(|s| s.open_roots()));
    }
    // The directories of the file rules: every open of a file below them is decided.
    let files = guard.config.file_enforced.directories().into_iter().map(OpenRoot::from);
    for root in files.chain(scopes.all().iter().flat_map(|s| s.file_roots())) {
        // A directory both protected and a file rule's keeps its protected directory's marks.
        if !roots.iter().any(|r| r.path == root.path) {
            roots.push(root);
        }
    }
    roots
}

/// The end of the look at the runtimes under way; pending forever when none is.
async fn next_refresh(
    task: &mut Option<tokio::task::JoinHandle<()>>,
) -> Option<std::result::Result<(), tokio::task::JoinError>> {
    match task {
        Some(task) => Some(task.await),
        None => std::future::pending().await,
    }
}

/// The outcome of a hand-over's check; pending forever when none runs.
async fn next_check(
    check: &mut Option<tokio::task::JoinHandle<std::result::Result<(), String>>>,
) -> Option<std::result::Result<std::result::Result<(), String>, tokio::task::JoinError>> {
    match check {
        Some(task) => Some(task.await),
        None => std::future::pending().await,
    }
}

/// The next exec-cache candidate; pending forever when the cache is off.
async fn next_candidate(rx: &mut Option<mpsc::Receiver<Candidate>>) -> Option<Candidate> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
