//! The files a container runtime exec-opens to start the daemon's container again, found from the host
//! (`run --hold-socket`): while `noexecd hold` keeps the group, an exec of any of them on a marked
//! filesystem would wait for the very daemon it is starting.
//!
//! - The daemon's own program and every file it maps executable. In a container these are overlay files,
//!   but the kernel raises the exec event on the layer's real file; `/proc/self/map_files/` names the real
//!   file each mapping was made from (the overlay's backing file), which is what must be exempted.
//! - Its ancestors in the host's mount namespace (conmon, containerd-shim-runc-v2: found by walking `PPid`
//!   from the supervisor), and the OCI runtimes they run (`--runtime`/`-r` of their command lines, the
//!   usual paths of runc and crun; `runc init` re-executes the runc binary itself).
//! - The ELF interpreter (`PT_INTERP`) of each of those: the kernel exec-opens it too, while the shared
//!   libraries are only opened and mapped (no exec event).

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where runc and crun are installed by the distributions and by the container runtimes' own packages.
pub const KNOWN_RUNTIMES: &[&str] = &[
    "/usr/bin/runc",
    "/usr/sbin/runc",
    "/usr/local/bin/runc",
    "/usr/local/sbin/runc",
    "/usr/bin/crun",
    "/usr/local/bin/crun",
];

/// How far up the process tree the walk goes (the runtime's chain is a few processes deep).
const MAX_ANCESTORS: usize = 16;

/// Every file the restart of this daemon's container exec-opens, as host paths (or, where the real file is
/// not reachable by name from here, the `/proc/self/map_files/` link that leads to it while we run).
pub fn container_restart_chain() -> Vec<PathBuf> {
    let mut out = own_executable_files();
    let own_ns = std::fs::read_link("/proc/self/ns/mnt").ok();
    let mut programs = Vec::new();
    for pid in ancestors(std::process::id() as i32) {
        if std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok() != own_ns {
            // A process of the container (the supervisor): its program is ours, found above.
            continue;
        }
        if let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) {
            programs.push(exe);
        }
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            programs.extend(runtime_args(&cmdline));
        }
    }
    programs.extend(KNOWN_RUNTIMES.iter().map(PathBuf::from));
    programs.retain(|p| p.is_file());
    let interps: Vec<PathBuf> = programs.iter().filter_map(|p| interpreter_of(p)).collect();
    out.extend(programs);
    out.extend(interps);
    out.retain(|p| !p.as_os_str().as_bytes().ends_with(b" (deleted)"));
    out.sort();
    out.dedup();
    out
}

/// The real files behind this process's executable mappings: the program (its text), the loader and the
/// libraries of a dynamic build.
fn own_executable_files() -> Vec<PathBuf> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return Vec::new() };
    let mut out = Vec::new();
    for (range, shown) in executable_mappings(&maps) {
        let link = PathBuf::from(format!("/proc/self/map_files/{range}"));
        // Following the link needs CAP_SYS_ADMIN; without it, the name maps shows (right outside a
        // container, where nothing else is needed).
        let Ok(real) = std::fs::metadata(&link) else {
            out.push(PathBuf::from(shown));
            continue;
        };
        // The name is the real file's when that name leads to it from our root; else keep the link.
        let named = std::fs::read_link(&link)
            .ok()
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.dev() == real.dev() && m.ino() == real.ino()));
        out.push(named.unwrap_or(link));
    }
    out
}

/// The address range (`start-end`, as `/proc/self/map_files/` names it) and the shown name of each
/// file-backed executable mapping of a maps text.
pub fn executable_mappings(maps: &str) -> impl Iterator<Item = (&str, &str)> + '_ {
    maps.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        let range = fields.next()?;
        let perms = fields.next()?;
        let path = fields.nth(3)?;
        (perms.contains('x') && path.starts_with('/')).then_some((range, path))
    })
}

/// `pid`'s ancestors, its parent first, up to (not including) pid 1.
fn ancestors(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut at = pid;
    while out.len() < MAX_ANCESTORS {
        let Some(parent) = std::fs::read_to_string(format!("/proc/{at}/status")).ok().and_then(|s| ppid(&s)) else {
            break;
        };
        if parent <= 1 {
            break;
        }
        out.push(parent);
        at = parent;
    }
    out
}

/// `PPid:` of a /proc/PID/status text.
pub fn ppid(status: &str) -> Option<i32> {
    status.lines().find_map(|l| l.strip_prefix("PPid:")).and_then(|v| v.trim().parse().ok())
}

/// The OCI runtime a runtime's helper is told to run: conmon's `-r PATH`/`--runtime PATH`/`--runtime=PATH`.
pub fn runtime_args(cmdline: &[u8]) -> Vec<PathBuf> {
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let mut out = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        let value = match *arg {
            b"-r" | b"--runtime" => args.get(i + 1).copied(),
            a => a.strip_prefix(b"--runtime="),
        };
        if let Some(v) = value.filter(|v| v.starts_with(b"/")) {
            out.push(PathBuf::from(std::ffi::OsStr::from_bytes(v)));
        }
    }
    out
}

