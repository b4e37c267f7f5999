//! The first process of each container, where a runtime does not tell it: one pass over `/proc`, reading
//! each process's `cgroup` ([`parse_cgroup`]); the lowest pid that names a container is taken as
//! its first process (pids grow, and a container's first process outlives the ones it starts, unless the
//! pid counter wrapped around in between).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::cgroup::parse_cgroup;
use super::record::read_small;
use super::runtime::FirstPids;

/// Container id -> the lowest pid in it, for the processes below `proc`.
pub(super) fn scan(proc: &Path) -> BTreeMap<String, i32> {
    let mut lowest: BTreeMap<String, i32> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(proc) else { return lowest };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()).filter(|p| *p > 0) else {
            continue;
        };
        // A process that is gone by now has no cgroup file: skipped.
        let Some(text) = read_small(&entry.path().join("cgroup")) else { continue };
        let Some((_, id)) = parse_cgroup(&text) else { continue };
        lowest.entry(id).and_modify(|p| *p = (*p).min(pid)).or_insert(pid);
    }
    lowest
}

/// The scan, made the first time a runtime asks for it and then reused for the rest of the round.
pub(super) struct Lazy {
    proc: PathBuf,
    done: Option<BTreeMap<String, i32>>,
}

impl Lazy {
    pub(super) fn new(proc: &Path) -> Self {
        Lazy { proc: proc.to_path_buf(), done: None }
    }
}

impl FirstPids for Lazy {
    fn first_pid(&mut self, id: &str) -> Option<i32> {
        let proc = &self.proc;
        self.done.get_or_insert_with(|| scan(proc)).get(id).copied()
    }
}
