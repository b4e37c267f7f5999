//! What /proc tells about the process that called exec. Read only for rules that need it (before the
//! answer) or for an alert (right after the answer); a process that is gone leaves its fields empty.

use std::os::unix::ffi::OsStrExt;

use crate::sys::{self, PidfdError, ProcDirs};

/// The caller's facts that go into an alert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The caller's pid and its parent's as the caller's own pid namespace numbers them (the host's outside
    /// one): a container alert's `PID` and `PPID`.
    pub ns_pid: Option<NsPid>,
    /// `/proc/PID/exe`: the program that called exec (the old image; exec has not happened yet).
    pub exe: Vec<u8>,
    pub ppid: i32,
    /// `/proc/PPID/exe`: the parent's program (KubeArmor's `ParentProcessName`); empty when the parent is gone
    /// or unreadable.
    pub parent_exe: Vec<u8>,
    /// Real uid, or -1 when the process was gone before it could be read.
    pub uid: i64,
    pub cwd: Vec<u8>,
    /// `/proc/PID/cgroup`, which names the caller's container (`containers::parse_cgroup`); empty when gone.
    pub cgroup: String,
}

/// A process's pid and its parent's in the process's own pid namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NsPid {
    pub pid: i32,
    /// The parent's pid in the parent's own pid namespace, as KubeArmor reports it:
    /// the container's number for a parent inside the container, the host's for a parent outside it (the
    /// runtime's shim or conmon, which starts the first program and every `exec`); 0 when the parent is
    /// gone.
    pub ppid: i32,
}

/// Reads what is still readable; never fails.
pub fn process_info(pid: i32) -> ProcessInfo {
    // exe first: it disappears first when the process exits.
    let exe = exe(pid).unwrap_or_default();
    let status_text = std::fs::read(format!("/proc/{pid}/status")).unwrap_or_default();
    let (ppid, uid) = parse_status(&status_text).unwrap_or((0, -1));
    let ns_pid = ns_pid(&status_text, ppid, |parent| std::fs::read(format!("/proc/{parent}/status")).ok());
    let cwd =
        std::fs::read_link(format!("/proc/{pid}/cwd")).map(|p| p.as_os_str().as_bytes().to_vec()).unwrap_or_default();
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let parent_exe = if ppid > 0 { self::exe(ppid).unwrap_or_default() } else { Vec::new() };
    ProcessInfo { ns_pid, exe, ppid, parent_exe, uid, cwd, cgroup }
}

/// The mount namespace process `pid` is in, by its inode number (`/proc/PID/ns/mnt` reads `mnt:[N]`).
pub fn mount_namespace_with(procs: &ProcDirs, pid: i32) -> Option<u64> {
    let mut buf = [0u8; crate::sys::PATH_BUF_LEN];
    parse_namespace_link(procs.pid_link(pid, b"ns/mnt", &mut buf).ok()?)
}

/// `N` of a namespace link's `TYPE:[N]`.
fn parse_namespace_link(link: &[u8]) -> Option<u64> {
    let start = link.iter().position(|&b| b == b'[')?.checked_add(1)?;
    let digits = link.get(start..)?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

pub fn exe(pid: i32) -> Option<Vec<u8>> {
    let path = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let bytes = path.as_os_str().as_bytes();
    // An executable replaced on disk since the process started still names its old file.
    Some(bytes.strip_suffix(b" (deleted)").unwrap_or(bytes).to_vec())
}

pub fn ppid(pid: i32) -> Option<i32> {
    status(pid).map(|(ppid, _)| ppid)
}

/// The real uid of process `pid`: through its pidfd, or from `/proc/PID/status` on a kernel before 6.13.
pub fn uid(pid: i32) -> Option<u32> {
    uid_or_status(pid, || status(pid).and_then(|(_, uid)| u32::try_from(uid).ok()))
}

/// [`uid`], its `/proc/PID/status` (before 6.13) read relative to `procs` into `buf`, a buffer the caller
/// keeps: no allocation, no path walk.
pub fn uid_with(procs: &ProcDirs, pid: i32, buf: &mut Vec<u8>) -> Option<u32> {
    uid_or_status(pid, || {
        procs.read_pid_file(pid, b"status", buf).ok()?;
        parse_status(buf).and_then(|(_, uid)| u32::try_from(uid).ok())
    })
}

/// The uid from the pidfd; from `from_status` only on a kernel that has no `PIDFD_GET_INFO`.
fn uid_or_status(pid: i32, from_status: impl FnOnce() -> Option<u32>) -> Option<u32> {
    match sys::real_uid(pid) {
        Ok(uid) => Some(uid),
        Err(PidfdError::Failed) => None,
        Err(PidfdError::Unsupported) => from_status(),
    }
}

/// PPid and the real Uid from /proc/PID/status.
fn status(pid: i32) -> Option<(i32, i64)> {
    let text = std::fs::read(format!("/proc/{pid}/status")).ok()?;
    parse_status(&text)
}

/// The open a task is making while it waits for a permission answer, as `/proc/PID/syscall` shows it
/// (`257 0xffffff9c 0x7ffe5a7a8add 0x401 ...`: openat, `AT_FDCWD`, the path's address, `O_WRONLY|O_APPEND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenCall {
    /// KubeArmor's name of the call: `SYS_OPEN`, `SYS_OPENAT`, `SYS_OPENAT2`, `SYS_CREAT`.
    pub syscall: &'static str,
    /// openat's and openat2's directory fd (`-100` for `AT_FDCWD`).
    pub dir_fd: Option<i32>,
    /// The open flags; `None` for openat2, whose flags sit in memory the line does not show.
    pub flags: Option<u64>,
}

