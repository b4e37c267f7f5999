//! The library's error type: one variant per operation that can fail, each naming what it failed on.
#![forbid(unsafe_code)]

use std::path::PathBuf;

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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read configuration {}: {source}", path.display())]
    ReadConfig { path: PathBuf, source: std::io::Error },
    #[error("cannot list policy directory {}: {source}", path.display())]
    ReadPolicyDir { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("cannot read the mount table (/proc/self/mountinfo): {0}")]
    ReadMounts(std::io::Error),
    #[error("no mount holds protected path {}", path.display())]
    NoMountFor { path: PathBuf },
    #[error("cannot create the fanotify group: {0}{hint}", hint = init_hint(*.0))]
    FanotifyInit(Errno),
    #[error("cannot mark filesystem at {}: {source}", path.display())]
    Mark { path: PathBuf, source: Errno },
    #[error("cannot remove the marks: {0}")]
    Unmark(Errno),
    #[error("cannot stat mount point {}: {source}", path.display())]
    StatMount { path: PathBuf, source: std::io::Error },
    #[error("cannot open alert log {}: {source}", path.display())]
    OpenAlertLog { path: PathBuf, source: std::io::Error },
    #[error("cannot serve alerts on socket {}: {source}", path.display())]
    AlertSocket { path: PathBuf, source: std::io::Error },
    #[error("cannot read alerts from {}: {source}", path.display())]
    ReadAlerts { path: PathBuf, source: std::io::Error },
    #[error("the decision thread ended unexpectedly")]
    DecisionThreadDied,
    #[error("cannot read the fanotify group: {0}")]
    ReadEvents(std::io::Error),
    #[error("cannot start the {what} thread: {source}")]
    SpawnThread { what: &'static str, source: std::io::Error },
    #[error("cannot set up the {what}: {source}")]
    Runtime { what: &'static str, source: std::io::Error },
    #[error("cannot write {}: {source}", path.display())]
    WriteFile { path: PathBuf, source: std::io::Error },
    #[error("cannot read KubeArmor policy file {}: {source}", path.display())]
    ReadKubeArmor { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}:{col}: not valid YAML: {message}", path.display())]
    ParseKubeArmor { path: PathBuf, line: usize, col: usize, message: String },
    #[error("{}:{line}:{col}: {message}", path.display())]
    ConvertKubeArmor { path: PathBuf, line: usize, col: usize, message: String },
    #[error("cannot create output directory {}: {source}", path.display())]
    CreateImportDir { path: PathBuf, source: std::io::Error },
    #[error("--strict: {count} part(s) of the input are not enforced by noexecd (listed above); nothing was written")]
    ImportStrict { count: usize },
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
