//! Files reached through a stacked filesystem (overlayfs: the rootfs of docker, podman, containerd and
//! CRI-O containers). A filesystem mark on the filesystem beneath an overlay sees an exec through the
//! overlay as an event on the layer's real file, opened through the layer's private mount: the event fd's
//! mount id is in no mount table and its name is relative to the layer (`/bin/sh`, the container's path).
//! The layers' own paths are in the overlay's mount options (`lowerdir=`, `upperdir=`); the file's name on
//! the host is the layer's path joined with that name, confirmed by device and inode.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use super::mountinfo::{self, Line, option_value, unescape};

/// One layer directory of an overlay mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub dir: Vec<u8>,
    /// An `upperdir`: the container writes there (copy-up, new files, renames). A lower layer is read-only to
    /// every container using it.
    pub upper: bool,
}

/// A file found in a layer: its name in our namespace, and whether no overlay of the table writes that layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InLayer {
    pub path: Vec<u8>,
    pub read_only: bool,
    /// Its layer's index in the slice it was looked up in.
    pub layer: usize,
}

/// The layer directories of every overlay mount of mountinfo `lines`, upper layers first: each `upperdir`,
/// then each `lowerdir` entry (data-only layers after `::` too, and the `lowerdir+`/`datadir+` form).
pub fn overlay_layers<'l, 'a: 'l>(lines: impl IntoIterator<Item = &'l Line<'a>>) -> Vec<Layer> {
    let mut out = Vec::new();
    for line in lines {
        if &*line.fstype != b"overlay" {
            continue;
        }
        let mut lower = Vec::new();
        for option in line.super_options() {
            if let Some(dir) = option_value(option, b"upperdir") {
                out.push(Layer { dir: unescape(dir).into_owned(), upper: true });
            } else if let Some(dirs) = option_value(option, b"lowerdir") {
                lower.extend(split_lowerdir(dirs).map(|d| Layer { dir: unescape(&d).into_owned(), upper: false }));
            } else if let Some(dir) = option_value(option, b"lowerdir+").or_else(|| option_value(option, b"datadir+")) {
                lower.push(Layer { dir: unescape(dir).into_owned(), upper: false });
            }
        }
        out.extend(lower);
    }
    out
}

/// `lowerdir=a:b\:c::d` → `a`, `b:c`, `d`: `:` separates layers, `\:` is a colon in a name, `::` marks the
/// data-only layers that follow.
fn split_lowerdir(dirs: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    let mut parts = Vec::new();
    let mut current = Vec::new();
    let mut i = 0;
    while let Some(&b) = dirs.get(i) {
        match b {
            b'\\' if dirs.get(i + 1) == Some(&b':') => {
                current.push(b':');
                i += 1;
            }
            b':' => parts.push(std::mem::take(&mut current)),
            _ => current.push(b),
        }
        i += 1;
    }
    parts.push(current);
    parts.into_iter().filter(|p| !p.is_empty())
}

/// The name in our namespace of the file `dev`/`ino`, reached as `name` inside one of `layers`. A path
/// lookup per layer, never an open: no fanotify event, no wait. `read_only`: the layer it was found in is
/// the upper layer of no overlay in `layers` (a directory used both ways counts as written).
///
/// `first`: the layer to try before the others (where the last file reached through the same mount was
/// found, [`InLayer::layer`]). Every overlay's upper layer comes before any lower one, so without it a file of
/// an image's lower layer cost one failed lookup per running container.
pub fn file_in_layers(layers: &[Layer], first: Option<usize>, name: &[u8], dev: u64, ino: u64) -> Option<InLayer> {
    let probe = |index: usize| -> Option<InLayer> {
        let found = in_layer(layers, index, name)?;
        let is_it =
            std::fs::symlink_metadata(OsStr::from_bytes(&found.path)).is_ok_and(|m| m.dev() == dev && m.ino() == ino);
        is_it.then_some(found)
    };
    first.and_then(probe).or_else(|| (0..layers.len()).filter(|&i| Some(i) != first).find_map(probe))
}

/// The file `name` of layer `index`, without looking: for a file reached through that layer's own private
/// mount (the overlay's clone of the layer directory, whose root is that directory), known by its unique id.
pub fn in_layer(layers: &[Layer], index: usize, name: &[u8]) -> Option<InLayer> {
    if !name.starts_with(b"/") {
        return None;
    }
    let trimmed = |d: &[u8]| -> usize { d.len() - d.iter().rev().take_while(|&&b| b == b'/').count() };
    let layer = layers.get(index)?;
    let dir = layer.dir.get(..trimmed(&layer.dir)).unwrap_or_default();
    let mut path = dir.to_vec();
    path.extend_from_slice(name);
    let read_only = !layers.iter().any(|l| l.upper && l.dir.get(..trimmed(&l.dir)) == Some(dir));
    Some(InLayer { path, read_only, layer: index })
}

