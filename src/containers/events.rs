//! A container is known as soon as it starts: the runtimes that offer events are followed (containerd's
//! `Events.Subscribe`, topics `/tasks/start` and `/containers/create`, from every containerd instance found
//! with an API socket; podman's `GET /libpod/events?stream=true` for container `init` and `start` events,
//! from every podman API socket found), and each event wakes [`STARTED`], on which the daemon reads the containers again at
//! once instead of at its next look. The looks every 500 ms stay: they are what a runtime without events, or
//! a subscription that is down, relies on. A subscription that fails or ends is made again after a pause
//! that doubles up to [`RETRY_MAX`]; the first failure of each is logged as a warning, the next at debug.

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::SubscribeRequest;
use containerd_client::services::v1::events_client::EventsClient;
use tokio::sync::Notify;

use super::found;
use super::http;
use super::runtime::Sources;

/// Woken by a runtime event saying a container starts.
pub static STARTED: Notify = Notify::const_new();

/// The longest pause before a subscription is made again.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

const RETRY_FIRST: Duration = Duration::from_millis(500);

/// The containerd event topics that say a container starts.
const TOPICS: [&str; 2] = ["/tasks/start", "/containers/create"];

/// podman's events that say a container starts, as its API's `filters` query (URL-encoded
/// `{"type":["container"],"event":["init","start"]}`).
const PODMAN_EVENTS: &str = "/v4.0.0/libpod/events?stream=true&filters=%7B%22type%22%3A%5B%22container%22%5D%2C%22event%22%3A%5B%22init%22%2C%22start%22%5D%7D";

/// The API sockets of the containerd instances `sources` leads to now, each once.
pub fn containerd_sockets(sources: &Sources) -> Vec<PathBuf> {
    api_sockets(sources, "containerd", "containerd_socket")
}

/// The API sockets of the podman services `sources` leads to now, each once.
pub fn podman_sockets(sources: &Sources) -> Vec<PathBuf> {
    api_sockets(sources, "podman", "podman_socket")
}

fn api_sockets(sources: &Sources, runtime: &str, key: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for i in found::instances(sources) {
        if i.runtime.name() != runtime || !i.present() {
            continue;
        }
        let socket = i.sources.get(key).to_path_buf();
        if socket.exists() && !out.contains(&socket) {
            out.push(socket);
        }
    }
    out
}

/// Follows containerd's events on `socket` for ever, waking [`STARTED`] on each start; run as a task of the
/// daemon's tokio runtime.
pub async fn follow_containerd(socket: PathBuf) {
    follow("containerd", &socket, || subscribe(&socket)).await
}

/// Follows podman's events on `socket` for ever, waking [`STARTED`] on each start; run as a task of the
/// daemon's tokio runtime.
pub async fn follow_podman(socket: PathBuf) {
    follow("podman", &socket, || async {
        let opened = || tracing::debug!(socket = %socket.display(), "podman: following its events");
        // The server filters: each piece of the stream is one or more start events.
        http::get_stream(&socket, PODMAN_EVENTS, opened, |piece| {
            if piece.iter().any(|b| !b.is_ascii_whitespace()) {
                STARTED.notify_one();
            }
        })
        .await
        .map_err(|e| e.to_string())
    })
    .await
}

/// Runs `one` subscription after another, pausing after each (doubling up to [`RETRY_MAX`] while they fail).
async fn follow<F, Fut>(runtime: &str, socket: &Path, mut one: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut pause = RETRY_FIRST;
    let mut failures = 0u64;
    loop {
        match one().await {
            Ok(()) => {
                tracing::debug!(socket = %socket.display(), "{runtime}: the event stream ended");
                pause = RETRY_FIRST;
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(socket = %socket.display(), error = %e, "{runtime}: no event subscription (retried; containers are still found every 500 ms)");
                } else {
                    tracing::debug!(socket = %socket.display(), error = %e, failures, "{runtime}: no event subscription");
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
