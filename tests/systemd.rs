//! The systemd integration: the unit file passes `systemd-analyze verify`, and the daemon
//! reports READY and STOPPING on `NOTIFY_SOCKET` (Type=notify).

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::*;

#[test]
fn the_unit_file_verifies() {
    let Ok(out) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("SKIPPED: systemd-analyze is not installed");
        return;
    };
    assert!(out.status.success());
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/systemd/multicloud.service"
    ))
    .expect("unit");
    for needle in [
        "Type=notify",
        "KillMode=mixed",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "User=multicloud",
        "/var/lib/multicloud",
    ] {
        assert!(unit.contains(needle), "{needle}");
    }
    // TimeoutStopSec covers shutdown_grace_secs + cancel_grace_secs (60 + 30 by default).
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.parse().ok())
        .expect("TimeoutStopSec");
    assert!(stop > 90, "{stop}");
    // Point ExecStart at the built binary so verify can check it.
    let unit = unit.replace(
        "/usr/local/bin/multicloud",
        env!("CARGO_BIN_EXE_multicloud"),
    );
    let path = dir.path().join("multicloud.service");
    std::fs::write(&path, unit).expect("write");
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains("multicloud.service:"),
        "no complaint about the unit: {text}"
    );
}

#[tokio::test]
async fn the_daemon_notifies_ready_and_stopping() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)
            .set("NOTIFY_SOCKET", socket_path.display()),
    )
    .await;
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "READY=1");
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let n = socket.recv(&mut buf).expect("STOPPING");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "STOPPING=1");
    assert_eq!(d.stop(), Some(0));
}
