//! The files an allowed exec goes on to open for exec: the ELF interpreter its PT_INTERP names, and the
//! interpreter a `#!` line names (and then that one's own PT_INTERP). The kernel opens them within the same
//! `execve`, from the same task, after the program itself; each raises a FAN_OPEN_EXEC_PERM of its own. They
//! are part of the exec already decided, not execs of their own: under an Allow posture the default posture
//! must not refuse them (a Block or Audit rule naming the interpreter itself still applies).
//!
//! When an exec by pid P is allowed while an Allow posture is in force for its scope, the interpreter the file
//! names is read from it (a `#!` line, or PT_INTERP: a bounded pread or two of the event fd, after the answer)
//! and remembered with P in a small ring. P's next exec event takes the entry. Where the posture alone refused
//! it, it is let through when all of these hold:
//!
//! - its file is the named interpreter: the name looked up as P sees it (`/proc/P/root`, symlinks followed)
//!   is the event's file by device and inode (a file of a read-only image layer, whose event comes from the
//!   layer while P's lookup goes through the overlay: by inode);
//! - P's kernel stack shows the open made by a binary format's loader (`load_elf_binary`, `load_script`)
//!   inside an `execve`, not the first open of an `execve` of its own: an `execve` of an allowed program that
//!   fails after its open (a bad argv pointer) cannot leave the entry to a following `execve` of the loader
//!   itself (`ld.so /tmp/x`).
//!
//!
//! fanotify reports the thread group, not the thread, and `/proc/PID/stack` is the group leader's: a
//! container's first program is exec'd by a multi-threaded `runc init` (from its leader), so more threads are
//! no reason to refuse. A process of several threads could race one thread's direct exec of the loader into
//! the moment its leader's allowed exec opens that same loader; closing that needs the thread's id
//! (`FAN_REPORT_TID`).
//!
//! Where any of it cannot be read (a kernel before 5.7, where reading the stack of a task in `execve` would
//! wait for that `execve`), the posture decides as before. Without an Allow posture the ring stays
//! empty and an exec costs one comparison more.
#![forbid(unsafe_code)]

use std::os::fd::BorrowedFd;

use super::sniff::{self, HEAD_LEN, MAX_PROGRAM_HEADERS, SHEBANG_LEN};
use crate::sys::{self, FileFacts, ProcDirs};

/// Allowed execs whose interpreter is awaited: a ring, the oldest replaced first.
const PENDING: usize = 16;

/// How many times an empty `/proc/PID/stack` (the caller still running) is read again.
const EMPTY_STACK_RETRIES: usize = 1000;

/// The longest interpreter name remembered; a longer one is decided by the posture.
pub const INTERP_MAX: usize = 128;

/// What is read from the file at once: the `#!` line, the ELF header and, for nearly every program, its
/// program headers and PT_INTERP name too.
const FIRST_READ: usize = 4096;

/// The names of the kernel's binary-format loaders, as `/proc/PID/stack` shows them: an exec-open made by
/// one of these is an interpreter's, within an `execve`.
const LOADER_FRAMES: [&[u8]; 3] = [b"load_elf_binary+", b"load_script+", b"load_elf_fdpic_binary+"];

/// An allowed exec whose interpreter is awaited.
#[derive(Debug, Clone, Copy)]
struct Pending {
    pid: i32,
    len: u8,
    name: [u8; INTERP_MAX],
}

impl Pending {
    const EMPTY: Pending = Pending { pid: 0, len: 0, name: [0; INTERP_MAX] };

    fn name(&self) -> &[u8] {
        self.name.get(..usize::from(self.len)).unwrap_or_default()
    }
}

/// The interpreter an allowed exec named, taken by the caller's next exec event.
#[derive(Debug, Clone, Copy)]
pub struct Awaited(Pending);

impl Awaited {
    pub fn name(&self) -> &[u8] {
        self.0.name()
    }
}

/// The ring of allowed execs awaiting their interpreter, and the buffers their files are read into (made
/// once).
pub struct ExecChain {
    ring: [Pending; PENDING],
    next: usize,
    /// Entries in the ring not taken yet: zero on every host without an Allow posture.
    live: usize,
    read: Box<[u8; FIRST_READ]>,
    stack: Vec<u8>,
    /// Whether `/proc/PID/stack` may be read while the caller is inside `execve`: before Linux 5.7 reading it
    /// takes the `cred_guard_mutex` the exec holds while it waits for our answer (a deadlock).
    stack_readable: bool,
}

