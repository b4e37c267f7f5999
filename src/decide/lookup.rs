//! Containers looked up off the decision thread. At the first exec of a container the daemon's list does not
//! hold yet, where its identity decides the answer (which policies select it), the runtimes must be asked;
//! asked on the decision thread, every other event of the host waited behind that one: podman's API answers
//! in tens of milliseconds, more while podman is starting that very container, and up to its timeouts when it
//! does not answer. Here only that event waits: the decision thread keeps it unanswered and goes on, a thread
//! of its own asks the runtimes (one look serves every container asked for meanwhile), and wakes the
//! decision thread with the answers, which then decides what it kept.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::containers::{self, Container, Sources};
use crate::sys::{self, Waker};

/// Containers asked for and not yet taken by the thread; past it, the decision thread asks the runtimes
/// itself, as it did before this thread existed.
const QUEUE: usize = 64;

/// How often the thread repeats the wake signal until its answers are taken: a signal that lands just before
/// the decision thread enters read(2) would otherwise be lost.
const WAKE_EVERY: Duration = Duration::from_millis(2);

type Request = (Arc<str>, Sources);
type Answer = (Arc<str>, Option<Container>);

/// The decision thread's side: asks, takes the answers.
#[derive(Debug)]
pub struct Lookups {
    requests: SyncSender<Request>,
    answers: Receiver<Answer>,
    /// How many answers the decision thread has taken; the thread wakes it until it has taken all it sent.
    taken: Arc<AtomicU64>,
    received: u64,
    asked: HashSet<Arc<str>>,
    /// Whether the decision thread is still there to be woken: cleared, under the lock, when this is dropped
    /// (in the decision thread, before it ends), and checked under it before every signal.
    alive: Arc<Mutex<bool>>,
}

impl Lookups {
    /// Starts the thread that asks the runtimes; `waker` wakes the thread that will take the answers.
    pub fn start(waker: Waker) -> std::io::Result<Self> {
        let (requests, incoming) = mpsc::sync_channel(QUEUE);
        let (outgoing, answers) = mpsc::channel();
        let taken = Arc::new(AtomicU64::new(0));
        let alive = Arc::new(Mutex::new(true));
        let (thread_taken, thread_alive) = (taken.clone(), alive.clone());
        std::thread::Builder::new()
            .name("noexecd-lookup".into())
            .spawn(move || serve(&incoming, &outgoing, waker, &thread_taken, &thread_alive))?;
        Ok(Self { requests, answers, taken, received: 0, asked: HashSet::new(), alive })
    }

    /// Asks for container `id` (not again while it is asked for). `false`: the queue is full, and the caller
    /// must ask the runtimes itself.
    pub fn ask(&mut self, id: &str, sources: &Sources) -> bool {
        if self.asked.contains(id) {
            return true;
        }
        let id: Arc<str> = Arc::from(id);
        if self.requests.try_send((id.clone(), sources.clone())).is_err() {
            return false;
        }
        self.asked.insert(id);
        true
    }

    /// The answers that came since the last call: each container's id, and what the runtimes know of it
    /// (`None`: no runtime knows it). Allocates nothing when none came.
    pub fn take_answers(&mut self) -> Vec<(Arc<str>, Option<Container>)> {
        let answers: Vec<Answer> = self.answers.try_iter().collect();
        if !answers.is_empty() {
            for (id, _) in &answers {
                self.asked.remove(id);
            }
            self.received = self.received.wrapping_add(answers.len() as u64);
            self.taken.store(self.received, Ordering::Release);
        }
        answers
    }
}

impl Drop for Lookups {
    fn drop(&mut self) {
        // A poisoned lock means the thread panicked holding it: it signals nobody any more either.
        if let Ok(mut alive) = self.alive.lock() {
            *alive = false;
        }
    }
}

/// The thread: takes the containers asked for, looks at the runtimes once for all of them, sends the answers
/// and wakes the decision thread until it has taken them. Ends when the decision thread's side is dropped.
fn serve(
    incoming: &Receiver<Request>,
    outgoing: &Sender<Answer>,
    waker: Waker,
    taken: &AtomicU64,
    alive: &Mutex<bool>,
) {
    // Only the decision thread may receive the wake signal (it is not blocked in a thread started from it).
    let _ = sys::block_wake_signal();
    let mut sent: u64 = 0;
    while let Ok((first, mut sources)) = incoming.recv() {
        let mut ids = vec![first];
        while let Ok((id, newer)) = incoming.try_recv() {
            ids.push(id);
            sources = newer;
        }
        let found = containers::discover(&sources);
        for id in ids {
            let container = found.iter().find(|c| *c.info.id == *id).cloned();
            if outgoing.send((id, container)).is_err() {
                return;
            }
            sent = sent.wrapping_add(1);
        }
        while taken.load(Ordering::Acquire) != sent {
            match alive.lock() {
                Ok(alive) if *alive => {
                    let _ = waker.wake();
                }
                _ => return,
            }
            std::thread::sleep(WAKE_EVERY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn nowhere(dir: &std::path::Path) -> Sources {
        Sources { proc: std::path::PathBuf::from("/proc"), ..Sources::under(&dir.join("gone")) }
    }

    /// The answer comes back, and the thread that takes it is woken out of a blocking read to take it: the
    /// waking side repeats its signal until the answer is taken.
    #[test]
    fn an_answer_wakes_the_taking_thread_out_of_its_read() {
        sys::install_wake_handler().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sources = nowhere(dir.path());
        let (reader, writer) = nix::unistd::pipe().unwrap();
        let taker = std::thread::spawn(move || {
            sys::accept_wake_signal().unwrap();
            let mut lookups = Lookups::start(Waker::current()).unwrap();
            let id = "a".repeat(64);
            assert!(lookups.ask(&id, &sources));
            assert!(lookups.ask(&id, &sources), "asked again while asked for: nothing more to do");
            let started = Instant::now();
            let mut answers = Vec::new();
            while answers.is_empty() && started.elapsed() < Duration::from_secs(10) {
                let mut buf = [0u8; 1];
                let read = nix::unistd::read(&reader, &mut buf);
                assert_eq!(read, Err(nix::errno::Errno::EINTR), "only the wake signal ends the read");
                answers.extend(lookups.take_answers().into_iter().map(|(id, found)| (id.to_string(), found)));
            }
            (answers, lookups.asked.is_empty())
        });
        let (answers, none_asked) = taker.join().unwrap();
        assert_eq!(answers, vec![("a".repeat(64), None)], "no runtime knows the container");
        assert!(none_asked, "answered, so no longer asked for");
        drop(writer);
    }
}
