//! KubeArmor's gRPC `LogService` (`run --grpc ADDR`; port 32767 in the DaemonSet), from KubeArmor's own
//! `proto/kubearmor.proto`: what `karmor logs --gRPC`, kubearmor-relay and the adapters that forward
//! KubeArmor's stream read.
//!
//! - `HealthCheck` echoes the nonce, as KubeArmor's does.
//! - `WatchAlerts` streams every line the alert writer writes (blocks, audits, `SystemEvent` notices), each
//!   JSON key in the `Alert` field of the same name ([`alert_from_json`]), for the filters KubeArmor
//!   streams alerts for (`all`, `policy`); any other filter gets a stream that ends at once, as there.
//! - `WatchLogs` (filters `all`, `system`) and `WatchMessages` stay open and carry nothing: KubeArmor sends
//!   its visibility telemetry and its own log messages there, and noexecd has neither (an exec it allows
//!   is not reported; one it blocks or audits is an alert).
//!
//! Each `WatchAlerts` reader has the live socket's bounded buffer ([`Subscribers`]); one that falls that
//! far behind is cut off (counted, logged) and its stream ends with `RESOURCE_EXHAUSTED` once it has read
//! what the buffer holds: the writer never waits for it, and a reader that reconnects knows it has a gap.
//! At most [`MAX_READERS`] `WatchAlerts` readers are served at once.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::{self, Stream};
use tonic::{Request, Response, Status};

use crate::alert::stream::{CLIENT_BUFFER, Subscribers};
use crate::error::{Error, Result};
use crate::stats::Counters;

/// The code generated from `proto/kubearmor.proto` (package `feeder`): messages, the server, and the client
/// the tests use.
#[allow(clippy::all, clippy::pedantic, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#[allow(clippy::indexing_slicing, missing_docs, unreachable_pub)]
pub mod proto {
    tonic::include_proto!("feeder");
}

use proto::log_service_server::{LogService, LogServiceServer};

/// The gRPC listener, bound at start so that an address in use stops the daemon before it guards anything.
#[derive(Debug)]
pub struct GrpcListener {
    listener: std::net::TcpListener,
    addr: SocketAddr,
}

impl GrpcListener {
    pub fn bind(addr: SocketAddr) -> Result<Self> {
        let err = |source| Error::GrpcListen { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        let addr = listener.local_addr().map_err(err)?;
        tracing::info!(%addr, "gRPC LogService listening (KubeArmor's WatchAlerts, WatchLogs, HealthCheck)");
        Ok(Self { listener, addr })
    }

    /// Serves until the task is dropped. Runs on the tokio side: the alert writer hands lines over without
    /// waiting, and nothing here reaches the decision thread.
    pub async fn serve(self, subscribers: Subscribers, counters: Arc<Counters>) {
        let addr = self.addr;
        let listener = match tokio::net::TcpListener::from_std(self.listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(%addr, error = %e, "gRPC LogService is not served");
                return;
            }
        };
        let incoming = tonic::transport::server::TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(Duration::from_secs(60)));
        let service = LogServiceServer::new(Service::new(subscribers, counters));
        let served = tonic::transport::Server::builder()
            // A peer that went away without a word is noticed, and its stream freed.
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .serve_with_incoming(service, incoming)
            .await;
        if let Err(e) = served {
            tracing::error!(%addr, error = %e, "gRPC LogService stopped");
        }
    }
}

/// `WatchAlerts` readers served at once: each may hold its buffer and a connection's send window, and the
/// port may be reachable from a whole cluster. Past it a reader is refused, and retries.
const MAX_READERS: usize = 64;

struct Service {
    subscribers: Subscribers,
    counters: Arc<Counters>,
    readers: Arc<AtomicUsize>,
}

impl Service {
    fn new(subscribers: Subscribers, counters: Arc<Counters>) -> Self {
        Self { subscribers, counters, readers: Arc::new(AtomicUsize::new(0)) }
    }
}

/// One place among the [`MAX_READERS`], given back when the reader's stream is dropped.
struct ReaderSlot(Arc<AtomicUsize>);

impl ReaderSlot {
    fn take(readers: &Arc<AtomicUsize>) -> Option<Self> {
        readers.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < MAX_READERS).then_some(n + 1)).ok()?;
        Some(Self(readers.clone()))
    }
}

