//! Multi-call binaries (busybox, toybox): one executable that runs the applet its argv names. Pure: the
//! command line in, the applet's name and its own command line out. An `sh` symlink to busybox runs with
//! exe = busybox and argv[0] = `sh`; `busybox sh /tmp/x` names the applet in argv[1]. Either way busybox
//! dispatches on these very bytes, so judging by them judges what runs.

use crate::policy::open_guard::file_name;

/// The applet a multi-call binary runs, and the command line from the applet's argv[0] on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applet<'a> {
    /// The applet's name (`sh`, `cat`): argv[0]'s file name without a login shell's leading `-`, or argv[1]'s
    /// file name when argv[0] names the multi-call binary itself.
    pub name: &'a [u8],
    /// The command line the applet parses (NUL-separated, its argv[0] first).
    pub cmdline: &'a [u8],
}

/// Splits a multi-call binary's `/proc/PID/cmdline`. `is_self` says whether a name is the binary itself: busybox
/// takes any argv[0] starting with `busybox` as itself, and so does toybox with `toybox`.
pub fn applet<'a>(cmdline: &'a [u8], is_self: impl Fn(&[u8]) -> bool) -> Applet<'a> {
    let (argv0, rest) = split_first(cmdline);
    let name = file_name(argv0);
    let name = name.strip_prefix(b"-").unwrap_or(name);
    if !is_self(name) {
        return Applet { name, cmdline };
    }
    let (argv1, _) = split_first(rest);
    if argv1.is_empty() {
        // `busybox` alone prints its list: it is not running any applet.
        return Applet { name, cmdline };
    }
    Applet { name: file_name(argv1), cmdline: rest }
}

/// The first NUL-terminated piece and what follows it.
fn split_first(cmdline: &[u8]) -> (&[u8], &[u8]) {
    match cmdline.iter().position(|&b| b == 0) {
        Some(i) => (cmdline.get(..i).unwrap_or_default(), cmdline.get(i + 1..).unwrap_or_default()),
        None => (cmdline, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_busybox(name: &[u8]) -> bool {
        name.starts_with(b"busybox") || name.starts_with(b"toybox")
    }

    #[test]
    fn the_applet_is_argv0_or_argv1() {
        let a = applet(b"sh\0/tmp/x\0", is_busybox);
        assert_eq!(a, Applet { name: b"sh", cmdline: b"sh\0/tmp/x\0" });
        let a = applet(b"/bin/busybox\0sh\0/tmp/x\0", is_busybox);
        assert_eq!(a, Applet { name: b"sh", cmdline: b"sh\0/tmp/x\0" });
        let a = applet(b"busybox\0/usr/bin/awk\0-f\0/tmp/x\0", is_busybox);
        assert_eq!(a.name, b"awk");
        assert_eq!(applet(b"-sh\0", is_busybox).name, b"sh", "a login shell");
        assert_eq!(applet(b"/usr/local/bin/toybox\0cat\0f\0", is_busybox).name, b"cat");
        assert_eq!(applet(b"busybox-1.36\0ash\0", is_busybox).name, b"ash", "busybox's own prefix rule");
        assert_eq!(applet(b"busybox\0", is_busybox).name, b"busybox", "no applet");
    }

    #[test]
    fn applet_takes_any_bytes() {
        for line in [&b""[..], b"\0", b"\0\0", b"busybox", b"busybox\0\0", b"-\0", b"/\0/\0", b"\xff\0\xfe"] {
            let a = applet(line, is_busybox);
            assert!(a.cmdline.len() <= line.len());
        }
    }
}
