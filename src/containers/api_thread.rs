//! The one thread that asks the runtimes' APIs (podman's REST API, containerd's gRPC): it keeps a
//! single-threaded tokio runtime, and what a runtime lets us keep (containerd's connection), across looks,
//! where a look every 500 ms would otherwise start a thread, a runtime and a connection each time. Whoever
//! asks (the tokio side's blocking task, the lookup thread, the decision thread past the lookup queue,
//! `noexecd containers`) needs no runtime of its own and waits at most the limit it gives; a question still
//! queued past that limit is dropped unasked. Questions are asked one at a time.

use std::future::Future;
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

type Job = Box<dyn FnOnce(&Runtime) + Send>;

/// The thread's inbox, started at the first question and again if the thread is gone.
static INBOX: Mutex<Option<Sender<Job>>> = Mutex::new(None);

/// The output of the future `make` builds, run on the API thread; `None` when it is not there within
/// `limit` (queueing included) or the thread cannot be started.
pub(crate) fn ask<T, F, Fut>(limit: Duration, make: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let deadline = Instant::now() + limit;
    let (reply, answer) = mpsc::sync_channel(1);
    let job: Job = Box::new(move |runtime: &Runtime| {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        // Built inside the runtime: a timer needs its context.
        if let Ok(out) = runtime.block_on(async move { tokio::time::timeout(left, make()).await }) {
            let _ = reply.send(out);
        }
    });
    if !hand_over(job) {
        return None;
    }
    answer.recv_timeout(limit).ok()
}

fn hand_over(job: Job) -> bool {
    // A poisoned lock: a thread panicked while sending, which leaves the sender as it was.
    let mut inbox = INBOX.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let job = match inbox.as_ref() {
        Some(tx) => match tx.send(job) {
            Ok(()) => return true,
            Err(mpsc::SendError(job)) => job,
        },
        None => job,
    };
    let (tx, rx) = mpsc::channel();
    let started = std::thread::Builder::new().name("noexecd-runtime-api".into()).spawn(move || serve(&rx));
    if let Err(e) = started {
        tracing::warn!(error = %e, "cannot start the thread that asks the container runtimes' APIs");
        return false;
    }
    let sent = tx.send(job).is_ok();
    *inbox = Some(tx);
    sent
}

fn serve(inbox: &Receiver<Job>) {
    // The decision thread's wake signal is sent to that thread alone; this one never takes it.
    let _ = crate::sys::block_wake_signal();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot build the runtime that asks the container runtimes' APIs");
            return;
        }
    };
    while let Ok(job) = inbox.recv() {
        job(&runtime);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn answers_in_time_and_gives_up_past_the_limit() {
        assert_eq!(ask(Duration::from_secs(1), || async { 7 }), Some(7));
        let t = Instant::now();
        let slow = ask(Duration::from_millis(200), || async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            1
        });
        assert_eq!(slow, None);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // The thread is free again: the slow question was dropped at its limit.
        assert_eq!(ask(Duration::from_secs(1), || async { 8 }), Some(8));
    }
}
