//! What a file in protected scope is, from its first bytes: a loadable ELF (ET_EXEC, ET_DYN), a
//! relocatable object, a script-like text, or data. Content alone never clears a non-ELF file: interpreters
//! run files with NUL bytes and polyglots, so only ELF objects that cannot be loaded and empty files are
//! cleared by their bytes. Also the interpreter a file names: its `#!` line, or an ELF's PT_INTERP program
//! header. Pure: the decision path reads the bytes (`sys::read_head`, `sys::read_at`) and passes them here.

/// How many bytes of a file the guard reads to sniff it.
pub const HEAD_LEN: usize = 64;

/// What a file is, by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// ELF of type ET_EXEC or ET_DYN: an executable or shared object the loader can map.
    LoadableElf,
    /// Any other ELF (ET_REL object files, core dumps): never mapped for execution.
    OtherElf,
    /// Starts with `#!`.
    Shebang,
    /// Text without a `#!` line: may be a script (`sh /tmp/x`) or data (`/tmp/data.csv`).
    Text,
    /// Anything else that is not empty. Still a possible script: bash, dash, perl, ruby, php and node run a
    /// file with NUL bytes after its first line, bash runs the lines after a binary first line (a PNG/shell
    /// polyglot), and python runs a zip file. Only the opener can tell.
    Binary,
    /// An empty file: nothing to run.
    Empty,
}

impl FileKind {
    /// Whether an interpreter could run it as a script: anything but an ELF or an empty file.
    pub fn script_like(self) -> bool {
        matches!(self, FileKind::Shebang | FileKind::Text | FileKind::Binary)
    }

    /// Whether this kind can ever be a route to running code (else the open is allowed with no /proc read).
    pub fn may_run(self) -> bool {
        self == FileKind::LoadableElf || self.script_like()
    }
}

const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;

/// Sniffs the first bytes of a file (`head` holds what pread at offset 0 returned, at most [`HEAD_LEN`]).
pub fn sniff(head: &[u8]) -> FileKind {
    if let Some(ident) = head.strip_prefix(b"\x7fELF") {
        // e_ident[EI_DATA] (offset 5) gives the byte order of e_type (offset 16).
        let e_type = match (ident.get(1), head.get(16..18)) {
            (Some(1), Some(&[a, b])) => u16::from_le_bytes([a, b]),
            (Some(2), Some(&[a, b])) => u16::from_be_bytes([a, b]),
            _ => return FileKind::OtherElf,
        };
        return if e_type == ET_EXEC || e_type == ET_DYN { FileKind::LoadableElf } else { FileKind::OtherElf };
    }
    if head.starts_with(b"#!") {
        return FileKind::Shebang;
    }
    if head.is_empty() {
        return FileKind::Empty;
    }
    if head.iter().all(|&b| is_text_byte(b)) {
        return FileKind::Text;
    }
    FileKind::Binary
}

/// How many bytes of a `#!` line the kernel reads (`BINPRM_BUF_SIZE`): the interpreter is named within them.
pub const SHEBANG_LEN: usize = 256;

/// The interpreter a `#!` line names, as the kernel reads it (`binfmt_script`): after `#!` and any blanks, up
/// to the next blank, newline or NUL, within the first [`SHEBANG_LEN`] bytes. `None`: no `#!`, or no name.
pub fn shebang_interpreter(head: &[u8]) -> Option<&[u8]> {
    let line = head.get(..head.len().min(SHEBANG_LEN))?.strip_prefix(b"#!")?;
    let start = line.iter().position(|&b| b != b' ' && b != b'\t')?;
    let rest = line.get(start..)?;
    let end = rest.iter().position(|&b| matches!(b, b' ' | b'\t' | b'\n' | 0)).unwrap_or(rest.len());
    // A name running to the end of the bytes read may go on past them: the kernel refuses one that fills
    // the whole buffer, and a shorter read is the end of the file.
    if end == rest.len() && head.len() >= SHEBANG_LEN {
        return None;
    }
    rest.get(..end).filter(|n| !n.is_empty())
}

