//! A container is known as soon as it starts: the runtimes that offer events are followed (containerd's
//! `Events.Subscribe`, topics `/tasks/start` and `/containers/create`, from every containerd instance found
//! with an API socket), and each event wakes [`STARTED`], on which the daemon reads the containers again at
//! once instead of at its next look. The looks every 500 ms stay: they are what a runtime without events, or
//! a subscription that is down, relies on. A subscription that fails or ends is made again after a pause
//! that doubles up to [`RETRY_MAX`]; the first failure of each is logged as a warning, the next at debug.

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::SubscribeRequest;
use containerd_client::services::v1::events_client::EventsClient;
use tokio::sync::Notify;

use super::found;
use super::runtime::Sources;

/// Woken by a runtime event saying a container starts.
pub static STARTED: Notify = Notify::const_new();

/// The longest pause before a subscription is made again.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

const RETRY_FIRST: Duration = Duration::from_millis(500);

/// The containerd event topics that say a container starts.
const TOPICS: [&str; 2] = ["/tasks/start", "/containers/create"];

/// The API sockets of the containerd instances `sources` leads to now, each once.
pub fn containerd_sockets(sources: &Sources) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for i in found::instances(sources) {
        if i.runtime.name() != "containerd" || !i.present() {
            continue;
        }
        let socket = i.sources.get("containerd_socket").to_path_buf();
        if socket.exists() && !out.contains(&socket) {
            out.push(socket);
        }
    }
    out
}

/// Follows containerd's events on `socket` for ever, waking [`STARTED`] on each start; run as a task of the
/// daemon's tokio runtime.
pub async fn follow_containerd(socket: PathBuf) {
    let mut pause = RETRY_FIRST;
    let mut failures = 0u64;
    loop {
        match subscribe(&socket).await {
            Ok(()) => {
                tracing::debug!(socket = %socket.display(), "containerd: the event stream ended");
                pause = RETRY_FIRST;
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(socket = %socket.display(), error = %e, "containerd: no event subscription (retried; containers are still found every 500 ms)");
                } else {
                    tracing::debug!(socket = %socket.display(), error = %e, failures, "containerd: no event subscription");
                }
                failures += 1;
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

/// One subscription, until its stream ends (`Ok`) or fails.
async fn subscribe(socket: &Path) -> Result<(), String> {
    let channel = tokio::time::timeout(Duration::from_secs(2), containerd_client::connect(socket))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let mut client = EventsClient::new(channel);
    let filters = TOPICS.iter().map(|t| format!("topic==\"{t}\"")).collect();
    let mut stream = client.subscribe(SubscribeRequest { filters }).await.map_err(|e| e.to_string())?.into_inner();
    tracing::debug!(socket = %socket.display(), "containerd: following its events");
    while let Some(event) = stream.message().await.map_err(|e| e.to_string())? {
        if TOPICS.contains(&event.topic.as_str()) {
            STARTED.notify_one();
        }
    }
    Ok(())
}
