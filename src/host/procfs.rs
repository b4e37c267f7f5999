//! What /proc tells about the process that called exec. Read only for rules that need it (before the
//! answer) or for an alert (right after the answer); a process that is gone leaves its fields empty.

use std::os::unix::ffi::OsStrExt;

use crate::sys::ProcDirs;

/// The caller's facts that go into an alert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The pid inside the caller's own pid namespace (the last `NSpid:` field); the host pid outside one.
    pub ns_pid: Option<i32>,
    /// `/proc/PID/exe`: the program that called exec (the old image; exec has not happened yet).
    pub exe: Vec<u8>,
    pub ppid: i32,
    /// Real uid, or -1 when the process was gone before it could be read.
    pub uid: i64,
    pub cwd: Vec<u8>,
    /// `/proc/PID/cgroup`, which names the caller's container (`containers::parse_cgroup`); empty when gone.
    pub cgroup: String,
}

/// Reads what is still readable; never fails.
pub fn process_info(pid: i32) -> ProcessInfo {
    // exe first: it disappears first when the process exits.
    let exe = exe(pid).unwrap_or_default();
    let status_text = std::fs::read(format!("/proc/{pid}/status")).unwrap_or_default();
    let (ppid, uid) = parse_status(&status_text).unwrap_or((0, -1));
    let ns_pid = parse_ns_pid(&status_text);
    let cwd =
        std::fs::read_link(format!("/proc/{pid}/cwd")).map(|p| p.as_os_str().as_bytes().to_vec()).unwrap_or_default();
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    ProcessInfo { ns_pid, exe, ppid, uid, cwd, cgroup }
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

pub fn uid(pid: i32) -> Option<u32> {
    status(pid).and_then(|(_, uid)| u32::try_from(uid).ok())
}

/// PPid and the real Uid from /proc/PID/status.
fn status(pid: i32) -> Option<(i32, i64)> {
    let text = std::fs::read(format!("/proc/{pid}/status")).ok()?;
    parse_status(&text)
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

/// The innermost pid of `NSpid:` (`NSpid:\t4242\t7` for pid 7 in a container).
fn parse_ns_pid(text: &[u8]) -> Option<i32> {
    let line = text.split(|&b| b == b'\n').find_map(|l| l.strip_prefix(b"NSpid:"))?;
    std::str::from_utf8(line).ok()?.split_whitespace().last()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(parse_ns_pid(b"Pid:\t4242\nNSpid:\t4242\t7\n"), Some(7));
        assert_eq!(parse_ns_pid(b"NSpid:\t4242\n"), Some(4242));
        assert_eq!(parse_ns_pid(b"NSpid:\n"), None);
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
}
