//! Alerts: reading the alert log (complete JSON lines only), waiting for a count (then for the daemon to
//! have written every alert its decisions raised), and checking every
//! field of an exec alert against what the test expects (`Expect`).

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{
    CLUSTER_NAME, EPERM_TEXT, Env, Exec, HOST_NAME, POLICY_MESSAGE, POLICY_NAME, poll_until, real_exe, trim_slash,
};

/// How long to poll the alert log for an expected alert.
pub const ALERT_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------------------
// Reading the alert log

impl Env {
    /// Every alert in `path` so far (each line must be one JSON object).
    pub fn read_alerts_at(path: &Path) -> Vec<Value> {
        let Ok(bytes) = fs::read(path) else {
            return Vec::new();
        };
        let text = String::from_utf8(bytes).expect("the alert log is UTF-8");
        // A line still being written has no newline yet: only complete lines count.
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("alert line is not JSON ({e}): {l}"));
                assert!(v.is_object(), "alert line is not a JSON object: {l}");
                v
            })
            .collect()
    }

    pub fn alerts(&self) -> Vec<Value> {
        Self::read_alerts_at(&self.alert_log())
    }

    /// Waits until `path` holds at least `n` alerts (failing the test after [`ALERT_TIMEOUT`]), then until
    /// the daemon's alert writer has caught up with every decision so far ([`Env::settle`]), and returns them
    /// all.
    pub fn wait_alerts_at(&self, path: &Path, n: usize) -> Vec<Value> {
        let seen = poll_until(ALERT_TIMEOUT, || (Self::read_alerts_at(path).len() >= n).then_some(()));
        if seen.is_some() {
            self.settle();
        }
        let a = Self::read_alerts_at(path);
        assert!(
            a.len() >= n,
            "{}: expected at least {n} alert(s) in {} within {ALERT_TIMEOUT:?}, got {}:\n{}\n--- daemon stderr ---\n{}",
            self.name,
            path.display(),
            a.len(),
            a.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n"),
            self.daemon_stderr()
        );
        a
    }

    pub fn wait_alerts(&self, n: usize) -> Vec<Value> {
        self.wait_alerts_at(&self.alert_log(), n)
    }

    /// [`Env::wait_alerts_at`], then asserts that `path` holds exactly `n`: an extra alert the decisions so
    /// far raised would be there by then.
    pub fn expect_alerts_at(&self, path: &Path, n: usize) -> Vec<Value> {
        let a = self.wait_alerts_at(path, n);
        assert_eq!(
            a.len(),
            n,
            "{}: expected exactly {n} alert(s) in {}, got {}:\n{}\n--- daemon stderr ---\n{}",
            self.name,
            path.display(),
            a.len(),
            a.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n"),
            self.daemon_stderr()
        );
        a
    }

    pub fn expect_alerts(&self, n: usize) -> Vec<Value> {
        self.expect_alerts_at(&self.alert_log(), n)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Alert checks

/// What an exec alert must say.
#[derive(Debug, Clone)]
pub struct Expect {
    pub policy: String,
    pub severity: String,
    pub tags: Vec<String>,
    pub message: String,
    /// "Block" or "Audit".
    pub action: String,
    /// The executed file (ProcessName and Resource).
    pub resource: String,
    /// The executable that called exec (Source).
    pub source: String,
    pub pid: Option<i64>,
    pub ppid: Option<i64>,
    pub uid: i64,
    pub cwd: Option<String>,
}

impl Expect {
    /// The default test policy (name, severity 1, tags CIS/CIS_Linux, message), Block, by bash.
    pub fn block(resource: &Path, exec: &Exec, cwd: &Path) -> Expect {
        Expect {
            policy: POLICY_NAME.into(),
            severity: "1".into(),
            tags: vec!["CIS".into(), "CIS_Linux".into()],
            message: POLICY_MESSAGE.into(),
            action: "Block".into(),
            resource: resource.to_str().expect("UTF-8 path").to_owned(),
            source: real_exe("bash"),
            pid: Some(exec.pid),
            ppid: Some(exec.ppid),
            uid: 0,
            cwd: Some(cwd.to_str().unwrap().to_owned()),
        }
    }

    pub fn audit(resource: &Path, exec: &Exec, cwd: &Path) -> Expect {
        Expect { action: "Audit".into(), ..Expect::block(resource, exec, cwd) }
    }
}

pub fn get_str<'a>(a: &'a Value, key: &str) -> &'a str {
    match a.get(key) {
        Some(Value::String(s)) => s,
        other => panic!("alert field {key} must be a string, got {other:?} in {a}"),
    }
}

