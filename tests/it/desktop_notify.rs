//! `noexecd notify` against a real session bus: a private dbus-daemon, a notification server on it that
//! records what it is asked to show, and a stand-in for the daemon's alert socket.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BLOCK: &str = include_str!("../golden/alert-block.json");
const AUDIT: &str = include_str!("../golden/alert-audit.json");

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Recorder {
    shown: mpsc::Sender<(String, String, String)>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Recorder {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        _hints: HashMap<String, zbus::zvariant::OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        let _ = self.shown.send((app_name, summary, body));
        1
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".to_owned()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        ("recorder".into(), "noexecd-tests".into(), "1".into(), "1.2".into())
    }
}

fn dbus_daemon(dir: &std::path::Path) -> Option<(KillOnDrop, String)> {
    let mut child = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .arg(format!("--address=unix:path={}", dir.join("bus").display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut address = String::new();
    BufReader::new(child.stdout.take()?).read_line(&mut address).ok()?;
    Some((KillOnDrop(child), address.trim().to_owned()))
}

#[tokio::test(flavor = "current_thread")]
async fn a_block_alert_becomes_one_desktop_notification() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_bus, address)) = dbus_daemon(dir.path()) else {
        // dbus-daemon comes with the machine image and `make test-deps` installs it: missing is a failure.
        panic!("dbus-daemon is not installed (apt-get install dbus-daemon)");
    };
    let (tx, rx) = mpsc::channel();
    let _server = zbus::connection::Builder::address(address.as_str())
        .unwrap()
        .name("org.freedesktop.Notifications")
        .unwrap()
        .serve_at("/org/freedesktop/Notifications", Recorder { shown: tx })
        .unwrap()
        .build()
        .await
        .unwrap();

    let socket = dir.path().join("alerts.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let (done, finished) = mpsc::channel::<()>();
    let feeder = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        // An audit alert makes no notice; the block does.
        s.write_all(AUDIT.as_bytes()).unwrap();
        s.write_all(BLOCK.as_bytes()).unwrap();
        // The stream stays open until the notice was seen (or the test gave up).
        let _ = finished.recv_timeout(Duration::from_secs(10));
    });

    let _notifier = KillOnDrop(
        Command::new(crate::common::bin())
            .args(["notify", "--socket"])
            .arg(&socket)
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let got = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(10))).await.unwrap();
    let (app, summary, body) = got.expect("no notification reached the session bus within 10 s");
    assert_eq!(app, "noexecd");
    assert_eq!(summary, "noexecd blocked an execution");
    assert!(
        body.starts_with("/tmp/payload was not allowed to run by /usr/bin/bash (policy ksp-block-exec-inside-tmp)."),
        "{body}"
    );
    drop(done);
    feeder.join().unwrap();
}