/// The open calls by number on this architecture: (number, name, index of the dirfd argument, index of the
/// flags argument). `creat` has no flags argument: it is `O_CREAT|O_WRONLY|O_TRUNC`.
#[cfg(target_arch = "x86_64")]
const OPEN_CALLS: [(i64, &str, Option<usize>, Option<usize>); 4] = [
    (2, "SYS_OPEN", None, Some(1)),
    (257, "SYS_OPENAT", Some(0), Some(2)),
    (437, "SYS_OPENAT2", Some(0), None),
    (85, "SYS_CREAT", None, None),
];
#[cfg(target_arch = "aarch64")]
const OPEN_CALLS: [(i64, &str, Option<usize>, Option<usize>); 2] =
    [(56, "SYS_OPENAT", Some(0), Some(2)), (437, "SYS_OPENAT2", Some(0), None)];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const OPEN_CALLS: [(i64, &str, Option<usize>, Option<usize>); 0] = [];

/// `creat`'s flags.
const CREAT_FLAGS: u64 = 0o1 | 0o100 | 0o1000;

/// Reads the open call out of `/proc/PID/syscall`'s text: `None` when the task is not in an open call
/// (running, another call such as `io_uring_enter`, or a line that does not parse).
pub fn parse_open_call(text: &[u8]) -> Option<OpenCall> {
    let line = text.split(|&b| b == b'\n').next()?;
    let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let nr: i64 = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    let (_, syscall, dir_arg, flags_arg) = OPEN_CALLS.iter().find(|(n, ..)| *n == nr)?;
    let mut args = [0u64; 6];
    for slot in &mut args {
        let f = std::str::from_utf8(fields.next()?).ok()?;
        *slot = u64::from_str_radix(f.strip_prefix("0x")?, 16).ok()?;
    }
    // The dirfd is an int: its low 32 bits, sign and all.
    let dir_fd = dir_arg.and_then(|i| args.get(i)).map(|&v| i32::from_ne_bytes((v as u32).to_ne_bytes()));
    let flags = match (*syscall, flags_arg) {
        ("SYS_CREAT", _) => Some(CREAT_FLAGS),
        (_, Some(i)) => args.get(*i).map(|&v| v & u64::from(u32::MAX)),
        (_, None) => None,
    };
    Some(OpenCall { syscall, dir_fd, flags })
}

