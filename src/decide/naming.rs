//! Naming the file of an event: its path in our namespace, mapped through its filesystem's root, and where it
//! was reached through a container (an overlay layer, a mount of the caller's namespace, a container's
//! private mount), its path as the container sees it. A file is reached through a mount of our table, through
//! an overlay layer's private mount (in no namespace's table), or through a mount of another namespace (read
//! from the caller's `/proc/PID/mountinfo`). Mounts of the last two kinds are remembered between events.
//!
//! Naming returns what it found ([`Named`], or why it found nothing: [`Unnamed`]); the names themselves are
//! written into buffers allocated once ([`Scratch`]).
#![forbid(unsafe_code)]

use std::os::fd::BorrowedFd;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::guard::Guard;
use crate::guard::scopes::{ContainerScope, Scopes};
use crate::host::mounts::{Mount, MountTable, foreign_mount_with, is_path_prefix};
use crate::host::overlay;
use crate::sys::{self, FileFacts, PATH_BUF_LEN, ProcDirs};

/// Slots of the table of mounts found to be overlay layers' private mounts (see [`MountMemory`]).
const LAYER_MOUNTS: usize = 64;

/// Slots of the table of mounts of other namespaces, remembered by unique mount id (see [`MountMemory`]).
const FOREIGN_MOUNTS: usize = 64;

/// Buffers allocated once and reused by every event: naming a file allocates nothing for them.
pub struct Scratch {
    /// What `/proc/self/fd/N` is read into: the kernel's name of the file.
    pub path_buf: Box<[u8; PATH_BUF_LEN]>,
    pub scratch: Vec<u8>,
    /// The file's name for the decision and its alert: in our namespace, or as the container sees it when a
    /// container's policies decided it.
    pub canonical: Vec<u8>,
    /// The file's name inside a container: in its overlay layer, its mount namespace or its private mount
    /// (valid where [`Named::in_container`] says so).
    pub layer_name: Vec<u8>,
    /// What `/proc/PID/cgroup` and `/proc/PID/mountinfo` are read into.
    pub proc_buf: Vec<u8>,
}

impl Default for Scratch {
    fn default() -> Self {
        Self {
            path_buf: Box::new([0u8; PATH_BUF_LEN]),
            scratch: Vec::with_capacity(PATH_BUF_LEN),
            canonical: Vec::with_capacity(PATH_BUF_LEN),
            layer_name: Vec::with_capacity(PATH_BUF_LEN),
            proc_buf: Vec::with_capacity(64 * 1024),
        }
    }
}

/// How a file was named. The names are in [`Scratch`].
#[derive(Debug, Clone)]
pub enum Named {
    /// `canonical`: its name in our namespace.
    Host,
    /// A file of an overlay's layer (a container's rootfs): `canonical` is the layer's file in our namespace,
    /// `layer_name` its path in the container. `read_only`: a lower layer, which no overlay we know writes.
    Layer { read_only: bool },
    /// Reached through a mount of the caller's namespace that our root does not reach: `layer_name` is the
    /// path the caller sees (the kernel names the file from that namespace's root), `canonical` its name in
    /// our namespace.
    CallerNamespace,
    /// On a part of a filesystem no mount of ours shows (a container's private mount, a runtime's state bound
    /// from a guarded filesystem in a namespace of its own): no host path names it, so no host rule decides it
    /// (every protected directory is named through a mount of ours); `layer_name` is the path the caller sees.
    /// `owner`: the selected container owning the mount, known by the mount (a host process may reach it
    /// through `/proc/PID/root`).
    Private { owner: Option<Arc<ContainerScope>> },
}

impl Named {
    /// Whether the file has a path inside a container (`layer_name`), which container policies decide.
    pub fn in_container(&self) -> bool {
        !matches!(self, Named::Host)
    }

    /// Whether no host path names the file.
    pub fn host_unnamed(&self) -> bool {
        matches!(self, Named::Private { .. })
    }

    /// Whether the file lies in a lower (read-only) layer of every overlay we know.
    pub fn in_read_only_layer(&self) -> bool {
        matches!(self, Named::Layer { read_only: true })
    }
}

/// Why a file could not be named: the exec is denied as unresolvable (the last resort), and `canonical` holds
/// the best name known for its alert (see [`best_known_name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unnamed {
    /// `/proc/self/fd/N` could not be read.
    NoPath,
    /// The kernel did not say which mount the file was reached through (no `STATX_MNT_ID`).
    NoMountId,
    /// Reached through a mount no table we can read shows (and in no overlay's layer we know), or one whose
    /// name does not lie below its mount point.
    NotFound,
}