/// Where an ELF file's program headers lie, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramHeaders {
    pub offset: u64,
    pub count: usize,
    /// Bytes per header.
    pub size: usize,
    wide: bool,
    little: bool,
}

/// The most program headers read (the kernel's own bound is 64 KiB of them; real programs have about a dozen).
pub const MAX_PROGRAM_HEADERS: usize = 64;

const PT_INTERP: u32 = 3;

/// The program headers' place, from the first 64 bytes of an ELF file (`None`: not ELF, or a header
/// the kernel would refuse).
pub fn program_headers(head: &[u8]) -> Option<ProgramHeaders> {
    let ident = head.strip_prefix(b"\x7fELF")?;
    let wide = match ident.first()? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = match ident.get(1)? {
        1 => true,
        2 => false,
        _ => return None,
    };
    let (offset, size, count) = if wide {
        (read_u64(head, 32, little)?, read_u16(head, 54, little)?, read_u16(head, 56, little)?)
    } else {
        (u64::from(read_u32(head, 28, little)?), read_u16(head, 42, little)?, read_u16(head, 44, little)?)
    };
    let (size, count) = (usize::from(size), usize::from(count));
    let want = if wide { 56 } else { 32 };
    if size != want || count == 0 || count > MAX_PROGRAM_HEADERS {
        return None;
    }
    Some(ProgramHeaders { offset, count, size, wide, little })
}

impl ProgramHeaders {
    /// Bytes the whole table takes.
    pub fn len(&self) -> usize {
        self.count.saturating_mul(self.size)
    }

    /// The PT_INTERP entry of the table (`table` holds [`ProgramHeaders::len`] bytes from `offset`): where its
    /// name lies in the file, and how long it is with its NUL.
    pub fn interp(&self, table: &[u8]) -> Option<(u64, u64)> {
        table.chunks_exact(self.size).take(self.count).find_map(|h| {
            if read_u32(h, 0, self.little)? != PT_INTERP {
                return None;
            }
            if self.wide {
                Some((read_u64(h, 8, self.little)?, read_u64(h, 32, self.little)?))
            } else {
                Some((u64::from(read_u32(h, 4, self.little)?), u64::from(read_u32(h, 16, self.little)?)))
            }
        })
    }
}

/// A PT_INTERP segment's bytes as the kernel takes them: a name ended by its NUL, the last byte.
pub fn interp_name(segment: &[u8]) -> Option<&[u8]> {
    let name = segment.strip_suffix(&[0])?;
    (!name.is_empty() && !name.contains(&0)).then_some(name)
}

fn read_u16(b: &[u8], at: usize, little: bool) -> Option<u16> {
    let v: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(if little { u16::from_le_bytes(v) } else { u16::from_be_bytes(v) })
}

fn read_u32(b: &[u8], at: usize, little: bool) -> Option<u32> {
    let v: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if little { u32::from_le_bytes(v) } else { u32::from_be_bytes(v) })
}

fn read_u64(b: &[u8], at: usize, little: bool) -> Option<u64> {
    let v: [u8; 8] = b.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(if little { u64::from_le_bytes(v) } else { u64::from_be_bytes(v) })
}

