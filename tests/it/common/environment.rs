//! The test environment: whether privileged tests can run here (else skip, or fail under
//! `NOEXECD_REQUIRE_PRIVILEGED=1`), the tools and the binary they use, the devices a test must never mark, and
//! `Env`: a private mount namespace over fresh filesystems (`Layout`), with files written into it.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::Daemon;

// ---------------------------------------------------------------------------------------------------------
// Binary, privileges, skipping

/// Where the sandboxes of the container and Kubernetes tests mount fresh filesystems: a binary there is
/// hidden from the programs they run.
const HIDDEN_BY_SANDBOXES: &[&str] = &["/tmp", "/run", "/var/lib", "/var/tmp", "/dev/shm"];
/// Where a binary from such a place is copied, one directory per test run (named by its pid).
const PRIVATE_COPIES: &str = "/var/cache/noexecd-it";

/// The noexecd binary under test, for every test: `NOEXECD_BIN` (`make integration-tests` sets the release
/// binary), else the one cargo built for this test binary. One that lies where a
/// sandbox mounts a fresh tmpfs (a checkout cloned under /tmp, as the README's CI check does) is copied once
/// per test run to [`PRIVATE_COPIES`], else those tests would exit 127; where the copy cannot be made (not
/// root), the binary is used where it is.
pub fn bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let p = match std::env::var_os("NOEXECD_BIN") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => PathBuf::from(env!("CARGO_BIN_EXE_noexecd")),
        };
        assert!(p.is_file(), "noexecd binary not found at {} (NOEXECD_BIN)", p.display());
        let real = fs::canonicalize(&p).unwrap_or(p);
        if HIDDEN_BY_SANDBOXES.iter().any(|h| real.starts_with(h)) { private_copy(&real).unwrap_or(real) } else { real }
    })
    .clone()
}

