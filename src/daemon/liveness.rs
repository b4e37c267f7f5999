//! The status file a container's liveness probe reads (`noexecd status`): rewritten every [`LIVE_EVERY`]
//! while the decision thread is alive (its heartbeat moves, or it waits for events: see
//! `stats::decision_alive`), so a stalled decision thread (or a stalled control loop) leaves it to age.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};

pub const LIVE_EVERY: Duration = Duration::from_secs(2);

/// Replaces `path` whole (a new file renamed over it): a reader never sees half a line.
pub fn write_status(path: &Path, line: &str) -> Result<()> {
    let err = |source| Error::WriteFile { path: path.to_owned(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(line.as_bytes()).and_then(|()| f.write_all(b"\n")).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
