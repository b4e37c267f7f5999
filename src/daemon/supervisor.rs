//! `run --host-namespace`: the container's first process stays in the container as a supervisor of the
//! daemon, which joins the host's mount namespace. The supervisor forwards the signals a container runtime
//! sends (SIGTERM, SIGINT, SIGHUP) and exits with the daemon's status once a stop was asked for.
//!
//! It also bounds the windows where execs on guarded filesystems wait with nobody to answer them, without
//! any help from the daemon and without touching a guarded file (it only stats the status file, and stat
//! raises no fanotify event):
//! - a daemon that dies on its own (a crash, `kill -9`, an OOM kill of that process) is forked again at
//!   once, and takes the group back from `noexecd hold`: no container restart, so no kubelet back-off;
//! - a daemon whose status file has not been rewritten for `--stall-after` (the decision thread or the
//!   control loop hung, or the process stopped) is killed and forked again the same way;
//! - `--health-listen` serves an HTTP liveness endpoint the kubelet probes itself (`httpGet`): it answers
//!   from the supervisor's own process, so neither the probe nor the kubelet's reaction to it waits on the
//!   guard (an exec probe makes the runtime write its process spec into the node's /tmp). Its
//!   [`READY_PATH`] answers 200 only once the current daemon guards (it has written its status file, which
//!   it does once its marks are placed): a rollout that surges deletes the old pod only then.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::sys::{Forked, fork_daemon};

/// How often the supervisor looks at the daemon's status file when nothing else wakes it.
const LOOK_EVERY: Duration = Duration::from_millis(250);
/// A daemon that ran at least this long before it died is forked again at once; a shorter run counts
/// towards [`GIVE_UP_AFTER`].
const STEADY_RUN: Duration = Duration::from_secs(10);
/// Consecutive short runs after which the supervisor exits with the daemon's status (a start that keeps
/// failing, such as a configuration that does not load, is the kubelet's to show and back off).
const GIVE_UP_AFTER: u32 = 5;
/// The longest pause before forking again after a short run: a crashed daemon is back within about a second.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(1);
/// How much longer than `--stall-after` a starting daemon may take to write its first status file.
const FIRST_WRITE_GRACE: Duration = Duration::from_secs(60);
/// How long the health endpoint waits for a request's bytes.
const REQUEST_WAIT: Duration = Duration::from_millis(200);
/// The readiness path of the health endpoint; every other path is the liveness answer.
pub const READY_PATH: &str = "/readyz";

/// What the supervisor watches beside the daemon's exit.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// The daemon's status file, as the supervisor names it (a path of its own container).
    pub status_file: Option<PathBuf>,
    /// Kill and fork the daemon again when its status file is older than this.
    pub stall_after: Option<Duration>,
    /// Serve `GET` on this address: 200 while the status file is fresh, 503 once it is older than
    /// `stall_after`.
    pub health_listen: Option<SocketAddr>,
}

fn forwarded() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGCHLD] {
        set.add(s);
    }
    set
}

/// How one daemon process ended, as the supervisor saw it.
enum Ended {
    /// A stop was asked for (or the daemon exited with 0): the supervisor exits with this status.
    Stopped(i32),
    /// It died or was killed as stalled: fork another.
    Died(i32),
}