impl Default for ExecChain {
    fn default() -> Self {
        Self {
            ring: [Pending::EMPTY; PENDING],
            next: 0,
            live: 0,
            read: Box::new([0u8; FIRST_READ]),
            stack: Vec::with_capacity(32 * 1024),
            stack_readable: std::fs::read("/proc/sys/kernel/osrelease").is_ok_and(|r| at_least(&r, (5, 7))),
        }
    }
}

impl ExecChain {
    /// Takes the interpreter awaited from `pid` (the newest), if any: every exec event of `pid` takes it, so
    /// that it serves the next exec-open only.
    pub fn take(&mut self, pid: i32) -> Option<Awaited> {
        if self.live == 0 {
            return None;
        }
        let mut found = None;
        for slot in self.ring.iter_mut() {
            if slot.len > 0 && slot.pid == pid {
                found = Some(*slot);
                *slot = Pending::EMPTY;
                self.live = self.live.saturating_sub(1);
            }
        }
        found.map(Awaited)
    }

    /// Remembers that `pid`'s allowed exec names `interp` (ignored past [`INTERP_MAX`] bytes).
    pub fn expect(&mut self, pid: i32, interp: &[u8]) {
        let Ok(len) = u8::try_from(interp.len()) else { return };
        if interp.is_empty() || interp.len() > INTERP_MAX {
            return;
        }
        let mut name = [0u8; INTERP_MAX];
        let Some(dst) = name.get_mut(..interp.len()) else { return };
        dst.copy_from_slice(interp);
        // One entry per pid: an older one is the same exec's earlier link, superseded.
        let _ = self.take(pid);
        if let Some(slot) = self.ring.get_mut(self.next % PENDING) {
            if slot.len > 0 {
                self.live = self.live.saturating_sub(1);
            }
            *slot = Pending { pid, len, name };
            self.live = self.live.saturating_add(1);
        }
        self.next = self.next.wrapping_add(1);
    }

    /// Reads the interpreter the file behind `fd` names and remembers it for `pid`'s next exec-open.
    pub fn expect_from_file(&mut self, fd: BorrowedFd<'_>, pid: i32) {
        let mut name = [0u8; INTERP_MAX];
        if let Some(len) = interpreter_of(&mut |buf, at| sys::read_at(fd, buf, at).ok(), &mut self.read, &mut name)
            && let Some(interp) = name.get(..len)
        {
            self.expect(pid, interp);
        }
    }

    /// Whether the exec-open of the file `facts` (`layer`: a file of a read-only image layer) by `pid` is the
    /// interpreter `awaited` names, opened by the kernel within `pid`'s `execve` (see the module docs).
    pub fn is_awaited(
        &mut self,
        procs: &ProcDirs,
        pid: i32,
        awaited: &Awaited,
        facts: &FileFacts,
        layer: bool,
    ) -> bool {
        let Ok(named) = procs.pid_path_facts(pid, awaited.name()) else { return false };
        let same = (named.dev == facts.dev || layer) && named.ino == facts.ino;
        same && self.stack_readable && self.loader_on_stack(procs, pid)
    }

    /// Whether `pid`'s kernel stack shows a binary format's loader. The event is queued a moment before the
    /// caller sleeps waiting for its answer; while it still runs on another CPU the kernel shows an empty
    /// stack (it unwinds only a task that is not running), so an empty one is read again, yielding the CPU in
    /// between, at most [`EMPTY_STACK_RETRIES`] times. Any stack it shows while the event waits is the one
    /// inside this open. Still empty after that: not shown, and the posture decides.
    fn loader_on_stack(&mut self, procs: &ProcDirs, pid: i32) -> bool {
        for _ in 0..EMPTY_STACK_RETRIES {
            if procs.read_pid_file(pid, b"stack", &mut self.stack).is_err() {
                return false;
            }
            if self.stack.iter().any(|b| !b.is_ascii_whitespace()) {
                return opened_by_a_loader(&self.stack);
            }
            std::thread::yield_now();
        }
        false
    }
}

/// Whether a kernel release (`6.18.44-...`) is at least `(major, minor)`.
fn at_least(release: &[u8], want: (u32, u32)) -> bool {
    let mut parts =
        release.split(|&b| b == b'.' || b == b'-').map(|p| std::str::from_utf8(p).ok()?.trim().parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= want,
        _ => false,
    }
}

