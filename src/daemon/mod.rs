//! `noexecd run`: wires the pieces together. The decision thread answers the kernel; a single-threaded
//! tokio runtime does everything that may wait: alert writing, signals, policy reloads, the mount watcher,
//! systemd notifications; the open guard's directory tracker has a thread of its own.
#![forbid(unsafe_code)]

mod controller;
pub(crate) mod fdstore;
pub mod handover;
pub mod hold;
mod keeper;
pub(crate) mod liveness;
pub(crate) mod notify;
mod options;
mod supervisor;
pub mod version;
mod watch;

pub use fdstore::FD_NAME;
pub use liveness::LIVE_EVERY;
use liveness::StatusFile;
pub use options::RunOptions;

use controller::{Controller, Ending, log_holder, refresh_scopes};
use keeper::Keeper;
use options::Files;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use crate::alert::Origin;
use crate::alert::grpc::GrpcListener;
use crate::alert::sink::{self, AlertSink, Control};
use crate::alert::stream::{AlertSocket, Subscribers};
use crate::decide::{self, Decider};
use crate::error::{Error, Result};
use crate::guard::Guard;
use crate::guard::ctr_marks::{ContainerMarks, FirstExecMarks};
use crate::guard::dirtrack::DirTracker;
use crate::guard::exec_cache::ExecCache;
use crate::guard::marks::{MarkFailures, Marks};
use crate::guard::scopes::Scopes;
use crate::host::mounts::MountTable;
use crate::host::restart_chain::OwnMappings;
use crate::policy::FailMode;
use crate::stats::Counters;
use crate::sys::{self, FanotifyGroup};

/// How many alerts may wait for the writer before new ones are dropped (and counted).
const ALERT_QUEUE: usize = 8192;
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
    let own_status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for finding in crate::host::hardening::own_capabilities(&own_status) {
        tracing::warn!("{}", finding.text);
    }
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
            handover: None,
        };
        let result = controller.serve(&counters, watchdog).await;
        let handing_over = matches!(result, Ok(Ending::HandOver));
        if handing_over {
            notify::status(&format!("noexecd {}: handing the fanotify group over to the new binary", version::version()));
        } else {
            notify::stopping();
        }
        // Not `controller.held`: that is the last hand-over's answer, and one refused at a busy moment leaves the
        // holder's earlier copy of this same group held; releasing it then would let the host's execs run.
        let keep = result.is_ok() && controller.fail_closed && controller.keeper.keeps_across_stop();
        if handing_over {
            // The marks stay and systemd keeps the group: the decision thread answers what it has read and
            // returns, the writer writes what it was given, and execs that come now wait for the new binary.
            if !controller.fail_closed {
                fdstore::store(controller.marks.group(), false);
            }
            match tokio::task::spawn_blocking(move || stop_decision(&stop, decision)).await {
                Ok(Ok(())) => {
                    let _ = writer.await;
                }
                outcome => {
                    let why = outcome.unwrap_or(Err("could not be waited for")).err().unwrap_or_default();
                    tracing::error!(why, "the decision thread ended abnormally; the new binary denies what it had read");
                    let _ = tokio::time::timeout(Duration::from_millis(500), writer).await;
                }
            }
            tracing::info!("handed over: exiting with the marks in place for the new binary to take the group");
        } else if keep {
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
        result.map(drop)
    });
    tracing::info!(final_counters = %notify::status_line(0, &counters.snapshot()), "stopped");
    outcome
}

/// Clears its flag when dropped, however the decision thread ends (a return or a panic unwinding).
struct AliveWhileHeld(Arc<AtomicBool>);

impl Drop for AliveWhileHeld {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
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
