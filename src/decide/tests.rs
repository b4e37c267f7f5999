//! Unit tests of the decision path: `Decider::handle` on real files, without a fanotify group or root.

use super::test_scene::{guard, known_mount, scene};
use super::*;
use crate::host::mounts::MountTable;
use std::path::{Path, PathBuf};

/// `Decider::handle` driven through the `Responder` seam: events built from files of a temporary
/// directory (real fds, real statx and /proc/self/fd names), answers recorded, no fanotify group, no root.
mod handle {
    use super::*;
    use crate::policy::matcher::Outcome;
    use std::cell::{Cell, RefCell};
    use std::os::fd::{AsRawFd, OwnedFd, RawFd};
    use std::os::unix::ffi::OsStrExt;

    /// Blocks every exec below the test's directory.
    const BLOCK_DIR: &str = r#"
[[policy]]
name = "test-dir"
[[policy.process.match_directories]]
dir = "{dir}/"
recursive = true
"#;

    thread_local! {
        /// Calls of `counting_process_info` on this test's thread.
        static PROCESS_READS: Cell<usize> = const { Cell::new(0) };
    }

    /// The real /proc reader, counted.
    fn counting_process_info(pid: i32) -> ProcessInfo {
        PROCESS_READS.with(|n| n.set(n.get() + 1));
        procfs::process_info(pid)
    }

    fn process_reads() -> usize {
        PROCESS_READS.with(Cell::get)
    }

