//! `noexecd logs`: alerts from the daemon's socket, or from the alert file when the daemon is not running;
//! raw JSON lines (`--json`) or the readable form `karmor logs` prints.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::error::{Error, Result};

/// What to print and from when.
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    pub json: bool,
    pub follow: bool,
    /// Only alerts with `Timestamp` at or after this (Unix seconds).
    pub since: Option<i64>,
}

/// Parses `--since`: a duration back from now (`30s`, `10m`, `2h`, `1d`), Unix seconds, or a UTC time
/// `YYYY-MM-DDTHH:MM:SS[Z]`.
pub fn parse_since(text: &str, now: SystemTime) -> Option<i64> {
    let now = i64::try_from(now.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()?;
    let t = text.trim();
    if let Some(unit) = t.chars().last().filter(|c| c.is_ascii_alphabetic())
        && t.len() > 1
        && t.contains(|c: char| c.is_ascii_digit())
        && !t.contains('-')
    {
        let n: i64 = t.get(..t.len() - 1)?.parse().ok()?;
        let secs = match unit {
            's' => n,
            'm' => n * 60,
            'h' => n * 3600,
            'd' => n * 86_400,
            _ => return None,
        };
        return Some(now - secs);
    }
    if let Ok(secs) = t.parse::<i64>() {
        return Some(secs);
    }
    parse_utc(t.trim_end_matches('Z'))
}

/// `YYYY-MM-DDTHH:MM:SS` (or with a space) as Unix seconds.
fn parse_utc(t: &str) -> Option<i64> {
    let (date, time) = t.split_once(['T', ' ']).unwrap_or((t, "00:00:00"));
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut tm = time.split(':').map(|p| p.split('.').next().and_then(|s| s.parse::<i64>().ok()));
    let (hh, mm, ss) = (tm.next()??, tm.next().flatten().unwrap_or(0), tm.next().flatten().unwrap_or(0));
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// The readable form, as `karmor logs` prints an alert.
pub fn render_text(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    let obj = v.as_object()?;
    let when =
        obj.get("UpdatedTime").and_then(Value::as_str).unwrap_or("").replace('T', " ").trim_end_matches('Z').to_owned();
    let mut out = format!("== Alert / {when} ==\n");
    for (key, value) in obj {
        if key == "Timestamp" || key == "UpdatedTime" {
            continue;
        }
        let shown = match value {
            Value::String(s) if s.is_empty() => continue,
            Value::String(s) => s.clone(),
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
            other => other.to_string(),
        };
        out.push_str(&format!("{key}: {shown}\n"));
    }
    Some(out)
}

fn timestamp(line: &str) -> Option<i64> {
    serde_json::from_str::<Value>(line).ok()?.get("Timestamp")?.as_i64()
}

/// Prints one alert line if it passes the filter. Returns false when stdout is gone (a closed pipe).
fn emit(line: &str, opts: &LogsOptions, out: &mut dyn Write) -> bool {
    let line = line.trim_end();
    if line.is_empty() {
        return true;
    }
    if let Some(since) = opts.since
        && timestamp(line).is_none_or(|t| t < since)
    {
        return true;
    }
    let text = if opts.json { Some(format!("{line}\n")) } else { render_text(line).map(|t| t + "\n") };
    match text {
        Some(t) => out.write_all(t.as_bytes()).and_then(|()| out.flush()).is_ok(),
        None => true,
    }
}

/// Runs `noexecd logs`.
/// The alert log and the live socket the configuration at `config_path` names. Loaded as the daemon loads
/// it, so that a drop-in that does not load (which the daemon leaves out) does not keep its alerts from
/// being read.
pub fn sources(config_path: &Path) -> Result<(PathBuf, Option<PathBuf>)> {
    let config = crate::policy::load_each(config_path, &Path::to_path_buf, None)?;
    Ok((config.daemon.alert_log, config.daemon.alert_socket))
}

pub fn run(alert_log: &Path, socket: Option<&Path>, opts: &LogsOptions, out: &mut dyn Write) -> Result<()> {
    let read_err = |source| Error::ReadAlerts { path: alert_log.to_owned(), source };
    if !opts.follow || opts.since.is_some() {
        match std::fs::File::open(alert_log) {
            Ok(f) => {
                for line in BufReader::new(f).lines() {
                    if !emit(&line.map_err(read_err)?, opts, out) {
                        return Ok(());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && opts.follow => {}
            Err(e) => return Err(read_err(e)),
        }
    }
    if !opts.follow {
        return Ok(());
    }
    if let Some(stream) = socket.and_then(|p| UnixStream::connect(p).ok()) {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return Ok(()) };
            if !emit(&line, opts, out) {
                return Ok(());
            }
        }
        return Ok(());
    }
    follow_file(alert_log, opts, out)
}

/// `tail -F` of the alert file: for when the daemon is not running (or its socket is not readable).
fn follow_file(path: &Path, opts: &LogsOptions, out: &mut dyn Write) -> Result<()> {
    let mut offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut pending = String::new();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let Ok(mut f) = std::fs::File::open(path) else { continue };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < offset {
            // Rotated or truncated: start from the top of the new file.
            offset = 0;
            pending.clear();
        }
        if len == offset || f.seek(SeekFrom::Start(offset)).is_err() {
            continue;
        }
        let mut chunk = String::new();
        let read =
            f.read_to_string(&mut chunk).map_err(|source| Error::ReadAlerts { path: path.to_owned(), source })?;
        offset += read as u64;
        pending.push_str(&chunk);
        while let Some(i) = pending.find('\n') {
            let line: String = pending.drain(..=i).collect();
            if !emit(&line, opts, out) {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = include_str!("../../tests/golden/alert-block.json");

    #[test]
    fn text_form_lists_non_empty_fields_under_a_header() {
        let t = render_text(BLOCK).unwrap();
        assert!(t.starts_with("== Alert / 2025-11-28 14:00:00.000001 ==\n"), "{t}");
        assert!(t.contains("\nPolicyName: ksp-block-exec-inside-tmp\n"));
        assert!(t.contains("\nAction: Block\nResult: Operation not permitted\n"));
        assert!(t.contains("\nATags: CIS,CIS_Linux,CIS-1.1.5,CIS-1.1.10\n"));
        assert!(t.contains("\nPID: 4242\n"));
        assert!(!t.contains("Timestamp"));
        assert!(render_text("not json").is_none());
    }

    #[test]
    fn text_form_shows_the_container_fields() {
        let line = r#"{"Timestamp":1,"UpdatedTime":"2026-12-01T08:00:00.000000Z","NamespaceName":"wordpress-mysql","PodName":"wp-1","Labels":"app=wordpress","ContainerID":"548176888fca6bb6d66633794f3d5f9d54930a9d9f43d4f05c11de821c758c0f","ContainerName":"wordpress","ContainerImage":"localhost/wp:1@sha256:00","HostPID":30490,"PID":193,"Type":"MatchedPolicy","Resource":"/var/tmp/xvzf"}"#;
        let t = render_text(line).unwrap();
        for want in [
            "\nNamespaceName: wordpress-mysql\n",
            "\nPodName: wp-1\n",
            "\nLabels: app=wordpress\n",
            "\nContainerName: wordpress\n",
            "\nContainerImage: localhost/wp:1@sha256:00\n",
            "\nType: MatchedPolicy\n",
            "\nResource: /var/tmp/xvzf\n",
        ] {
            assert!(t.contains(want), "{want:?} in\n{t}");
        }
    }

    #[test]
    fn since_accepts_durations_seconds_and_utc_times() {
        let now = UNIX_EPOCH + Duration::from_secs(1_764_338_400);
        assert_eq!(parse_since("10m", now), Some(1_764_338_400 - 600));
        assert_eq!(parse_since("2h", now), Some(1_764_338_400 - 7200));
        assert_eq!(parse_since("1d", now), Some(1_764_338_400 - 86_400));
        assert_eq!(parse_since("1764338000", now), Some(1_764_338_000));
        assert_eq!(parse_since("2025-11-28T14:00:00Z", now), Some(1_764_338_400));
        assert_eq!(parse_since("2025-11-28 13:59:00", now), Some(1_764_338_340));
        assert_eq!(parse_since("soon", now), None);
    }

    #[test]
    fn file_is_filtered_by_since_and_printed_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("alerts.jsonl");
        let old = BLOCK.replace("1764338400", "1000");
        std::fs::write(&log, format!("{old}{BLOCK}")).unwrap();
        let mut out = Vec::new();
        let opts = LogsOptions { json: true, follow: false, since: Some(1_764_338_000) };
        run(&log, None, &opts, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), BLOCK);
        let mut all = Vec::new();
        run(&log, None, &LogsOptions { json: true, ..Default::default() }, &mut all).unwrap();
        assert_eq!(String::from_utf8(all).unwrap().lines().count(), 2);
    }

    #[test]
    fn follow_reads_the_socket_when_the_daemon_serves_one() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("alerts.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(BLOCK.as_bytes()).unwrap();
        });
        let mut out = Vec::new();
        let opts = LogsOptions { json: false, follow: true, since: None };
        run(&dir.path().join("missing.jsonl"), Some(&sock), &opts, &mut out).unwrap();
        server.join().unwrap();
        assert!(String::from_utf8(out).unwrap().contains("Resource: /tmp/payload"));
    }
}