/// Copies `bin` to `<PRIVATE_COPIES>/<pid>/noexecd`, after removing the copies of test runs that have ended.
fn private_copy(bin: &Path) -> Option<PathBuf> {
    let root = Path::new(PRIVATE_COPIES);
    if let Ok(entries) = fs::read_dir(root) {
        for e in entries.flatten() {
            let ended = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|pid| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists());
            if ended {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = root.join(std::process::id().to_string());
    fs::create_dir_all(&dir).ok()?;
    fs::set_permissions(root, fs::Permissions::from_mode(0o700)).ok()?;
    let copy = dir.join("noexecd");
    fs::copy(bin, &copy).ok()?;
    eprintln!("note: {} lies where the sandboxes mount over; testing a copy at {}", bin.display(), copy.display());
    Some(copy)
}

pub fn require_privileged() -> bool {
    std::env::var("NOEXECD_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1")
}

/// Returns true when the privileged tests can run here. Otherwise prints why and returns false (the caller
/// returns early), or panics when `NOEXECD_REQUIRE_PRIVILEGED=1`.
pub fn may_run_privileged(test: &str) -> bool {
    match why_not_privileged() {
        None => true,
        Some(why) => {
            if require_privileged() {
                panic!("{test}: cannot run the privileged test ({why}) and NOEXECD_REQUIRE_PRIVILEGED=1");
            }
            eprintln!("SKIPPED {test}: {why} (set NOEXECD_REQUIRE_PRIVILEGED=1 to make this a failure)");
            false
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Inside the container of `make test-in-container`

/// What a test needs that the container of `make test-in-container` (scripts/test-in-container.sh: podman,
/// CAP_SYS_ADMIN and CAP_DAC_READ_SEARCH, not privileged) does not have. The README's "Tests in a container"
/// lists these; there, and only there, a test needing one skips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// A loop-mounted image (ext4, xfs, btrfs): podman hands an unprivileged container no host device, so there
    /// is no /dev/loop-control and no /dev/loopN to mount an image with.
    LoopDevices,
    /// Cgroups of its own: container runtimes (podman, containerd, dockerd: runc makes each container a
    /// cgroup) and the docker-named cgroup of `container.rs`. podman mounts an unprivileged container's
    /// cgroup hierarchies read-only.
    WritableCgroups,
}

impl Needs {
    fn why(self) -> &'static str {
        match self {
            Needs::LoopDevices => "needs loop devices and /dev/loop-control is missing",
            Needs::WritableCgroups => {
                "needs a writable cgroup tree (runtimes make cgroups) and a hierarchy is read-only"
            }
        }
    }

    /// Whether this machine has it after all (a container given more than the script gives): then the test
    /// runs. Checked, not assumed, so that a stray NOEXECD_IT_IN_CONTAINER=1 on a host skips nothing.
    fn met(self) -> bool {
        match self {
            Needs::LoopDevices => Path::new("/dev/loop-control").exists(),
            Needs::WritableCgroups => {
                fs::read_to_string("/proc/self/mountinfo").is_ok_and(|t| !has_read_only_cgroup(&t))
            }
        }
    }
}

/// Whether a mountinfo text shows a cgroup (v1) or cgroup2 hierarchy mounted read-only.
fn has_read_only_cgroup(mountinfo: &str) -> bool {
    mountinfo.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let fstype = f.iter().skip_while(|x| **x != "-").nth(1);
        let ro = f.get(5).is_some_and(|o| o.split(',').any(|o| o == "ro"));
        ro && matches!(fstype, Some(&"cgroup" | &"cgroup2"))
    })
}

#[test]
fn a_read_only_cgroup_hierarchy_is_found_in_mountinfo() {
    let rw = "30 25 0:26 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n\
              31 25 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n";
    let ro_v1 = "31 25 0:27 / /sys/fs/cgroup/cpu ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu\n";
    let ro_v2 = "40 35 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n";
    let ro_other = "72 48 254:0 / / ro,relatime - ext4 /dev/vda rw\n";
    assert!(!has_read_only_cgroup(rw));
    assert!(has_read_only_cgroup(&format!("{rw}{ro_v1}")));
    assert!(has_read_only_cgroup(ro_v2));
    assert!(!has_read_only_cgroup(ro_other), "a read-only root is not a cgroup");
}

/// True inside the container `make test-in-container` starts: scripts/test-in-container.sh sets
/// NOEXECD_IT_IN_CONTAINER=1 there.
pub fn in_container() -> bool {
    std::env::var_os("NOEXECD_IT_IN_CONTAINER").is_some_and(|v| v == "1")
}

/// False when the test container lacks what a test `needs` (see [`Needs`]), after printing why. Never a
/// failure, also under `NOEXECD_REQUIRE_PRIVILEGED=1`: these are the listed container-only skips. Outside
/// the container, or where the container has it, true.
pub fn available_here(test: &str, needs: Needs) -> bool {
    if !in_container() || needs.met() {
        return true;
    }
    let line = format!("SKIPPED {test}: in the test container: {} (README: Tests in a container)", needs.why());
    eprintln!("{line}");
    // libtest shows a passing test's stderr to nobody: the script prints this file's lines at the end.
    if let Some(log) = std::env::var_os("NOEXECD_IT_SKIP_LOG") {
        use std::io::Write;
        let _ = fs::OpenOptions::new().create(true).append(true).open(log).and_then(|mut f| writeln!(f, "{line}"));
    }
    false
}

fn why_not_privileged() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root".into());
    }
    for tool in ["unshare", "nsenter", "setpriv", "timeout", "mount", "losetup", "mkfs.ext4", "bash", "dash", "env"] {
        if which(tool).is_none() {
            return Some(format!("`{tool}` not found on PATH (run `make test-deps`)"));
        }
    }
    let out = Command::new("timeout")
        .env("PATH", SYS_PATH)
        .args(["10", "unshare", "--mount", "--propagation", "private", "--", "true"])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "cannot create a mount namespace: `unshare --mount` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run unshare: {e}")),
    }
}

/// PATH for every command the harness runs (mkfs.ext4 and losetup live in /usr/sbin).
pub const SYS_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(SYS_PATH).map(|d| d.join(tool)).find(|p| p.is_file())
}

