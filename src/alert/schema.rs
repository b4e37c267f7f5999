//! Alerts in KubeArmor's schema: what `karmor logs --json` prints, one object per line, so
//! the tools that read KubeArmor alerts read ours.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::containers::{Container, ContainerInfo, Owner, alert_labels};
use crate::host::procfs::{NsPid, ProcessInfo};
use crate::policy::matcher::{Outcome, RuleMeta};

/// What the decision thread hands over for an exec that was blocked or audited.
#[derive(Debug, Clone)]
pub struct ExecAlert {
    pub when: SystemTime,
    pub outcome: Outcome,
    pub rule: Arc<RuleMeta>,
    /// The executed file's canonical path, as bytes.
    pub resource: Vec<u8>,
    pub pid: i32,
    pub process: ProcessInfo,
    /// The fanotify event that was answered (`FAN_OPEN_EXEC_PERM`).
    pub hook: &'static str,
    /// The caller's container as the daemon knew it when deciding (labels and all), when it did.
    pub container: Option<Container>,
    /// For an open a file rule decided: its `Data` ([`open_data`]). The alert is then KubeArmor's file
    /// event: `Operation` File, `ProcessName` the opener.
    pub open: Option<String>,
}

/// An open that a file rule blocked or audited.
#[derive(Debug, Clone)]
pub struct FileAlert {
    pub when: SystemTime,
    pub outcome: Outcome,
    pub rule: Arc<RuleMeta>,
    /// The opened file's canonical path, as bytes.
    pub resource: Vec<u8>,
    /// The open's system call and flags as KubeArmor writes them ([`open_data`]).
    pub data: String,
    pub pid: i32,
    /// The opener.
    pub process: ProcessInfo,
}

/// An open's open flags as KubeArmor's monitor writes them (`O_WRONLY|O_CREAT`): the access mode first,
/// then each flag in KubeArmor's order.
pub fn open_flags(flags: u32) -> String {
    let mut out = String::from(if flags & 0o1 != 0 {
        "O_WRONLY"
    } else if flags & 0o2 != 0 {
        "O_RDWR"
    } else {
        "O_RDONLY"
    });
    const NAMED: [(u32, &str); 16] = [
        (0o100, "O_CREAT"),
        (0o200, "O_EXCL"),
        (0o400, "O_NOCTTY"),
        (0o1000, "O_TRUNC"),
        (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"),
        (0o4010000, "O_SYNC"),
        (0o20000, "O_ASYNC"),
        (0o100000, "O_LARGEFILE"),
        (0o200000, "O_DIRECTORY"),
        (0o400000, "O_NOFOLLOW"),
        (0o2000000, "O_CLOEXEC"),
        (0o40000, "O_DIRECT"),
        (0o1000000, "O_NOATIME"),
        (0o10000000, "O_PATH"),
        (0o20000000, "O_TMPFILE"),
    ];
    for (bit, name) in NAMED {
        if flags & bit == bit {
            out.push('|');
            out.push_str(name);
        }
    }
    out
}

/// An alert's `Data` for an open: `syscall=SYS_OPENAT fd=-100 flags=O_RDONLY` (`fd` is openat's directory
/// fd, -100 for `AT_FDCWD`), or `syscall=SYS_OPEN flags=...`, as KubeArmor's monitor writes them.
pub fn open_data(syscall: &str, dir_fd: Option<i32>, flags: u32) -> String {
    match dir_fd {
        Some(fd) => format!("syscall={syscall} fd={fd} flags={}", open_flags(flags)),
        None => format!("syscall={syscall} flags={}", open_flags(flags)),
    }
}

/// Where the alert comes from: the host name and cluster name of `[daemon]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub cluster_name: String,
    pub host_name: String,
}

impl Origin {
    /// `cluster_name` and `host_name` of `[daemon]`; the host name defaults to this host's.
    pub fn for_config(config: &crate::policy::Config) -> Self {
        let host_name = config.daemon.host_name.clone().unwrap_or_else(|| {
            nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
        });
        Self { cluster_name: config.daemon.cluster_name.clone(), host_name }
    }
}