/// Forks. In the daemon: returns `Ok(None)` (go on guarding). In the supervisor: watches the daemon, forks
/// it again when it dies or stalls, and returns its exit status once a stop was asked for.
pub fn split(watch: &Watch) -> Result<Option<i32>> {
    let err = |source: std::io::Error| Error::Runtime { what: "supervisor for the host namespace", source };
    let set = forwarded();
    // Blocked before the fork: a signal that comes between the fork and the wait is kept pending, not lost.
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(|e| err(e.into()))?;
    let signals =
        SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(|e| err(e.into()))?;
    let health = match watch.health_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr).map_err(err)?;
            listener.set_nonblocking(true).map_err(err)?;
            tracing::info!(%addr, "serving the liveness endpoint");
            Some(listener)
        }
        None => None,
    };
    let mut short_runs = 0u32;
    loop {
        let (started, started_at) = (Instant::now(), SystemTime::now());
        match fork_daemon().map_err(err)? {
            Forked::Daemon => {
                // The signal fd and the listener are the supervisor's: dropped here, in the daemon.
                drop(signals);
                drop(health);
                sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None).map_err(|e| err(e.into()))?;
                return Ok(None);
            }
            Forked::Supervisor(daemon) => {
                tracing::info!(
                    daemon = daemon.as_raw(),
                    "supervising the guard, which joins the host's mount namespace"
                );
                let code = match supervise(daemon, (started, started_at), &signals, health.as_ref(), watch) {
                    Ended::Stopped(code) => return Ok(Some(code)),
                    Ended::Died(code) => code,
                };
                if started.elapsed() >= STEADY_RUN {
                    short_runs = 0;
                } else {
                    short_runs += 1;
                }
                if short_runs >= GIVE_UP_AFTER {
                    tracing::error!(
                        status = code,
                        runs = short_runs,
                        "the guard keeps dying within {STEADY_RUN:?} of its start; leaving its restart to the container runtime"
                    );
                    return Ok(Some(if code == 0 { 1 } else { code }));
                }
                let delay = restart_delay(short_runs);
                tracing::error!(
                    status = code,
                    ?delay,
                    "the guard ended without a stop being asked for: starting it again"
                );
                std::thread::sleep(delay);
            }
        }
    }
}

/// At once after a daemon that ran steadily; then 100, 200, 400, 800 ms, never more than a second.
fn restart_delay(short_runs: u32) -> Duration {
    match short_runs {
        0 | 1 => Duration::ZERO,
        n => (Duration::from_millis(100) * 2u32.saturating_pow(n - 2)).min(MAX_RESTART_DELAY),
    }
}

fn supervise(
    daemon: Pid,
    started: (Instant, SystemTime),
    signals: &SignalFd,
    health: Option<&TcpListener>,
    watch: &Watch,
) -> Ended {
    let mut stopping = false;
    loop {
        if let Some(code) = reap(daemon) {
            return if stopping || code == 0 { Ended::Stopped(code) } else { Ended::Died(code) };
        }
        let stale = staleness(watch, started.0, started.1);
        if !stopping
            && let (Some(limit), Some(Freshness { age, .. })) = (watch.stall_after, stale)
            && age > limit
        {
            tracing::error!(
                daemon = daemon.as_raw(),
                ?age,
                "the guard has not rewritten its status file for longer than --stall-after: killing it and starting it again"
            );
            let _ = kill(daemon, Signal::SIGKILL);
            // SIGKILL ends a stopped process too; the wait is for a process already dying.
            let code = match waitpid(daemon, None) {
                Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
                Ok(WaitStatus::Exited(_, code)) => code,
                _ => 137,
            };
            return Ended::Died(if code == 0 { 137 } else { code });
        }
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if let Some(listener) = health {
            fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
        }
        let timeout = PollTimeout::try_from(LOOK_EVERY).unwrap_or(PollTimeout::NONE);
        if poll(&mut fds, timeout).is_err() {
            continue;
        }
        while let Ok(Some(info)) = signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) | Err(_) => {}
                Ok(sig) => {
                    if sig != Signal::SIGHUP {
                        stopping = true;
                    }
                    let _ = kill(daemon, sig);
                }
            }
        }
        if let Some(listener) = health {
            while let Ok((peer, _)) = listener.accept() {
                answer(peer, stale, watch.stall_after);
            }
        }
    }
}

