//! Reading a runtime's records: files and answers up to a size, JSON fields, labels, and the Kubernetes
//! facts every runtime's records spell alike. Shared by the readers in `runtimes/`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::runtime::{ContainerInfo, DROPPED_LABELS, Owner};

/// Files and responses are read up to this size; a larger one is not a runtime record.
pub(crate) const MAX_RECORD: u64 = 16 << 20;

/// A runtime file, up to [`MAX_RECORD`]; `None` if it cannot be read.
pub(crate) fn read_small(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_RECORD).read_to_string(&mut text).ok()?;
    Some(text)
}

pub(crate) fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&read_small(path)?).ok()
}

/// A non-empty string at a JSON pointer.
pub(crate) fn string_at(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// A full container id: 64 lower-case hex digits (also what makes it safe in a path).
pub(crate) fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The string entries of a JSON object (labels, annotations); anything else gives an empty map.
pub(crate) fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    let Some(Value::Object(map)) = v else { return BTreeMap::new() };
    map.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect()
}

/// Labels without [`DROPPED_LABELS`].
pub(crate) fn kept(mut labels: BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels.retain(|k, _| !DROPPED_LABELS.contains(&k.as_str()));
    labels
}

/// Derives a Kubernetes pod's [`Owner`] from all its labels, then drops [`DROPPED_LABELS`], which only
/// tell the owner: the last step of every reader.
pub(crate) fn keep_labels(info: &mut ContainerInfo) {
    if let (Some(pod), Some(namespace)) = (&info.pod, &info.namespace) {
        info.owner = Some(Owner::of_pod(pod, namespace, &info.labels));
    }
    info.labels = kept(std::mem::take(&mut info.labels));
}

/// Fills name, namespace, pod and image from the Kubernetes labels and the CRI annotations, where a runtime
/// has them; the runtime's own name and image are filled in afterwards where these leave a gap.
pub(crate) fn kubernetes(info: &mut ContainerInfo, annotations: &BTreeMap<String, String>) {
    let get = |keys: &[&str]| {
        keys.iter().find_map(|k| info.labels.get(*k).or_else(|| annotations.get(*k)).filter(|v| !v.is_empty())).cloned()
    };
    let namespace = get(&["io.kubernetes.pod.namespace", "io.kubernetes.cri.sandbox-namespace"]);
    let pod = get(&["io.kubernetes.pod.name", "io.kubernetes.cri.sandbox-name"]);
    let name = get(&["io.kubernetes.container.name", "io.kubernetes.cri.container-name"]);
    let image =
        get(&["io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName", "io.kubernetes.container.image"]);
    let other_name = get(&["nerdctl/name", "io.podman.annotations.name"]);
    fill(&mut info.namespace, namespace);
    fill(&mut info.pod, pod);
    fill(&mut info.name, name);
    fill(&mut info.image, image);
    fill(&mut info.name, other_name);
}

pub(crate) fn fill(slot: &mut Option<String>, value: Option<String>) {
    if slot.is_none() {
        *slot = value.filter(|v| !v.is_empty());
    }
}

/// `image@sha256:<hex>` from an image name and the image id a runtime records (`sha256:<hex>`, `<hex>`, or
/// a reference ending in `@sha256:<hex>`); the name alone when the id is not a sha256 digest or the name
/// already carries one.
pub(crate) fn with_digest(image: String, id: Option<&str>) -> String {
    if image.contains("@sha256:") {
        return image;
    }
    let Some(id) = id else { return image };
    let hex = id.rsplit_once("@sha256:").map(|(_, h)| h).or_else(|| id.strip_prefix("sha256:")).unwrap_or(id);
    if is_id(hex) { format!("{image}@sha256:{hex}") } else { image }
}

/// Sorted `(name, path)` of the entries of `dir`; empty when it cannot be read.
pub(crate) fn sorted_dirs(dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut dirs: Vec<(String, std::path::PathBuf)> =
        entries.flatten().filter_map(|e| Some((e.file_name().into_string().ok()?, e.path()))).collect();
    dirs.sort();
    dirs
}
