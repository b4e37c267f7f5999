//! The one reader of `/proc/PID/mountinfo` text: every other module takes its parsed [`Line`]s.
//!
//! A line (proc(5)):
//! `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`:
//! mount id, parent id, `major:minor`, the root of the mount within its filesystem, the mount point, the
//! mount's options, zero or more optional fields (`shared:N`, `master:N`, `propagate_from:N`,
//! `unbindable`) ended by `-`, the filesystem type, the source, the superblock's options.
//!
//! The kernel escapes space, tab, newline and backslash as `\ooo` in the paths, the type and the source
//! (and overlayfs escapes `,` and the like inside option values), so a field never holds a space. Names are
//! bytes, never `str`: a path need not be UTF-8. A line that does not have this shape is skipped, never a
//! panic: the decision path reads other namespaces' tables, written by whatever mounts there.

use std::borrow::Cow;

/// One parsed line of mountinfo, borrowing the text it was read from. Paths (`root`, `mount_point`), the
/// type and the source have their escapes decoded (a copy only where the line has one); the option
/// lists stay as written, each value decoded when asked for ([`Line::option`], [`Line::super_option`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// The mount's id: unique while it is mounted, reused afterwards.
    pub id: u64,
    /// The id of the mount it is mounted on (itself for the root of a namespace shown from outside).
    pub parent: u64,
    pub major: u32,
    pub minor: u32,
    /// The directory of the filesystem that is mounted here: `/` unless a bind mount of a subtree (or a
    /// btrfs subvolume, `/@/tmp`).
    pub root: Cow<'a, [u8]>,
    /// Where it is mounted, in the namespace of the process whose table this is.
    pub mount_point: Cow<'a, [u8]>,
    /// The mount's own options (`rw,nosuid,noexec,relatime`), comma-separated, as written.
    pub options: &'a [u8],
    /// The optional fields (`shared:1 master:2 unbindable`), space-separated, as written; empty when there
    /// are none.
    pub optional: &'a [u8],
    pub fstype: Cow<'a, [u8]>,
    /// The device or other source (`/dev/sda1`, `tmpfs`, `overlay`), `none` when there is none.
    pub source: Cow<'a, [u8]>,
    /// The superblock's options (`rw,lowerdir=/a:/b,upperdir=/u`), comma-separated, as written.
    pub super_options: &'a [u8],
}

impl<'a> Line<'a> {
    /// `makedev(major, minor)` of the filesystem: what `st_dev` reports for its files (btrfs aside).
    pub fn dev(&self) -> u64 {
        libc::makedev(self.major, self.minor)
    }

    /// Each item of the mount's options, as written (`rw`, `noexec`).
    pub fn mount_options(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        split_nonempty(self.options, b',')
    }

    /// Each item of the superblock's options, as written (`lowerdir=/a:/b`, `ro`).
    pub fn super_options(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        split_nonempty(self.super_options, b',')
    }

    /// Whether the mount's options hold the flag `flag` (`ro`, `noexec`).
    pub fn has_option(&self, flag: &[u8]) -> bool {
        self.mount_options().any(|o| o == flag)
    }

    /// Whether the superblock's options hold the flag `flag`.
    pub fn has_super_option(&self, flag: &[u8]) -> bool {
        self.super_options().any(|o| o == flag)
    }

    /// The value of the first `key=` of the superblock's options, its escapes decoded (`subvol=/a\040b`).
    pub fn super_option(&self, key: &[u8]) -> Option<Cow<'a, [u8]>> {
        self.super_options().find_map(|o| option_value(o, key)).map(unescape)
    }
}

/// `value` of an option item `key=value`.
pub fn option_value<'o>(item: &'o [u8], key: &[u8]) -> Option<&'o [u8]> {
    item.strip_prefix(key)?.strip_prefix(b"=")
}

fn split_nonempty(text: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    text.split(move |&b| b == sep).filter(|f| !f.is_empty())
}

/// Every well-formed line of a mountinfo text, in order; malformed lines are skipped.
pub fn lines(text: &[u8]) -> impl Iterator<Item = Line<'_>> {
    text.split(|&b| b == b'\n').filter_map(parse_line)
}