/// The real path of a system executable as `/proc/PID/exe` shows it (Debian: /bin/bash -> /usr/bin/bash).
pub fn real_exe(name: &str) -> String {
    let p = which(name).unwrap_or_else(|| panic!("{name} not found on PATH"));
    fs::canonicalize(&p).unwrap().to_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------------------------
// Devices

/// (major, minor) of a st_dev value.
pub fn split_dev(dev: u64) -> (u64, u64) {
    (nix::sys::stat::major(dev), nix::sys::stat::minor(dev))
}

/// The kernel-internal encoding used in /proc/PID/fdinfo (`sdev:%x`): major << 20 | minor.
pub fn kernel_dev(dev: u64) -> u64 {
    let (maj, min) = split_dev(dev);
    (maj << 20) | min
}

/// Devices of the host's real `/` and `/tmp`: a test must never mark these.
pub fn forbidden_devs() -> BTreeSet<(u64, u64)> {
    let mut s = BTreeSet::new();
    for p in ["/", "/tmp", "/usr/bin"] {
        if let Ok(m) = fs::metadata(p) {
            s.insert(split_dev(m.dev()));
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------------------
// The namespace

/// Which filesystems the holder mounts. `img` models the host's `/`: a fresh loop image on a tmpfs at
/// `scratch`, never the machine's own disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `fs` and `out`: two tmpfs.
    Tmpfs,
    /// Also a tmpfs at `scratch` holding an ext4 image loop-mounted at `img`.
    WithExt4Image,
    /// The same with an xfs image (RHEL's `/`).
    WithXfsImage,
    /// A btrfs image laid out as SLES and openSUSE install it: subvolumes `@`, `@/tmp` and `@/var`, mounted
    /// with `subvol=` at `img`, `img/tmp` and `img/var`; with `top_level`, the top level (subvolid=5) is also
    /// mounted at `top` (snapper, btrbk).
    BtrfsSubvolumes { top_level: bool },
    /// A btrfs image laid out as Fedora installs it: subvolume `root` mounted at `img`; `tmp` and `var/tmp`
    /// are plain directories inside it.
    BtrfsRootSubvolume,
}

impl Layout {
    fn has_image(self) -> bool {
        self != Layout::Tmpfs
    }

    /// The tools making the image takes.
    fn tools(self) -> &'static [&'static str] {
        match self {
            Layout::Tmpfs => &[],
            Layout::WithExt4Image => &["mkfs.ext4"],
            Layout::WithXfsImage => &["mkfs.xfs"],
            Layout::BtrfsSubvolumes { .. } | Layout::BtrfsRootSubvolume => &["mkfs.btrfs", "btrfs"],
        }
    }

    fn is_btrfs(self) -> bool {
        matches!(self, Layout::BtrfsSubvolumes { .. } | Layout::BtrfsRootSubvolume)
    }

    /// The script that makes and mounts the image (run by the holder, in the namespace, under `set -eu`).
    fn image_script(self, scratch: &Path, img: &Path, top: &Path) -> String {
        if !self.has_image() {
            return String::new();
        }
        let image = scratch.join("fs.img");
        let (q_img, q_image, q_top) = (sh_quote(img), sh_quote(&image), sh_quote(top));
        // xfs wants 300 MiB at least; the image is sparse on the tmpfs.
        let mut lines = vec![
            format!("mount -t tmpfs -o size=512m,mode=0700 noexecd-test-scratch {}", sh_quote(scratch)),
            format!("truncate -s 320M {q_image}"),
        ];
        // btrfs: subvolumes are made through a temporary mount of the top level. Every later mount of the
        // image shares its loop device, which goes with the last of them.
        let subvolumes = |names: &[&str]| {
            vec![
                format!("mkfs.btrfs -q -f {q_image} >/dev/null 2>&1"),
                format!("mount -o loop {q_image} {q_top}"),
                format!("for v in {}; do btrfs -q subvolume create {q_top}/$v >/dev/null; done", names.join(" ")),
            ]
        };
        match self {
            Layout::Tmpfs => {}
            Layout::WithExt4Image => {
                lines.push(format!("mkfs.ext4 -q -F {q_image} >/dev/null"));
                lines.push(format!("mount -o loop {q_image} {q_img}"));
            }
            Layout::WithXfsImage => {
                lines.push(format!("mkfs.xfs -q -f {q_image} >/dev/null"));
                lines.push(format!("mount -o loop {q_image} {q_img}"));
            }
            Layout::BtrfsSubvolumes { top_level } => {
                lines.extend(subvolumes(&["@", "@/tmp", "@/var"]));
                lines.push(format!("umount {q_top}"));
                lines.push(format!("mount -o loop,subvol=@ {q_image} {q_img}"));
                lines.push(format!("mount -o loop,subvol=@/tmp {q_image} {q_img}/tmp"));
                lines.push(format!("mount -o loop,subvol=@/var {q_image} {q_img}/var"));
                if top_level {
                    lines.push(format!("mount -o loop,subvolid=5 {q_image} {q_top}"));
                }
            }
            Layout::BtrfsRootSubvolume => {
                lines.extend(subvolumes(&["root", "home"]));
                lines.push(format!("mkdir -p {q_top}/root/home {q_top}/root/tmp {q_top}/root/var/tmp"));
                lines.push(format!("umount {q_top}"));
                lines.push(format!("mount -o loop,subvol=root {q_image} {q_img}"));
                lines.push(format!("mount -o loop,subvol=home {q_image} {q_img}/home"));
            }
        }
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    /// The mount points of the image's filesystem in the namespace (the first is `img`).
    pub fn image_mounts(self, img: &Path, top: &Path) -> Vec<PathBuf> {
        match self {
            Layout::Tmpfs => Vec::new(),
            Layout::WithExt4Image | Layout::WithXfsImage => vec![img.to_path_buf()],
            Layout::BtrfsSubvolumes { top_level } => {
                let mut v = vec![img.to_path_buf(), img.join("tmp"), img.join("var")];
                if top_level {
                    v.push(top.to_path_buf());
                }
                v
            }
            Layout::BtrfsRootSubvolume => vec![img.to_path_buf(), img.join("home")],
        }
    }
}

/// A private mount namespace with fresh test filesystems, and optionally a running daemon.
pub struct Env {
    pub name: String,
    /// Host scratch dir (a plain directory on the host): config, notify socket, alert log, daemon stderr.
    pub dir: tempfile::TempDir,
    /// Mount point of a fresh tmpfs (inside the namespace).
    pub fs: PathBuf,
    /// Mount point of a second fresh tmpfs, never protected unless a test says so.
    pub out: PathBuf,
    /// Mount point of a loop-mounted image (every layout but Layout::Tmpfs): the model of the host's `/`.
    pub img: PathBuf,
    /// Where a btrfs image's top level is mounted (`Layout::BtrfsSubvolumes { top_level: true }`).
    pub top: PathBuf,
    /// The layout this namespace was made with.
    pub layout: Layout,
    holder: Child,
    pub holder_pid: u32,
    /// st_dev of the filesystems this harness mounted (the only ones a policy may mark).
    pub test_devs: BTreeSet<(u64, u64)>,
    pub daemon: Option<Daemon>,
    /// Bound at `<base>/notify.sock`, the daemon's `$NOTIFY_SOCKET`: tests read STATUS= datagrams from it.
    pub notify: UnixDatagram,
    pub(super) daemon_runs: u32,
}

impl Env {
    /// Sets up the namespace, or returns None after printing why the test is skipped.
    pub fn new(test: &str, layout: Layout) -> Option<Env> {
        if !may_run_privileged(test) || (layout.has_image() && !available_here(test, Needs::LoopDevices)) {
            return None;
        }
        if let Some(tool) = layout.tools().iter().find(|t| which(t).is_none()) {
            let why = format!("`{tool}` not found on PATH (run `make test-deps`)");
            assert!(
                !require_privileged(),
                "{test}: cannot make the {layout:?} image ({why}) and NOEXECD_REQUIRE_PRIVILEGED=1"
            );
            eprintln!("SKIPPED {test}: {why} (set NOEXECD_REQUIRE_PRIVILEGED=1 to make this a failure)");
            return None;
        }
        let _ = bin();
        let dir = tempfile::Builder::new().prefix("noexecd-it-").tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let fs_dir = base.join("fs");
        let out = base.join("out");
        let scratch = base.join("scratch");
        let img = base.join("img");
        let top = base.join("top");
        for d in [&fs_dir, &out, &scratch, &img, &top] {
            fs::create_dir(d).unwrap();
        }
        let mut script = String::from("set -eu\n");
        script += &format!("mount -t tmpfs -o size=64m,mode=0755 noexecd-test-fs {}\n", sh_quote(&fs_dir));
        script += &format!("mount -t tmpfs -o size=64m,mode=0755 noexecd-test-out {}\n", sh_quote(&out));
        script += &layout.image_script(&scratch, &img, &top);
        // Bounded even if the test process is SIGKILLed (then pdeathsig ends it anyway).
        script += "echo ready\nexec sleep 1800 >/dev/null 2>&1 </dev/null\n";

        let mut holder = Command::new("setpriv")
            .env("PATH", SYS_PATH)
            .args(["--pdeathsig", "KILL", "--", "unshare", "--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the namespace holder");
        let holder_pid = holder.id();
        let stdout = holder.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        if line.trim() != "ready" {
            let _ = holder.kill();
            let _ = holder.wait();
            let mut err = String::new();
            if let Some(mut e) = holder.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("{test}: the namespace holder did not come up (got {line:?}); stderr: {err}");
        }

        let notify_path = base.join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify.set_read_timeout(Some(Duration::from_millis(100))).unwrap();

        let mut env = Env {
            name: test.to_owned(),
            dir,
            fs: fs_dir,
            out,
            img,
            top,
            layout,
            holder,
            holder_pid,
            test_devs: BTreeSet::new(),
            daemon: None,
            notify,
            daemon_runs: 0,
        };
        // The test filesystems must really be mounted (else a policy would name the host's disk).
        let forbidden = forbidden_devs();
        let mut mounted = vec![env.fs.clone(), env.out.clone()];
        let image_mounts = layout.image_mounts(&env.img, &env.top);
        mounted.extend(image_mounts.iter().cloned());
        for m in &mounted {
            assert!(env.mountinfo_dev(m).is_some(), "{test}: nothing is mounted at {} in the namespace", m.display());
            let dev = split_dev(fs::metadata(env.host_view(m)).unwrap().dev());
            assert!(!forbidden.contains(&dev), "{}: {} is not a fresh filesystem in the namespace", test, m.display());
            assert!(env.test_devs.insert(dev), "{test}: two test mounts share device {dev:?}");
        }
        // btrfs: each subvolume mounted has a device of its own (above), and the superblock, which mountinfo,
        // `check` and the kernel's marks name, one more. Every mount of the image must show that one.
        if layout.is_btrfs() {
            let devs: BTreeSet<(u64, u64)> = image_mounts.iter().filter_map(|m| env.mountinfo_dev(m)).collect();
            assert_eq!(devs.len(), 1, "{test}: the image's mounts show one superblock: {devs:?}");
            for dev in devs {
                assert!(!forbidden.contains(&dev), "{test}: the btrfs image's superblock {dev:?} is the host's");
                assert!(env.test_devs.insert(dev), "{test}: the btrfs superblock {dev:?} is another test mount's");
            }
        }
        Some(env)
    }

    pub fn base(&self) -> &Path {
        self.dir.path()
    }

    /// The device (major, minor) that the namespace's mountinfo shows for the mount at `mount_point` (the
    /// last mounted there), if any.
    pub fn mountinfo_dev(&self, mount_point: &Path) -> Option<(u64, u64)> {
        let text = fs::read_to_string(format!("/proc/{}/mountinfo", self.holder_pid)).ok()?;
        let want = mount_point.to_str()?;
        text.lines().rev().find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let (maj, min) = f.get(2)?.split_once(':')?;
            (*f.get(4)? == want).then_some((maj.parse().ok()?, min.parse().ok()?))
        })
    }

    pub fn alert_log(&self) -> PathBuf {
        self.base().join("alerts.jsonl")
    }

    pub fn config_path(&self) -> PathBuf {
        self.base().join("noexecd.toml")
    }

    /// Where the test process sees a path of the namespace.
    pub fn host_view(&self, p: &Path) -> PathBuf {
        let mut v = OsString::from(format!("/proc/{}/root", self.holder_pid));
        v.push(p.as_os_str());
        PathBuf::from(v)
    }

    /// Writes a copy of /bin/true (an ELF) at `p` (a path in the namespace), mode 0755, creating parents.
    pub fn put_elf(&self, p: &Path) {
        let hv = self.host_view(p);
        fs::create_dir_all(hv.parent().unwrap()).unwrap();
        fs::copy(fs::canonicalize(which("true").unwrap()).unwrap(), &hv).unwrap();
        fs::set_permissions(&hv, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Writes a `#!/bin/sh` script at `p` that prints `ran` and exits 0, mode 0755.
    pub fn put_script(&self, p: &Path) {
        let hv = self.host_view(p);
        fs::create_dir_all(hv.parent().unwrap()).unwrap();
        fs::write(&hv, "#!/bin/sh\necho ran\nexit 0\n").unwrap();
        fs::set_permissions(&hv, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.stop(Duration::from_secs(5));
        }
        let _ = kill(Pid::from_raw(self.holder_pid as i32), Signal::SIGKILL);
        let _ = self.holder.wait();
    }
}

// ---------------------------------------------------------------------------------------------------------
// Paths

/// Single-quotes a path for sh.
pub fn sh_quote(p: &Path) -> String {
    let bytes = p.as_os_str().as_bytes();
    let s = String::from_utf8_lossy(bytes);
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A path from raw bytes.
pub fn path_from_bytes(b: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(b))
}

/// Strips one trailing '/' (but keeps "/").
pub fn trim_slash(s: &str) -> &str {
    if s.len() > 1 { s.strip_suffix('/').unwrap_or(s) } else { s }
}