#[cfg(test)]
mod open_call_tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn lines_read_from_tasks_blocked_in_an_open_permission_event() {
        // Captured on Linux 6.18 from tasks waiting for a FAN_OPEN_PERM answer.
        let openat = b"257 0xffffff9c 0x7ffe5a7a8add 0x401 0x0 0x0 0x7f26ea216740 0x7ffe5a7a5fa0 0x7f26ea311011\n";
        assert_eq!(
            parse_open_call(openat),
            Some(OpenCall { syscall: "SYS_OPENAT", dir_fd: Some(-100), flags: Some(0x401) })
        );
        let open = b"2 0x7ffe5a7a8add 0x0 0x0 0x0 0x0 0x0 0x7ffe5a7a5fa0 0x7f26ea311011";
        assert_eq!(parse_open_call(open), Some(OpenCall { syscall: "SYS_OPEN", dir_fd: None, flags: Some(0) }));
        let openat2 = b"437 0x3 0x7ffe5a7a8add 0x7ffe5a7a0000 0x18 0x0 0x0 0x7ffe5a7a5fa0 0x7f26ea311011";
        assert_eq!(parse_open_call(openat2), Some(OpenCall { syscall: "SYS_OPENAT2", dir_fd: Some(3), flags: None }));
        let creat = b"85 0x7ffe5a7a8add 0x1a4 0x0 0x0 0x0 0x0 0x7ffe5a7a5fa0 0x7f26ea311011";
        assert_eq!(parse_open_call(creat).and_then(|c| c.flags), Some(CREAT_FLAGS));
        // The main thread of a process whose other thread opens: in futex, not in an open.
        let futex = b"202 0x7f8f803e8990 0x109 0xbd2 0x0 0x0 0xffffffff 0x7ffde0cb5870 0x7f8f80471f16";
        assert_eq!(parse_open_call(futex), None);
        for other in [&b"running"[..], b"-1 0x7ffe5a7a5fa0 0x7f26ea311011", b"", b"257 0xffffff9c", b"257 zz 0 0 0 0 0"]
        {
            assert_eq!(parse_open_call(other), None, "{}", String::from_utf8_lossy(other));
        }
    }
}

#[cfg(test)]
pub fn parse_status_for_tests(text: &[u8]) -> Option<(i32, i64)> {
    parse_status(text)
}

fn parse_status(text: &[u8]) -> Option<(i32, i64)> {
    let field = |name: &[u8]| {
        text.split(|&b| b == b'\n')
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<i64>().ok())
    };
    let ppid = i32::try_from(field(b"PPid:")?).ok()?;
    Some((ppid, field(b"Uid:")?))
}

/// `NSpid:` of a status text: how many pid namespaces the process is in, from ours down, and its pid in the
/// innermost (`NSpid:\t4242\t7` for pid 7 in a container: (2, 7)).
fn parse_ns_pid(text: &[u8]) -> Option<(usize, i32)> {
    let line = text.split(|&b| b == b'\n').find_map(|l| l.strip_prefix(b"NSpid:"))?;
    let mut levels = 0;
    let mut last = None;
    for value in std::str::from_utf8(line).ok()?.split_whitespace() {
        levels += 1;
        last = Some(value.parse().ok()?);
    }
    Some((levels, last?))
}

/// The caller's [`NsPid`] from its status text and `ppid` (as our namespace numbers it). The parent's number
/// is its innermost `NSpid:` value, the one its own pid namespace gives it, whether that namespace is the
/// caller's (a parent inside the container) or an ancestor's (the runtime's shim on the host). `read_parent`
/// (the parent's status) is called only for a caller in a nested namespace: one small read, and none on the
/// host, where our number is the answer.
fn ns_pid(status: &[u8], ppid: i32, read_parent: impl FnOnce(i32) -> Option<Vec<u8>>) -> Option<NsPid> {
    let (levels, pid) = parse_ns_pid(status)?;
    if levels <= 1 {
        return Some(NsPid { pid, ppid });
    }
    let parent = (ppid > 0).then(|| read_parent(ppid)).flatten();
    let ppid = parent.as_deref().and_then(parse_ns_pid).map_or(0, |(_, parent_pid)| parent_pid);
    Some(NsPid { pid, ppid })
}

/// The calling process as a rule sees it: its executable and uid, each read from /proc at most once and only
/// when a rule asks (the matcher's `Subject`, implemented where the decision path uses it).
#[derive(Debug)]
pub struct ProcSubject {
    pid: i32,
    exe: Option<Option<Vec<u8>>>,
    uid: Option<Option<u32>>,
}

impl ProcSubject {
    pub fn new(pid: i32) -> Self {
        Self { pid, exe: None, uid: None }
    }

    /// The caller's executable (read on the first call).
    pub fn exe(&mut self) -> Option<&[u8]> {
        let pid = self.pid;
        self.exe.get_or_insert_with(|| exe(pid)).as_deref()
    }

    /// The caller's real uid (read on the first call).
    pub fn uid(&mut self) -> Option<u32> {
        let pid = self.pid;
        *self.uid.get_or_insert_with(|| uid(pid))
    }

