//! The real `ppsp` binary: `ppsp accounts add --digest-realm` writes what HTTP Digest
//! needs, a closed tracker lets a JSON peer in with curl's SHA-256 Digest, and an admin
//! listener announces itself with its readiness line.

mod tracker_common;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tracker_common::add_account;

/// A tracker child process, killed when dropped.
struct Tracker {
    child: Child,
    lines: Vec<String>,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `ppsp tracker` with `args` and collects `count` readiness lines.
fn spawn_tracker(args: &[&str], count: usize) -> Tracker {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ppsp"))
        .args(["--quiet", "tracker"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ppsp tracker");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let lines = (0..count)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("readiness line within 30 s")
        })
        .collect();
    Tracker { child, lines }
}

fn address(line: &str, prefix: &str) -> SocketAddr {
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("unexpected readiness line {line:?}"))
        .parse()
        .expect("address in readiness line")
}

/// curl `--digest` POSTing a JSON CONNECT for `peer_id`; returns (HTTP status, body).
fn curl_json_connect(
    addr: SocketAddr,
    peer_id: &str,
    user: &str,
    dir: &std::path::Path,
) -> (String, String) {
    let body = format!(
        "{{\"PPSPTrackerProtocol\":{{\"version\":1,\"request_type\":\"CONNECT\",\
         \"peer_id\":\"{peer_id}\",\"transaction_id\":\"t1\",\"connect\":{{\"swarm_action\":\
         [{{\"swarm_id\":\"movie\",\"action\":\"JOIN\",\"peer_mode\":\"LEECH\"}}]}}}}}}"
    );
    let path = dir.join("connect.json");
    std::fs::write(&path, body).expect("body");
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--digest", "--user", user])
        .args(["--header", "content-type: application/ppsp-tracker+json"])
        .args(["--write-out", "\n%{http_code}", "--data-binary"])
        .arg(format!("@{}", path.display()))
        .arg(format!("http://{addr}/"))
        .output()
        .expect("curl runs (scripts/test.sh installs it)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').expect("status line");
    (code.to_owned(), body.to_owned())
}

#[test]
fn digest_accounts_from_the_command_line_admit_json_peers_to_a_closed_tracker() {
    let dir = std::env::temp_dir().join(format!("ppsp-tracker-digest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("accounts");
    add_account(&file, "json-peer-1", "json-passw0rd", Some("ppsp"));
    add_account(&file, "plain-only", "other-passw0rd", None);
    let stored = std::fs::read_to_string(&file).expect("accounts file");
    assert!(stored.contains("json-peer-1 $argon2id$"), "{stored}");
    assert!(stored.contains(" digest-sha256:ppsp:"), "{stored}");
    assert!(!stored.contains("passw0rd"));
    assert_eq!(
        stored.matches(" digest-sha256:ppsp:").count(),
        1,
        "only when asked for"
    );

    let file_arg = file.to_string_lossy().into_owned();
    let tracker = spawn_tracker(
        &[
            "--listen",
            "127.0.0.1:0",
            "--accounts",
            &file_arg,
            "--no-anonymous",
        ],
        1,
    );
    let addr = address(&tracker.lines[0], "listening on http://");
    let (code, body) = curl_json_connect(addr, "json-peer-1", "json-peer-1:json-passw0rd", &dir);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("\"error_code\":0"), "{body}");
    let (code, _) = curl_json_connect(addr, "json-peer-1", "json-peer-1:wrong", &dir);
    assert_eq!(code, "401");
    let (code, _) = curl_json_connect(addr, "plain-only", "plain-only:other-passw0rd", &dir);
    assert_eq!(code, "401", "no Digest secret stored for plain-only");
    drop(tracker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_admin_listener_has_its_own_readiness_line() {
    let dir = std::env::temp_dir().join(format!("ppsp-tracker-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("tracker.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = [\"127.0.0.1:0\"]\n",
    )
    .expect("config");
    let config_arg = config.to_string_lossy().into_owned();
    let tracker = spawn_tracker(&["--config", &config_arg], 2);
    let protocol = address(&tracker.lines[0], "listening on http://");
    let admin = address(&tracker.lines[1], "admin on http://");
    assert_ne!(protocol, admin);
    let get = |addr: SocketAddr, path: &str| {
        let output = Command::new("curl")
            .args([
                "--silent",
                "--output",
                "/dev/null",
                "--write-out",
                "%{http_code}",
            ])
            .arg(format!("http://{addr}{path}"))
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert_eq!(get(admin, "/metrics"), "200");
    assert_eq!(get(protocol, "/metrics"), "404");
    assert_eq!(get(protocol, "/healthz"), "200");
    drop(tracker);
    let _ = std::fs::remove_dir_all(&dir);
}