/// The ELF interpreter `path` names (`PT_INTERP`), if it is a dynamic ELF program.
fn interpreter_of(path: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = Vec::with_capacity(4096);
    std::fs::File::open(path).ok()?.take(4096).read_to_end(&mut head).ok()?;
    elf_interp(&head).map(|i| PathBuf::from(std::ffi::OsStr::from_bytes(i)))
}

/// The `PT_INTERP` string of a little-endian ELF file whose program headers and interpreter name lie in
/// `head` (they follow the ELF header in every linker's output).
pub fn elf_interp(head: &[u8]) -> Option<&[u8]> {
    if head.get(..4)? != b"\x7fELF" || *head.get(5)? != 1 {
        return None;
    }
    let u16_at = |o: usize| head.get(o..o + 2).and_then(|b| b.try_into().ok()).map(u16::from_le_bytes);
    let u32_at = |o: usize| head.get(o..o + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
    let u64_at = |o: usize| head.get(o..o + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    const PT_INTERP: u32 = 3;
    let wide = match head.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let (phoff, phentsize, phnum) = if wide {
        (u64_at(0x20)? as usize, u16_at(0x36)? as usize, u16_at(0x38)? as usize)
    } else {
        (u32_at(0x1c)? as usize, u16_at(0x2a)? as usize, u16_at(0x2c)? as usize)
    };
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(ph)? != PT_INTERP {
            continue;
        }
        let (offset, size) = if wide {
            (u64_at(ph + 8)? as usize, u64_at(ph + 32)? as usize)
        } else {
            (u32_at(ph + 4)? as usize, u32_at(ph + 16)? as usize)
        };
        let name = head.get(offset..offset.checked_add(size)?)?;
        let name = name.split(|&b| b == 0).next()?;
        return name.starts_with(b"/").then_some(name);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_mappings_are_file_backed_and_executable() {
        let maps = "\
55d0c000-55d0d000 r--p 00000000 fe:00 1234 /usr/bin/noexecd
55d0d000-55d0e000 r-xp 00001000 fe:00 1234 /usr/bin/noexecd
7f00-7f01 r-xp 00000000 fe:00 99 /lib64/ld-linux-x86-64.so.2
7f02-7f03 rw-p 00000000 00:00 0
7ffd-7ffe r-xp 00000000 00:00 0 [vdso]
";
        let got: Vec<(&str, &str)> = executable_mappings(maps).collect();
        assert_eq!(got, [("55d0d000-55d0e000", "/usr/bin/noexecd"), ("7f00-7f01", "/lib64/ld-linux-x86-64.so.2")]);
    }

    #[test]
    fn conmon_names_its_runtime() {
        let cmd = b"/usr/bin/conmon\0--api-version\01\0-c\0abc\0-r\0/usr/bin/crun\0-b\0/x\0";
        assert_eq!(runtime_args(cmd), [PathBuf::from("/usr/bin/crun")]);
        assert_eq!(runtime_args(b"shim\0--runtime=/opt/runc\0--runtime\0relative\0"), [PathBuf::from("/opt/runc")]);
        assert!(runtime_args(b"").is_empty());
        assert!(runtime_args(b"-r").is_empty());
    }

    #[test]
    fn ppid_of_a_status_text() {
        assert_eq!(ppid("Name:\tx\nPid:\t7\nPPid:\t3\n"), Some(3));
        assert_eq!(ppid("Name:\tx\n"), None);
    }

    #[test]
    fn the_interpreter_of_a_dynamic_program() {
        // This test binary is a dynamic ELF program unless built static.
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let want = std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| p.contains("/ld-"))
            .map(PathBuf::from);
        let got = interpreter_of(&exe);
        match want {
            Some(ld) => {
                let got = got.expect("PT_INTERP");
                let id = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).unwrap();
                assert_eq!(id(&got), id(&ld), "{} names the loader mapped ({})", got.display(), ld.display());
            }
            None => assert_eq!(got, None),
        }
    }

    #[test]
    fn garbage_has_no_interpreter() {
        assert_eq!(elf_interp(b""), None);
        assert_eq!(elf_interp(b"#!/bin/sh\n"), None);
        let mut h = vec![0u8; 64];
        h[..6].copy_from_slice(b"\x7fELF\x02\x01");
        // Program headers said to be far beyond the bytes read.
        h[0x20] = 0xff;
        h[0x21] = 0xff;
        h[0x38] = 3;
        assert_eq!(elf_interp(&h), None);
        h[0x38] = 0xff;
        h[0x36] = 0xff;
        h[0x20] = 0x40;
        h[0x21] = 0;
        assert_eq!(elf_interp(&h), None);
    }

    #[test]
    fn own_files_include_our_program() {
        let exe = std::fs::metadata("/proc/self/exe").unwrap();
        let files = own_executable_files();
        assert!(
            files.iter().any(|p| std::fs::metadata(p).is_ok_and(|m| m.ino() == exe.ino() && m.dev() == exe.dev())),
            "{files:?}"
        );
    }
}