/// One alert line. Field order and names follow KubeArmor's; empty strings are omitted as KubeArmor does
/// for host alerts, the process ids and UID are always present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Alert {
    pub timestamp: i64,
    pub updated_time: String,
    pub cluster_name: String,
    pub host_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace_name: String,
    /// The pod's controller (Kubernetes containers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<AlertOwner>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pod_name: String,
    /// The pod's own labels, `k=v,...` sorted: without the kubelet's `io.kubernetes.*` and the labels that
    /// change with every rollout.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub labels: String,
    #[serde(rename = "ContainerID", skip_serializing_if = "String::is_empty")]
    pub container_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub container_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub container_image: String,
    #[serde(rename = "HostPPID")]
    pub host_ppid: i32,
    #[serde(rename = "HostPID")]
    pub host_pid: i32,
    #[serde(rename = "PPID")]
    pub ppid: i32,
    #[serde(rename = "PID")]
    pub pid: i32,
    #[serde(rename = "UID")]
    pub uid: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub parent_process_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub process_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub policy_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub severity: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tags: String,
    #[serde(rename = "ATags", skip_serializing_if = "Vec::is_empty")]
    pub atags: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    pub operation: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub data: String,
    pub enforcer: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub action: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub result: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cwd: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_alerts_per_sec: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropping_alerts_interval: Option<u32>,
}

/// KubeArmor's `PodOwner`: `Ref` is the controller's kind, left out for the pod itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AlertOwner {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub r#ref: String,
    pub name: String,
    pub namespace: String,
}

impl From<&Owner> for AlertOwner {
    fn from(o: &Owner) -> Self {
        AlertOwner { r#ref: o.kind.to_owned(), name: o.name.clone(), namespace: o.namespace.clone() }
    }
}

pub const ENFORCER: &str = "fanotify";
/// What the caller of a denied exec sees: execve fails with EPERM.
pub const RESULT_BLOCKED: &str = "Operation not permitted";
pub const RESULT_PASSED: &str = "Passed";

impl Alert {
    pub fn for_exec(a: &ExecAlert, origin: &Origin) -> Self {
        let (secs, updated_time) = timestamps(a.when);
        let (action, result) = match a.outcome {
            Outcome::Block => ("Block", RESULT_BLOCKED),
            Outcome::Audit | Outcome::Allow => ("Audit", RESULT_PASSED),
        };
        let source = display_bytes(&a.process.exe);
        let resource = display_bytes(&a.resource);
        Alert {
            timestamp: secs,
            updated_time,
            cluster_name: origin.cluster_name.clone(),
            host_name: origin.host_name.clone(),
            namespace_name: String::new(),
            owner: None,
            pod_name: String::new(),
            labels: String::new(),
            container_id: String::new(),
            container_name: String::new(),
            container_image: String::new(),
            host_ppid: a.process.ppid,
            host_pid: a.pid,
            ppid: a.process.ppid,
            pid: a.pid,
            uid: a.process.uid,
            parent_process_name: display_bytes(&a.process.parent_exe),
            process_name: if a.open.is_some() { source.clone() } else { resource.clone() },
            policy_name: a.rule.policy.clone(),
            severity: a.rule.severity.to_string(),
            tags: a.rule.tags.join(","),
            atags: a.rule.tags.clone(),
            message: a.rule.message.clone(),
            kind: "MatchedHostPolicy".to_owned(),
            source,
            operation: if a.open.is_some() { "File" } else { "Process" }.to_owned(),
            resource,
            data: a.open.clone().unwrap_or_else(|| format!("fanotify={}", a.hook)),
            enforcer: ENFORCER.to_owned(),
            action: action.to_owned(),
            result: result.to_owned(),
            cwd: display_bytes(&a.process.cwd),
            max_alerts_per_sec: None,
            dropping_alerts_interval: None,
        }
    }

    /// KubeArmor's alert for a file event: `Operation` File, `Resource` the file, `Data` the open's system
    /// call and flags, `Source` and `ProcessName` the opener.
    pub fn for_file(a: &FileAlert, origin: &Origin) -> Self {
        let exec = ExecAlert {
            when: a.when,
            outcome: a.outcome,
            rule: Arc::clone(&a.rule),
            resource: a.resource.clone(),
            pid: a.pid,
            process: a.process.clone(),
            hook: "FAN_OPEN_PERM",
            container: None,
            open: Some(a.data.clone()),
        };
        Self::for_exec(&exec, origin)
    }

