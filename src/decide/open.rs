//! Open-guard decisions (`FAN_OPEN_PERM`): code loaded without exec (`ld.so /tmp/x`, `LD_PRELOAD`, `sh
//! /tmp/x`). An open is allowed at once unless the file could run (a loadable ELF or a script-like text, by
//! its first bytes), is in protected scope, and the opener is running it (the loader, a non-reader mapping an
//! ELF, an interpreter naming it in argv, see `opener`). Only then is /proc read.
#![forbid(unsafe_code)]

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::opener::{self, OpenedFile};
use super::rules::Route;
use super::sniff::sniff;
use super::verdict::{Findings, Resolved, Verdict};
use super::{Decider, Handled, alerted_answer};
use crate::guard::Guard;
use crate::host::procfs::ProcSubject;
use crate::policy::matcher::Outcome;
use crate::sys::{self, PATH_BUF_LEN, Responder, Response};

impl Decider {
    pub(super) fn handle_open(
        &mut self,
        responder: &impl Responder,
        guard: &Guard,
        fd: BorrowedFd<'_>,
        pid: i32,
    ) -> Handled {
        let allow = |d: &Self| {
            d.answer(responder, fd, Response::Allow);
            d.counters.allowed.fetch_add(1, Ordering::Relaxed);
            Handled::Answered
        };
        let enabled = guard.config.open_guard.enabled;
        // One statx for both: the file rules' owner, the open guard's look at the file.
        let files = !guard.config.file_enforced.is_empty() || guard.config.container_files;
        let facts = (enabled || files).then(|| sys::file_facts(fd).ok()).flatten();
        // The file rules first: a refused open is refused whatever the open guard would say of it.
        if let Some(handled) = self.handle_file_rules(responder, guard, fd, pid, facts) {
            return handled;
        }
        if !enabled {
            return allow(self);
        }
        let Some(facts) = facts else { return allow(self) };
        let after_exec = self.recent.find(pid, &facts);
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
            self.name_for_alert(guard, fd, pid);
            self.bufs.canonical.clone()
        };
        let config = &guard.config.open_guard;
        let route = opener::judge(config, &guard.loaders, file, pid, &procs, &mut exe_buf, &mut name);
        self.exe_buf = Some(exe_buf);
        let Some(route) = route else { return allow(self) };
        if route == Route::OpenerUnreadable {
            self.counters.openers_unreadable.fetch_add(1, Ordering::Relaxed);
        }
        let mut found = Findings::new(&mut self.bufs);
        let Verdict { outcome, rule, resolved } =
            self.decide_with(guard, fd, pid, Ok(facts), &mut ProcSubject::new(pid), &mut found);
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
        self.recent.remember(pid, &facts, outcome == Outcome::Block);
        self.queue_alert(outcome, rule, pid, process, route.data(), &found);
        Handled::Answered
    }
}
