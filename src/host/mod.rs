//! What the host tells, read-only: mountinfo text parsed into lines (`mountinfo`, its one parser), the mount
//! table and how a file's name maps into our namespace, a process's /proc facts, the sysctls that decide what
//! fanotify can see, and the directories a non-root user can write. No policy here, and nothing that places a
//! mark.
#![forbid(unsafe_code)]

pub mod dircount;
pub mod hardening;
pub mod mountinfo;
pub mod mounts;
pub mod overlay;
pub mod procfs;
pub mod restart_chain;
pub mod writable;