/// Mounts remembered between events, by id, so that an event of a container does not read the caller's whole
/// mountinfo (what a denial in a container mostly cost).
pub struct MountMemory {
    /// (mount id, device) of mounts through which a file was last found in our overlays' layers, direct-mapped
    /// by mount id, with the layer it was found in: a layer's private mount is in no namespace's table, so for
    /// these the layers are tried before reading the caller's whole mountinfo, that layer first (a layer's
    /// private mount shows that one layer). The mount id is only a hint (the kernel reuses it): the layer
    /// lookup checks device and inode, and when it finds nothing the caller's table is read as before; only
    /// the same mount, by its unique id, is trusted without a lookup (see `LayerMount::known`).
    layer_mounts: [LayerMount; LAYER_MOUNTS],
    /// Mounts of other namespaces (a container's rootfs, PrivateTmp) found in a caller's mountinfo,
    /// direct-mapped by unique mount id. A unique id is never reused, and a remembered mount is used only where
    /// its answer is checked (see [`name`](Self::name)); otherwise the caller's mountinfo is read as before.
    foreign_mounts: Vec<Option<ForeignMount>>,
}

impl Default for MountMemory {
    fn default() -> Self {
        Self {
            layer_mounts: std::array::from_fn(|_| LayerMount::default()),
            foreign_mounts: vec![None; FOREIGN_MOUNTS],
        }
    }
}

/// The name buffers one naming writes.
struct Names<'a> {
    scratch: &'a mut Vec<u8>,
    canonical: &'a mut Vec<u8>,
    layer_name: &'a mut Vec<u8>,
}

impl Names<'_> {
    /// A file found in an overlay's layer: `layer_name` is its name inside the layer (the container's path),
    /// `canonical` the layer's file in our namespace.
    fn in_layer(self, guard: &Guard, raw: &[u8], found: overlay::InLayer) -> Result<Named, Unnamed> {
        self.layer_name.clear();
        self.layer_name.extend_from_slice(raw);
        let named = match guard.mounts.containing(&found.path) {
            Some(via) => guard.mounts.canonical_path(via, &found.path, self.scratch, self.canonical),
            None => false,
        };
        if named { Ok(Named::Layer { read_only: found.read_only }) } else { Err(Unnamed::NotFound) }
    }
}

impl MountMemory {
    /// Names the file open at `fd` (`facts`), reached by process `pid`: `canonical` gets its name in our
    /// namespace, mapped through its filesystem's root; `layer_name` its path in a container where it has
    /// one. `scopes`: the containers, for the owner of a private mount.
    #[allow(clippy::too_many_arguments)]
    pub fn name(
        &mut self,
        guard: &Guard,
        procs: &ProcDirs,
        scopes: &ArcSwap<Scopes>,
        bufs: &mut Scratch,
        fd: BorrowedFd<'_>,
        pid: i32,
        facts: &FileFacts,
    ) -> Result<Named, Unnamed> {
        let Scratch { path_buf, scratch, canonical, layer_name, proc_buf } = bufs;
        canonical.clear();
        let Ok(raw) = procs.fd_path(fd, path_buf) else {
            best_known_name(None, facts, canonical);
            return Err(Unnamed::NoPath);
        };
        // The kernel appends " (deleted)" to an unlinked file's name; a live file may really be called that.
        // The link count was read before the name, so a file unlinked in between still shows nlink >= 1 (as
        // does one unlinked under a name while another hard link remains): then the suffixed name counts as
        // real only if it is this very file.
        let raw = match raw.strip_suffix(b" (deleted)") {
            Some(stripped) if facts.nlink == 0 || !names_this_file(raw, facts) => stripped,
            _ => raw,
        };
        let names = Names { scratch, canonical: &mut *canonical, layer_name };
        let named = self.name_raw(guard, procs, scopes, proc_buf, names, fd, pid, facts, raw);
        if named.is_err() {
            best_known_name(Some(raw), facts, canonical);
        }
        named
    }