impl Drop for ReaderSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

type Never<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send>>;

/// KubeArmor's answer to a filter it does not stream: a stream that ends at once.
fn ended<T: Send + 'static>() -> Never<T> {
    Box::pin(tokio_stream::empty())
}

/// Open until the reader leaves, carrying nothing.
fn silent<T: Send + 'static>() -> Never<T> {
    Box::pin(tokio_stream::pending())
}

#[tonic::async_trait]
impl LogService for Service {
    async fn health_check(
        &self,
        request: Request<proto::NonceMessage>,
    ) -> std::result::Result<Response<proto::ReplyMessage>, Status> {
        Ok(Response::new(proto::ReplyMessage { retval: request.into_inner().nonce }))
    }

    type WatchMessagesStream = Never<proto::Message>;

    async fn watch_messages(
        &self,
        _request: Request<proto::RequestMessage>,
    ) -> std::result::Result<Response<Self::WatchMessagesStream>, Status> {
        Ok(Response::new(silent()))
    }

    type WatchAlertsStream = AlertStream;

    async fn watch_alerts(
        &self,
        request: Request<proto::RequestMessage>,
    ) -> std::result::Result<Response<Self::WatchAlertsStream>, Status> {
        let peer = request.remote_addr();
        let filter = request.into_inner().filter;
        if !matches!(filter.as_str(), "all" | "policy") {
            tracing::info!(?peer, filter, "gRPC WatchAlerts with a filter that carries no alerts: stream ended");
            return Ok(Response::new(AlertStream { lines: None, _slot: None }));
        }
        let Some(slot) = ReaderSlot::take(&self.readers) else {
            tracing::warn!(?peer, max = MAX_READERS, "gRPC WatchAlerts reader refused: too many readers");
            return Err(Status::resource_exhausted(format!("{MAX_READERS} readers are served already")));
        };
        let counters = self.counters.clone();
        let lines = self.subscribers.subscribe_or_cut_off(Arc::new(move || {
            let dropped = counters.grpc_readers_dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                ?peer,
                behind = CLIENT_BUFFER,
                grpc_readers_dropped = dropped,
                "gRPC WatchAlerts reader fell behind: cut off (it gets what was buffered, then RESOURCE_EXHAUSTED)"
            );
        }));
        tracing::info!(?peer, filter, "gRPC WatchAlerts reader connected");
        Ok(Response::new(AlertStream { lines: Some(lines), _slot: Some(slot) }))
    }

    type WatchLogsStream = Never<proto::Log>;

    async fn watch_logs(
        &self,
        request: Request<proto::RequestMessage>,
    ) -> std::result::Result<Response<Self::WatchLogsStream>, Status> {
        let filter = request.into_inner().filter;
        Ok(Response::new(if matches!(filter.as_str(), "all" | "system") { silent() } else { ended() }))
    }
}

/// One `WatchAlerts` reader's alerts: its buffer's lines as `Alert` messages, then, if the writer cut it
/// off, `RESOURCE_EXHAUSTED`.
pub struct AlertStream {
    lines: Option<mpsc::Receiver<Arc<str>>>,
    _slot: Option<ReaderSlot>,
}

impl Stream for AlertStream {
    type Item = std::result::Result<proto::Alert, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let Some(lines) = self.lines.as_mut() else { return Poll::Ready(None) };
            match lines.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                // The writer's lines are its own JSON: one that does not parse cannot come.
                Poll::Ready(Some(line)) => match alert_from_json(&line) {
                    Some(alert) => return Poll::Ready(Some(Ok(alert))),
                    None => continue,
                },
                Poll::Ready(None) => {
                    self.lines = None;
                    return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                        "this reader fell {CLIENT_BUFFER} alerts behind and was cut off; alerts since are in the alert log"
                    )))));
                }
            }
        }
    }
}

/// The `Alert` message of one JSON alert line: each key in the field of the same name. `None` for a line
/// that is not a JSON object.
pub fn alert_from_json(line: &str) -> Option<proto::Alert> {
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(line) else { return None };
    let mut alert = proto::Alert::default();
    for (key, value) in &fields {
        set_field(&mut alert, key, value);
    }
    alert.event_data = event_data(&alert.data);
    Some(alert)
}

