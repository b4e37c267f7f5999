//! containerd's metadata, through its gRPC API (`Containers.List`, per namespace): the labels and image of
//! every container it knows. It is the only place that holds a Kubernetes pod's labels under containerd: the
//! CRI plugin writes them as the labels of the pod's sandbox container, in containerd's metadata store (a
//! BoltDB file with no stable format), not in any bundle file.
//!
//! One call per discovery, on a thread of its own with its own single-threaded runtime, so that whoever asks
//! (the tokio side, a blocking task, the decision thread meeting a new container) never needs a runtime and
//! never waits longer than [`TIMEOUT`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::ListContainersRequest;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::tonic::Request;
use containerd_client::tonic::metadata::MetadataValue;

/// The whole call, connect included, for every namespace together.
pub(super) const TIMEOUT: Duration = Duration::from_secs(1);

/// What containerd's metadata says of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Meta {
    pub labels: BTreeMap<String, String>,
    pub image: Option<String>,
}

/// `(namespace, id)` → what containerd's metadata says of that container.
pub(super) type Metadata = HashMap<(String, String), Meta>;

/// The metadata of every container in `namespaces`, from the API socket `socket`. Empty when there is no
/// socket, containerd does not answer within [`TIMEOUT`], or refuses: the bundle files still give the rest.
pub(super) fn list(socket: &Path, namespaces: &[String]) -> Metadata {
    if namespaces.is_empty() || !socket.exists() {
        return Metadata::new();
    }
    let socket = socket.to_path_buf();
    let namespaces = namespaces.to_vec();
    let worker = std::thread::Builder::new().name("containerd-api".into()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        runtime.block_on(async { tokio::time::timeout(TIMEOUT, list_all(socket, namespaces)).await.ok() })
    });
    match worker.map(|w| w.join()) {
        Ok(Ok(Some(found))) => found,
        _ => Metadata::new(),
    }
}

async fn list_all(socket: PathBuf, namespaces: Vec<String>) -> Metadata {
    let mut found = Metadata::new();
    let channel = match containerd_client::connect(&socket).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(socket = %socket.display(), error = %e, "containerd: API not reachable");
            return found;
        }
    };
    let mut client = ContainersClient::new(channel);
    for namespace in namespaces {
        let Ok(value) = MetadataValue::try_from(namespace.as_str()) else { continue };
        let mut request = Request::new(ListContainersRequest { filters: Vec::new() });
        request.metadata_mut().insert("containerd-namespace", value);
        let response = match client.list(request).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                tracing::debug!(%namespace, error = %status, "containerd: Containers.List refused");
                continue;
            }
        };
        for c in response.containers {
            let image = Some(c.image).filter(|i| !i.is_empty());
            found.insert((namespace.clone(), c.id), Meta { labels: c.labels.into_iter().collect(), image });
        }
    }
    found
}
