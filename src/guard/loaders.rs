//! The dynamic loaders of this host, by (device, inode): found at run time, never compiled in (fapolicyd's
//! compiled-in ld.so path never matched on Debian). Part of the guard's state: built with it, swapped with it.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The dynamic loaders of this host, by (device, inode): found at run time, never compiled in (fapolicyd's
/// compiled-in ld.so path never matched on Debian).
#[derive(Debug, Clone, Default)]
pub struct Loaders {
    ids: HashSet<(u64, u64)>,
    pub paths: Vec<PathBuf>,
}

/// Directories that hold a loader on glibc, musl and multiarch layouts.
const LOADER_DIRS: &[&str] =
    &["/lib", "/lib64", "/lib32", "/libx32", "/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/libx32", "/usr/bin"];

impl Loaders {
    /// Every `ld-*.so*`, `ld-linux*`, `ld-musl-*` and `ld.so` in the library directories and their
    /// multiarch subdirectories (`/usr/lib/x86_64-linux-gnu`), symlinks followed.
    pub fn find() -> Self {
        let mut dirs: Vec<PathBuf> = LOADER_DIRS.iter().map(PathBuf::from).collect();
        for base in ["/lib", "/usr/lib"] {
            if let Ok(entries) = std::fs::read_dir(base) {
                dirs.extend(
                    entries
                        .flatten()
                        .map(|e| e.path())
                        .filter(|p| p.file_name().is_some_and(|n| n.as_bytes().ends_with(b"-linux-gnu")))
                        .filter(|p| p.is_dir()),
                );
            }
        }
        let mut loaders = Loaders::default();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name();
                if is_loader_name(name.as_bytes()) {
                    loaders.add(&entry.path());
                }
            }
        }
        loaders
    }

    fn add(&mut self, path: &Path) {
        if let Ok(m) = std::fs::metadata(path)
            && m.is_file()
            && self.ids.insert((m.dev(), m.ino()))
        {
            self.paths.push(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()));
        }
    }

    pub fn contains(&self, id: (u64, u64)) -> bool {
        self.ids.contains(&id)
    }
}

/// `ld-linux-x86-64.so.2`, `ld-2.31.so`, `ld-musl-x86_64.so.1`, `ld.so`, `ld64.so.2`.
pub fn is_loader_name(name: &[u8]) -> bool {
    let so = name.windows(3).any(|w| w == b".so");
    so && (name.starts_with(b"ld-") || name.starts_with(b"ld.so") || name.starts_with(b"ld64.so"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_names() {
        for n in
            ["ld-linux-x86-64.so.2", "ld-2.31.so", "ld-musl-x86_64.so.1", "ld.so", "ld64.so.2", "ld-linux-aarch64.so.1"]
        {
            assert!(is_loader_name(n.as_bytes()), "{n}");
        }
        for n in ["ld", "ld.bfd", "ldd", "ld-foo", "libld.so"] {
            assert!(!is_loader_name(n.as_bytes()), "{n}");
        }
    }

    #[test]
    fn this_processs_own_loader_is_found() {
        // The test binary is dynamically linked: its loader is one of its executable mappings.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let loader = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| is_loader_name(Path::new(p).file_name().unwrap().as_bytes()))
            .expect("a dynamically linked test binary maps its loader");
        let m = std::fs::metadata(loader).unwrap();
        let loaders = Loaders::find();
        assert!(loaders.contains((m.dev(), m.ino())), "{loader} not in {:?}", loaders.paths);
        assert!(!loaders.contains((m.dev(), m.ino().wrapping_add(1))));
    }
}
