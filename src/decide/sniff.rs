//! What a file in protected scope is, from its first bytes: a loadable ELF (ET_EXEC, ET_DYN), a
//! relocatable object, a script-like text, or data. Content alone never clears a non-ELF file: interpreters
//! run files with NUL bytes and polyglots, so only ELF objects that cannot be loaded and empty files are
//! cleared by their bytes. Pure: the decision path reads the head (`sys::read_head`) and passes it here.

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