/// How long the daemon has gone without rewriting its status file, as held against `--stall-after`:
/// counted from its last rewrite once this daemon wrote it, and until then from its start less
/// [`FIRST_WRITE_GRACE`] (a start marks every filesystem and walks the protected directories first; a file
/// left by the process before it is not held against a new one). `None` without a status file.
fn staleness(watch: &Watch, started: Instant, started_at: SystemTime) -> Option<Freshness> {
    let path = watch.status_file.as_ref()?;
    let since_start = started.elapsed();
    let written = std::fs::metadata(path).and_then(|m| m.modified()).ok().filter(|at| *at >= started_at);
    Some(match written {
        Some(at) => {
            Freshness { age: SystemTime::now().duration_since(at).unwrap_or_default().min(since_start), written: true }
        }
        None => Freshness { age: since_start.saturating_sub(FIRST_WRITE_GRACE), written: false },
    })
}

/// The daemon's status file as the supervisor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Freshness {
    /// Held against `--stall-after`.
    age: Duration,
    /// The current daemon has written it: it guards (its marks are placed before its first write).
    written: bool,
}

/// One HTTP/1.x answer. Liveness (any path but [`READY_PATH`]): 200 while the daemon is alive, 503 once its
/// status file is older than `limit`. Readiness ([`READY_PATH`]): 200 once the current daemon has written
/// its status file and it is not older than `limit`, else 503. Reads at most one request's first bytes, each
/// wait bounded.
fn answer(mut peer: TcpStream, stale: Option<Freshness>, limit: Option<Duration>) {
    let _ = peer.set_nonblocking(false);
    let _ = peer.set_read_timeout(Some(REQUEST_WAIT));
    let _ = peer.set_write_timeout(Some(REQUEST_WAIT));
    // The request's head, up to its blank line: closing with unread bytes would reset the connection, and
    // the answer with it.
    let mut head: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 512];
    while head.len() < 4096 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match peer.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend(chunk.iter().take(n)),
        }
    }
    let (code, body) = if asks_readiness(&head) { readiness(stale, limit) } else { liveness(stale, limit) };
    let response = format!(
        "HTTP/1.1 {code}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = peer.write_all(response.as_bytes());
}

/// Whether the request line asks for [`READY_PATH`] (`GET /readyz HTTP/1.1`, a query string allowed).
fn asks_readiness(head: &[u8]) -> bool {
    let line = head.split(|b| *b == b'\r' || *b == b'\n').next().unwrap_or_default();
    let target = line.split(|b| *b == b' ').nth(1).unwrap_or_default();
    target.split(|b| *b == b'?').next() == Some(READY_PATH.as_bytes())
}

fn liveness(stale: Option<Freshness>, limit: Option<Duration>) -> (&'static str, String) {
    match (stale, limit) {
        (Some(f), Some(limit)) if f.age > limit => {
            ("503 Service Unavailable", format!("stalled: status file {}s old\n", f.age.as_secs()))
        }
        (Some(f), _) => ("200 OK", format!("alive: status file {}s old\n", f.age.as_secs())),
        (None, _) => ("200 OK", "alive\n".to_owned()),
    }
}

fn readiness(stale: Option<Freshness>, limit: Option<Duration>) -> (&'static str, String) {
    match (stale, limit) {
        (Some(f), _) if !f.written => ("503 Service Unavailable", "starting: not guarding yet\n".to_owned()),
        (Some(f), Some(limit)) if f.age > limit => {
            ("503 Service Unavailable", format!("stalled: status file {}s old\n", f.age.as_secs()))
        }
        (Some(f), _) => ("200 OK", format!("guarding: status file {}s old\n", f.age.as_secs())),
        // Without a status file nothing says when the daemon guards: ready while it runs.
        (None, _) => ("200 OK", "alive\n".to_owned()),
    }
}