/// [`file_in_layers`] for the overlays of process `pid`'s mount namespace (a container whose rootfs was
/// mounted a moment ago, before our own table caught up).
pub fn file_in_layers_of(pid: i32, name: &[u8], dev: u64, ino: u64) -> Option<InLayer> {
    let table = std::fs::read(format!("/proc/{pid}/mountinfo")).ok()?;
    let lines: Vec<Line<'_>> = mountinfo::lines(&table).collect();
    file_in_layers(&overlay_layers(&lines), None, name, dev, ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[u8] = b"1 0 8:1 / / rw - ext4 /dev/sda1 rw\n\
70 66 0:41 / /var/lib/containers/storage/overlay/abc/merged rw,relatime - overlay overlay rw,lowerdir=/l/a:/l/b\\:c::/l/data,upperdir=/u/abc/diff,workdir=/u/abc/work,uuid=on\n\
71 66 0:42 / /m rw - overlay overlay rw,lowerdir+=/n/1,lowerdir+=/n/2,datadir+=/n/d,upperdir=/n/u\\054x,workdir=/n/w\n\
72 1 0:43 / /tmp rw - tmpfs tmpfs rw,lowerdir=/not/an/overlay\n";

    /// The layers of the overlays of a mountinfo text.
    fn layers_of(text: &[u8]) -> Vec<Layer> {
        overlay_layers(&mountinfo::lines(text).collect::<Vec<_>>())
    }

    #[test]
    fn layers_of_every_overlay_upper_first() {
        let layers: Vec<(String, bool)> =
            layers_of(TABLE).iter().map(|l| (String::from_utf8_lossy(&l.dir).into_owned(), l.upper)).collect();
        let want = [
            ("/u/abc/diff", true),
            ("/l/a", false),
            ("/l/b:c", false),
            ("/l/data", false),
            ("/n/u,x", true),
            ("/n/1", false),
            ("/n/2", false),
            ("/n/d", false),
        ];
        assert_eq!(layers, want.map(|(d, u)| (d.to_owned(), u)));
        assert!(layers_of(b"").is_empty());
        assert!(layers_of(b"garbage - overlay\n - overlay x\n").is_empty());
    }

    #[test]
    fn a_file_is_found_in_its_layer_by_device_and_inode() {
        let dir = tempfile::tempdir().unwrap();
        let (lower, upper) = (dir.path().join("lower"), dir.path().join("upper"));
        std::fs::create_dir_all(lower.join("bin")).unwrap();
        std::fs::create_dir_all(upper.join("bin")).unwrap();
        std::fs::write(lower.join("bin/sh"), b"lower").unwrap();
        std::fs::write(upper.join("bin/other"), b"upper").unwrap();
        let table = format!(
            "9 1 0:50 / /merged rw - overlay overlay rw,lowerdir={},upperdir={}/,workdir=/w\n",
            lower.display(),
            upper.display()
        );
        let m = std::fs::metadata(lower.join("bin/sh")).unwrap();
        let layers = layers_of(table.as_bytes());
        let found = file_in_layers(&layers, None, b"/bin/sh", m.dev(), m.ino()).unwrap();
        assert_eq!(found.path, lower.join("bin/sh").as_os_str().as_bytes());
        assert!(found.read_only, "a lower layer");
        // Same name, another inode: not this file.
        assert_eq!(file_in_layers(&layers, None, b"/bin/sh", m.dev(), m.ino() + 1), None);
        assert_eq!(file_in_layers(&layers, None, b"bin/sh", m.dev(), m.ino()), None);
        let o = std::fs::metadata(upper.join("bin/other")).unwrap();
        let found = file_in_layers(&layers, None, b"/bin/other", o.dev(), o.ino()).unwrap();
        assert_eq!(found.path, upper.join("bin/other").as_os_str().as_bytes());
        assert!(!found.read_only, "the upper layer");
        // A lower layer of one overlay that is the upper layer of another is written by that one.
        let both = format!("{table}10 1 0:51 / /m2 rw - overlay overlay rw,lowerdir=/x,upperdir={}\n", lower.display());
        let found = file_in_layers(&layers_of(both.as_bytes()), None, b"/bin/sh", m.dev(), m.ino()).unwrap();
        assert!(!found.read_only, "a layer some overlay writes");
    }

    #[test]
    fn the_layer_tried_first_is_only_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let (lower, upper) = (dir.path().join("lower"), dir.path().join("upper"));
        std::fs::create_dir_all(lower.join("bin")).unwrap();
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::write(lower.join("bin/sh"), b"lower").unwrap();
        let table = format!(
            "9 1 0:50 / /merged rw - overlay overlay rw,lowerdir={},upperdir={},workdir=/w\n",
            lower.display(),
            upper.display()
        );
        let layers = layers_of(table.as_bytes());
        let m = std::fs::metadata(lower.join("bin/sh")).unwrap();
        let found = file_in_layers(&layers, None, b"/bin/sh", m.dev(), m.ino()).unwrap();
        assert_eq!((found.layer, layers[found.layer].upper), (1, false), "upper layers come first");
        for first in [Some(0), Some(1), Some(7)] {
            let again = file_in_layers(&layers, first, b"/bin/sh", m.dev(), m.ino()).unwrap();
            assert_eq!((again.path, again.layer), (found.path.clone(), 1), "first = {first:?}");
        }
        assert_eq!(file_in_layers(&layers, Some(1), b"/bin/sh", m.dev(), m.ino() + 1), None, "checked, never trusted");
    }
}
