//! Privileged: KubeArmor's gRPC LogService (`run --grpc`), read with a client generated from the same
//! `proto/kubearmor.proto`: a blocked exec arrives on WatchAlerts as an `Alert` with every field of its
//! JSON line, HealthCheck echoes, a reader that never reads is cut off and counted while the others and
//! the daemon go on, and an address in use stops the daemon at start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use noexecd::kubearmor::log_service_client::LogServiceClient;
use noexecd::kubearmor::{Alert, NonceMessage, RequestMessage};
use serde_json::Value;
use tonic::transport::{Channel, Endpoint};

use crate::common::*;

/// How long the daemon may take to say where it listens, and a message to arrive.
const WAIT: Duration = Duration::from_secs(10);

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Starts the daemon blocking exec on the whole test tmpfs, serving gRPC on a free port of 127.0.0.1;
/// returns the address it says it listens on.
fn start_with_grpc(env: &mut Env, opts: &DaemonOpts) -> SocketAddr {
    let cfg = env.write_config(opts, &dir_policy("Block", &env.fs, true));
    env.start_daemon_with_env(&cfg, &[("NOEXECD_GRPC", "127.0.0.1:0")]);
    let deadline = Instant::now() + WAIT;
    loop {
        let stderr = env.daemon_stderr();
        let addr = stderr
            .lines()
            .filter(|l| l.contains("gRPC LogService listening"))
            .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
            .and_then(|a| a.parse().ok());
        if let Some(addr) = addr {
            return addr;
        }
        assert!(Instant::now() < deadline, "the daemon did not say where gRPC listens:\n{stderr}");
        // The daemon's log line is what says it listens: look again after a poll's interval.
        thread::sleep(POLL_EVERY);
    }
}

pub(crate) async fn connect(addr: SocketAddr) -> LogServiceClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    LogServiceClient::new(channel)
}

pub(crate) fn watch(filter: &str) -> RequestMessage {
    RequestMessage { filter: filter.into() }
}

