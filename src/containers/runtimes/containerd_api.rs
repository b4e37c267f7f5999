//! containerd's metadata, through its gRPC API (`Containers.List`, per namespace): the labels and image of
//! every container it knows. It is the only place that holds a Kubernetes pod's labels under containerd: the
//! CRI plugin writes them as the labels of the pod's sandbox container, in containerd's metadata store (a
//! BoltDB file with no stable format), not in any bundle file.
//!
//! One thread keeps a single-threaded runtime and the connection to containerd across looks (a look every
//! 500 ms would otherwise start a thread, a runtime and a gRPC connection each time); whoever asks (the
//! tokio side, a blocking task, the lookup thread) hands it the question and waits at most [`TIMEOUT`], so
//! nobody needs a runtime of their own. A connection that fails, or a call that times out, is dropped and
//! made again at the next look; a question that waited past its deadline is not asked any more.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::time::{Duration, Instant};

use containerd_client::services::v1::ListContainersRequest;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::tonic::metadata::MetadataValue;
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request};

/// The whole call, connect included, for every namespace together.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(1);

/// What containerd's metadata says of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    pub labels: BTreeMap<String, String>,
    pub image: Option<String>,
}

/// `(namespace, id)` → what containerd's metadata says of that container.
pub(crate) type Metadata = HashMap<(String, String), Meta>;

/// The metadata of every container in `namespaces`, from the API socket `socket`. Empty when there is no
/// socket, containerd does not answer within [`TIMEOUT`], or refuses: the bundle files still give the rest.
pub(crate) fn list(socket: &Path, namespaces: &[String]) -> Metadata {
    if namespaces.is_empty() || !socket.exists() {
        return Metadata::new();
    }
    let (reply, answer) = mpsc::sync_channel(1);
    let ask = Ask {
        socket: socket.to_path_buf(),
        namespaces: namespaces.to_vec(),
        deadline: Instant::now() + TIMEOUT,
        reply,
    };
    if !hand_over(ask) {
        return Metadata::new();
    }
    answer.recv_timeout(TIMEOUT).unwrap_or_default()
}

/// One question to the connection's thread.
struct Ask {
    socket: PathBuf,
    namespaces: Vec<String>,
    /// Past it the asker has stopped waiting.
    deadline: Instant,
    reply: SyncSender<Metadata>,
}

/// The connection thread's inbox, started at the first question and again if the thread is gone.
static CONNECTION: Mutex<Option<Sender<Ask>>> = Mutex::new(None);

fn hand_over(ask: Ask) -> bool {
    // A poisoned lock: a thread panicked while sending, which leaves the sender as it was.
    let mut inbox = CONNECTION.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let ask = match inbox.as_ref() {
        Some(tx) => match tx.send(ask) {
            Ok(()) => return true,
            Err(mpsc::SendError(ask)) => ask,
        },
        None => ask,
    };
    let (tx, rx) = mpsc::channel();
    let started = std::thread::Builder::new().name("containerd-api".into()).spawn(move || serve(&rx));
    if let Err(e) = started {
        tracing::debug!(error = %e, "containerd: cannot start the API thread");
        return false;
    }
    let sent = tx.send(ask).is_ok();
    *inbox = Some(tx);
    sent
}

/// The connection's thread: answers questions one by one on one connection, kept while it works.
fn serve(inbox: &Receiver<Ask>) {
    // The decision thread's wake signal is sent to that thread alone; this one never takes it.
    let _ = crate::sys::block_wake_signal();
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
    let mut connection: Option<(PathBuf, Channel)> = None;
    while let Ok(ask) = inbox.recv() {
        let left = ask.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            continue;
        }
        let found = runtime.block_on(async {
            tokio::time::timeout(left, list_all(&mut connection, &ask.socket, &ask.namespaces)).await
        });
        let found = found.unwrap_or_else(|_| {
            tracing::debug!(socket = %ask.socket.display(), "containerd: no answer in time");
            connection = None;
            Metadata::new()
        });
        let _ = ask.reply.send(found);
    }
}

/// `Containers.List` in each namespace, on the kept connection (made first if there is none, or it was to
/// another socket). A transport failure drops the connection for the next look.
async fn list_all(connection: &mut Option<(PathBuf, Channel)>, socket: &Path, namespaces: &[String]) -> Metadata {
    let mut found = Metadata::new();
    if connection.as_ref().is_none_or(|(at, _)| at != socket) {
        *connection = None;
        match containerd_client::connect(socket).await {
            Ok(channel) => *connection = Some((socket.to_path_buf(), channel)),
            Err(e) => {
                tracing::debug!(socket = %socket.display(), error = %e, "containerd: API not reachable");
                return found;
            }
        }
    }
    let Some((_, channel)) = connection.as_ref() else { return found };
    let mut client = ContainersClient::new(channel.clone());
    for namespace in namespaces {
        let Ok(value) = MetadataValue::try_from(namespace.as_str()) else { continue };
        let mut request = Request::new(ListContainersRequest { filters: Vec::new() });
        request.metadata_mut().insert("containerd-namespace", value);
        let response = match client.list(request).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                tracing::debug!(%namespace, error = %status, "containerd: Containers.List refused");
                if matches!(status.code(), Code::Unavailable | Code::Unknown | Code::Cancelled) {
                    *connection = None;
                    return found;
                }
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
