//! File-rule decisions (`[policy.file]`): an open of a file below a directory a rule points at is named
//! (`/proc/self/fd/N`, the kernel's name as the opener's mount namespace shows it), decided by the file
//! matcher of the opener's scope (the host's rules for a host process, the rules of the container policies
//! that select its container for a container's) with the file's owner and the opener (its executable and uid
//! read only if a rule asks), and, when a `read_only` rule matches, by whether the open may write: read from
//! the opener's `/proc/PID/syscall` while it waits for our answer (its open, openat or creat and their flags).
//! A caller whose open flags cannot be read that way (openat2, io_uring, a thread of a process whose other
//! threads are opening too) counts as writing: refused by a Block rule.
#![forbid(unsafe_code)]

use std::os::fd::BorrowedFd;
use std::sync::Arc;

use super::container::{FileScope, Lookup};
use super::{Decider, Handled, MAX_PARKED, alerted_answer};
use crate::alert::rate_limit::Admit;
use crate::alert::{ExecAlert, open_data};
use crate::guard::Guard;
use crate::host::procfs::{self, OpenCall, ProcSubject, parse_open_call};
use crate::policy::file_rules::Access;
use crate::policy::matcher::{Outcome, Subject};
use crate::sys::{FileFacts, ProcDirs, Responder};

/// How many times `/proc/PID/syscall` is read while it says the opener is still running.
const RUNNING_RETRIES: usize = 1000;

/// What is known of the open the caller is making.
#[derive(Debug, Clone, Copy)]
struct OpenMode {
    access: Access,
    /// The call whose flags decided it, for the alert's `Data`.
    call: Option<OpenCall>,
}

/// The opener as the file rules see it, each fact read at most once and only when a rule asks: its real uid
/// through its pidfd (an `owner_only` rule asks on every open it covers), or on a kernel before 6.13 from
/// `/proc/PID/status`, read relative to the decider's `/proc` into its buffer; its executable as exec rules
/// read it.
struct Opener<'a> {
    pid: i32,
    procs: &'a ProcDirs,
    status: &'a mut Vec<u8>,
    uid: Option<Option<u32>>,
    exe: ProcSubject,
}

impl Subject for Opener<'_> {
    fn exe(&mut self) -> Option<&[u8]> {
        self.exe.exe()
    }

    fn uid(&mut self) -> Option<u32> {
        if let Some(uid) = self.uid {
            return uid;
        }
        let uid = procfs::uid_with(self.procs, self.pid, self.status);
        self.uid = Some(uid);
        uid
    }
}

