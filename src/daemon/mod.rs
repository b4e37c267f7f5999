//! `noexecd run`: wires the pieces together. The decision thread answers the kernel; a single-threaded
//! tokio runtime does everything that may wait: alert writing, signals, policy reloads, the mount watcher,
//! systemd notifications; the open guard's directory tracker has a thread of its own.
#![forbid(unsafe_code)]

pub(crate) mod fdstore;
pub mod hold;
mod keeper;
pub(crate) mod liveness;
pub(crate) mod notify;
mod options;
mod supervisor;
mod watch;

pub use fdstore::FD_NAME;
pub use liveness::LIVE_EVERY;
use liveness::StatusFile;
pub use options::RunOptions;

use keeper::Keeper;
use options::Files;
use watch::Fingerprint;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::alert::Origin;
use crate::alert::grpc::GrpcListener;
use crate::alert::sink::{self, AlertSink, Control};
use crate::alert::stream::{AlertSocket, Subscribers};
use crate::containers;
use crate::decide::{self, Decider};
use crate::error::{Error, Result};
use crate::guard::Guard;
use crate::guard::ctr_marks::{ContainerMarks, FirstExecMarks};
use crate::guard::dirtrack::{DirTracker, OpenRoot};
use crate::guard::exec_cache::{Candidate, ExecCache};
use crate::guard::marks::{MarkFailure, MarkFailures, Marks};
use crate::guard::scopes::Scopes;
use crate::host::mounts::MountTable;
use crate::host::restart_chain::OwnMappings;
use crate::policy::FailMode;
use crate::stats::{self, Counters};
use crate::sys::{self, FanotifyGroup};

/// How many alerts may wait for the writer before new ones are dropped (and counted).
const ALERT_QUEUE: usize = 8192;
/// How often the mount table is compared with the last one seen: a new protected mount is marked within this.
const MOUNT_POLL: Duration = Duration::from_millis(250);
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// How often the runtimes are asked which containers run: a container started since is selected within this
/// (its first exec is decided anyway: the decision path asks the runtimes about a container it does not know).
const CONTAINER_POLL: Duration = Duration::from_millis(500);
/// Marks the decision thread found refused and the tokio side has not logged yet; past it, one is counted
/// without its log line.
const MARK_FAILURE_QUEUE: usize = 64;
/// How long a first start waits for `noexecd hold` to keep the group before placing its first mark.
const HOLDER_WAIT: Duration = Duration::from_secs(30);
/// Fd numbers a crashed daemon may have left events under: a 64 KiB read holds at most 2730 events.
const STALE_FD_SWEEP: i32 = 16_384;