/// One line of mountinfo (without its newline), or `None` when it does not have mountinfo's shape.
pub fn parse_line(line: &[u8]) -> Option<Line<'_>> {
    // No field holds a space, and the optional fields never are `-`: the first ` - ` is the separator.
    let sep = line.windows(3).position(|w| w == b" - ")?;
    let head = line.get(..sep)?;
    let tail = line.get(sep.checked_add(3)?..)?;
    let mut fields = head.splitn(7, |&b| b == b' ');
    let id = number(fields.next()?)?;
    let parent = number(fields.next()?)?;
    let (major, minor) = split_once(fields.next()?, b':')?;
    let (major, minor) = (u32::try_from(number(major)?).ok()?, u32::try_from(number(minor)?).ok()?);
    let root = fields.next().filter(|f| !f.is_empty())?;
    let mount_point = fields.next().filter(|f| !f.is_empty())?;
    let options = fields.next().filter(|f| !f.is_empty())?;
    let optional = fields.next().unwrap_or_default();
    let mut after = tail.split(|&b| b == b' ');
    let fstype = after.next().filter(|f| !f.is_empty())?;
    let source = after.next().unwrap_or_default();
    let super_options = after.next().unwrap_or_default();
    Some(Line {
        id,
        parent,
        major,
        minor,
        root: unescape(root),
        mount_point: unescape(mount_point),
        options,
        optional,
        fstype: unescape(fstype),
        source: unescape(source),
        super_options,
    })
}

fn split_once(field: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let at = field.iter().position(|&b| b == sep)?;
    Some((field.get(..at)?, field.get(at.checked_add(1)?..)?))
}