/// Compares `a` with the JSON alert `json`, key by key; a key this test does not know fails it, so a field
/// added to the JSON must be added to the stream too.
pub(crate) fn assert_same_alert(a: &Alert, json: &Value) {
    let fields = json.as_object().expect("an alert is a JSON object");
    let text = |key: &str| fields.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let int = |key: &str| fields.get(key).and_then(Value::as_i64).unwrap_or_default();
    for key in fields.keys() {
        let (got, want): (String, String) = match key.as_str() {
            "Timestamp" => (a.timestamp.to_string(), int(key).to_string()),
            "UpdatedTime" => (a.updated_time.clone(), text(key)),
            "ClusterName" => (a.cluster_name.clone(), text(key)),
            "HostName" => (a.host_name.clone(), text(key)),
            "NamespaceName" => (a.namespace_name.clone(), text(key)),
            "PodName" => (a.pod_name.clone(), text(key)),
            "Labels" => (a.labels.clone(), text(key)),
            "ContainerID" => (a.container_id.clone(), text(key)),
            "ContainerName" => (a.container_name.clone(), text(key)),
            "ContainerImage" => (a.container_image.clone(), text(key)),
            "HostPPID" => (a.host_ppid.to_string(), int(key).to_string()),
            "HostPID" => (a.host_pid.to_string(), int(key).to_string()),
            "PPID" => (a.ppid.to_string(), int(key).to_string()),
            "PID" => (a.pid.to_string(), int(key).to_string()),
            "UID" => (a.uid.to_string(), int(key).to_string()),
            "ParentProcessName" => (a.parent_process_name.clone(), text(key)),
            "ProcessName" => (a.process_name.clone(), text(key)),
            "PolicyName" => (a.policy_name.clone(), text(key)),
            "Severity" => (a.severity.clone(), text(key)),
            "Tags" => (a.tags.clone(), text(key)),
            "ATags" => (a.a_tags.join("|"), {
                let tags = fields[key].as_array().expect("ATags is an array");
                tags.iter().map(|t| t.as_str().unwrap()).collect::<Vec<_>>().join("|")
            }),
            "Message" => (a.message.clone(), text(key)),
            "Type" => (a.r#type.clone(), text(key)),
            "Source" => (a.source.clone(), text(key)),
            "Operation" => (a.operation.clone(), text(key)),
            "Resource" => (a.resource.clone(), text(key)),
            "Data" => (a.data.clone(), text(key)),
            "Enforcer" => (a.enforcer.clone(), text(key)),
            "Action" => (a.action.clone(), text(key)),
            "Result" => (a.result.clone(), text(key)),
            "Cwd" => (a.cwd.clone(), text(key)),
            "Owner" => {
                let owner = a.owner.clone().unwrap_or_default();
                let part = |k: &str| fields[key].get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                (
                    format!("{}/{}/{}", owner.r#ref, owner.name, owner.namespace),
                    format!("{}/{}/{}", part("Ref"), part("Name"), part("Namespace")),
                )
            }
            other => panic!("the JSON alert has {other}, which this test does not compare: {json}"),
        };
        assert_eq!(got, want, "field {key}: gRPC {a:?}\nJSON {json}");
    }
    // Keys the JSON omits because they are empty are empty in the message too.
    for (key, empty) in [
        ("NamespaceName", a.namespace_name.is_empty()),
        ("PodName", a.pod_name.is_empty()),
        ("ContainerID", a.container_id.is_empty()),
    ] {
        assert!(fields.contains_key(key) || empty, "{key} is empty in the JSON but not in {a:?}");
    }
}

#[test]
fn a_blocked_exec_arrives_on_watch_alerts_with_every_field_of_its_json_line() {
    let mut env = privileged!(Layout::Tmpfs);
    let addr = start_with_grpc(&mut env, &DaemonOpts::enforce());
    let payload = env.fs.join("payload");
    env.put_elf(&payload);
    let cwd = env.out.clone();

    let rt = runtime();
    let mut alerts = rt.block_on(async {
        let mut client = connect(addr).await;
        client.watch_alerts(watch("policy")).await.unwrap().into_inner()
    });
    // The exec runs on another thread while this one waits on the stream: the alert's arrival is timed as
    // it comes, not after the shell has gone.
    let (e, received, received_at) = thread::scope(|scope| {
        let exec = scope.spawn(|| env.bash_exec(&payload, &cwd));
        let received = rt.block_on(async { tokio::time::timeout(WAIT, alerts.message()).await });
        let received_at = std::time::SystemTime::now();
        (exec.join().unwrap(), received, received_at)
    });
    e.assert_denied_bash("ELF in a protected dir");
    let alert = received.expect("no alert on WatchAlerts").unwrap().expect("the stream ended");

    let json = env.expect_alerts(1);
    assert_exec_alert(&json[0], &Expect::block(&payload, &e, &cwd));
    assert_same_alert(&alert, &json[0]);
    assert_eq!(alert.event_data.get("Fanotify").map(String::as_str), Some("FAN_OPEN_EXEC_PERM"));
    // UpdatedTime is when the daemon decided, to the microsecond.
    let micros: u64 = alert.updated_time.get(20..26).and_then(|m| m.parse().ok()).unwrap();
    let decided = std::time::UNIX_EPOCH + Duration::from_secs(alert.timestamp as u64) + Duration::from_micros(micros);
    let since_decision = received_at.duration_since(decided).unwrap_or_default();
    eprintln!("gRPC alert received {since_decision:?} after the decision (its UpdatedTime)");
}

#[test]
fn health_check_echoes_the_nonce_and_the_filters_behave_as_kubearmor_s() {
    let mut env = privileged!(Layout::Tmpfs);
    let addr = start_with_grpc(&mut env, &DaemonOpts::enforce());
    let rt = runtime();
    rt.block_on(async {
        let mut client = connect(addr).await;
        for nonce in [0, 12345, -7] {
            let reply = client.health_check(NonceMessage { nonce }).await.unwrap().into_inner();
            assert_eq!(reply.retval, nonce);
        }
        // WatchAlerts streams nothing for `system` (KubeArmor's logs filter): the stream ends at once.
        let mut ended = client.watch_alerts(watch("system")).await.unwrap().into_inner();
        assert!(tokio::time::timeout(WAIT, ended.message()).await.unwrap().unwrap().is_none());
        // WatchLogs for `system` stays open and carries nothing.
        let mut logs = client.watch_logs(watch("system")).await.unwrap().into_inner();
        assert!(tokio::time::timeout(Duration::from_millis(300), logs.message()).await.is_err());
    });
}

#[test]
fn an_address_in_use_stops_the_daemon_at_start_naming_it() {
    let env = privileged!(Layout::Tmpfs);
    let cfg = env.write_config(&DaemonOpts::enforce(), &dir_policy("Block", &env.fs, true));
    env.check(&cfg);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = env.run_in_ns(&[bin().to_str().unwrap(), "run", "--config", cfg.to_str().unwrap(), "--grpc", &addr]);
    assert_eq!(o.code(), Some(1), "noexecd run with its gRPC address in use:\n{o}");
    assert!(o.stderr.contains(&format!("cannot serve KubeArmor's gRPC LogService on {addr}")), "{o}");
}

#[test]
fn a_reader_that_never_reads_is_cut_off_and_counted_and_holds_nothing_back() {
    let mut env = privileged!(Layout::Tmpfs);
    let opts = DaemonOpts { max_alerts_per_sec: 1_000_000, ..DaemonOpts::enforce() };
    let addr = start_with_grpc(&mut env, &opts);
    let payload = env.fs.join("payload");
    env.put_elf(&payload);

    // One runtime on its own thread drives both connections: the fast reader reads everything, the slow one
    // subscribes (on a connection with the smallest HTTP/2 windows) and never reads.
    let fast_count = Arc::new(AtomicU64::new(0));
    let (subscribed_tx, subscribed_rx) = std::sync::mpsc::channel();
    let (read_slow_tx, read_slow_rx) = tokio::sync::oneshot::channel::<()>();
    let client = {
        let fast_count = fast_count.clone();
        thread::spawn(move || {
            runtime().block_on(async move {
                let slow_channel = Endpoint::from_shared(format!("http://{addr}"))
                    .unwrap()
                    .initial_stream_window_size(65_535)
                    .initial_connection_window_size(65_535)
                    .connect()
                    .await
                    .unwrap();
                let mut slow =
                    LogServiceClient::new(slow_channel).watch_alerts(watch("all")).await.unwrap().into_inner();
                let mut fast = connect(addr).await.watch_alerts(watch("policy")).await.unwrap().into_inner();
                subscribed_tx.send(()).unwrap();
                let reader = tokio::spawn(async move {
                    while let Ok(Some(_)) = fast.message().await {
                        fast_count.fetch_add(1, Ordering::Relaxed);
                    }
                });
                read_slow_rx.await.unwrap();
                // Now read the slow stream: what was buffered, then the reason it ended.
                let mut buffered = 0u64;
                let status = loop {
                    match tokio::time::timeout(WAIT, slow.message()).await {
                        Ok(Ok(Some(_))) => buffered += 1,
                        Ok(Ok(None)) => panic!("the slow stream ended without a status after {buffered}"),
                        Ok(Err(status)) => break status,
                        Err(_) => panic!("the slow stream neither ended nor carried anything after {buffered}"),
                    }
                };
                reader.abort();
                (buffered, status)
            })
        })
    };
    subscribed_rx.recv_timeout(WAIT).expect("the readers subscribed");

    let mut attempts = 0u64;
    let cut_off = loop {
        let batch = 500;
        env.sh(&format!(
            "i=0; while [ $i -lt {batch} ]; do {} 2>/dev/null && exit 9; i=$((i+1)); done",
            sh_quote(&payload)
        ));
        attempts += batch;
        let stderr = env.daemon_stderr();
        if stderr.contains("grpc_readers_dropped=1") {
            break stderr;
        }
        assert!(attempts < 20_000, "{attempts} alerts and the reader that never reads was not cut off:\n{stderr}");
    };
    assert!(!cut_off.contains("grpc_readers_dropped=2"), "only the slow reader is cut off:\n{cut_off}");

    // Every attempt was denied at once and written; the fast reader got every one of them.
    let written = env.expect_alerts(attempts as usize);
    assert!(written.iter().all(|a| a["Action"] == "Block"));
    wait_until(format_args!("the fast reader getting all {attempts} alerts"), WAIT, || {
        (fast_count.load(Ordering::Relaxed) >= attempts).then_some(())
    });
    read_slow_tx.send(()).unwrap();
    let (buffered, status) = client.join().unwrap();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(buffered < attempts, "the slow reader got {buffered} of {attempts}");
    eprintln!("slow reader cut off after {attempts} blocked execs; it had {buffered} buffered");
    assert!(env.daemon().try_wait().is_none(), "daemon died:\n{}", env.daemon_stderr());
}
