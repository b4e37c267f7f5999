//! Live alerts on a Unix socket (`/run/noexecd/alerts.sock` by default): one JSON object per line, like
//! `karmor logs --json`. Each client has its own bounded buffer; a slow or stuck reader loses lines
//! (counted), never slows the writer, and never reaches the decision thread at all.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use crate::error::{Error, Result};

/// Lines a client may fall behind before it loses some (or is cut off).
pub const CLIENT_BUFFER: usize = 1024;

/// Called when a client that is cut off when full falls [`CLIENT_BUFFER`] lines behind.
pub type OnCutOff = Arc<dyn Fn() + Send + Sync>;

/// One client's buffer, and what a full buffer costs it.
struct Client {
    lines: mpsc::Sender<Arc<str>>,
    /// `None`: the line is lost (counted) and the client stays. `Some`: the client is forgotten, so its
    /// stream ends once it has read what its buffer holds, and the callback counts it.
    cut_off: Option<OnCutOff>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("cut_off_when_full", &self.cut_off.is_some()).finish_non_exhaustive()
    }
}

/// The connected clients, shared by the accept loop and the alert writer (both on the tokio side).
#[derive(Debug, Default, Clone)]
pub struct Subscribers {
    clients: Arc<Mutex<Vec<Client>>>,
    dropped: Arc<AtomicU64>,
}

impl Subscribers {
    /// Offers a line to every client without waiting; full buffers lose it (or their client, see
    /// [`Subscribers::subscribe_or_cut_off`]), closed clients are forgotten.
    pub fn publish(&self, line: &Arc<str>) {
        let Ok(mut clients) = self.clients.lock() else { return };
        clients.retain(|c| match c.lines.try_send(Arc::clone(line)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => match &c.cut_off {
                Some(count) => {
                    count();
                    false
                }
                None => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
            },
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    pub fn subscribe(&self) -> mpsc::Receiver<Arc<str>> {
        self.add(None)
    }

    /// A client that is dropped, not left with gaps, when it falls behind: its receiver yields what its
    /// buffer holds, then ends; `on_cut_off` is called once, when that happens.
    pub fn subscribe_or_cut_off(&self, on_cut_off: OnCutOff) -> mpsc::Receiver<Arc<str>> {
        self.add(Some(on_cut_off))
    }

    fn add(&self, cut_off: Option<OnCutOff>) -> mpsc::Receiver<Arc<str>> {
        let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
        if let Ok(mut clients) = self.clients.lock() {
            clients.push(Client { lines: tx, cut_off });
        }
        rx
    }

    /// Lines lost to slow clients.
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The listening socket; removes its file when dropped, unless another daemon has bound the path since (two
/// daemons run side by side while a DaemonSet rollout replaces a node's pod: the old one's exit must not
/// take the new one's socket away).
#[derive(Debug)]
pub struct AlertSocket {
    listener: UnixListener,
    path: PathBuf,
    /// The socket file's device and inode as bound.
    bound: Option<(u64, u64)>,
}

impl AlertSocket {
    /// Binds `path` (replacing a stale socket), readable by root and, if given, by `group`.
    pub fn bind(path: &Path, group: Option<&str>) -> Result<Self> {
        let io = |source| Error::AlertSocket { path: path.to_owned(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        let mode = if group.is_some() { 0o660 } else { 0o600 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
        if let Some(name) = group {
            let gid = nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| io(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no group named {name}"))))?
                .gid;
            nix::unistd::chown(path, None, Some(gid)).map_err(|e| io(e.into()))?;
        }
        Ok(Self { listener, path: path.to_owned(), bound: file_id(path) })
    }

    /// Accepts clients forever; each gets a task that writes its lines until it goes away.
    pub async fn serve(self, subscribers: Subscribers) {
        loop {
            let Ok((mut stream, _)) = self.listener.accept().await else {
                // Out of fds, most likely: do not spin.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let mut lines = subscribers.subscribe();
            tokio::spawn(async move {
                while let Some(line) = lines.recv().await {
                    if stream.write_all(line.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl Drop for AlertSocket {
    fn drop(&mut self) {
        if self.bound.is_some() && file_id(&self.path) == self.bound {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_client_loses_lines_and_is_counted_closed_client_is_forgotten() {
        let subs = Subscribers::default();
        let mut slow = subs.subscribe();
        let closed = subs.subscribe();
        drop(closed);
        let line: Arc<str> = Arc::from("{}\n");
        for _ in 0..CLIENT_BUFFER + 5 {
            subs.publish(&line);
        }
        assert_eq!(subs.clients.lock().unwrap().len(), 1);
        assert_eq!(subs.dropped(), 5);
        assert_eq!(slow.try_recv().as_deref(), Ok("{}\n"));
    }

    #[test]
    fn a_client_cut_off_when_full_is_forgotten_counted_once_and_reads_its_buffer_to_the_end() {
        let subs = Subscribers::default();
        let cut = Arc::new(AtomicU64::new(0));
        let count = cut.clone();
        let mut slow = subs.subscribe_or_cut_off(Arc::new(move || {
            count.fetch_add(1, Ordering::Relaxed);
        }));
        let mut fast = subs.subscribe();
        let line: Arc<str> = Arc::from("{}\n");
        for _ in 0..CLIENT_BUFFER + 5 {
            subs.publish(&line);
            let _ = fast.try_recv();
        }
        assert_eq!(cut.load(Ordering::Relaxed), 1);
        assert_eq!(subs.clients.lock().unwrap().len(), 1, "the fast client stays");
        assert_eq!(subs.dropped(), 0, "a cut-off client's lines are not counted as lost lines");
        for _ in 0..CLIENT_BUFFER {
            assert!(slow.try_recv().is_ok());
        }
        assert_eq!(slow.try_recv(), Err(mpsc::error::TryRecvError::Disconnected));
    }

    #[tokio::test]
    async fn clients_receive_published_lines() {
        use tokio::io::AsyncBufReadExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/alerts.sock");
        let socket = AlertSocket::bind(&path, None).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let subs = Subscribers::default();
        tokio::spawn(socket.serve(subs.clone()));
        let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
        while subs.clients.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        subs.publish(&Arc::from("{\"Action\":\"Block\"}\n"));
        let mut reader = tokio::io::BufReader::new(stream);
        let mut got = String::new();
        reader.read_line(&mut got).await.unwrap();
        assert_eq!(got, "{\"Action\":\"Block\"}\n");
    }

    #[tokio::test]
    async fn the_old_daemons_socket_leaves_the_new_ones_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.sock");
        let old = AlertSocket::bind(&path, None).unwrap();
        let new = AlertSocket::bind(&path, None).unwrap();
        drop(old);
        assert!(path.exists(), "the old daemon's exit removed the new one's socket");
        drop(new);
        assert!(!path.exists(), "a daemon's own socket is removed at its exit");
    }
}