    /// The alert of an exec made inside a container: KubeArmor's container form, `Type` "MatchedPolicy",
    /// with what the runtime's files told about the container, and `PID` and `PPID` as the container sees
    /// them (`HostPID` and `HostPPID` stay the host's; `PPID` is the parent's number in its own pid namespace, the
    /// host's for the runtime's shim, as KubeArmor writes it).
    pub fn in_container(mut self, c: &ContainerInfo, ns_pid: Option<NsPid>) -> Self {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        self.kind = "MatchedPolicy".to_owned();
        self.container_id = c.id.clone();
        self.container_name = text(&c.name);
        self.container_image = text(&c.image);
        self.namespace_name = text(&c.namespace);
        self.pod_name = text(&c.pod);
        self.owner = c.owner.as_ref().map(AlertOwner::from);
        self.labels = alert_labels(&c.labels);
        if let Some(ns) = ns_pid {
            self.pid = ns.pid;
            self.ppid = ns.ppid;
        }
        self
    }

    /// KubeArmor's throttling notice: written once per interval when alerts start being dropped.
    pub fn threshold(when: SystemTime, origin: &Origin, max_per_sec: u32) -> Self {
        let (secs, updated_time) = timestamps(when);
        Alert {
            timestamp: secs,
            updated_time,
            cluster_name: origin.cluster_name.clone(),
            host_name: origin.host_name.clone(),
            namespace_name: String::new(),
            owner: None,
            pod_name: String::new(),
            labels: String::new(),
            container_id: String::new(),
            container_name: String::new(),
            container_image: String::new(),
            host_ppid: 0,
            host_pid: 0,
            ppid: 0,
            pid: 0,
            uid: 0,
            parent_process_name: String::new(),
            process_name: String::new(),
            policy_name: String::new(),
            severity: String::new(),
            tags: String::new(),
            atags: Vec::new(),
            message: format!(
                "Alert threshold of {max_per_sec}/s crossed: further alerts in this second are dropped and counted"
            ),
            kind: "SystemEvent".to_owned(),
            source: String::new(),
            operation: "AlertThreshold".to_owned(),
            resource: String::new(),
            data: String::new(),
            enforcer: ENFORCER.to_owned(),
            action: String::new(),
            result: String::new(),
            cwd: String::new(),
            max_alerts_per_sec: Some(max_per_sec),
            dropping_alerts_interval: Some(1),
        }
    }

    /// A notice about the daemon itself, such as the open guard reaching its directory cap.
    pub fn system_event(when: SystemTime, origin: &Origin, operation: &str, message: String) -> Self {
        let mut alert = Self::threshold(when, origin, 0);
        alert.operation = operation.to_owned();
        alert.message = message;
        alert.max_alerts_per_sec = None;
        alert.dropping_alerts_interval = None;
        alert
    }