/// Sets the field `key` names; false for a key the message has no field for.
fn set_field(a: &mut proto::Alert, key: &str, v: &Value) -> bool {
    let text = || v.as_str().unwrap_or_default().to_owned();
    // The JSON's numbers are the kernel's 32-bit ids; anything wider is clamped, not wrapped.
    let int = || v.as_i64().map_or(0, |n| i32::try_from(n).unwrap_or(if n < 0 { i32::MIN } else { i32::MAX }));
    match key {
        "Timestamp" => a.timestamp = v.as_i64().unwrap_or_default(),
        "UpdatedTime" => a.updated_time = text(),
        "ClusterName" => a.cluster_name = text(),
        "HostName" => a.host_name = text(),
        "NamespaceName" => a.namespace_name = text(),
        "Owner" => {
            let part = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            a.owner = Some(proto::Podowner { r#ref: part("Ref"), name: part("Name"), namespace: part("Namespace") });
        }
        "PodName" => a.pod_name = text(),
        "Labels" => a.labels = text(),
        "ContainerID" => a.container_id = text(),
        "ContainerName" => a.container_name = text(),
        "ContainerImage" => a.container_image = text(),
        "HostPPID" => a.host_ppid = int(),
        "HostPID" => a.host_pid = int(),
        "PPID" => a.ppid = int(),
        "PID" => a.pid = int(),
        "UID" => a.uid = int(),
        "ParentProcessName" => a.parent_process_name = text(),
        "ProcessName" => a.process_name = text(),
        "PolicyName" => a.policy_name = text(),
        "Severity" => a.severity = text(),
        "Tags" => a.tags = text(),
        "ATags" => {
            a.a_tags = v
                .as_array()
                .map_or_else(Vec::new, |tags| tags.iter().filter_map(Value::as_str).map(str::to_owned).collect());
        }
        "Message" => a.message = text(),
        "Type" => a.r#type = text(),
        "Source" => a.source = text(),
        "Operation" => a.operation = text(),
        "Resource" => a.resource = text(),
        "Data" => a.data = text(),
        "Enforcer" => a.enforcer = text(),
        "Action" => a.action = text(),
        "Result" => a.result = text(),
        "Cwd" => a.cwd = text(),
        "TTY" => a.tty = text(),
        "MaxAlertsPerSec" => a.max_alerts_per_sec = int(),
        "DroppingAlertsInterval" => a.dropping_alerts_interval = int(),
        _ => return false,
    }
    true
}

/// `EventData` as KubeArmor derives it from `Data`: its space-separated `key=value` pairs, each key with
/// its first letter upper-cased (`fanotify=FAN_OPEN_EXEC_PERM` gives `Fanotify`).
fn event_data(data: &str) -> std::collections::HashMap<String, String> {
    data.split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| {
            let mut chars = key.chars();
            let key = chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default();
            (key, value.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::schema::{Alert, ExecAlert, Origin};
    use crate::containers::ContainerInfo;
    use crate::host::procfs::{NsPid, ProcessInfo};
    use crate::policy::matcher::{Action, Outcome, RuleMeta};
    use std::time::{Duration, UNIX_EPOCH};

    /// The keys of `line` no `Alert` field takes.
    fn unmapped(line: &str) -> Vec<String> {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(line) else { panic!("not an object: {line}") };
        let mut scratch = proto::Alert::default();
        fields.iter().filter(|(k, v)| !set_field(&mut scratch, k, v)).map(|(k, _)| k.clone()).collect()
    }

    /// A container alert with every field of the JSON set (each to a value of its own).
    fn full_alert() -> Alert {
        let exec = ExecAlert {
            when: UNIX_EPOCH + Duration::from_micros(1_764_338_400_000_001),
            outcome: Outcome::Block,
            rule: Arc::new(RuleMeta {
                policy: "ksp-wordpress-block-process".into(),
                action: Action::Block,
                severity: 5,
                tags: vec!["MITRE".into(), "T1059".into()],
                message: "blocked from tmp".into(),
                origin: String::new(),
            }),
            resource: b"/tmp/payload".to_vec(),
            pid: 4242,
            process: ProcessInfo {
                exe: b"/usr/bin/bash".to_vec(),
                ppid: 4200,
                uid: 33,
                cwd: b"/var/www/html".to_vec(),
                ns_pid: Some(NsPid { pid: 7, ppid: 1 }),
                parent_exe: b"/bin/sh".to_vec(),
                ..ProcessInfo::default()
            },
            hook: "FAN_OPEN_EXEC_PERM",
            container: None,
            open: None,
        };
        let info = ContainerInfo {
            id: "3f4e5d6c7b8a".into(),
            runtime: crate::containers::runtimes::containerd::CONTAINERD,
            name: Some("wordpress".into()),
            image: Some("docker.io/library/wordpress:4.8-apache".into()),
            labels: [("app".to_owned(), "wordpress".to_owned())].into_iter().collect(),
            namespace: Some("wordpress-mysql".into()),
            pod: Some("wordpress-7c966b5d85-xvsrl".into()),
            owner: Some(crate::containers::Owner {
                kind: "Deployment",
                name: "wordpress".into(),
                namespace: "wordpress-mysql".into(),
            }),
        };
        let origin = Origin { cluster_name: "prod".into(), host_name: "node-1".into() };
        let mut alert = Alert::for_exec(&exec, &origin).in_container(&info, exec.process.ns_pid);
        alert.max_alerts_per_sec = Some(10);
        alert.dropping_alerts_interval = Some(1);
        alert
    }

    #[test]
    fn every_json_field_lands_in_the_alert_field_of_the_same_meaning() {
        let json = full_alert();
        let line = json.to_json_line();
        assert_eq!(unmapped(&line), Vec::<String>::new(), "JSON keys without an Alert field");
        let a = alert_from_json(&line).unwrap();
        assert_eq!(a.timestamp, json.timestamp);
        assert_eq!(a.updated_time, json.updated_time);
        assert_eq!(a.cluster_name, "prod");
        assert_eq!(a.host_name, "node-1");
        assert_eq!(a.namespace_name, "wordpress-mysql");
        assert_eq!(a.pod_name, "wordpress-7c966b5d85-xvsrl");
        assert_eq!(a.labels, json.labels);
        assert_eq!(a.container_id, "3f4e5d6c7b8a");
        assert_eq!(a.container_name, "wordpress");
        assert_eq!(a.container_image, "docker.io/library/wordpress:4.8-apache");
        assert_eq!((a.host_ppid, a.host_pid, a.ppid, a.pid, a.uid), (4200, 4242, 1, 7, 33));
        assert_eq!(a.parent_process_name, "/bin/sh");
        assert_eq!(a.process_name, "/tmp/payload");
        assert_eq!(a.policy_name, "ksp-wordpress-block-process");
        assert_eq!(a.severity, "5");
        assert_eq!(a.tags, "MITRE,T1059");
        assert_eq!(a.a_tags, vec!["MITRE", "T1059"]);
        assert_eq!(a.message, "blocked from tmp");
        assert_eq!(a.r#type, "MatchedPolicy");
        assert_eq!(a.source, "/usr/bin/bash");
        assert_eq!(a.operation, "Process");
        assert_eq!(a.resource, "/tmp/payload");
        assert_eq!(a.data, "fanotify=FAN_OPEN_EXEC_PERM");
        assert_eq!(a.event_data.get("Fanotify").map(String::as_str), Some("FAN_OPEN_EXEC_PERM"));
        assert_eq!(a.enforcer, "fanotify");
        assert_eq!(a.action, "Block");
        assert_eq!(a.result, "Operation not permitted");
        assert_eq!(a.cwd, "/var/www/html");
        assert_eq!((a.max_alerts_per_sec, a.dropping_alerts_interval), (10, 1));
        let owner = a.owner.as_ref().map(|o| (o.r#ref.as_str(), o.name.as_str(), o.namespace.as_str()));
        assert_eq!(owner, Some(("Deployment", "wordpress", "wordpress-mysql")));
        // What the JSON has no key for stays empty, as a KubeArmor reader expects of a missing value.
        assert!(a.tty.is_empty() && a.kube_armor_version.is_empty() && a.exec_event.is_none());
    }

    #[test]
    fn every_key_of_the_golden_alerts_has_a_field() {
        for golden in [
            include_str!("../../tests/golden/alert-block.json"),
            include_str!("../../tests/golden/alert-audit.json"),
            include_str!("../../tests/golden/alert-threshold.json"),
            include_str!("../../tests/golden/host-exec-alert.json"),
            include_str!("../../tests/golden/container-exec-alert.json"),
        ] {
            assert_eq!(unmapped(golden), Vec::<String>::new(), "{golden}");
        }
        let threshold = alert_from_json(include_str!("../../tests/golden/alert-threshold.json")).unwrap();
        assert_eq!((threshold.r#type.as_str(), threshold.operation.as_str()), ("SystemEvent", "AlertThreshold"));
        assert_eq!((threshold.max_alerts_per_sec, threshold.dropping_alerts_interval), (100, 1));
    }

    #[test]
    fn owner_and_out_of_range_ids() {
        let line = r#"{"Owner":{"Ref":"Deployment","Name":"wordpress","Namespace":"wp"},"UID":-1,"HostPID":5000000000,"Data":"a=1 syscall=execve x"}"#;
        let a = alert_from_json(line).unwrap();
        let owner = a.owner.unwrap();
        assert_eq!(
            (owner.r#ref.as_str(), owner.name.as_str(), owner.namespace.as_str()),
            ("Deployment", "wordpress", "wp")
        );
        assert_eq!((a.uid, a.host_pid), (-1, i32::MAX));
        assert_eq!(a.event_data.len(), 2);
        assert_eq!(a.event_data.get("Syscall").map(String::as_str), Some("execve"));
        assert!(alert_from_json("[1]").is_none());
        assert!(alert_from_json("not json").is_none());
    }

    #[tokio::test]
    async fn a_cut_off_reader_gets_its_buffer_then_resource_exhausted() {
        use tokio_stream::StreamExt;
        let subs = Subscribers::default();
        let counters = Arc::new(Counters::default());
        let service = Service::new(subs.clone(), counters.clone());
        let request = Request::new(proto::RequestMessage { filter: "policy".into() });
        let mut stream = service.watch_alerts(request).await.unwrap().into_inner();
        let line: Arc<str> = Arc::from(full_alert().to_json_line());
        for _ in 0..=CLIENT_BUFFER {
            subs.publish(&line);
        }
        assert_eq!(counters.snapshot().grpc_readers_dropped, 1);
        for _ in 0..CLIENT_BUFFER {
            assert_eq!(stream.next().await.unwrap().unwrap().policy_name, "ksp-wordpress-block-process");
        }
        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn filters_as_kubearmor_reads_them_and_health_check_echoes() {
        use tokio_stream::StreamExt;
        let service = Service::new(Subscribers::default(), Arc::new(Counters::default()));
        let ask = |filter: &str| Request::new(proto::RequestMessage { filter: filter.into() });
        for filter in ["system", "", "nonsense"] {
            let mut s = service.watch_alerts(ask(filter)).await.unwrap().into_inner();
            assert!(s.next().await.is_none(), "WatchAlerts {filter:?} ends at once");
        }
        for filter in ["policy", ""] {
            let mut s = service.watch_logs(ask(filter)).await.unwrap().into_inner();
            assert!(s.next().await.is_none(), "WatchLogs {filter:?} ends at once");
        }
        let mut logs = service.watch_logs(ask("system")).await.unwrap().into_inner();
        let waited = tokio::time::timeout(Duration::from_millis(20), logs.next()).await;
        assert!(waited.is_err(), "WatchLogs system stays open");
        let reply = service.health_check(Request::new(proto::NonceMessage { nonce: -77 })).await.unwrap();
        assert_eq!(reply.into_inner().retval, -77);
    }

    #[tokio::test]
    async fn readers_past_the_cap_are_refused_until_one_leaves() {
        let service = Service::new(Subscribers::default(), Arc::new(Counters::default()));
        let ask = || Request::new(proto::RequestMessage { filter: "all".into() });
        let mut held = Vec::new();
        for _ in 0..MAX_READERS {
            held.push(service.watch_alerts(ask()).await.unwrap().into_inner());
        }
        let refused = service.watch_alerts(ask()).await.err().unwrap();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        // A filter that streams nothing takes no place.
        assert!(service.watch_alerts(Request::new(proto::RequestMessage { filter: "system".into() })).await.is_ok());
        held.pop();
        assert!(service.watch_alerts(ask()).await.is_ok());
    }
}