    /// [`name`](Self::name) once the kernel's name of the file, `raw`, is known.
    #[allow(clippy::too_many_arguments)]
    fn name_raw(
        &mut self,
        guard: &Guard,
        procs: &ProcDirs,
        scopes: &ArcSwap<Scopes>,
        proc_buf: &mut Vec<u8>,
        names: Names<'_>,
        fd: BorrowedFd<'_>,
        pid: i32,
        facts: &FileFacts,
        raw: &[u8],
    ) -> Result<Named, Unnamed> {
        let mnt_id = facts.mnt_id.ok_or(Unnamed::NoMountId)?;
        // Our table is up to one mount poll old, and the kernel reuses a freed mount id at once: the id may now
        // be another mount's (a container's overlay layer taking the id of the last container's rootfs). A mount
        // of another filesystem than the file's, or one the name does not lie below, is not the file's mount.
        if let Some(via) = guard.mounts.by_id(mnt_id)
            && same_filesystem(guard, via.dev, fd, facts)
            && guard.mounts.canonical_path(via, raw, names.scratch, names.canonical)
        {
            return Ok(Named::Host);
        }
        let slot = usize::try_from(mnt_id).unwrap_or(0) % LAYER_MOUNTS;
        if let Some(entry) = self.layer_mounts.get_mut(slot)
            && (entry.mnt_id, entry.dev) == (mnt_id, facts.dev)
            && let Some(found) = entry.find(guard.mounts.overlay_layers(), fd, raw, facts)
        {
            return names.in_layer(guard, raw, found);
        }
        // Reached through a mount of another namespace (a container, PrivateTmp, `unshare -m`).
        let unique = sys::mount_unique_id(fd);
        let slot = unique.map(|u| usize::try_from(u % FOREIGN_MOUNTS as u64).unwrap_or(0));
        let mut remembered = slot
            .and_then(|i| self.foreign_mounts.get_mut(i))
            .and_then(|e| e.take_if(|f| Some(f.unique) == unique && f.file_dev == facts.dev))
            .map(|f| f.mount);
        // A mount keeps its filesystem and root for its life, but it can be moved: trusted only when the name it
        // gives is this very file in our namespace, or when no name is possible either way (no mount of ours
        // shows any part of what it shows, so no mount point of ours could name the file).
        if let Some(via) = remembered.as_ref() {
            let trusted = if guard.mounts.canonical_path(via, raw, names.scratch, names.canonical) {
                names_this_file(names.canonical, facts)
            } else {
                guard
                    .mounts
                    .mounts_of(via.dev)
                    .all(|m| !is_path_prefix(&m.root, &via.root) && !is_path_prefix(&via.root, &m.root))
            };
            if !trusted {
                remembered = None;
            }
        }
        let via = remembered.or_else(|| foreign_mount_with(procs, pid, mnt_id, proc_buf));
        let found =
            self.name_through_foreign(guard, (procs, proc_buf), scopes, via.as_ref(), raw, mnt_id, pid, facts, names);
        if let (Some(i), Some(unique), Some(mount)) = (slot, unique, via)
            && let Some(entry) = self.foreign_mounts.get_mut(i)
        {
            *entry = Some(ForeignMount { unique, file_dev: facts.dev, mount });
        }
        found
    }

    /// The rest of [`name`](Self::name) for a file reached through mount `via` of the caller's namespace
    /// (`None`: in no namespace's table), the kernel naming it `raw`.
    #[allow(clippy::too_many_arguments)]
    fn name_through_foreign(
        &mut self,
        guard: &Guard,
        (procs, proc_buf): (&ProcDirs, &mut Vec<u8>),
        scopes: &ArcSwap<Scopes>,
        via: Option<&Mount>,
        raw: &[u8],
        mnt_id: u64,
        pid: i32,
        facts: &FileFacts,
        names: Names<'_>,
    ) -> Result<Named, Unnamed> {
        let containers = !guard.config.container_policies.is_empty();
        let slot = usize::try_from(mnt_id).unwrap_or(0) % LAYER_MOUNTS;
        match via {
            Some(via) if via.dev == facts.dev || guard.target_for(via.dev).is_some() => {
                let named = guard.mounts.canonical_path(via, raw, names.scratch, names.canonical);
                // A part of the filesystem no mount of ours shows (a runtime's state bound from a directory of
                // a guarded filesystem in its own namespace; a container's own tmpfs, a superblock we do not
                // mount at all): every protected directory is named through a mount of ours, so none lies
                // there and no host rule decides the file. The path within the filesystem is the mount's root
                // (mountinfo's fourth field) joined with the path below the mount.
                let unseen = !named
                    && MountTable::path_in_filesystem(via, raw, names.scratch)
                    && !guard.mounts.shows(via.dev, names.scratch);
                if !named && !unseen {
                    return Err(Unnamed::NotFound);
                }
                // The mount is in the caller's namespace, which our root does not reach: the kernel names the
                // file from that namespace's root, i.e. as the caller (a container) sees it. Whether the caller
                // is in a container is for the container's decision to find out.
                names.layer_name.clear();
                names.layer_name.extend_from_slice(raw);
                if unseen {
                    names.canonical.clear();
                }
                if !containers {
                    return Ok(if named { Named::Host } else { Named::Private { owner: None } });
                }
                if unseen {
                    // Its owner, whoever the caller is (a host process that entered the namespace too).
                    let owner = scopes.load().owner_of_private(mnt_id, facts.dev).cloned();
                    return Ok(Named::Private { owner });
                }
                Ok(Named::CallerNamespace)
            }
            // In no namespace's table: a layer's private mount under an overlay (a container's rootfs). The
            // file is named by its layer's path on the host, so host rules decide host paths.
            _ => {
                // Or a selected container's private mount reached from outside it (`/proc/PID/root/tmp/x` from
                // the host): the container that owns it decides, by the path the container sees.
                if containers && let Some(owner) = scopes.load().owner_of_private(mnt_id, facts.dev) {
                    names.layer_name.clear();
                    names.layer_name.extend_from_slice(raw);
                    return Ok(Named::Private { owner: Some(owner.clone()) });
                }
                let ours = overlay::file_in_layers(guard.mounts.overlay_layers(), None, raw, facts.dev, facts.ino);
                if let Some(found) = ours.as_ref()
                    && let Some(entry) = self.layer_mounts.get_mut(slot)
                {
                    *entry = LayerMount { mnt_id, dev: facts.dev, layer: found.layer, ..LayerMount::default() };
                }
                if let Some(found) = ours {
                    return names.in_layer(guard, raw, found);
                }
                let Some(mut found) = overlay::file_in_layers_of(pid, raw, facts.dev, facts.ino) else {
                    return name_in_a_runtimes_layer(guard, procs, proc_buf, pid, raw, facts, names);
                };
                // Whoever mounted the caller's overlay chose how its options name the layers: through a
                // symbolic link to a protected directory, the path as written would be an unprotected name
                // of a protected file. The kernel's name of the file, every link resolved, is what decides.
                found.path = real_name(procs, &found.path, facts).ok_or(Unnamed::NotFound)?;
                names.in_layer(guard, raw, found)
            }
        }
    }
}