    /// One answer, with what had happened when it was given.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Answered {
        fd: RawFd,
        answer: Response,
        alerts_queued: usize,
        process_reads: usize,
    }

    /// Records every answer; looks at the alert queue at the moment it is called.
    struct Recording<'a> {
        alerts: &'a mpsc::Receiver<ExecAlert>,
        answers: RefCell<Vec<Answered>>,
    }

    impl<'a> Recording<'a> {
        fn new(alerts: &'a mpsc::Receiver<ExecAlert>) -> Self {
            Self { alerts, answers: RefCell::new(Vec::new()) }
        }

        fn answers(&self) -> Vec<Answered> {
            self.answers.borrow().clone()
        }
    }

    impl Responder for Recording<'_> {
        fn respond(&self, fd: BorrowedFd<'_>, answer: Response) -> std::io::Result<()> {
            let alerts_queued = self.alerts.len();
            let a = Answered { fd: fd.as_raw_fd(), answer, alerts_queued, process_reads: process_reads() };
            self.answers.borrow_mut().push(a);
            Ok(())
        }
    }

    /// A Decider whose alert queue is returned, reading /proc through `counting_process_info`.
    fn decider() -> (Decider, mpsc::Receiver<ExecAlert>, Arc<Counters>) {
        let (tx, rx) = mpsc::channel(16);
        let counters = Arc::new(Counters::default());
        let mut d = Decider::new(tx, counters.clone());
        d.process_info = counting_process_info;
        (d, rx, counters)
    }

    /// The test process plays the caller of exec: the Decider takes itself for pid 0, which no event has.
    fn as_another_process(d: &mut Decider) {
        d.own_pid = 0;
    }

    fn me() -> i32 {
        i32::try_from(std::process::id()).unwrap()
    }

    /// An exec event on `file` by `pid`, with a fresh fd of its own.
    fn exec_event(file: &Path, pid: i32) -> (Event, RawFd) {
        let fd = OwnedFd::from(std::fs::File::open(file).unwrap());
        let raw = fd.as_raw_fd();
        (Event { fd: Some(fd), pid, mask: Mask::FAN_OPEN_EXEC_PERM }, raw)
    }

    #[test]
    fn the_answer_comes_before_the_alert_is_queued() {
        let s = scene();
        let guard = guard(&s, BLOCK_DIR, known_mount(&s));
        let (mut d, mut rx, counters) = decider();
        as_another_process(&mut d);
        let rec = Recording::new(&rx);
        let (event, fd) = exec_event(&s.file, me());
        d.handle(&rec, &guard, event);
        // Answered once, on the event's fd, denied with an audit record; the caller's facts were read
        // before the answer and no alert was queued yet.
        let want = Answered { fd, answer: Response::DenyAudited, alerts_queued: 0, process_reads: 1 };
        assert_eq!(rec.answers(), vec![want]);
        drop(rec);
        let alert = rx.try_recv().expect("the alert is queued after the answer");
        assert_eq!(alert.outcome, Outcome::Block);
        assert_eq!(alert.rule.policy, "test-dir");
        assert_eq!(alert.resource, s.file.as_os_str().as_bytes());
        assert_eq!(alert.pid, me());
        assert_eq!(alert.hook, "FAN_OPEN_EXEC_PERM");
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        assert_eq!(alert.process.exe, exe.as_os_str().as_bytes(), "the facts read before the answer");
        assert!(rx.try_recv().is_err(), "one alert");
        assert_eq!(counters.blocked.load(Ordering::Relaxed), 1);
    }

    /// Denies the exec of `scene.dir/sub/x` three times as pid `me()`: before `sub` is renamed to `moved`,
    /// after (which leaves the file's ctime as it was), and after `change` ran on the moved file (or a new
    /// guard came, with `new_guard`). Returns the alerts' resources, all blocked.
    fn denied_thrice(policy: &str, change: impl Fn(&Path), new_guard: bool) -> Vec<Vec<u8>> {
        let s = scene();
        std::fs::create_dir(s.dir.join("sub")).unwrap();
        let file = s.dir.join("sub/x");
        std::fs::write(&file, b"#!/bin/sh\n").unwrap();
        let first = guard(&s, policy, known_mount(&s));
        let second = guard(&s, policy, known_mount(&s));
        let (mut d, mut rx, counters) = decider();
        as_another_process(&mut d);
        let rec = Recording::new(&rx);
        d.handle(&rec, &first, exec_event(&file, me()).0);
        std::fs::rename(s.dir.join("sub"), s.dir.join("moved")).unwrap();
        let moved = s.dir.join("moved/x");
        d.handle(&rec, &first, exec_event(&moved, me()).0);
        change(&moved);
        d.handle(&rec, if new_guard { &second } else { &first }, exec_event(&moved, me()).0);
        let answers: Vec<Response> = rec.answers().iter().map(|a| a.answer).collect();
        assert_eq!(answers, vec![Response::DenyAudited; 3]);
        assert_eq!(counters.blocked.load(Ordering::Relaxed), 3);
        drop(rec);
        let resources: Vec<Vec<u8>> = std::iter::from_fn(|| rx.try_recv().ok()).map(|a| a.resource).collect();
        assert_eq!(resources.len(), 3, "every attempt alerted");
        resources
    }

    fn name(s: &Path, rest: &str) -> Vec<u8> {
        s.parent().unwrap().parent().unwrap().join(rest).as_os_str().as_bytes().to_vec()
    }

    #[test]
    fn a_denial_repeated_at_once_is_named_from_memory_until_the_file_changes() {
        let chmod = |f: &Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o700)).unwrap();
        };
        let got = denied_thrice(BLOCK_DIR, chmod, false);
        let dir = |r: &str| name(&PathBuf::from(std::str::from_utf8(&got[0]).unwrap()), r);
        // The rename of a parent does not show in the file's ctime: the second denial is the first one
        // remembered, named as it was (see `denials`); the chmod moved the ctime, so the third is named anew.
        assert_eq!(got, vec![dir("sub/x"), dir("sub/x"), dir("moved/x")]);
    }

    #[test]
    fn a_new_guard_forgets_the_denials_made_under_the_last() {
        let got = denied_thrice(BLOCK_DIR, |_| {}, true);
        let dir = |r: &str| name(&PathBuf::from(std::str::from_utf8(&got[0]).unwrap()), r);
        assert_eq!(got, vec![dir("sub/x"), dir("sub/x"), dir("moved/x")]);
    }

    #[test]
    fn a_denial_that_read_the_callers_executable_is_never_remembered() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let policy = format!(
            "[[policy]]\nname = \"by-source\"\n[[policy.process.match_directories]]\ndir = \"{{dir}}/\"\nrecursive = true\nfrom_source = [\"{}\"]\n",
            exe.display()
        );
        let got = denied_thrice(&policy, |_| {}, false);
        let dir = |r: &str| name(&PathBuf::from(std::str::from_utf8(&got[0]).unwrap()), r);
        assert_eq!(got, vec![dir("sub/x"), dir("moved/x"), dir("moved/x")]);
    }

    #[test]
    fn past_the_alert_limit_a_denial_reads_no_proc_and_queues_nothing() {
        let s = scene();
        let policy = format!("[daemon]\nmax_alerts_per_sec = 1\n{BLOCK_DIR}");
        let guard = guard(&s, &policy, known_mount(&s));
        let (mut d, rx, counters) = decider();
        as_another_process(&mut d);
        let rec = Recording::new(&rx);
        // The first alert of the second is written; the first past the limit is still sent complete (the
        // writer writes the threshold notice for it); from the next one on the gate drops them.
        for _ in 0..2 {
            d.handle(&rec, &guard, exec_event(&s.file, me()).0);
        }
        assert_eq!((process_reads(), rx.len()), (2, 2), "both admitted alerts read /proc and are queued");
        let (event, fd) = exec_event(&s.file, me());
        d.handle(&rec, &guard, event);
        let last = rec.answers().last().copied();
        let want = Answered { fd, answer: Response::DenyAudited, alerts_queued: 2, process_reads: 2 };
        assert_eq!(last, Some(want), "throttled: denied all the same, with no /proc read before the answer");
        assert_eq!(process_reads(), 2, "nor after it");
        assert_eq!(rx.len(), 2, "no alert queued");
        assert_eq!(counters.alerts_dropped_throttle.load(Ordering::Relaxed), 1);
        assert_eq!(counters.blocked.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn the_daemons_own_execs_are_allowed_without_alert() {
        let s = scene();
        let guard = guard(&s, BLOCK_DIR, known_mount(&s));
        let (mut d, rx, counters) = decider();
        let rec = Recording::new(&rx);
        let (event, fd) = exec_event(&s.file, me());
        d.handle(&rec, &guard, event);
        let want = Answered { fd, answer: Response::Allow, alerts_queued: 0, process_reads: 0 };
        assert_eq!(rec.answers(), vec![want]);
        assert!(rx.is_empty(), "no alert");
        assert_eq!(counters.blocked.load(Ordering::Relaxed), 0);
        // The same exec by any other process is blocked: the pid alone let it through.
        as_another_process(&mut d);
        d.handle(&rec, &guard, exec_event(&s.file, me()).0);
        assert_eq!(rec.answers().last().map(|a| a.answer), Some(Response::DenyAudited));
    }

    #[test]
    fn an_unresolvable_path_on_a_guarded_filesystem_is_denied() {
        let s = scene();
        // The rule protects another directory of the same filesystem: by its name the file would be
        // allowed. But the file was opened through a mount the table does not know (as if through
        // another mount namespace), and the caller is gone (no such pid), so no name can be found.
        let policy = BLOCK_DIR.replace("{dir}", "/noexecd-test-protected");
        let gone = i32::MAX;
        let unknown_mount = known_mount(&s).wrapping_add(1_000_000);
        let guard = guard(&s, &policy, unknown_mount);
        let (mut d, mut rx, counters) = decider();
        let rec = Recording::new(&rx);
        let (event, fd) = exec_event(&s.file, gone);
        d.handle(&rec, &guard, event);
        let want = Answered { fd, answer: Response::DenyAudited, alerts_queued: 0, process_reads: 1 };
        assert_eq!(rec.answers(), vec![want]);
        drop(rec);
        let alert = rx.try_recv().expect("an alert");
        assert_eq!(alert.rule.policy, "noexecd-unresolvable-path");
        assert_eq!(alert.outcome, Outcome::Block);
        assert_eq!(alert.process, ProcessInfo { uid: -1, ..ProcessInfo::default() }, "a gone pid reads nothing");
        assert_eq!(counters.unresolved.load(Ordering::Relaxed), 1);
        // Through the mount the table knows, the same file resolves and is allowed.
        let known = self::guard(&s, &policy, known_mount(&s));
        let rec = Recording::new(&rx);
        d.handle(&rec, &known, exec_event(&s.file, gone).0);
        assert_eq!(rec.answers().iter().map(|a| a.answer).collect::<Vec<_>>(), vec![Response::Allow]);
        assert!(rx.is_empty());
    }

    #[test]
    fn a_mount_id_reused_since_the_table_was_read_does_not_name_the_file() {
        let s = scene();
        // The table is a moment old: the file's mount id is still listed as the mount that had it before (the
        // last container's overlay, another filesystem), and the file's own filesystem under another id.
        let policy = BLOCK_DIR.replace("{dir}", "/noexecd-test-protected");
        let config = crate::policy::load_str(Path::new("t.toml"), &policy).unwrap();
        let dev = s.facts.dev;
        let table = format!(
            "{id} 0 0:999 / /var/lib/containers/storage/overlay/abc/merged rw - overlay overlay rw\n\
             {other} 0 {}:{} / / rw - ext4 /dev/test rw\n",
            libc::major(dev),
            libc::minor(dev),
            id = known_mount(&s),
            other = known_mount(&s).wrapping_add(1_000_000),
        );
        let guard = Guard::build(config, MountTable::parse(table.as_bytes())).unwrap();
        let (mut d, rx, counters) = decider();
        as_another_process(&mut d);
        let rec = Recording::new(&rx);
        d.handle(&rec, &guard, exec_event(&s.file, me()).0);
        // Named through the mount the file really is on (this process's mountinfo): allowed, not refused as
        // a file that cannot be named.
        assert_eq!(rec.answers().iter().map(|a| a.answer).collect::<Vec<_>>(), vec![Response::Allow]);
        assert_eq!(counters.unresolved.load(Ordering::Relaxed), 0);
        assert!(rx.is_empty());
    }
}

mod no_panic_on_input {
    use crate::alert::schema::display_bytes;
    use crate::host::mounts::{Mount, MountTable};
    use crate::policy::matcher::{KnownSubject, Scope};
    use proptest::prelude::*;

    const POLICY: &str = r#"
[[policy]]
name = "p"
[[policy.process.match_directories]]
dir = "/tmp/"
recursive = true
[[policy.process.match_patterns]]
pattern = "/var/**/x*"
[[policy.process.match_paths]]
path = "/opt/t"
owner_only = true
from_source = ["/usr/bin/bash"]
"#;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Everything the decision path does with bytes from the kernel or /proc, fed arbitrary bytes.
        #[test]
        fn decision_path_pieces_take_any_bytes(path in proptest::collection::vec(any::<u8>(), 0..600),
                                                table in proptest::collection::vec(any::<u8>(), 0..600),
                                                exe in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
                                                uid in proptest::option::of(any::<u32>()),
                                                owner in any::<u32>()) {
            let config = crate::policy::load_str(std::path::Path::new("p.toml"), POLICY).unwrap();
            let mut subject = KnownSubject { exe, uid };
            let _ = config.matcher.decide(Scope::Path(&path), owner, &mut subject);
            let _ = config.matcher.decide(Scope::Below(&path), owner, &mut subject);
            let _ = config.matcher.path_independent_below(&path);
            let parsed = MountTable::parse(&table);
            let _ = parsed.containing(&path);
            let via = Mount { id: 1, dev: 1, root: table.clone(), mount_point: path.clone(), fstype: String::new() };
            let (mut scratch, mut out) = (Vec::new(), Vec::new());
            let _ = parsed.canonical_path(&via, &path, &mut scratch, &mut out);
            let _ = MountTable::parse(b"1 0 8:1 / / rw - ext4 x rw\n").canonical_path(&via, &table, &mut scratch, &mut out);
            let _ = crate::sys::parse_header_for_tests(&path);
            let _ = crate::host::procfs::parse_status_for_tests(&path);
            let shown = display_bytes(&path);
            prop_assert!(shown.len() >= path.len());
        }
    }
}
