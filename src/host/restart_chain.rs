//! The files a container runtime exec-opens to start the daemon's container again, found from the host
//! (`run --hold-socket`): while `noexecd hold` keeps the group, an exec of any of them on a marked
//! filesystem would wait for the very daemon it is starting.
//!
//! - The daemon's own program and every file it maps executable. In a container these are overlay files,
//!   but the kernel raises the exec event on the layer's real file, which is what must be exempted. The
//!   overlay reports neither the real file's name nor its device (`/proc/self/maps` and `map_files` show the
//!   overlay's), so each is looked up by its name in the layers of the container's root overlay, top layer
//!   first as the overlay resolves it, confirmed by inode number where the overlay passes the real one on.
//! - Its ancestors in the host's mount namespace (conmon, containerd-shim-runc-v2: found by walking `PPid`
//!   from the supervisor), and the OCI runtimes they run (`--runtime`/`-r` of their command lines, the
//!   usual paths of runc and crun; `runc init` re-executes the runc binary itself).
//! - The ELF interpreter (`PT_INTERP`) of each of those: the kernel exec-opens it too, while the shared
//!   libraries are only opened and mapped (no exec event).

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::mountinfo;

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

/// The daemon's own executable mappings, as its own mount namespace names them (read before it joins the
/// host's: afterwards the names no longer lead anywhere): (name, inode number).
#[derive(Debug, Clone, Default)]
pub struct OwnMappings(Vec<(Vec<u8>, u64)>);

impl OwnMappings {
    pub fn read() -> Self {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let mut out: Vec<(Vec<u8>, u64)> =
            executable_mappings(&maps).map(|(name, ino)| (name.as_bytes().to_vec(), ino)).collect();
        out.sort();
        out.dedup();
        Self(out)
    }
}

/// Every file the restart of this daemon's container exec-opens, as paths of our mount namespace.
/// `container`: a process of the daemon's container (its supervisor), whose root overlay holds the layers
/// of `own`; `None` outside a container, where `own`'s names are ours.
pub fn container_restart_chain(own: &OwnMappings, container: Option<i32>) -> Vec<PathBuf> {
    let layers = container.map(root_layers).unwrap_or_default();
    let mut out: Vec<PathBuf> = own
        .0
        .iter()
        .filter_map(|(name, ino)| {
            if container.is_none() {
                return Some(PathBuf::from(std::ffi::OsStr::from_bytes(name)));
            }
            real_file(&layers, name, *ino)
        })
        .collect();
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
    out.retain(|p| !p.as_os_str().as_bytes().ends_with(b" (deleted)") && p.is_file());
    out.sort();
    out.dedup();
    out
}

/// The layers of the overlays mounted at `/` in `pid`'s mount namespace, top first.
fn root_layers(pid: i32) -> Vec<super::overlay::Layer> {
    let table = std::fs::read(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let at_root: Vec<mountinfo::Line<'_>> = mountinfo::lines(&table).filter(|l| &*l.mount_point == b"/").collect();
    super::overlay::overlay_layers(&at_root)
}

/// The real file behind `name` of an overlay built from `layers`: the topmost layer holding a regular file
/// there, preferring one whose inode number is `ino` (what the overlay reports where it can).
fn real_file(layers: &[super::overlay::Layer], name: &[u8], ino: u64) -> Option<PathBuf> {
    let candidates: Vec<(PathBuf, u64)> = layers
        .iter()
        .filter_map(|layer| {
            let mut path = layer.dir.clone();
            path.extend_from_slice(name);
            let path = PathBuf::from(std::ffi::OsStr::from_bytes(&path));
            let meta = std::fs::symlink_metadata(&path).ok()?;
            meta.file_type().is_file().then(|| (path, meta.ino()))
        })
        .collect();
    let by_ino = candidates.iter().find(|(_, i)| *i == ino).map(|(p, _)| p.clone());
    by_ino.or_else(|| candidates.into_iter().next().map(|(p, _)| p))
}

/// The shown name and inode number of each file-backed executable mapping of a maps text.
pub fn executable_mappings(maps: &str) -> impl Iterator<Item = (&str, u64)> + '_ {
    maps.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        let perms = fields.nth(1)?;
        let ino = fields.nth(2)?.parse().ok()?;
        let path = fields.next()?;
        (perms.contains('x') && path.starts_with('/')).then_some((path, ino))
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
pub fn interpreter_of(path: &Path) -> Option<PathBuf> {
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
        let got: Vec<(&str, u64)> = executable_mappings(maps).collect();
        assert_eq!(got, [("/usr/bin/noexecd", 1234), ("/lib64/ld-linux-x86-64.so.2", 99)]);
    }

    #[test]
    fn conmon_names_its_runtime() {
        let cmd = b"/usr/bin/conmon\0-c\0abc\0-r\0/usr/bin/crun\0-b\0/x\0";
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
        let files = container_restart_chain(&OwnMappings::read(), None);
        assert!(
            files.iter().any(|p| std::fs::metadata(p).is_ok_and(|m| m.ino() == exe.ino() && m.dev() == exe.dev())),
            "{files:?}"
        );
    }

    #[test]
    fn the_real_file_is_the_topmost_layers() {
        let dir = tempfile::tempdir().unwrap();
        let layer = |n: &str| {
            let d = dir.path().join(n);
            std::fs::create_dir_all(d.join("usr/bin")).unwrap();
            d
        };
        let (upper, a, b) = (layer("upper"), layer("a"), layer("b"));
        std::fs::write(a.join("usr/bin/prog"), "a").unwrap();
        std::fs::write(b.join("usr/bin/prog"), "b").unwrap();
        let layers: Vec<super::super::overlay::Layer> = [(&upper, true), (&a, false), (&b, false)]
            .iter()
            .map(|(d, upper)| super::super::overlay::Layer { dir: d.as_os_str().as_bytes().to_vec(), upper: *upper })
            .collect();
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let in_b = b.join("usr/bin/prog");
        assert_eq!(real_file(&layers, b"/usr/bin/prog", ino(&in_b)), Some(in_b));
        assert_eq!(real_file(&layers, b"/usr/bin/prog", 1), Some(a.join("usr/bin/prog")), "top layer first");
        assert_eq!(real_file(&layers, b"/usr/bin/none", 1), None);
        assert_eq!(real_file(&layers, b"/usr/bin", 1), None, "a directory is no program");
    }
}
