//! containerd's metadata, through its gRPC API (`Containers.List`, per namespace): the labels and image of
//! every container it knows. It is the only place that holds a Kubernetes pod's labels under containerd: the
//! CRI plugin writes them as the labels of the pod's sandbox container, in containerd's metadata store (a
//! BoltDB file with no stable format), not in any bundle file.
//!
//! Asked on the runtimes' API thread (`api_thread`), which keeps the connection to containerd across looks
//! (a look every 500 ms would otherwise make a connection each time): a connection that fails, or a call
//! that does not end within [`TIMEOUT`], is dropped and made again at the next look.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{GetImageRequest, ListContainersRequest};
use containerd_client::tonic::metadata::{Ascii, MetadataValue};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request};

use crate::containers::api_thread;

/// The whole call, connect included, for every namespace together.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(1);

/// What containerd's metadata says of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    pub labels: BTreeMap<String, String>,
    pub image: Option<String>,
    /// The digest its image's name pointed at when the container was first seen (`Images.Get`'s
    /// `target.digest`, the manifest's: what the CRI reports as the container's `imageRef`).
    pub image_digest: Option<String>,
}

/// `(namespace, id)` → what containerd's metadata says of that container.
pub(crate) type Metadata = HashMap<(String, String), Meta>;

/// The metadata of every container in `namespaces`, from the API socket `socket`. Empty when there is no
/// socket, containerd does not answer within [`TIMEOUT`], or refuses: the bundle files still give the rest.
pub(crate) fn list(socket: &Path, namespaces: &[String]) -> Metadata {
    if namespaces.is_empty() || !socket.exists() {
        return Metadata::new();
    }
    let (socket, namespaces) = (socket.to_path_buf(), namespaces.to_vec());
    api_thread::ask(TIMEOUT, move || async move { list_all(&socket, &namespaces).await }).unwrap_or_else(|| {
        tracing::debug!("containerd: no answer in time");
        Metadata::new()
    })
}

thread_local! {
    /// The connection, on the API thread: taken out for a call and put back only when the call ends well, so
    /// that a call dropped at its time limit drops its connection too.
    static CONNECTION: RefCell<Option<(PathBuf, Channel)>> = const { RefCell::new(None) };
    /// `(namespace, id)` → its image's digest, asked once per container (a container's image does not
    /// change): one `Images.Get` for each container new since the last look, kept while it is listed.
    static DIGESTS: RefCell<HashMap<(String, String), Option<String>>> = RefCell::new(HashMap::new());
}

/// `Containers.List` in each namespace, on the kept connection (made first if there is none, or it was to
/// another socket).
async fn list_all(socket: &Path, namespaces: &[String]) -> Metadata {
    let mut found = Metadata::new();
    let kept = CONNECTION.with_borrow_mut(Option::take).filter(|(at, _)| at == socket).map(|(_, c)| c);
    let channel = match kept {
        Some(channel) => channel,
        None => match containerd_client::connect(socket).await {
            Ok(channel) => channel,
            Err(e) => {
                tracing::debug!(socket = %socket.display(), error = %e, "containerd: API not reachable");
                return found;
            }
        },
    };
    let mut client = ContainersClient::new(channel.clone());
    for namespace in namespaces {
        let Ok(value) = MetadataValue::try_from(namespace.as_str()) else { continue };
        let mut request = Request::new(ListContainersRequest { filters: Vec::new() });
        request.metadata_mut().insert("containerd-namespace", value.clone());
        let response = match client.list(request).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                tracing::debug!(%namespace, error = %status, "containerd: Containers.List refused");
                if matches!(status.code(), Code::Unavailable | Code::Unknown | Code::Cancelled) {
                    return found;
                }
                continue;
            }
        };
        for c in response.containers {
            let image = Some(c.image).filter(|i| !i.is_empty());
            let key = (namespace.clone(), c.id);
            let known = DIGESTS.with_borrow(|d| d.get(&key).cloned());
            let image_digest = match (known, &image) {
                (Some(digest), _) => digest,
                (None, Some(name)) => {
                    let digest = image_digest(&channel, value.clone(), name).await;
                    DIGESTS.with_borrow_mut(|d| d.insert(key.clone(), digest.clone()));
                    digest
                }
                (None, None) => None,
            };
            found.insert(key, Meta { labels: c.labels.into_iter().collect(), image, image_digest });
        }
    }
    DIGESTS.with_borrow_mut(|d| d.retain(|key, _| found.contains_key(key)));
    CONNECTION.with_borrow_mut(|kept| *kept = Some((socket.to_path_buf(), channel)));
    found
}

/// `Images.Get` of image `name` in the namespace `namespace` names: the digest its record points at. `None`
/// when containerd has no such record (an image removed since) or refuses.
async fn image_digest(channel: &Channel, namespace: MetadataValue<Ascii>, name: &str) -> Option<String> {
    let mut request = Request::new(GetImageRequest { name: name.to_owned() });
    request.metadata_mut().insert("containerd-namespace", namespace);
    match ImagesClient::new(channel.clone()).get(request).await {
        Ok(r) => r.into_inner().image?.target.map(|t| t.digest).filter(|d| d.starts_with("sha256:")),
        Err(status) => {
            tracing::debug!(image = name, error = %status, "containerd: Images.Get refused");
            None
        }
    }
}