fn number(field: &[u8]) -> Option<u64> {
    if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// Decodes mountinfo's `\ooo` escapes (space, tab, newline, backslash; overlayfs escapes more inside its
/// option values). A backslash not followed by three octal digits stays as it is. Borrows when there is
/// nothing to decode.
pub fn unescape(field: &[u8]) -> Cow<'_, [u8]> {
    if !field.contains(&b'\\') {
        return Cow::Borrowed(field);
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while let Some(&b) = field.get(i) {
        if b == b'\\'
            && let Some(oct) = field.get(i + 1..i + 4)
            && oct.iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = oct.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
            continue;
        }
        out.push(b);
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as a 6.x kernel writes them: a bind mount of a subdirectory, a mount point with an escaped space
    /// and tab, an overlay with a lowerdir list (an escaped comma in a layer's name), a line with every kind of
    /// optional field, and lines that are not mountinfo.
    const TABLE: &[u8] = b"\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
31 22 254:1 /srv/data /mnt/bind rw,nosuid,nodev,noexec - ext4 /dev/vda1 rw
32 22 0:41 / /home/u/My\\040Disk\\011x rw,relatime master:7 - fuse.sshfs u@h:/a\\040b rw,user_id=0
70 66 0:52 / /var/lib/containers/storage/overlay/abc/merged rw,relatime - overlay overlay rw,lowerdir=/l/a:/l/b\\054c,upperdir=/u/diff,workdir=/u/work
80 22 0:60 / /many rw shared:4 master:2 propagate_from:3 unbindable - tmpfs tmpfs rw,size=64k
not a mountinfo line
81 22 0:61 / /no-separator rw tmpfs tmpfs rw

82 22 x:61 / /bad-device rw - tmpfs tmpfs rw
83 22 0:62 / /no-type rw - 
";

    fn optional_fields<'a>(l: &Line<'a>) -> Vec<&'a [u8]> {
        split_nonempty(l.optional, b' ').collect()
    }

    fn parsed() -> Vec<Line<'static>> {
        lines(TABLE).collect()
    }

    #[test]
    fn every_field_of_a_line() {
        let l = parse_line(b"36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue").unwrap();
        assert_eq!((l.id, l.parent, l.major, l.minor), (36, 35, 98, 0));
        assert_eq!(l.dev(), libc::makedev(98, 0));
        assert_eq!((&*l.root, &*l.mount_point), (&b"/mnt1"[..], &b"/mnt2"[..]));
        assert_eq!(l.options, b"rw,noatime");
        assert_eq!(optional_fields(&l), [b"master:1"]);
        assert_eq!((&*l.fstype, &*l.source), (&b"ext3"[..], &b"/dev/root"[..]));
        assert_eq!(l.super_options, b"rw,errors=continue");
        assert!(l.has_option(b"noatime") && !l.has_option(b"noexec"));
        assert_eq!(l.super_option(b"errors").as_deref(), Some(&b"continue"[..]));
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let ids: Vec<u64> = parsed().iter().map(|l| l.id).collect();
        assert_eq!(ids, [22, 31, 32, 70, 80]);
        for bad in [
            &b""[..],
            b"-",
            b" - ",
            b"1 0 8:1 / / - ext4 /dev/sda rw",
            b"1 0 8:1 / / rw -",
            b"1 0 8:1 / / rw - ",
            b"1 0 8:1 / / rw ext4 /dev/sda rw",
            b"-1 0 8:1 / / rw - ext4 /dev/sda rw",
            b"1 0 8:99999999999 / / rw - ext4 /dev/sda rw",
            b"99999999999999999999 0 8:1 / / rw - ext4 /dev/sda rw",
            b"1 0 81 / / rw - ext4 /dev/sda rw",
            b"1 0 8: / / rw - ext4 /dev/sda rw",
        ] {
            assert_eq!(parse_line(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        let short = parse_line(b"1 0 8:1 / / rw - ext4").unwrap();
        assert_eq!((&*short.source, short.super_options), (&b""[..], &b""[..]), "the source and options may lack");
    }

    #[test]
    fn a_bind_mount_keeps_its_root_in_the_filesystem() {
        let t = parsed();
        let bind = t.iter().find(|l| l.id == 31).unwrap();
        assert_eq!(&*bind.root, b"/srv/data");
        assert_eq!(&*bind.mount_point, b"/mnt/bind");
        assert_eq!(bind.dev(), t.first().unwrap().dev(), "the same filesystem as /");
        assert!(bind.has_option(b"noexec") && bind.optional.is_empty());
    }

    #[test]
    fn escapes_are_decoded_in_paths_type_and_source_only() {
        let t = parsed();
        let sshfs = t.iter().find(|l| l.id == 32).unwrap();
        assert_eq!(&*sshfs.mount_point, b"/home/u/My Disk\tx");
        assert_eq!(&*sshfs.source, b"u@h:/a b");
        assert_eq!(&*sshfs.fstype, b"fuse.sshfs");
        assert!(matches!(sshfs.root, Cow::Borrowed(_)), "nothing to decode, nothing copied");
        let overlay = t.iter().find(|l| l.id == 70).unwrap();
        assert_eq!(overlay.super_option(b"lowerdir").as_deref(), Some(&b"/l/a:/l/b,c"[..]));
        assert_eq!(overlay.super_option(b"upperdir").as_deref(), Some(&b"/u/diff"[..]));
        assert_eq!(overlay.super_option(b"nope"), None);
        assert_eq!(&*unescape(b"a\\134b\\0"), b"a\\b\\0", "a backslash without three octal digits stays");
        assert_eq!(&*unescape(b"\\777"), b"\xff", "\\777 wraps as the kernel never writes it");
    }

    #[test]
    fn many_optional_fields() {
        let t = parsed();
        let many = t.iter().find(|l| l.id == 80).unwrap();
        let fields = optional_fields(many);
        assert_eq!(fields, [&b"shared:4"[..], b"master:2", b"propagate_from:3", b"unbindable"]);
        assert_eq!((&*many.fstype, many.super_options), (&b"tmpfs"[..], &b"rw,size=64k"[..]));
    }

    #[test]
    fn this_processs_own_table_parses_whole() {
        let text = std::fs::read("/proc/self/mountinfo").unwrap();
        let count = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
        assert_eq!(lines(&text).count(), count);
        assert!(lines(&text).any(|l| &*l.mount_point == b"/"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Whatever a namespace's mountinfo holds, parsing it returns, and every decoded field is no longer
        /// than what it was decoded from.
        #[test]
        fn any_bytes_parse_or_are_skipped(text in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
                                          shaped in "[0-9]{1,3} [0-9]{1,3} [0-9]{1,3}:[0-9]{1,3} [ -~]{0,40}") {
            for input in [&text[..], shaped.as_bytes()] {
                for l in lines(input) {
                    proptest::prop_assert!(l.root.len() + l.mount_point.len() <= input.len());
                    let _ = (l.dev(), optional_fields(&l), l.super_option(b"lowerdir"), l.has_option(b"ro"));
                }
                let _ = unescape(input);
            }
        }
    }
}