/// How many of the caller's ancestors are tried for the namespace an overlay was mounted in.
const RUNTIME_ANCESTORS: usize = 3;

/// A file of a layer of an overlay mounted in a namespace that neither we nor the caller see it in: a runtime
/// in a mount namespace of its own, whose `runc init`, pivoted into the container's rootfs, execs the
/// entrypoint. The overlay's options (in the caller's mountinfo) name its layers by their paths in the
/// runtime's namespace; they are looked up through the root of the caller's nearest ancestor that reaches the
/// file there (the runtime), confirmed by device and inode, and that ancestor's mountinfo gives the file's
/// path within its filesystem: named through a mount of ours, or, where no mount of ours shows it, with no
/// host name (see [`Named::Private`]). Off the fast path: only for a file no table we read places otherwise.
fn name_in_a_runtimes_layer(
    guard: &Guard,
    procs: &ProcDirs,
    proc_buf: &mut Vec<u8>,
    pid: i32,
    raw: &[u8],
    facts: &FileFacts,
    names: Names<'_>,
) -> Result<Named, Unnamed> {
    procs.read_pid_file(pid, b"mountinfo", proc_buf).map_err(|_| Unnamed::NotFound)?;
    let layers = overlay::overlay_layers(&crate::host::mountinfo::lines(proc_buf).collect::<Vec<_>>());
    if layers.is_empty() {
        return Err(Unnamed::NotFound);
    }
    let mut ancestor = pid;
    for _ in 0..RUNTIME_ANCESTORS {
        let Some(parent) = crate::host::procfs::ppid(ancestor).filter(|&p| p > 0) else { break };
        ancestor = parent;
        let root = format!("/proc/{ancestor}/root");
        let through: Vec<overlay::Layer> =
            layers.iter().map(|l| overlay::Layer { dir: [root.as_bytes(), &l.dir].concat(), upper: l.upper }).collect();
        let Some(found) = overlay::file_in_layers(&through, None, raw, facts.dev, facts.ino) else { continue };
        // The layer's path as written may pass through symbolic links, which the lookup followed: the file's
        // real name in the runtime's namespace is the kernel's, of the file opened there (`O_PATH`: no
        // permission event, no wait), checked to be this very file.
        let real = real_name(procs, &found.path, facts).ok_or(Unnamed::NotFound)?;
        let path = real.as_slice();
        procs.read_pid_file(ancestor, b"mountinfo", proc_buf).map_err(|_| Unnamed::NotFound)?;
        let table = MountTable::parse(proc_buf);
        let via = table.containing(path).ok_or(Unnamed::NotFound)?;
        names.layer_name.clear();
        names.layer_name.extend_from_slice(raw);
        if guard.mounts.canonical_path(via, path, names.scratch, names.canonical) {
            return if names_this_file(names.canonical, facts) {
                Ok(Named::Layer { read_only: found.read_only })
            } else {
                Err(Unnamed::NotFound)
            };
        }
        if MountTable::path_in_filesystem(via, path, names.scratch) && !guard.mounts.shows(via.dev, names.scratch) {
            names.canonical.clear();
            return Ok(Named::Private { owner: None });
        }
        return Err(Unnamed::NotFound);
    }
    Err(Unnamed::NotFound)
}