    pub fn to_json_line(&self) -> String {
        // Serializing plain strings and integers cannot fail; an empty object would still be valid JSON.
        let mut line = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        line.push('\n');
        line
    }
}

/// A file name for JSON: UTF-8 as it is, any other byte as `\xNN`, so a hostile name survives intact and
/// readable.
pub fn display_bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        out.push_str(chunk.valid());
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// `Timestamp` (Unix seconds) and `UpdatedTime` (`2006-01-02T15:04:05.000000Z`, UTC).
pub fn timestamps(when: SystemTime) -> (i64, String) {
    let d = when.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let (y, m, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let text = format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    );
    (secs, text)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn open_flags_read_as_kubearmor_writes_them() {
        assert_eq!(open_flags(0), "O_RDONLY");
        assert_eq!(open_flags(0o1 | 0o100), "O_WRONLY|O_CREAT");
        assert_eq!(open_flags(0o2 | 0o1000 | 0o2000000), "O_RDWR|O_TRUNC|O_CLOEXEC");
        assert_eq!(
            open_data("SYS_OPENAT", Some(-100), 0o1 | 0o100),
            "syscall=SYS_OPENAT fd=-100 flags=O_WRONLY|O_CREAT"
        );
        assert_eq!(open_data("SYS_OPEN", None, 0), "syscall=SYS_OPEN flags=O_RDONLY");
    }

    #[test]
    fn a_file_alert_names_the_opener_and_the_file() {
        let rule = Arc::new(RuleMeta {
            policy: "ksp-shadow".into(),
            action: crate::policy::matcher::Action::Block,
            severity: 7,
            tags: vec!["CIS".into()],
            message: "shadow".into(),
            origin: String::new(),
        });
        let a = FileAlert {
            when: UNIX_EPOCH,
            outcome: Outcome::Block,
            rule,
            resource: b"/etc/shadow".to_vec(),
            data: open_data("SYS_OPENAT", Some(-100), 0),
            pid: 42,
            process: ProcessInfo { exe: b"/usr/bin/cat".to_vec(), uid: 1000, ..ProcessInfo::default() },
        };
        let origin = Origin { cluster_name: "c".into(), host_name: "h".into() };
        let alert = Alert::for_file(&a, &origin);
        assert_eq!(
            (alert.operation.as_str(), alert.resource.as_str(), alert.process_name.as_str(), alert.source.as_str()),
            ("File", "/etc/shadow", "/usr/bin/cat", "/usr/bin/cat")
        );
        assert_eq!(alert.data, "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY");
        assert_eq!((alert.action.as_str(), alert.result.as_str()), ("Block", RESULT_BLOCKED));
        assert_eq!((alert.policy_name.as_str(), alert.severity.as_str(), alert.uid), ("ksp-shadow", "7", 1000));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn updated_time_layout() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(timestamps(t), (1_700_000_000, "2023-11-14T22:13:20.123456Z".to_owned()));
        assert_eq!(timestamps(UNIX_EPOCH).1, "1970-01-01T00:00:00.000000Z");
        // A leap day and the end of a century year.
        assert_eq!(timestamps(UNIX_EPOCH + Duration::from_secs(951_782_400)).1, "2000-02-29T00:00:00.000000Z");
        assert_eq!(timestamps(UNIX_EPOCH + Duration::from_secs(4_102_444_799)).1, "2099-12-31T23:59:59.000000Z");
    }

    #[test]
    fn hostile_names_keep_every_byte() {
        assert_eq!(display_bytes(b"/tmp/ok"), "/tmp/ok");
        assert_eq!(display_bytes(b"/tmp/\xff\xfe.sh"), "/tmp/\\xff\\xfe.sh");
        assert_eq!(display_bytes("/tmp/é".as_bytes()), "/tmp/é");
    }

    fn sample(outcome: Outcome) -> ExecAlert {
        ExecAlert {
            when: UNIX_EPOCH + Duration::from_micros(1_764_338_400_000_001),
            outcome,
            rule: Arc::new(RuleMeta {
                policy: "ksp-block-exec-inside-tmp".into(),
                action: crate::policy::matcher::Action::Block,
                severity: 1,
                tags: vec!["CIS".into(), "CIS_Linux".into(), "CIS-1.1.5".into(), "CIS-1.1.10".into()],
                message: "Alert! Execution attempted inside tmp folder".into(),
                origin: String::new(),
            }),
            resource: b"/tmp/payload".to_vec(),
            pid: 4242,
            process: ProcessInfo {
                exe: b"/usr/bin/bash".to_vec(),
                ppid: 4200,
                parent_exe: b"/usr/sbin/sshd".to_vec(),
                uid: 1000,
                cwd: b"/root".to_vec(),
                ..ProcessInfo::default()
            },
            hook: "FAN_OPEN_EXEC_PERM",
            container: None,
            open: None,
        }
    }

    fn origin() -> Origin {
        Origin { cluster_name: "default".into(), host_name: "web-01".into() }
    }

    #[test]
    fn block_alert_matches_golden_file() {
        let line = Alert::for_exec(&sample(Outcome::Block), &origin()).to_json_line();
        assert_eq!(line, include_str!("../../tests/golden/alert-block.json"));
    }

    #[test]
    fn audit_alert_matches_golden_file() {
        let line = Alert::for_exec(&sample(Outcome::Audit), &origin()).to_json_line();
        assert_eq!(line, include_str!("../../tests/golden/alert-audit.json"));
    }

    #[test]
    fn threshold_alert_matches_golden_file() {
        let line = Alert::threshold(UNIX_EPOCH + Duration::from_secs(1_764_338_400), &origin(), 100).to_json_line();
        assert_eq!(line, include_str!("../../tests/golden/alert-threshold.json"));
    }

    /// Compares `alert` with the pretty JSON of `tests/golden/<name>`, field by field, then as text (the
    /// field order is KubeArmor's). `NOEXECD_UPDATE_GOLDEN=1` writes the file instead.
    fn assert_golden(alert: &Alert, name: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
        let mut pretty = serde_json::to_string_pretty(alert).unwrap();
        pretty.push('\n');
        if std::env::var_os("NOEXECD_UPDATE_GOLDEN").is_some_and(|v| v == "1") {
            std::fs::write(&path, &pretty).unwrap();
            return;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let want: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
        let got: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&pretty).unwrap();
        for (field, value) in &want {
            assert_eq!(got.get(field), Some(value), "{name}: field {field}");
        }
        for field in got.keys() {
            assert!(want.contains_key(field), "{name}: field {field} is not in the golden file");
        }
        assert_eq!(pretty, text, "{name}: the fields in another order");
    }

    /// `bash` (host pid 4242, pid 7 in the container) runs `/tmp/payload` inside a container, started by the
    /// container's own shell (host pid 4200, pid 1 there).
    fn container_sample() -> (ExecAlert, ContainerInfo) {
        let mut a = sample(Outcome::Block);
        a.rule = Arc::new(RuleMeta { policy: "ksp-wordpress-block-process".into(), ..(*a.rule).clone() });
        a.process.ns_pid = Some(NsPid { pid: 7, ppid: 1 });
        a.process.cwd = b"/var/www/html".to_vec();
        a.process.parent_exe = b"/bin/sh".to_vec();
        // What the runtime's records hold for a pod of a Deployment: the pod's labels and the kubelet's.
        let labels = [
            ("app", "wordpress"),
            ("io.kubernetes.container.name", "wordpress"),
            ("io.kubernetes.pod.name", "wordpress-7c966b5d85-xvsrl"),
            ("io.kubernetes.pod.namespace", "wordpress-mysql"),
            ("io.kubernetes.pod.uid", "2f9c1d4e-7b1a-4c55-9d0e-4a1b2c3d4e5f"),
            ("pod-template-hash", "7c966b5d85"),
            ("tier", "frontend"),
        ];
        let labels: std::collections::BTreeMap<String, String> =
            labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let owner = Owner::of_pod("wordpress-7c966b5d85-xvsrl", "wordpress-mysql", &labels);
        let info = ContainerInfo {
            id: "3f4e5d6c7b8a99881122334455667788990011223344556677889900aabbccdd".into(),
            runtime: crate::containers::runtimes::containerd::CONTAINERD,
            name: Some("wordpress".into()),
            image: Some("docker.io/library/wordpress:4.8-apache".into()),
            labels,
            namespace: Some("wordpress-mysql".into()),
            pod: Some("wordpress-7c966b5d85-xvsrl".into()),
            owner: Some(owner),
        };
        (a, info)
    }

    #[test]
    fn host_exec_alert_matches_golden_file() {
        assert_golden(&Alert::for_exec(&sample(Outcome::Block), &origin()), "host-exec-alert.json");
    }

    #[test]
    fn container_exec_alert_matches_golden_file() {
        let (a, info) = container_sample();
        let alert = Alert::for_exec(&a, &origin()).in_container(&info, a.process.ns_pid);
        assert_golden(&alert, "container-exec-alert.json");
        assert_eq!(alert.labels, "app=wordpress,tier=frontend", "the pod's own labels");
        let owner = alert.owner.as_ref().map(|o| (o.r#ref.as_str(), o.name.as_str(), o.namespace.as_str()));
        assert_eq!(owner, Some(("Deployment", "wordpress", "wordpress-mysql")));
        assert_eq!(alert.parent_process_name, "/bin/sh", "the caller's parent");
        assert_eq!(alert.source, "/usr/bin/bash", "the caller");
        assert_eq!((alert.pid, alert.ppid, alert.host_pid, alert.host_ppid), (7, 1, 4242, 4200));
    }

    #[test]
    fn a_parent_outside_the_container_is_ppid_0() {
        let (mut a, info) = container_sample();
        // Started by `exec` through the runtime: the parent is the shim on the host.
        a.process.ns_pid = Some(NsPid { pid: 7, ppid: 0 });
        let alert = Alert::for_exec(&a, &origin()).in_container(&info, a.process.ns_pid);
        assert_eq!((alert.pid, alert.ppid, alert.host_pid, alert.host_ppid), (7, 0, 4242, 4200));
        // Its pid namespace unread (the process was gone): the host's numbers, as for a host alert.
        let alert = Alert::for_exec(&a, &origin()).in_container(&info, None);
        assert_eq!((alert.pid, alert.ppid, alert.host_pid, alert.host_ppid), (4242, 4200, 4242, 4200));
    }

    #[test]
    fn exited_process_leaves_fields_empty_but_keeps_ids() {
        let mut a = sample(Outcome::Block);
        a.process = ProcessInfo { uid: -1, ..ProcessInfo::default() };
        let v: serde_json::Value = serde_json::from_str(&Alert::for_exec(&a, &origin()).to_json_line()).unwrap();
        assert!(v.get("Source").is_none());
        assert!(v.get("ParentProcessName").is_none());
        assert!(v.get("Cwd").is_none());
        assert_eq!(v["PPID"], 0);
        assert_eq!(v["UID"], -1);
        assert_eq!(v["Resource"], "/tmp/payload");
    }
}