/// Whether a `/proc/PID/stack` shows a binary format's loader at work.
pub fn opened_by_a_loader(stack: &[u8]) -> bool {
    stack.split(|&b| b == b'\n').any(|line| LOADER_FRAMES.iter().any(|f| line.windows(f.len()).any(|w| w == *f)))
}

/// The interpreter a file names (`#!` line or PT_INTERP) into `name`: its length. `read(buf, offset)` preads
/// the file; `buf` is scratch of [`FIRST_READ`] bytes. At most three reads, of bounded size.
fn interpreter_of(
    read: &mut dyn FnMut(&mut [u8], u64) -> Option<usize>,
    buf: &mut [u8; FIRST_READ],
    name: &mut [u8; INTERP_MAX],
) -> Option<usize> {
    let got = read(buf.as_mut_slice(), 0)?;
    let head = buf.get(..got)?;
    let found: &[u8] = if head.starts_with(b"#!") {
        sniff::shebang_interpreter(head.get(..got.min(SHEBANG_LEN))?)?
    } else {
        let ph = sniff::program_headers(head.get(..got.min(HEAD_LEN))?)?;
        let table_end = ph.offset.checked_add(u64::try_from(ph.len()).ok()?)?;
        let (at, len) = if table_end <= u64::try_from(got).ok()? {
            let start = usize::try_from(ph.offset).ok()?;
            ph.interp(head.get(start..start.checked_add(ph.len())?)?)?
        } else {
            let mut table = [0u8; 56 * MAX_PROGRAM_HEADERS];
            let want = table.get_mut(..ph.len())?;
            if read(want, ph.offset)? != ph.len() {
                return None;
            }
            ph.interp(want)?
        };
        // The name with its NUL; one past the longest remembered is refused anyway.
        let len = usize::try_from(len).ok().filter(|&l| l <= INTERP_MAX + 1)?;
        let end = at.checked_add(u64::try_from(len).ok()?)?;
        if end <= u64::try_from(got).ok()? {
            let start = usize::try_from(at).ok()?;
            sniff::interp_name(head.get(start..start.checked_add(len)?)?)?
        } else {
            let segment = buf.get_mut(..len)?;
            if read(segment, at)? != len {
                return None;
            }
            sniff::interp_name(buf.get(..len)?)?
        }
    };
    let dst = name.get_mut(..found.len())?;
    dst.copy_from_slice(found);
    Some(found.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interp_of(file: &[u8]) -> Option<Vec<u8>> {
        let mut reads = 0;
        let mut read = |buf: &mut [u8], at: u64| -> Option<usize> {
            reads += 1;
            let at = usize::try_from(at).ok()?;
            let src = file.get(at.min(file.len())..)?;
            let n = src.len().min(buf.len());
            buf.get_mut(..n)?.copy_from_slice(src.get(..n)?);
            Some(n)
        };
        let mut buf = Box::new([0u8; FIRST_READ]);
        let mut name = [0u8; INTERP_MAX];
        let len = interpreter_of(&mut read, &mut buf, &mut name)?;
        assert!(reads <= 3, "{reads} reads");
        Some(name[..len].to_vec())
    }

    /// A 64-bit little-endian ELF with one PT_INTERP header at `ph_at`, naming `interp` at `name_at`.
    fn elf(ph_at: usize, name_at: usize, interp: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; name_at.max(ph_at + 56) + interp.len() + 1];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[16] = 3;
        f[32..40].copy_from_slice(&(ph_at as u64).to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        f[ph_at..ph_at + 4].copy_from_slice(&3u32.to_le_bytes());
        f[ph_at + 8..ph_at + 16].copy_from_slice(&(name_at as u64).to_le_bytes());
        f[ph_at + 32..ph_at + 40].copy_from_slice(&(interp.len() as u64 + 1).to_le_bytes());
        f[name_at..name_at + interp.len()].copy_from_slice(interp);
        f
    }

    #[test]
    fn the_interpreter_is_read_from_the_first_page_or_beyond_it() {
        let ld = b"/lib64/ld-linux-x86-64.so.2";
        assert_eq!(interp_of(&elf(64, 400, ld)).as_deref(), Some(&ld[..]));
        assert_eq!(interp_of(&elf(64, 9000, ld)).as_deref(), Some(&ld[..]), "the name past the first read");
        assert_eq!(interp_of(&elf(8192, 9000, ld)).as_deref(), Some(&ld[..]), "the headers past it");
        assert_eq!(interp_of(b"#!/bin/sh -e\necho\n").as_deref(), Some(&b"/bin/sh"[..]));
        assert_eq!(interp_of(b"echo hi\n"), None);
        let long = vec![b'a'; INTERP_MAX + 1];
        assert_eq!(interp_of(&elf(64, 400, &long)), None, "a name too long to remember");
        let mut cut = elf(64, 9000, ld);
        cut.truncate(9005);
        assert_eq!(interp_of(&cut), None, "a name cut short by the end of the file");
    }

    #[test]
    fn an_interpreter_is_awaited_once_from_its_caller() {
        let mut chain = ExecChain::default();
        assert!(chain.take(7).is_none());
        chain.expect(7, b"/bin/sh");
        chain.expect(8, b"/lib/ld.so");
        assert_eq!(chain.live, 2);
        assert!(chain.take(9).is_none(), "another caller");
        assert_eq!(chain.take(7).map(|a| a.name().to_vec()), Some(b"/bin/sh".to_vec()));
        assert!(chain.take(7).is_none(), "taken once");
        chain.expect(8, b"/lib/ld-2.so");
        assert_eq!(chain.take(8).map(|a| a.name().to_vec()), Some(b"/lib/ld-2.so".to_vec()), "the newest");
        assert!(chain.take(8).is_none(), "the older one went with it");
        assert_eq!(chain.live, 0);
        chain.expect(5, &[b'a'; INTERP_MAX + 1]);
        chain.expect(5, b"");
        assert_eq!(chain.live, 0, "nothing remembered");
        for pid in 100..100 + 3 * PENDING as i32 {
            chain.expect(pid, b"/x");
        }
        assert_eq!(chain.live, PENDING, "the ring holds its size");
        assert!(chain.take(100).is_none(), "pushed out");
        assert!(chain.take(99 + 3 * PENDING as i32).is_some());
    }

    #[test]
    fn the_kernel_release_is_read() {
        assert!(at_least(b"6.18.44-fc-v1272\n", (5, 7)));
        assert!(at_least(b"5.7.0", (5, 7)));
        assert!(!at_least(b"5.6.19-generic", (5, 7)));
        assert!(!at_least(b"4.19.0", (5, 7)));
        assert!(!at_least(b"garbage", (5, 7)));
    }

    #[test]
    fn a_loader_frame_is_found_in_a_kernel_stack() {
        let interp = b"[<0>] fanotify_handle_event+0x1/0x2\n[<0>] do_open_execat+0x1/0x2\n\
                       [<0>] open_exec+0x1/0x2\n[<0>] load_elf_binary+0x3f1/0x1b50\n[<0>] bprm_execve+0x1/0x2\n";
        let primary = b"[<0>] fanotify_handle_event+0x1/0x2\n[<0>] do_open_execat+0x1/0x2\n\
                        [<0>] alloc_bprm+0x1/0x2\n[<0>] do_execveat_common+0x1/0x2\n";
        assert!(opened_by_a_loader(interp));
        assert!(opened_by_a_loader(b"[<0>] load_script+0x10/0x20\n"));
        assert!(!opened_by_a_loader(primary));
        assert!(!opened_by_a_loader(b""));
    }

    #[test]
    fn the_awaited_name_must_be_the_file_the_caller_reaches() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        std::os::unix::fs::symlink(&a, dir.path().join("link")).unwrap();
        let facts = |p: &std::path::Path| sys::path_facts(p).unwrap();
        let procs = ProcDirs::open();
        let me = i32::try_from(std::process::id()).unwrap();
        let link = dir.path().join("link");
        let named = procs.pid_path_facts(me, link.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!((named.dev, named.ino), (facts(&a).dev, facts(&a).ino), "symlinks followed");
        let mut chain = ExecChain::default();
        chain.expect(me, link.as_os_str().as_encoded_bytes());
        let awaited = chain.take(me).unwrap();
        // This test's own stack shows no loader: even the right file is not taken for an interpreter here.
        assert!(!chain.is_awaited(&procs, me, &awaited, &facts(&a), false));
        assert!(!chain.is_awaited(&procs, me, &awaited, &facts(&b), false));
    }
}