    /// Whether a rule asked for the caller's executable or uid (then the decision was the caller's too).
    pub fn was_read(&self) -> bool {
        self.exe.is_some() || self.uid.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me_pid() -> i32 {
        i32::try_from(std::process::id()).unwrap()
    }

    #[test]
    fn a_namespace_link_gives_its_inode_number() {
        assert_eq!(parse_namespace_link(b"mnt:[4026531841]"), Some(4_026_531_841));
        assert_eq!(parse_namespace_link(b"mnt:[]"), None);
        assert_eq!(parse_namespace_link(b"mnt:[12"), None);
        assert_eq!(parse_namespace_link(b"/tmp/x"), None);
        let ours = mount_namespace_with(&ProcDirs::open(), i32::try_from(std::process::id()).unwrap());
        let want = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        assert_eq!(ours.map(|n| format!("mnt:[{n}]")), Some(want.to_string_lossy().into_owned()));
    }

    #[test]
    fn status_fields() {
        let text = b"Name:\tbash\nPPid:\t42\nTracerPid:\t0\nUid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_status(text), Some((42, 1000)));
        assert_eq!(parse_status(b"Name: x\n"), None);
        assert_eq!(parse_ns_pid(b"Pid:\t4242\nNSpid:\t4242\t7\n"), Some((2, 7)));
        assert_eq!(parse_ns_pid(b"NSpid:\t4242\n"), Some((1, 4242)));
        assert_eq!(parse_ns_pid(b"NSpid:\n"), None);
        assert_eq!(parse_ns_pid(b"NSpid:\t4242\tx\n"), None);
    }

    #[test]
    fn the_parent_is_numbered_in_its_own_pid_namespace() {
        let status = |nspid: &str| format!("Name:\tx\nNSpid:\t{nspid}\n").into_bytes();
        let no_read = |_: i32| -> Option<Vec<u8>> { panic!("a host process's parent is not read") };
        assert_eq!(ns_pid(&status("4242"), 4200, no_read), Some(NsPid { pid: 4242, ppid: 4200 }), "on the host");
        // Started by the container's own shell: the parent is in the container too.
        let parent = |want: i32, nspid: &'static str| {
            move |p: i32| {
                assert_eq!(p, want, "the parent's status");
                Some(status(nspid))
            }
        };
        assert_eq!(ns_pid(&status("4242\t7"), 4200, parent(4200, "4200\t1")), Some(NsPid { pid: 7, ppid: 1 }));
        // Started by `exec` through the runtime: the parent (conmon, the shim) is on the host, numbered there.
        assert_eq!(ns_pid(&status("4242\t7"), 900, parent(900, "900")), Some(NsPid { pid: 7, ppid: 900 }));
        // A pod in a container (two levels): a parent one level up is numbered in its own namespace.
        assert_eq!(ns_pid(&status("4242\t70\t7"), 4200, parent(4200, "4200\t60")), Some(NsPid { pid: 7, ppid: 60 }));
        assert_eq!(ns_pid(&status("4242\t70\t7"), 4200, |_| None), Some(NsPid { pid: 7, ppid: 0 }), "parent gone");
        assert_eq!(ns_pid(&status("4242\t7"), 0, no_read), Some(NsPid { pid: 7, ppid: 0 }), "no parent");
        assert_eq!(ns_pid(b"Name:\tx\n", 1, no_read), None, "no NSpid line (Linux before 4.1)");
    }

    #[test]
    fn own_process_is_readable() {
        let me = process_info(std::process::id() as i32);
        assert!(!me.exe.is_empty());
        assert!(me.ppid > 0);
        assert_eq!(me.uid, i64::from(nix::unistd::getuid().as_raw()));
        assert!(!me.cwd.is_empty());
        assert!(!me.cgroup.is_empty());
        let gone = process_info(i32::MAX);
        assert_eq!(gone, ProcessInfo { uid: -1, ..ProcessInfo::default() });
    }

    #[test]
    fn proc_subject_reads_lazily_and_once() {
        let mut s = ProcSubject::new(me_pid());
        assert!(!s.was_read());
        assert!(s.exe().is_some());
        assert!(s.was_read());
        assert_eq!(s.uid(), Some(nix::unistd::getuid().as_raw()));
        let mut gone = ProcSubject::new(i32::MAX);
        assert_eq!(gone.exe(), None);
        assert_eq!(gone.uid(), None);
        assert!(gone.was_read(), "asked, though nothing was there");
    }
}