/// The kernel's name of the file at `path` (opened `O_PATH`, never followed at its last component), if it is
/// the file `facts` describes: the path with every symbolic link resolved, in our namespace, or, for a file
/// our root does not reach, in the namespace of the mount it was reached through.
fn real_name(procs: &ProcDirs, path: &[u8], facts: &FileFacts) -> Option<Vec<u8>> {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::{Mode, fstat};
    use std::os::fd::AsFd;
    use std::os::unix::ffi::OsStrExt;
    let file =
        open(std::ffi::OsStr::from_bytes(path), OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
            .ok()?;
    let meta = fstat(&file).ok()?;
    if (meta.st_dev, meta.st_ino) != (facts.dev, facts.ino) {
        return None;
    }
    let mut buf = [0u8; PATH_BUF_LEN];
    procs.fd_path(file.as_fd(), &mut buf).ok().map(<[u8]>::to_vec)
}

/// A mount of another namespace, by the unique id of the mount (`STATX_MNT_ID_UNIQUE`) and the device of the
/// file found through it.
#[derive(Debug, Clone)]
struct ForeignMount {
    unique: u64,
    file_dev: u64,
    mount: Mount,
}

/// A mount found to be an overlay layer's private mount: its id and device, and the layer (an index into the
/// mount table's overlay layers) the last file reached through it was in.
#[derive(Default)]
struct LayerMount {
    mnt_id: u64,
    dev: u64,
    layer: usize,
    /// Once a file was found in `layer` through it: its unique id and that layer's directory. A layer's private
    /// mount is the overlay's clone of that one directory, so while the unique id is the same (it never names
    /// another mount) and the table still has that directory at `layer`, a file reached through it is in
    /// that directory at the name the kernel gives: no lookup.
    known: Option<(u64, Vec<u8>)>,
}

impl LayerMount {
    /// Where the file `raw` (the kernel's name for `fd`, `facts`) reached through this mount lies.
    fn find(
        &mut self,
        layers: &[overlay::Layer],
        fd: BorrowedFd<'_>,
        raw: &[u8],
        facts: &FileFacts,
    ) -> Option<overlay::InLayer> {
        let unique = sys::mount_unique_id(fd);
        if let (Some((id, dir)), Some(unique)) = (self.known.as_ref(), unique)
            && *id == unique
            && layers.get(self.layer).is_some_and(|l| l.dir == *dir)
        {
            return overlay::in_layer(layers, self.layer, raw);
        }
        let found = overlay::file_in_layers(layers, Some(self.layer), raw, facts.dev, facts.ino)?;
        self.layer = found.layer;
        self.known = unique.zip(layers.get(found.layer).map(|l| l.dir.clone()));
        Some(found)
    }
}

/// Writes into `canonical` the best name known of a file that could not be named: the kernel's name of it
/// (`raw`, as the namespace it was reached through shows it), else its device and inode
/// (`dev=MAJOR:MINOR,ino=INODE`). For the alert of the denial; within `canonical`'s capacity, no allocation.
fn best_known_name(raw: Option<&[u8]>, facts: &FileFacts, canonical: &mut Vec<u8>) {
    use std::io::Write;
    canonical.clear();
    match raw {
        Some(raw) if !raw.is_empty() => canonical.extend_from_slice(raw),
        _ => {
            let _ = write!(canonical, "dev={}:{},ino={}", libc::major(facts.dev), libc::minor(facts.dev), facts.ino);
        }
    }
}

/// Whether a mount of device `mount_dev` (as mountinfo shows it) can hold the file open at `fd`: the same
/// device, or both on one marked filesystem (btrfs reports another st_dev than mountinfo, one per subvolume).
fn same_filesystem(guard: &Guard, mount_dev: u64, fd: BorrowedFd<'_>, facts: &FileFacts) -> bool {
    mount_dev == facts.dev
        || matches!((guard.target_for(mount_dev), guard.target_of(fd, facts)), (Some(a), Some(b)) if std::ptr::eq(a, b))
}

/// Whether `path` (in our namespace) is a name of the file `facts` describes. Used only for names ending in
/// " (deleted)" and to check a remembered mount: a path lookup, but never an open, so no fanotify event and
/// no wait on a marked file.
fn names_this_file(path: &[u8], facts: &FileFacts) -> bool {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(std::ffi::OsStr::from_bytes(path))
        .is_ok_and(|m| m.dev() == facts.dev && m.ino() == facts.ino)
}

/// Naming on mount tables parsed from mountinfo text, with real files of a temporary directory (their real
/// fds, statx and /proc/self/fd names), without root: the table says which mount the kernel's mount id is,
/// what it shows, and which overlays there are.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::test_scene::{Scene, known_mount, scene};
    use crate::host::mounts::MountTable;
    use std::os::fd::AsFd;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    /// A container policy: naming then tells where a container names the file.
    const CONTAINER_POLICY: &str = "[[policy]]\nname = \"ctr\"\n[policy.selector]\nmatch_labels = { app = \"x\" }\n\
                                    [[policy.process.match_directories]]\ndir = \"/tmp/\"\nrecursive = true\n";

    /// Blocks below the scene's directory (a host policy).
    const HOST_POLICY: &str =
        "[[policy]]\nname = \"host\"\n[[policy.process.match_directories]]\ndir = \"{dir}/\"\nrecursive = true\n";

    /// What the decision thread keeps for naming, outside a decider.
    struct Namer {
        memory: MountMemory,
        bufs: Scratch,
        procs: ProcDirs,
        scopes: ArcSwap<Scopes>,
    }

    impl Namer {
        fn new() -> Self {
            Self {
                memory: MountMemory::default(),
                bufs: Scratch::default(),
                procs: ProcDirs::open(),
                scopes: ArcSwap::from_pointee(Scopes::default()),
            }
        }

        /// Names `file` as reached by process `pid`.
        fn name(&mut self, guard: &Guard, file: &Path, pid: i32) -> Result<Named, Unnamed> {
            let f = std::fs::File::open(file).unwrap();
            let facts = sys::file_facts(f.as_fd()).unwrap();
            self.bufs.layer_name.clear();
            self.memory.name(guard, &self.procs, &self.scopes, &mut self.bufs, f.as_fd(), pid, &facts)
        }
    }

    /// `major:minor` of the scene's filesystem, as mountinfo writes it.
    fn dev(s: &Scene) -> String {
        format!("{}:{}", libc::major(s.facts.dev), libc::minor(s.facts.dev))
    }

    /// A Guard for `policy` over the mount table `mountinfo` (`{dir}`: the scene's directory; `{dev}`: its
    /// filesystem; `{id}`: the mount the kernel says the file is on; `{other}`: an id no mount of ours has).
    fn guard(s: &Scene, policy: &str, mountinfo: &str) -> Guard {
        let policy = policy.replace("{dir}", s.dir.to_str().unwrap());
        let config = crate::policy::load_str(Path::new("t.toml"), &policy).unwrap();
        let text = mountinfo
            .replace("{dev}", &dev(s))
            .replace("{id}", &known_mount(s).to_string())
            .replace("{other}", &known_mount(s).wrapping_add(1_000_000).to_string());
        Guard::build(config, MountTable::parse(text.as_bytes())).unwrap()
    }

    fn bytes(p: &Path) -> Vec<u8> {
        p.as_os_str().as_bytes().to_vec()
    }

    /// A process that does not exist: its mountinfo cannot be read.
    const GONE: i32 = i32::MAX;

    fn me() -> i32 {
        i32::try_from(std::process::id()).unwrap()
    }

    #[test]
    fn a_file_reached_through_a_bind_mount_is_named_through_its_filesystems_root() {
        let s = scene();
        // The file's mount shows the filesystem's /srv at /; the whole filesystem is mounted at /data.
        let table = "{id} 0 {dev} /srv / rw - ext4 /dev/t rw\n{other} 0 {dev} / /data rw - ext4 /dev/t rw\n";
        let elsewhere = "[[policy]]\nname = \"p\"\n[[policy.process.match_directories]]\ndir = \"/data/p/\"\n";
        let g = guard(&s, elsewhere, table);
        let mut n = Namer::new();
        assert!(matches!(n.name(&g, &s.file, GONE), Ok(Named::Host)));
        let mut want = b"/data/srv".to_vec();
        want.extend_from_slice(&bytes(&s.file));
        assert_eq!(n.bufs.canonical, want);
        // A rule on the directory as the bind names it: that name is the file's, whatever else shows it.
        let g = guard(&s, HOST_POLICY, table);
        let mut n = Namer::new();
        assert!(matches!(n.name(&g, &s.file, GONE), Ok(Named::Host)));
        assert_eq!(n.bufs.canonical, bytes(&s.file));
    }

    #[test]
    fn a_mount_id_the_table_gives_another_filesystem_is_looked_up_in_the_callers_namespace() {
        let s = scene();
        // The table is a moment old: the file's mount id is still an overlay's, another filesystem.
        let table = "{id} 0 0:999 / /merged rw - overlay overlay rw\n{other} 0 {dev} / / rw - ext4 /dev/t rw\n";
        let g = guard(&s, HOST_POLICY, table);
        let mut n = Namer::new();
        assert!(matches!(n.name(&g, &s.file, me()), Ok(Named::Host)), "through our own mountinfo");
        assert!(!n.bufs.canonical.is_empty());
        let gone = Namer::new().name(&g, &s.file, GONE);
        assert!(matches!(gone, Err(Unnamed::NotFound)), "no namespace to read, no layer: {gone:?}");
    }

    #[test]
    fn a_file_in_no_table_is_found_in_an_overlays_layer_and_its_mount_remembered() {
        let s = scene();
        // The file's mount is in no table (as a layer's private mount is); an overlay's lower layer is `/`, so
        // the kernel's name of the file is its name inside that layer.
        let table = "{other} 0 {dev} / / rw - ext4 /dev/t rw\n\
                     999999937 0 0:99 / /merged rw - overlay overlay rw,lowerdir=/,upperdir=/noexecd-test-upper,workdir=/w\n";
        let g = guard(&s, HOST_POLICY, table);
        let mut n = Namer::new();
        // Found by looking; then through the remembered mount (by its id, then by its unique id): the same.
        for _ in 0..3 {
            assert!(matches!(n.name(&g, &s.file, GONE), Ok(Named::Layer { read_only: true })));
            assert_eq!(n.bufs.layer_name, bytes(&s.file), "the file's path in the container");
            assert_eq!(n.bufs.canonical, bytes(&s.file), "the layer's file in our namespace");
        }
        // A layer some overlay writes is no read-only layer.
        let written = "{other} 0 {dev} / / rw - ext4 /dev/t rw\n\
                       999999937 0 0:99 / /merged rw - overlay overlay rw,lowerdir=/noexecd-test-lower,upperdir=/,workdir=/w\n";
        let g = guard(&s, HOST_POLICY, written);
        assert!(matches!(Namer::new().name(&g, &s.file, GONE), Ok(Named::Layer { read_only: false })));
        // Without the overlay, nothing names it.
        let g = guard(&s, HOST_POLICY, "{other} 0 {dev} / / rw - ext4 /dev/t rw\n");
        assert!(matches!(Namer::new().name(&g, &s.file, GONE), Err(Unnamed::NotFound)));
    }

    #[test]
    fn with_container_policies_a_file_of_another_namespace_has_the_callers_path_too() {
        let s = scene();
        // Our table shows the filesystem under another mount id: the file came through the caller's own mount.
        let g = guard(&s, CONTAINER_POLICY, "{other} 0 {dev} / / rw - ext4 /dev/t rw\n");
        let mut n = Namer::new();
        assert!(matches!(n.name(&g, &s.file, me()), Ok(Named::CallerNamespace)));
        assert_eq!(n.bufs.layer_name, bytes(&s.file), "as the caller sees it");
        assert!(!n.bufs.canonical.is_empty(), "and named in our namespace");
        // Our table shows nothing of its filesystem: a container's private mount, no host name.
        let g = guard(&s, CONTAINER_POLICY, "{other} 0 0:999 / / rw - ext4 /dev/other rw\n");
        let mut n = Namer::new();
        assert!(matches!(n.name(&g, &s.file, me()), Ok(Named::Private { owner: None })));
        assert_eq!(n.bufs.layer_name, bytes(&s.file));
        assert!(n.bufs.canonical.is_empty());
        // Without container policies the same file has no host name either: no host rule decides it.
        let g = guard(&s, HOST_POLICY, "{other} 0 0:999 / / rw - ext4 /dev/other rw\n");
        assert!(matches!(Namer::new().name(&g, &s.file, me()), Ok(Named::Private { owner: None })));
    }

    /// The mount the scene's file really is on, as our own mountinfo shows it (a mount of "another namespace"
    /// for a guard whose table does not hold it).
    fn real_mount(s: &Scene) -> Mount {
        let text = std::fs::read("/proc/self/mountinfo").unwrap();
        let line = crate::host::mountinfo::lines(&text).find(|l| l.id == known_mount(s)).unwrap();
        Mount::from_line(&line)
    }

    /// `path` of the scene's filesystem, from that filesystem's root, through the mount the file is on.
    fn in_filesystem(s: &Scene, path: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(MountTable::path_in_filesystem(&real_mount(s), &bytes(path), &mut out));
        out
    }

    #[test]
    fn a_part_of_a_guarded_filesystem_no_mount_of_ours_shows_is_named_unprotected_not_refused() {
        let s = scene();
        // Our table shows only another directory of the filesystem (a bind of it at /shown); the file is
        // reached through the caller's mount, which shows the part holding it: no protected directory can lie
        // there, since each is named through a mount of ours.
        let shown = "[[policy]]\nname = \"p\"\n[[policy.process.match_directories]]\ndir = \"/shown/p/\"\n";
        let g = guard(&s, shown, "{other} 0 {dev} /noexecd-elsewhere /shown rw - ext4 /dev/t rw\n");
        let mut n = Namer::new();
        assert!(matches!(n.name(&g, &s.file, me()), Ok(Named::Private { owner: None })));
        assert_eq!(n.bufs.layer_name, bytes(&s.file), "as the caller sees it");
        assert!(n.bufs.canonical.is_empty(), "no name in our namespace");
        // The caller's mount shows the filesystem's root, which holds what ours shows: a file reached through
        // it may be ours to name, so it is not trusted from memory (the caller's table is read again).
        assert!(matches!(n.name(&g, &s.file, GONE), Err(Unnamed::NotFound)));
        // With container policies too: the container's policies alone decide it.
        let g = guard(&s, CONTAINER_POLICY, "{other} 0 {dev} /noexecd-elsewhere /shown rw - ext4 /dev/t rw\n");
        assert!(matches!(Namer::new().name(&g, &s.file, me()), Ok(Named::Private { owner: None })));
    }

    #[test]
    fn a_file_of_another_namespace_is_named_through_the_bind_of_ours_that_shows_its_directory() {
        let s = scene();
        // Our table binds the file's directory (its path within the filesystem) at /protected; the filesystem
        // is also mounted whole at /data. The caller reached it through its own mount.
        let dir = String::from_utf8(in_filesystem(&s, &s.dir)).unwrap();
        let table = format!(
            "{{other}} 0 {{dev}} / /data rw - ext4 /dev/t rw\n999999938 0 {{dev}} {dir} /protected rw - ext4 /dev/t rw\n"
        );
        let policy =
            "[[policy]]\nname = \"p\"\n[[policy.process.match_directories]]\ndir = \"/protected/\"\nrecursive = true\n";
        let g = guard(&s, policy, &table);
        let mut n = Namer::new();
        assert!(matches!(n.name(&g, &s.file, me()), Ok(Named::Host)));
        assert_eq!(n.bufs.canonical, b"/protected/x", "the protected directory's name, not /data's");
        // Without a rule naming it there, the most complete mount names it.
        let elsewhere = "[[policy]]\nname = \"p\"\n[[policy.process.match_directories]]\ndir = \"/data/p/\"\n";
        let g = guard(&s, elsewhere, &table);
        let mut n = Namer::new();
        assert!(matches!(n.name(&g, &s.file, me()), Ok(Named::Host)));
        let mut want = b"/data".to_vec();
        want.extend_from_slice(&in_filesystem(&s, &s.file));
        assert_eq!(n.bufs.canonical, want);
    }

    #[test]
    fn a_file_that_cannot_be_named_has_its_kernel_name_for_the_alert() {
        let s = scene();
        // No table, no overlay: unnamed, and the alert gets the name the kernel gives it.
        let g = guard(&s, HOST_POLICY, "{other} 0 0:999 / / rw - ext4 /dev/other rw\n");
        let mut n = Namer::new();
        assert!(matches!(n.name(&g, &s.file, GONE), Err(Unnamed::NotFound)));
        assert_eq!(n.bufs.canonical, bytes(&s.file));
        // Not even a name: its device and inode.
        let mut out = Vec::with_capacity(64);
        best_known_name(None, &s.facts, &mut out);
        let want = format!("dev={}:{},ino={}", libc::major(s.facts.dev), libc::minor(s.facts.dev), s.facts.ino);
        assert_eq!(out, want.as_bytes());
    }

    #[test]
    fn a_name_ending_in_deleted_is_real_only_if_it_is_this_file() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("x (deleted)");
        std::fs::write(&real, b"").unwrap();
        let other = dir.path().join("y");
        std::fs::write(&other, b"").unwrap();
        let f = std::fs::File::open(&real).unwrap();
        let facts = sys::file_facts(f.as_fd()).unwrap();
        assert!(names_this_file(&bytes(&real), &facts));
        assert!(!names_this_file(&bytes(&other), &facts));
        assert!(!names_this_file(&bytes(&dir.path().join("gone (deleted)")), &facts));
    }
}