pub fn get_int(a: &Value, key: &str) -> i64 {
    match a.get(key) {
        Some(Value::Number(n)) if n.is_i64() => n.as_i64().unwrap(),
        other => panic!("alert field {key} must be an integer, got {other:?} in {a}"),
    }
}

/// Checks every field of an exec alert: values and JSON types.
pub fn assert_exec_alert(a: &Value, e: &Expect) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let ts = get_int(a, "Timestamp");
    assert!((now - 120..=now + 5).contains(&ts), "Timestamp {ts} is not now ({now}): {a}");
    let updated = get_str(a, "UpdatedTime");
    let parsed = parse_updated_time(updated)
        .unwrap_or_else(|| panic!("UpdatedTime {updated:?} is not in the 2006-01-02T15:04:05.000000Z layout: {a}"));
    assert!((parsed - ts).abs() <= 1, "UpdatedTime {updated} disagrees with Timestamp {ts}: {a}");

    assert_eq!(get_str(a, "ClusterName"), CLUSTER_NAME, "ClusterName: {a}");
    assert_eq!(get_str(a, "HostName"), HOST_NAME, "HostName: {a}");
    let pid = get_int(a, "PID");
    let ppid = get_int(a, "PPID");
    assert_eq!(get_int(a, "HostPID"), pid, "HostPID == PID for a host event: {a}");
    assert_eq!(get_int(a, "HostPPID"), ppid, "HostPPID == PPID for a host event: {a}");
    if let Some(p) = e.pid {
        assert_eq!(pid, p, "PID = the process that called exec: {a}");
    }
    if let Some(p) = e.ppid {
        assert_eq!(ppid, p, "PPID = its parent: {a}");
    }
    assert!(pid > 0 && ppid > 0, "PID/PPID filled: {a}");
    assert_eq!(get_int(a, "UID"), e.uid, "UID: {a}");
    assert_eq!(get_str(a, "Source"), e.source, "Source = the executable that called exec: {a}");
    // The caller's parent's program (`timeout`, or whatever a test's prefix puts between it and the shell).
    let parent = get_str(a, "ParentProcessName");
    assert!(parent.starts_with('/'), "ParentProcessName = the parent's executable: {a}");
    assert_eq!(get_str(a, "ProcessName"), e.resource, "ProcessName = the executed file: {a}");
    assert_eq!(get_str(a, "Resource"), e.resource, "Resource = the executed file: {a}");
    assert_eq!(get_str(a, "PolicyName"), e.policy, "PolicyName: {a}");
    assert_eq!(get_str(a, "Severity"), e.severity, "Severity is a string: {a}");
    assert_eq!(get_str(a, "Tags"), e.tags.join(","), "Tags is comma-joined: {a}");
    let atags: Vec<&str> = match a.get("ATags") {
        Some(Value::Array(v)) => v.iter().map(|t| t.as_str().expect("ATags holds strings")).collect(),
        other => panic!("ATags must be an array, got {other:?}: {a}"),
    };
    assert_eq!(atags, e.tags.iter().map(String::as_str).collect::<Vec<_>>(), "ATags: {a}");
    assert_eq!(get_str(a, "Message"), e.message, "Message: {a}");
    assert_eq!(get_str(a, "Type"), "MatchedHostPolicy", "Type: {a}");
    assert_eq!(get_str(a, "Operation"), "Process", "Operation: {a}");
    assert_eq!(get_str(a, "Enforcer"), "fanotify", "Enforcer: {a}");
    assert_eq!(get_str(a, "Data"), "fanotify=FAN_OPEN_EXEC_PERM", "Data: {a}");
    assert_eq!(get_str(a, "Action"), e.action, "Action: {a}");
    let result = if e.action == "Block" { EPERM_TEXT } else { "Passed" };
    assert_eq!(get_str(a, "Result"), result, "Result: {a}");
    if let Some(cwd) = &e.cwd {
        let got = get_str(a, "Cwd");
        assert!(trim_slash(got) == trim_slash(cwd), "Cwd = the caller's working directory {cwd:?}, got {got:?}: {a}");
    }
}

/// Parses "2006-01-02T15:04:05.000000Z" into Unix seconds.
pub fn parse_updated_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 27 {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) { part.parse().ok() } else { None }
    };
    let seps = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (26, b'Z')];
    if seps.iter().any(|&(i, c)| b.get(i) != Some(&c)) {
        return None;
    }
    let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (h, mi, se) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    digits(20..26)?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}