/// Printable ASCII, common whitespace, ESC, and any byte of a multibyte UTF-8 (or legacy 8-bit) text.
fn is_text_byte(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b | 0x20..=0x7e | 0x80..=0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(class_data: u8, e_type: u16) -> Vec<u8> {
        let mut h = vec![0u8; HEAD_LEN];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = class_data;
        let t = if class_data == 2 { e_type.to_be_bytes() } else { e_type.to_le_bytes() };
        h[16..18].copy_from_slice(&t);
        h
    }

    #[test]
    fn sniff_tells_loadable_elf_from_objects() {
        assert_eq!(sniff(&elf(1, ET_EXEC)), FileKind::LoadableElf);
        assert_eq!(sniff(&elf(1, ET_DYN)), FileKind::LoadableElf);
        assert_eq!(sniff(&elf(2, ET_DYN)), FileKind::LoadableElf);
        assert_eq!(sniff(&elf(1, 1)), FileKind::OtherElf, "ET_REL");
        assert_eq!(sniff(&elf(1, 4)), FileKind::OtherElf, "ET_CORE");
        assert_eq!(sniff(&elf(9, ET_DYN)), FileKind::OtherElf, "unknown byte order");
        assert_eq!(sniff(b"\x7fELF\x02\x01"), FileKind::OtherElf, "truncated header");
    }

    #[test]
    fn sniff_reads_a_real_program_and_its_loader() {
        let head = |p: &str| std::fs::read(p).unwrap()[..HEAD_LEN].to_vec();
        // This test binary (PIE: ET_DYN) and the loader it was started with (ET_DYN too).
        assert_eq!(sniff(&head("/proc/self/exe")), FileKind::LoadableElf);
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let loader = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| p.rsplit('/').next().is_some_and(|n| n.starts_with("ld-")))
            .expect("a dynamically linked test binary maps its loader");
        assert_eq!(sniff(&head(loader)), FileKind::LoadableElf);
        assert_eq!(sniff(&head("/proc/self/maps")), FileKind::Text);
    }

    /// A 64-bit little-endian ELF whose program headers (at 64) hold a PT_LOAD, then a PT_INTERP naming
    /// `interp` (at 64 + 2 * 56).
    fn elf64_with_interp(interp: &[u8]) -> Vec<u8> {
        let mut f = elf(1, ET_DYN);
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&2u16.to_le_bytes());
        let name_at = 64 + 2 * 56;
        let mut load = [0u8; 56];
        load[..4].copy_from_slice(&1u32.to_le_bytes());
        let mut ph = [0u8; 56];
        ph[..4].copy_from_slice(&PT_INTERP.to_le_bytes());
        ph[8..16].copy_from_slice(&(name_at as u64).to_le_bytes());
        ph[32..40].copy_from_slice(&(interp.len() as u64 + 1).to_le_bytes());
        f.extend_from_slice(&load);
        f.extend_from_slice(&ph);
        f.extend_from_slice(interp);
        f.push(0);
        f
    }

    /// The interpreter named in a whole file's bytes, as the decision path finds it.
    fn interp_in(file: &[u8]) -> Option<&[u8]> {
        let ph = program_headers(file.get(..HEAD_LEN)?)?;
        let start = usize::try_from(ph.offset).ok()?;
        let (at, len) = ph.interp(file.get(start..start + ph.len())?)?;
        let (at, len) = (usize::try_from(at).ok()?, usize::try_from(len).ok()?);
        interp_name(file.get(at..at + len)?)
    }

    #[test]
    fn the_pt_interp_header_names_the_elf_interpreter() {
        let f = elf64_with_interp(b"/lib64/ld-linux-x86-64.so.2");
        assert_eq!(interp_in(&f), Some(&b"/lib64/ld-linux-x86-64.so.2"[..]));
        // 32-bit, big-endian: the same header read with the other widths and byte order.
        let mut g = elf(2, ET_EXEC);
        g[4] = 1;
        g[28..32].copy_from_slice(&52u32.to_be_bytes());
        g[42..44].copy_from_slice(&32u16.to_be_bytes());
        g[44..46].copy_from_slice(&1u16.to_be_bytes());
        g.truncate(52);
        let mut ph = [0u8; 32];
        ph[..4].copy_from_slice(&PT_INTERP.to_be_bytes());
        ph[4..8].copy_from_slice(&84u32.to_be_bytes());
        ph[16..20].copy_from_slice(&11u32.to_be_bytes());
        g.extend_from_slice(&ph);
        g.extend_from_slice(b"/lib/ld.so\0");
        assert_eq!(interp_in(&g), Some(&b"/lib/ld.so"[..]));
        // No PT_INTERP (a static program), a name without its NUL or with one inside, odd header sizes.
        let mut s = elf64_with_interp(b"/x");
        s[64 + 56..64 + 60].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(interp_in(&s), None, "static");
        let mut t = elf64_with_interp(b"/x");
        *t.last_mut().unwrap() = b'y';
        assert_eq!(interp_in(&t), None, "no NUL at the end");
        assert_eq!(interp_name(b"/a\0b\0"), None, "a NUL inside");
        assert_eq!(interp_name(b"\0"), None, "empty");
        let mut u = elf64_with_interp(b"/x");
        u[54..56].copy_from_slice(&40u16.to_le_bytes());
        assert_eq!(program_headers(&u[..HEAD_LEN]), None, "a header size the kernel refuses");
        u[54..56].copy_from_slice(&56u16.to_le_bytes());
        u[56..58].copy_from_slice(&0xffffu16.to_le_bytes());
        assert_eq!(program_headers(&u[..HEAD_LEN]), None, "too many headers");
        assert_eq!(program_headers(b"#!/bin/sh\n"), None);
        assert_eq!(interp_in(&f[..150]), None, "truncated");
    }

    #[test]
    fn this_test_binary_names_the_loader_it_runs_with() {
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let interp = interp_in(&exe).expect("a dynamically linked test binary has a PT_INTERP");
        let named = std::fs::canonicalize(std::str::from_utf8(interp).unwrap()).unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let mapped = maps.lines().filter_map(|l| l.split_whitespace().nth(5)).any(|p| std::path::Path::new(p) == named);
        assert!(mapped, "{} is not mapped:\n{maps}", named.display());
    }

    #[test]
    fn the_shebang_line_names_the_script_interpreter_as_the_kernel_reads_it() {
        assert_eq!(shebang_interpreter(b"#!/bin/sh\necho hi\n"), Some(&b"/bin/sh"[..]));
        assert_eq!(shebang_interpreter(b"#! \t/usr/bin/env python3 -u\n"), Some(&b"/usr/bin/env"[..]));
        assert_eq!(shebang_interpreter(b"#!/bin/bash"), Some(&b"/bin/bash"[..]), "no newline: the end of the file");
        assert_eq!(shebang_interpreter(b"#!rel/interp\n"), Some(&b"rel/interp"[..]));
        assert_eq!(shebang_interpreter(b"#!\n"), None);
        assert_eq!(shebang_interpreter(b"#!   \n"), None);
        assert_eq!(shebang_interpreter(b"echo hi\n"), None);
        let mut long = b"#!/".to_vec();
        long.resize(SHEBANG_LEN + 10, b'a');
        assert_eq!(shebang_interpreter(&long), None, "a name past the bytes the kernel reads");
        let mut fits = b"#!/bin/sh ".to_vec();
        fits.resize(SHEBANG_LEN + 10, b'a');
        assert_eq!(shebang_interpreter(&fits), Some(&b"/bin/sh"[..]), "arguments may run on");
    }

    #[test]
    fn sniff_tells_scripts_text_and_data() {
        assert_eq!(sniff(b"#!/bin/sh\necho hi\n"), FileKind::Shebang);
        assert_eq!(sniff(b"echo hi\n"), FileKind::Text);
        assert_eq!(sniff("print('h\u{e9}')\n".as_bytes()), FileKind::Text);
        assert_eq!(sniff(b"a,b\n1,2\n"), FileKind::Text);
        assert_eq!(sniff(b""), FileKind::Empty);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0"), FileKind::Binary);
        assert_eq!(sniff(b"PK\x03\x04\x14\0"), FileKind::Binary);
        assert_eq!(sniff(b"echo hi\n\0\n"), FileKind::Binary);
        assert!(!FileKind::Empty.may_run() && !FileKind::OtherElf.may_run());
        // bash runs `echo hi` from a file with a NUL byte after its first line, python runs a zip file:
        // binary content is no proof that no interpreter runs it.
        assert!(FileKind::Binary.script_like() && FileKind::Binary.may_run());
        assert!(FileKind::Text.may_run() && FileKind::LoadableElf.may_run());
    }
}