/// Runs the guard until SIGTERM or SIGINT. With `host_namespace`, the calling process supervises a forked
/// daemon and returns its exit status as [`Error::DaemonExited`] when it is not 0.
pub fn run(config_path: &Path, options: &RunOptions) -> Result<()> {
    // Before any thread starts: a process whose threads share filesystem attributes cannot change its mount
    // namespace (nor fork safely).
    if options.host_namespace
        && let Some(code) = supervisor::split(&supervisor::Watch {
            status_file: options.status_file.clone(),
            stall_after: options.stall_after,
            health_listen: options.health_listen,
        })?
    {
        return if code == 0 { Ok(()) } else { Err(Error::DaemonExited(code)) };
    }
    // Named as our container names them: once in the host's namespace these names lead elsewhere.
    let own_mappings = if options.hold_socket.is_some() { OwnMappings::read() } else { OwnMappings::default() };
    let files = if options.host_namespace {
        let root = sys::enter_mount_namespace_of(1).map_err(Error::EnterHostNamespace)?;
        tracing::info!("joined the mount namespace of pid 1; the configuration is read from this container");
        Files::new(Some(root))
    } else {
        Files::new(None)
    };
    if let Err(e) = sys::raise_nofile_limit() {
        tracing::warn!(error = %e, "cannot raise RLIMIT_NOFILE; a large burst of events may fail to read");
    }
    // After a crash, exec attempts are waiting in the group systemd or `noexecd hold` kept: take it back first.
    let container = options.host_namespace.then(|| nix::unistd::getppid().as_raw());
    let keeper = Keeper::choose(options.hold_socket.as_ref().map(|p| files.own(p)), own_mappings, container);
    let stored = keeper.take_back();
    let resumed = stored.is_some();
    if let Some(group) = &stored {
        let stale = group.deny_stale_events(STALE_FD_SWEEP);
        tracing::warn!(
            denied_in_flight = stale,
            keeper = keeper.name(),
            "resuming the fanotify group kept across the daemon's end"
        );
    }
    let setup = (|| {
        let config = files.load(config_path, options, None)?;
        let group = match stored {
            Some(group) => {
                tracing::info!("queued exec attempts are decided now");
                group
            }
            None => FanotifyGroup::new().map_err(Error::FanotifyInit)?,
        };
        let group = Arc::new(group);
        let (mountinfo, mounts) = MountTable::read_self().map_err(Error::ReadMounts)?;
        let guard = Guard::build(config, mounts)?;
        Ok((group, guard, mountinfo))
    })();
    let (group, guard, mountinfo) = match setup {
        Ok(parts) => parts,
        Err(e) => {
            if resumed {
                // Closing the group lets every waiting exec through: better than holding the host until
                // systemd gives up on restarting us.
                tracing::error!("cannot start; releasing the stored fanotify group so waiting execs proceed");
                keeper.release();
            }
            return Err(e);
        }
    };
    // Bound before anything is marked: an address in use is a startup error, not a stream that never comes.
    let grpc = match options.grpc.map(GrpcListener::bind).transpose() {
        Ok(listener) => listener,
        Err(e) => {
            if resumed {
                tracing::error!("cannot start; releasing the stored fanotify group so waiting execs proceed");
                keeper.release();
            }
            return Err(e);
        }
    };
    let fail_mode = guard.config.daemon.fail_mode;
    let (cache, feed, cache_rx) = match ExecCache::new(guard.config.daemon.exec_cache) {
        Some((cache, feed, rx)) => (Some(cache), Some(feed), Some(rx)),
        None => (None, None, None),
    };

    let counters = Arc::new(Counters::default());
    let (alert_tx, alert_rx) = mpsc::channel(ALERT_QUEUE);
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let subscribers = Subscribers::default();
    let socket = (guard.config.daemon.alert_socket.clone(), guard.config.daemon.alert_socket_group.clone());
    let sink = AlertSink::new(
        guard.config.daemon.alert_log.clone(),
        Origin::for_config(&guard.config),
        guard.config.daemon.max_alerts_per_sec,
        counters.clone(),
        subscribers.clone(),
    );
    let sink = if options.alert_stdout {
        sink.with_stdout().map_err(|source| Error::Runtime { what: "alert copy to stdout", source })?
    } else {
        sink
    };
    let shared = Arc::new(ArcSwap::from_pointee(guard));
    let scopes = Arc::new(ArcSwap::from_pointee(Scopes::default()));

    let stop = Arc::new(AtomicBool::new(false));
    sys::install_wake_handler()
        .and_then(|()| sys::block_wake_signal())
        .map_err(|e| Error::Runtime { what: "wake-up signal handler", source: e.into() })?;
    let watchdog = notify::watchdog_interval();
    let decision_alive = Arc::new(AtomicBool::new(true));
    let (mark_failures, failed_marks) = MarkFailures::handed_over(counters.clone(), MARK_FAILURE_QUEUE);
    let decision = {
        let (group, shared, stop) = (group.clone(), shared.clone(), stop.clone());
        let alive = AliveWhileHeld(decision_alive.clone());
        let decider = Decider::new(alert_tx, counters.clone())
            .with_cache(feed)
            .with_scopes(scopes.clone())
            .with_marker(FirstExecMarks::new(group.clone(), mark_failures));
        std::thread::Builder::new()
            .name("noexecd-decide".into())
            .spawn(move || {
                let _alive = alive;
                // pthread_sigmask fails only for a bad argument; were the signal still blocked, `stop_decision`
                // would give up on the thread after its bound and the process would end with it.
                let _ = sys::accept_wake_signal();
                decide::run_loop(&group, &shared, &stop, decider.look_up_off_thread())
            })
            .map_err(|source| Error::SpawnThread { what: "decision", source })?
    };
    // The decision thread runs before the first mark is placed and until the group is closed: every event
    // this process raises (the alert log, the configuration, the socket's directory, all in protected scope
    // perhaps) is answered at once, whatever the daemon is doing.
    // The containers running now, before the marks: the first exec of each is decided by its policies.
    refresh_scopes(&shared.load(), &scopes);
    let tracker = {
        let control = control_tx.clone();
        let on_cap = Box::new(move |cap: usize| {
            let _ = control.send(Control::SystemEvent {
                operation: "OpenGuardDirectoryCap",
                message: format!("The open guard marks at most {cap} directories ([open_guard] max_directories): directories created past it are not guarded against sh/ld.so/LD_PRELOAD of their files until their number falls below the cap; the exec guard is whole"),
            });
        });
        DirTracker::start(group.clone(), counters.clone(), on_cap)?
    };
    let mut marks = Marks::new(group.clone(), Box::new(tracker), counters.clone());
    marks.set_max_directories(shared.load().config.open_guard.max_directories);
    // Held before the first mark: a crash at any moment after it leaves execs waiting, never running.
    let mut held = false;
    match fail_mode {
        FailMode::Closed => {
            if keeper.will_store() {
                let chain = keeper.restart_chain();
                tracing::info!(files = ?chain, "exempted from the group: the files the daemon's own restart exec-opens");
                marks.exempt(chain);
            }
            held = keeper.store_before_marking(&group, resumed, HOLDER_WAIT);
            log_holder(&keeper, held, false);
        }
        FailMode::Open if resumed => keeper.release(),
        FailMode::Open => {}
    }
    if let Err(e) = marks.add_filesystems(&shared.load()) {
        if resumed || held {
            tracing::error!("cannot start; releasing the stored fanotify group so waiting execs proceed");
            keeper.release();
        }
        let _ = stop_decision(&stop, decision);
        return Err(e);
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Runtime { what: "tokio runtime", source })?;
    let outcome = runtime.block_on(async {
        let writer = tokio::spawn(sink::run(sink, alert_rx, control_rx));
        let server = match &socket {
            (Some(path), group) => match AlertSocket::bind(path, group.as_deref()) {
                Ok(s) => Some(tokio::spawn(s.serve(subscribers.clone()))),
                Err(e) => {
                    tracing::warn!(error = %e, "live alerts are not served; the alert log is still written");
                    None
                }
            },
            (None, _) => None,
        };
        let grpc = grpc.map(|listener| tokio::spawn(listener.serve(subscribers.clone(), counters.clone())));
        let mut controller = Controller {
            config_path: config_path.to_owned(),
            options: options.clone(),
            files,
            shared: shared.clone(),
            scopes: scopes.clone(),
            marks,
            container_marks: ContainerMarks::new(counters.clone()),
            failed_marks,
            mountinfo,
            control: control_tx,
            decision_alive,
            cache,
            cache_rx,
            keeper,
            held,
            fail_closed: fail_mode == FailMode::Closed,
            status: StatusFile::default(),
        };
        let result = controller.serve(&counters, watchdog).await;
        notify::stopping();
        // Not `controller.held`: that is the last hand-over's answer, and one refused at a busy moment leaves the
        // holder's earlier copy of this same group held; releasing it then would let the host's execs run.
        let keep = result.is_ok() && controller.fail_closed && controller.keeper.keeps_across_stop();
        if keep {
            // A restart of this container is coming: the marks stay, and the decision thread answers until
            // the process ends (what it read and had not answered then, the restarted daemon denies).
            tracing::info!("stopping with the fanotify group held by noexecd hold: execs on guarded filesystems wait for the restarted daemon (deleting the pod releases them)");
            drop(decision);
            // The thread keeps its alert sender: give the writer a moment for what is queued, no more.
            let _ = tokio::time::timeout(Duration::from_millis(500), writer).await;
        } else {
            // Stop the kernel from queueing new events, then let the thread answer what is queued and leave.
            if let Err(e) = controller.marks.remove_all() {
                tracing::error!(error = %e, "cannot remove the marks");
            }
            controller.keeper.release();
            match tokio::task::spawn_blocking(move || stop_decision(&stop, decision)).await {
                // The thread's sender is gone: the writer drains what is left and returns.
                Ok(Ok(())) => {
                    let _ = writer.await;
                }
                outcome => {
                    let why = outcome.unwrap_or(Err("could not be waited for")).err().unwrap_or_default();
                    tracing::error!(why, "the decision thread ended abnormally");
                    // It may still hold its alert sender: give the writer a moment, no more.
                    let _ = tokio::time::timeout(Duration::from_millis(500), writer).await;
                }
            }
        }
        if let Some(server) = server {
            // Dropping the task drops the listener, which removes the socket file.
            server.abort();
            let _ = server.await;
        }
        if let Some(grpc) = grpc {
            // Its readers' connections end with the runtime.
            grpc.abort();
            let _ = grpc.await;
        }
        result
    });
    tracing::info!(final_counters = %notify::status_line(0, &counters.snapshot()), "stopped");
    outcome
}

