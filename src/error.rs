//! The library's error type: one variant per operation that can fail, each naming what it failed on.
#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

/// A policy that cannot be used, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{col}: {message}", file.display())]
pub struct PolicyError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Where a file stops being UTF-8. `line` is 1-based and `col` counts characters from 1, as every other
/// `file:line:col` of the loader does; `offset` is the byte's place in the file, from 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotUtf8 {
    pub line: usize,
    pub col: usize,
    pub offset: usize,
    /// The first byte that is not part of a valid UTF-8 character.
    pub byte: u8,
    /// The byte starts a character that the end of the file cuts short.
    pub cut_short: bool,
}

impl NotUtf8 {
    fn write(&self, f: &mut fmt::Formatter<'_>, path: &Path) -> fmt::Result {
        let what = if self.cut_short {
            "starts a character that the end of the file cuts short"
        } else {
            "does not start a valid UTF-8 character"
        };
        let (line, col, byte, offset) = (self.line, self.col, self.byte, self.offset);
        write!(f, "{}:{line}:{col}: not valid UTF-8: byte 0x{byte:02x} (offset {offset}) {what}", path.display())?;
        if offset == 0 && matches!(byte, 0xfe | 0xff) {
            f.write_str(" (a UTF-16 byte order mark?)")?;
        } else if !self.cut_short {
            f.write_str(" (Latin-1 or another 8-bit encoding?)")?;
        }
        f.write_str("; save the file as UTF-8")
    }
}