impl Decider {
    /// Decides an open by the file rules of the opener's scope, with the file's `facts` (the open guard's too:
    /// one statx per event). `None`: no rule refuses or audits it, and the open guard decides it as before;
    /// `Some`: answered, or parked while the opener's container is looked up.
    pub(super) fn handle_file_rules(
        &mut self,
        responder: &impl Responder,
        guard: &Guard,
        fd: BorrowedFd<'_>,
        pid: i32,
        facts: Option<FileFacts>,
    ) -> Option<Handled> {
        let host_rules = &guard.config.file_enforced;
        let containers = guard.config.container_files;
        if host_rules.is_empty() && !containers {
            return None;
        }
        let facts = facts?;
        // The kernel's name of the file, as the opener's mount namespace shows it: a container's file is named
        // as the container sees it, which is what its policies' paths are.
        let name = self.procs.fd_path(fd, &mut self.bufs.path_buf).ok()?;
        self.bufs.canonical.clear();
        self.bufs.canonical.extend_from_slice(name);
        // The opener's container, asked at once only when a container policy has file rules: otherwise only
        // once a host rule would refuse or audit the open (host rules are the host's processes').
        let mut caller = None;
        if containers {
            let lookup = Lookup {
                procs: &self.procs,
                scopes: &self.scopes,
                thread: if self.parked.len() < MAX_PARKED { self.lookups.as_mut() } else { None },
            };
            let path = &self.bufs.canonical;
            caller = Some(self.containers.file_scope(guard, lookup, pid, path, &mut self.bufs.proc_buf));
        }
        let scope = match &caller {
            None | Some(FileScope::Host) => None,
            Some(FileScope::Container(scope)) => Some(scope.as_ref()?.clone()),
            Some(FileScope::Asked) => return Some(Handled::Parked),
        };
        let matcher = match &scope {
            Some(s) => s.files.as_ref()?,
            None => host_rules,
        };
        if matcher.is_empty() {
            return None;
        }
        let mut mode = OpenMode { access: Access::Unknown, call: None };
        if matcher.needs_access(&self.bufs.canonical) {
            mode = self.open_mode(pid);
        }
        let mut subject =
            Opener { pid, procs: &self.procs, status: &mut self.bufs.proc_buf, uid: None, exe: ProcSubject::new(pid) };
        let decision = matcher.decide(&self.bufs.canonical, mode.access, facts.uid, &mut subject);
        let rule = decision.rule.map(Arc::clone)?;
        if decision.outcome == Outcome::Allow {
            return None;
        }
        if caller.is_none() && self.containers.in_container(&self.procs, pid, &mut self.bufs.proc_buf) {
            return None;
        }
        // Past `max_alerts_per_sec` the writer drops the alert anyway: answer at once, read nothing more.
        let now = std::time::SystemTime::now();
        let tick = std::time::Instant::now();
        if self.gate.admit_with(guard.config.daemon.max_alerts_per_sec, tick) == Admit::Drop {
            self.answer(responder, fd, alerted_answer(decision.outcome));
            self.count(decision.outcome);
            self.counters.alerts_dropped_throttle.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Some(Handled::Answered);
        }
        if mode.call.is_none() {
            // For the alert's Data: read before the answer, while the caller still waits in its open.
            mode = self.open_mode(pid);
        }
        let process = (self.process_info)(pid);
        self.answer(responder, fd, alerted_answer(decision.outcome));
        self.count(decision.outcome);
        let data = match mode.call {
            Some(c) => open_data(c.syscall, c.dir_fd, c.flags.map_or(0, |f| u32::try_from(f).unwrap_or(0))),
            None => "fanotify=FAN_OPEN_PERM".to_owned(),
        };
        let alert = ExecAlert {
            when: now,
            outcome: decision.outcome,
            rule,
            resource: self.bufs.canonical.clone(),
            pid,
            process,
            hook: "FAN_OPEN_PERM",
            container: scope.map(|s| s.container.clone()),
            open: Some(data),
        };
        if self.alerts.try_send(alert).is_err() {
            self.counters.alerts_dropped_queue.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Some(Handled::Answered)
    }

    /// Whether the waiting caller's open may write: its thread's `/proc/PID/syscall`, or, in a process of
    /// several threads, every thread's (the event names the process, not the thread): any open that may
    /// write, or one whose flags cannot be read, makes it a write; no open found makes it unknown.
    fn open_mode(&mut self, pid: i32) -> OpenMode {
        let main = self.open_call(pid, None);
        let threads = match std::fs::read_dir(format!("/proc/{pid}/task")) {
            Ok(dir) => dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).collect(),
            Err(_) => Vec::new(),
        };
        if threads.len() <= 1 {
            let access = main.map_or(Access::Unknown, |c| Access::from_open_flags(c.flags));
            return OpenMode { access, call: main };
        }
        let mut mode = OpenMode { access: Access::Unknown, call: None };
        for tid in threads {
            let Some(call) = self.open_call(pid, Some(tid)) else { continue };
            let access = Access::from_open_flags(call.flags);
            match (mode.access, access) {
                (_, Access::Write | Access::Unknown) => return OpenMode { access: Access::Write, call: Some(call) },
                (Access::Unknown, Access::Read) => mode = OpenMode { access: Access::Read, call: Some(call) },
                _ => {}
            }
        }
        mode
    }

    /// The open call thread `tid` of `pid` (the process's main thread: `None`) is in. The kernel queues the
    /// event before the opener goes to sleep waiting for it, and shows `running` instead of the call until it
    /// has: read again, a bounded number of times, yielding the CPU in between (the opener is a few
    /// instructions from its sleep). Still running after that: not known, which refuses a read-only open.
    fn open_call(&mut self, pid: i32, tid: Option<i32>) -> Option<OpenCall> {
        for _ in 0..RUNNING_RETRIES {
            let read = match tid {
                None => self.procs.read_pid_file(pid, b"syscall", &mut self.bufs.proc_buf),
                Some(t) => {
                    self.procs.read_pid_file(pid, format!("task/{t}/syscall").as_bytes(), &mut self.bufs.proc_buf)
                }
            };
            read.ok()?;
            if !self.bufs.proc_buf.starts_with(b"running") {
                return parse_open_call(&self.bufs.proc_buf);
            }
            std::thread::yield_now();
        }
        None
    }
}