/// The control loop's state: everything reloads and mount changes touch.
struct Controller {
    config_path: PathBuf,
    options: RunOptions,
    files: Files,
    shared: Arc<ArcSwap<Guard>>,
    /// The running containers and the container policies that select each.
    scopes: Arc<ArcSwap<Scopes>>,
    marks: Marks,
    /// The marks on selected containers' own mounts.
    container_marks: ContainerMarks,
    /// Marks the decision thread found refused, to be logged here.
    failed_marks: mpsc::Receiver<MarkFailure>,
    mountinfo: Vec<u8>,
    control: mpsc::UnboundedSender<Control>,
    decision_alive: Arc<AtomicBool>,
    cache: Option<ExecCache>,
    cache_rx: Option<mpsc::Receiver<Candidate>>,
    /// Who keeps the group while we are down, and whether it holds it now.
    keeper: Keeper,
    held: bool,
    fail_closed: bool,
    /// The control loop's own fields of the status file (the counters are read at each rewrite).
    status: StatusFile,
}

/// Clears its flag when dropped, however the decision thread ends (a return or a panic unwinding).
struct AliveWhileHeld(Arc<AtomicBool>);

impl Drop for AliveWhileHeld {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Controller {
    async fn serve(&mut self, counters: &Counters, watchdog: Option<Duration>) -> Result<()> {
        let signal_err = |source| Error::Runtime { what: "signal handlers", source };
        let mut hup = signal(SignalKind::hangup()).map_err(signal_err)?;
        let mut term = signal(SignalKind::terminate()).map_err(signal_err)?;
        let mut int = signal(SignalKind::interrupt()).map_err(signal_err)?;
        let mut mount_tick = tokio::time::interval(MOUNT_POLL);
        self.container_marks.sync(&self.marks, &self.shared.load(), &self.scopes.load());
        let roots = open_roots(&self.shared.load(), &self.scopes.load());
        let marked = self.marks.sync_open_dirs(&roots);
        if !roots.is_empty() {
            tracing::info!(roots = ?roots, directories = marked, event_driven = self.marks.open_dirs_event_driven(), "open guard: marked protected directories");
        }
        let mut status_tick = tokio::time::interval(STATUS_EVERY);
        let mut container_tick = tokio::time::interval(CONTAINER_POLL);
        if !self.shared.load().config.container_policies.is_empty() {
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
        tracing::info!(config = %self.config_path.display(), filesystems, "noexecd is guarding");
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
                _ = term.recv() => { tracing::info!("SIGTERM: stopping"); return Ok(()); }
                _ = int.recv() => { tracing::info!("SIGINT: stopping"); return Ok(()); }
                _ = mount_tick.tick() => {
                    if !self.decision_alive.load(Ordering::Acquire) {
                        // Nothing answers the kernel any more: exit, so that it answers for us (or, with the
                        // group in systemd's FD store, the restarted daemon does).
                        return Err(Error::DecisionThreadDied);
                    }
                    self.check_mounts();
                    self.status.mount_checks += 1;
                }
                // A runtime's event says a container starts: read them at once, not at the next tick.
                () = containers::events::STARTED.notified() => container_tick.reset_immediately(),
                _ = container_tick.tick() => {
                    let guard = self.shared.load_full();
                    let scopes = self.scopes.clone();
                    // The runtimes answer over sockets and files: off this thread, bounded by their timeouts.
                    let _ = tokio::task::spawn_blocking(move || refresh_scopes(&guard, &scopes)).await;
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

    /// The status line, with the policy files that did not load.
    fn status_text(&self, filesystems: usize, counters: &stats::Snapshot) -> String {
        let config = &self.shared.load().config;
        let file_rules = match config.file_rules_not_enforced() {
            0 => String::new(),
            n => format!("; {n} FILE RULES NOT ENFORCED by this build"),
        };
        notify::status_line(filesystems, counters) + &file_rules + &notify::refused_files(&config.refused)
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
        match next.and_then(|guard| self.install(guard)) {
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
        notify::ready(&format!("policy loaded from {}", self.config_path.display()));
        self.status.reloads += 1;
    }

    /// A mount appeared or went away: recompute what to mark.
    fn check_mounts(&mut self) {
        let Ok((raw, mounts)) = MountTable::read_self() else {
            return;
        };
        if raw == self.mountinfo {
            return;
        }
        self.mountinfo = raw;
        let config = self.shared.load().config.clone();
        match Guard::build(config, mounts).and_then(|guard| self.install(guard)) {
            Ok(()) => tracing::debug!("mount table changed; marks updated"),
            Err(e) => {
                tracing::error!(error = %e, "mount table changed but the marks could not follow")
            }
        }
    }

    /// Marks first, then the swap, then unmarking: at no moment is a protected filesystem unmarked.
    fn install(&mut self, guard: Guard) -> Result<()> {
        self.marks.add_filesystems(&guard)?;
        let guard = Arc::new(guard);
        self.shared.store(guard.clone());
        // Every inode mark was placed under the old policy or mount table: the exec cache's ignore marks and
        // the open guard's directory marks. One flush drops them all and puts back what stays (the exemptions
        // of our own restart), then the new directories are marked.
        self.marks.set_open_roots(open_roots(&guard, &self.scopes.load()));
        self.marks.set_max_directories(guard.config.open_guard.max_directories);
        match self.cache.as_mut() {
            Some(cache) => cache.flush(&mut self.marks),
            None => self.marks.flush_inode_marks(),
        }
        self.marks.remove_stale_filesystems(&guard.targets);
        Ok(())
    }
}

/// Stops the decision thread and waits for it, at most [`STOP_WITHIN`]. It blocks in read(2) on the group, so it
/// is sent the wake signal until it has returned: a signal that lands just before it enters read(2) would
/// otherwise be lost. It answers what is still queued first (the kernel hands out events before it reports the
/// signal). A thread that does not return in time is left to end with the process.
fn stop_decision(stop: &AtomicBool, decision: std::thread::JoinHandle<()>) -> std::result::Result<(), &'static str> {
    stop.store(true, Ordering::Release);
    let deadline = std::time::Instant::now() + STOP_WITHIN;
    while !decision.is_finished() {
        if std::time::Instant::now() > deadline {
            return Err("did not return");
        }
        let _ = sys::wake_thread(&decision);
        std::thread::sleep(Duration::from_millis(5));
    }
    decision.join().map_err(|_| "panicked")
}

/// How long a stop waits for the decision thread to answer what is queued and return.
const STOP_WITHIN: Duration = Duration::from_secs(5);

/// Says whether `noexecd hold` keeps the group (systemd's store logs for itself).
fn log_holder(keeper: &Keeper, held: bool, changed: bool) {
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
fn refresh_scopes(guard: &Guard, scopes: &ArcSwap<Scopes>) {
    let config = &guard.config;
    if config.container_policies.is_empty() {
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
/// host's file rules.
fn open_roots(guard: &Guard, scopes: &Scopes) -> Vec<OpenRoot> {
    let mut roots: Vec<OpenRoot> = guard.open_inode_roots().into_iter().map(OpenRoot::from).collect();
    if guard.config.open_guard.enabled {
        roots.extend(scopes.all().iter().flat_map(|s| s.open_roots()));
    }
    // The directories of the host's file rules: every open of a file below them is decided.
    for dir in guard.config.file_enforced.directories() {
        let root = OpenRoot::from(dir);
        if !roots.contains(&root) {
            roots.push(root);
        }
    }
    roots
}

/// The next exec-cache candidate; pending forever when the cache is off.
async fn next_candidate(rx: &mut Option<mpsc::Receiver<Candidate>>) -> Option<Candidate> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