/// One variant per operation that can fail. Each message carries its cause itself and [`source`] is
/// never set, so that `{e}` (the daemon's log, `error = %e`) and anyhow's `{e:#}` (`main`) both print every
/// cause once. Display is written by hand: thiserror's derive makes any field named `source` the error's
/// source, and with `{source}` in the message as well anyhow's chain printed the cause twice.
///
/// [`source`]: std::error::Error::source
#[derive(Debug)]
pub enum Error {
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A configuration file or a `*.toml` drop-in with bytes that are not UTF-8.
    ConfigNotUtf8 {
        path: PathBuf,
        at: NotUtf8,
    },
    ReadPolicyDir {
        path: PathBuf,
        source: std::io::Error,
    },
    Policy(PolicyError),
    ReadMounts(std::io::Error),
    NoMountFor {
        path: PathBuf,
    },
    /// `explain --container`: no running container has that id or name.
    NoSuchContainer {
        wanted: String,
    },
    FanotifyInit(Errno),
    Mark {
        path: PathBuf,
        source: Errno,
    },
    Unmark(Errno),
    StatMount {
        path: PathBuf,
        source: std::io::Error,
    },
    OpenAlertLog {
        path: PathBuf,
        source: std::io::Error,
    },
    AlertSocket {
        path: PathBuf,
        source: std::io::Error,
    },
    GrpcListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    ReadAlerts {
        path: PathBuf,
        source: std::io::Error,
    },
    DecisionThreadDied,
    /// `run --host-namespace`: the supervised daemon ended with this status (it logged why).
    DaemonExited(i32),
    /// `run --host-namespace`: opening our root or joining pid 1's mount namespace.
    EnterHostNamespace(std::io::Error),
    ReadEvents(std::io::Error),
    SpawnThread {
        what: &'static str,
        source: std::io::Error,
    },
    Runtime {
        what: &'static str,
        source: std::io::Error,
    },
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `noexecd status`: the daemon's status file.
    ReadStatus {
        path: PathBuf,
        source: std::io::Error,
    },
    ReadKubeArmor {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A KubeArmor YAML file (`noexecd import`, a `*.yaml` drop-in) with bytes that are not UTF-8.
    KubeArmorNotUtf8 {
        path: PathBuf,
        at: NotUtf8,
    },
    ParseKubeArmor {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
    ConvertKubeArmor {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
    CreateImportDir {
        path: PathBuf,
        source: std::io::Error,
    },
    ImportStrict {
        count: usize,
    },
    /// `noexecd hold` and `run --hold-socket`: one step of the group's hand-over on the holder's socket.
    Hold {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    /// `noexecd handover`: asking systemd about the unit (`systemctl show`).
    AskSystemd {
        unit: String,
        source: std::io::Error,
    },
    /// `noexecd handover`: the running daemon did not hand over; `why` says what happened instead.
    HandOver {
        unit: String,
        why: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ReadConfig { path, source } => write!(f, "cannot read configuration {}: {source}", path.display()),
            Error::ConfigNotUtf8 { path, at } | Error::KubeArmorNotUtf8 { path, at } => at.write(f, path),
            Error::ReadPolicyDir { path, source } => {
                write!(f, "cannot list policy directory {}: {source}", path.display())
            }
            Error::Policy(e) => e.fmt(f),
            Error::ReadMounts(e) => write!(f, "cannot read the mount table (/proc/self/mountinfo): {e}"),
            Error::NoMountFor { path } => write!(f, "no mount holds protected path {}", path.display()),
            Error::NoSuchContainer { wanted } => write!(
                f,
                "no running container has the id or name {wanted:?} (`noexecd containers` lists those noexecd sees)"
            ),
            Error::FanotifyInit(e) => write!(f, "cannot create the fanotify group: {e}{}", init_hint(*e)),
            Error::Mark { path, source } => write!(f, "cannot mark filesystem at {}: {source}", path.display()),
            Error::Unmark(e) => write!(f, "cannot remove the marks: {e}"),
            Error::StatMount { path, source } => write!(f, "cannot stat mount point {}: {source}", path.display()),
            Error::OpenAlertLog { path, source } => write!(f, "cannot open alert log {}: {source}", path.display()),
            Error::AlertSocket { path, source } => {
                write!(f, "cannot serve alerts on socket {}: {source}", path.display())
            }
            Error::GrpcListen { addr, source } => {
                write!(f, "cannot serve KubeArmor's gRPC LogService on {addr} (--grpc): {source}")
            }
            Error::ReadAlerts { path, source } => write!(f, "cannot read alerts from {}: {source}", path.display()),
            Error::DecisionThreadDied => f.write_str("the decision thread ended unexpectedly"),
            Error::DaemonExited(code) => write!(f, "the guard exited with status {code}"),
            Error::EnterHostNamespace(e) => write!(
                f,
                "cannot join the host's mount namespace (/proc/1/ns/mnt): {e} (it needs the host's pid namespace, CAP_SYS_ADMIN and CAP_SYS_CHROOT)"
            ),
            Error::ReadEvents(e) => write!(f, "cannot read the fanotify group: {e}"),
            Error::SpawnThread { what, source } => write!(f, "cannot start the {what} thread: {source}"),
            Error::Runtime { what, source } => write!(f, "cannot set up the {what}: {source}"),
            Error::WriteFile { path, source } => write!(f, "cannot write {}: {source}", path.display()),
            Error::ReadStatus { path, source } => {
                write!(
                    f,
                    "cannot read the status file {} (is `noexecd run --status-file` running?): {source}",
                    path.display()
                )
            }
            Error::ReadKubeArmor { path, source } => {
                write!(f, "cannot read KubeArmor policy file {}: {source}", path.display())
            }
            Error::ParseKubeArmor { path, line, col, message } => {
                write!(f, "{}:{line}:{col}: not valid YAML: {message}", path.display())
            }
            Error::ConvertKubeArmor { path, line, col, message } => {
                write!(f, "{}:{line}:{col}: {message}", path.display())
            }
            Error::CreateImportDir { path, source } => {
                write!(f, "cannot create output directory {}: {source}", path.display())
            }
            Error::Hold { path, what, source } => {
                write!(f, "cannot {what} through the holder's socket {}: {source}", path.display())
            }
            Error::AskSystemd { unit, source } => {
                write!(f, "cannot ask systemd about {unit} (systemctl show): {source}")
            }
            Error::HandOver { unit, why } => write!(f, "{unit} did not hand over: {why}"),
            Error::ImportStrict { count } => write!(
                f,
                "--strict: {count} part(s) of the input are not enforced by noexecd (listed above); nothing was written"
            ),
        }
    }
}

/// No `source()`: the message already holds the cause (see [`Error`]).
impl std::error::Error for Error {}

impl From<PolicyError> for Error {
    fn from(e: PolicyError) -> Self {
        Error::Policy(e)
    }
}

fn init_hint(e: Errno) -> &'static str {
    match e {
        Errno::EPERM => {
            " (noexecd needs root with CAP_SYS_ADMIN; inside systemd-nspawn pass --system-call-filter=\"fanotify_init fanotify_mark\"; PrivateUsers= makes it fail)"
        }
        Errno::ENOSYS | Errno::EINVAL => {
            " (the kernel lacks fanotify permission events: CONFIG_FANOTIFY_ACCESS_PERMISSIONS)"
        }
        _ => "",
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