/// The daemon's exit status once it has ended; shells' 128+N for a signal.
fn reap(daemon: Pid) -> Option<i32> {
    match waitpid(daemon, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some(code),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(128 + sig as i32),
        Ok(_) => None,
        // Nothing to wait for: it is gone.
        Err(_) => Some(1),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_crashed_daemon_is_back_within_a_second() {
        let delays: Vec<Duration> = (0..GIVE_UP_AFTER).map(restart_delay).collect();
        assert_eq!(delays[0], Duration::ZERO);
        assert_eq!(delays[1], Duration::ZERO);
        assert!(delays.iter().all(|d| *d <= MAX_RESTART_DELAY), "{delays:?}");
        assert_eq!(restart_delay(30), MAX_RESTART_DELAY);
    }

    #[test]
    fn a_starting_daemon_has_a_grace_and_an_old_file_is_not_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status");
        let watch = Watch { status_file: Some(path.clone()), ..Watch::default() };
        let (started, started_at) = (Instant::now(), SystemTime::now());
        let age_of = |f: Option<Freshness>| f.map(|f| f.age);
        // No file yet: within the grace, not guarding.
        assert_eq!(staleness(&watch, started, started_at), Some(Freshness { age: Duration::ZERO, written: false }));
        // A file left by the daemon before: not this one's.
        std::fs::write(&path, "x\n").unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(old).unwrap();
        assert_eq!(staleness(&watch, started, started_at), Some(Freshness { age: Duration::ZERO, written: false }));
        // Written since the start: its age, at most the daemon's.
        let long_ago = Instant::now() - Duration::from_secs(120);
        let then = SystemTime::now() - Duration::from_secs(120);
        let written = SystemTime::now() - Duration::from_secs(30);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(written).unwrap();
        let fresh = staleness(&watch, long_ago, then).unwrap();
        assert!(fresh.written, "{fresh:?}");
        let age = fresh.age;
        assert!(age >= Duration::from_secs(30) && age < Duration::from_secs(32), "{age:?}");
        // Never written by a daemon started two minutes ago: past the grace by a minute.
        std::fs::remove_file(&path).unwrap();
        let age = age_of(staleness(&watch, long_ago, then)).unwrap();
        assert!(age >= Duration::from_secs(60) && age < Duration::from_secs(62), "{age:?}");
        assert!(staleness(&Watch::default(), started, started_at).is_none());
    }

    #[test]
    fn the_endpoint_says_200_or_503() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let get = |path: &str, stale: Option<Freshness>| {
            let mut client = TcpStream::connect(addr).unwrap();
            client.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
            let (peer, _) = listener.accept().unwrap();
            answer(peer, stale, Some(Duration::from_secs(20)));
            let mut text = String::new();
            client.read_to_string(&mut text).unwrap();
            text
        };
        let guarding = |secs| Some(Freshness { age: Duration::from_secs(secs), written: true });
        let starting = Some(Freshness { age: Duration::ZERO, written: false });
        assert!(get("/healthz", guarding(2)).starts_with("HTTP/1.1 200 OK\r\n"));
        let stalled = get("/healthz", guarding(30));
        assert!(stalled.starts_with("HTTP/1.1 503 "), "{stalled}");
        assert!(stalled.ends_with("stalled: status file 30s old\n"), "{stalled}");
        // A starting daemon is alive, not ready: a surging rollout keeps the old pod until it guards.
        assert!(get("/healthz", starting).starts_with("HTTP/1.1 200 OK\r\n"));
        let not_yet = get(READY_PATH, starting);
        assert!(not_yet.starts_with("HTTP/1.1 503 ") && not_yet.ends_with("not guarding yet\n"), "{not_yet}");
        assert!(get("/readyz?verbose", guarding(2)).starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(get(READY_PATH, guarding(30)).starts_with("HTTP/1.1 503 "));
    }

    #[test]
    fn only_the_ready_path_asks_readiness() {
        assert!(asks_readiness(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(asks_readiness(b"GET /readyz?x=1 HTTP/1.0\r\n"));
        assert!(!asks_readiness(b"GET /healthz HTTP/1.1\r\n"));
        assert!(!asks_readiness(b"GET /readyzz HTTP/1.1\r\n"));
        assert!(!asks_readiness(b""));
    }
}
