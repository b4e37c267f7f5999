//! `noexecd status`: a container's liveness probe. The daemon (`run --status-file`) rewrites its status
//! line every 2 s while its decision thread wakes up; a file that is missing or too old means the guard
//! no longer answers, and the probe's failure makes the kubelet restart the container.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};

/// What the probe found: the status line, or why the daemon is not alive.
#[derive(Debug)]
pub enum Liveness {
    Alive(String),
    Stale { age: Duration, line: String },
}

pub fn status(path: &Path, max_age: Duration, now: SystemTime) -> Result<Liveness> {
    let err = |source| Error::ReadStatus { path: path.to_owned(), source };
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).map_err(err)?;
    // The status line is the first; the counters after it are for programs that wait on the daemon.
    let text = std::fs::read_to_string(path).map_err(err)?;
    let line = text.lines().next().unwrap_or_default().trim_end().to_owned();
    // A clock set back makes the file look new: alive, as the daemon wrote it after all.
    let age = now.duration_since(modified).unwrap_or_default();
    Ok(if age > max_age { Liveness::Stale { age, line } } else { Liveness::Alive(line) })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn an_old_file_is_stale_and_a_missing_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status");
        assert!(status(&path, Duration::from_secs(20), SystemTime::now()).is_err());
        std::fs::write(&path, "guarding 1 filesystems\nupdates=1\n").unwrap();
        let now = SystemTime::now();
        match status(&path, Duration::from_secs(20), now).unwrap() {
            Liveness::Alive(line) => assert_eq!(line, "guarding 1 filesystems"),
            other => panic!("{other:?}"),
        }
        let later = now + Duration::from_secs(60);
        assert!(matches!(status(&path, Duration::from_secs(20), later).unwrap(), Liveness::Stale { .. }));
    }
}
