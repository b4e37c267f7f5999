//! Noticing a changed configuration without SIGHUP. A Kubernetes ConfigMap volume is updated by writing a
//! new hidden directory and swapping the `..data` symlink: no file is written in place, so the identity of
//! what each name leads to (device, inode, size, modification time, followed through every symlink) is
//! compared, not contents.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often the configuration's files are looked at.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

type Identity = (PathBuf, Option<(u64, u64, u64, i64, i64)>);

/// What the configuration file and every entry of the policy directory lead to now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint(Vec<Identity>);

impl Fingerprint {
    pub fn take(config: &Path, policy_dir: &Path) -> Self {
        let mut ids = vec![identity(config.to_owned())];
        if let Ok(entries) = std::fs::read_dir(policy_dir) {
            let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            names.sort();
            ids.extend(names.into_iter().map(identity));
        }
        ids.push(identity(policy_dir.to_owned()));
        Fingerprint(ids)
    }
}

fn identity(path: PathBuf) -> Identity {
    use std::os::unix::fs::MetadataExt;
    let id = std::fs::metadata(&path).ok().map(|m| (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()));
    (path, id)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::symlink;

    /// The kubelet's atomic writer: files are links into `..data`, itself a link to a timestamped directory.
    fn configmap(dir: &Path, generation: &str, text: &str) {
        let data = dir.join(generation);
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("p.yaml"), text).unwrap();
        let tmp = dir.join("..data_tmp");
        symlink(generation, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
        if !dir.join("p.yaml").exists() {
            symlink("..data/p.yaml", dir.join("p.yaml")).unwrap();
        }
    }

    #[test]
    fn a_symlink_swap_of_the_same_size_and_time_is_a_change() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("policy.d");
        std::fs::create_dir(&dir).unwrap();
        let config = tmp.path().join("noexecd.toml");
        std::fs::write(&config, "").unwrap();
        configmap(&dir, "..2026_01", "a");
        let before = Fingerprint::take(&config, &dir);
        assert_eq!(before, Fingerprint::take(&config, &dir), "nothing changed");
        configmap(&dir, "..2026_02", "b");
        assert_ne!(before, Fingerprint::take(&config, &dir), "the swap leads p.yaml to another inode");
    }
}
