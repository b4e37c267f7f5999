//! Waking the decision thread out of its blocking read(2) on the group. It sleeps in that read, not in epoll:
//! one syscall per wake-up instead of two, a few µs of every round trip the kernel waits on. A signal whose
//! handler does nothing, installed without `SA_RESTART`, makes the read return EINTR once the queue is empty
//! (the kernel hands out queued events first).

use std::thread::JoinHandle;

use nix::errno::Errno;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// Nothing else in the process uses it; its default action (ending the process) no longer applies.
const WAKE_SIGNAL: Signal = Signal::SIGUSR2;

extern "C" fn do_nothing(_: libc::c_int) {}

/// Installs the wake signal's handler, process-wide: call it before the decision thread starts.
pub fn install_wake_handler() -> Result<(), Errno> {
    let action = SigAction::new(SigHandler::Handler(do_nothing), SaFlags::empty(), SigSet::empty());
    // SAFETY: the handler touches nothing, so it is async-signal-safe whatever it interrupts, and no other code
    // of this process relies on SIGUSR2's disposition.
    unsafe { sigaction(WAKE_SIGNAL, &action) }.map(|_| ())
}

/// Blocks the wake signal in the calling thread, and so in every thread started from it afterwards: sent from
/// outside the process, it can then reach only the decision thread ([`accept_wake_signal`]), where it does
/// nothing but make a read return EINTR.
pub fn block_wake_signal() -> Result<(), Errno> {
    let mut set = SigSet::empty();
    set.add(WAKE_SIGNAL);
    set.thread_block()
}

/// Unblocks the wake signal in the calling thread (the decision thread, started after [`block_wake_signal`]).
pub fn accept_wake_signal() -> Result<(), Errno> {
    let mut set = SigSet::empty();
    set.add(WAKE_SIGNAL);
    set.thread_unblock()
}

/// Sends the wake signal to the thread of `handle` (not joined yet, so its id is still its own).
pub fn wake_thread<T>(handle: &JoinHandle<T>) -> Result<(), Errno> {
    use std::os::unix::thread::JoinHandleExt;
    // std's pthread_t is an integer on every target, the libc crate's a pointer on musl (the static build):
    // the same value either way.
    #[allow(clippy::unnecessary_cast)]
    let thread = handle.as_pthread_t() as nix::sys::pthread::Pthread;
    nix::sys::pthread::pthread_kill(thread, WAKE_SIGNAL)
}

/// A thread that can be woken out of its blocking read by another thread: its id, taken by [`Waker::current`]
/// in that thread. Held as an integer, so that it can be sent to the waking thread whatever `pthread_t` is.
#[derive(Debug, Clone, Copy)]
pub struct Waker(usize);

impl Waker {
    /// The calling thread.
    pub fn current() -> Self {
        // A pointer on musl, an integer elsewhere: kept as the same bits either way.
        #[allow(clippy::unnecessary_cast)]
        let id = nix::sys::pthread::pthread_self() as usize;
        Self(id)
    }

    /// Sends the wake signal to the thread. Its caller must know that the thread has not ended (a thread id is
    /// reused once its thread is joined).
    pub fn wake(self) -> Result<(), Errno> {
        #[allow(clippy::unnecessary_cast)]
        let thread = self.0 as nix::sys::pthread::Pthread;
        nix::sys::pthread::pthread_kill(thread, WAKE_SIGNAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocking_read_returns_eintr_when_its_thread_is_woken() {
        install_wake_handler().unwrap();
        let (reader, writer) = nix::unistd::pipe().unwrap();
        // Blocked where the thread is started, as the daemon does, and accepted by the woken thread alone.
        let blocked = std::thread::spawn(move || {
            block_wake_signal().unwrap();
            std::thread::spawn(move || {
                accept_wake_signal().unwrap();
                let mut buf = [0u8; 1];
                nix::unistd::read(&reader, &mut buf)
            })
        })
        .join()
        .unwrap();
        // Until it has returned: a signal that lands before the thread enters read(2) is lost.
        while !blocked.is_finished() {
            wake_thread(&blocked).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(blocked.join().unwrap(), Err(Errno::EINTR));
        drop(writer);
    }
}
