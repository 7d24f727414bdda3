//! The real `ppsp tracker` binary: readiness line, a typical three-peer session over plain
//! HTTP, SASL PLAIN with an accounts file written by `ppsp accounts add`, `--print-config`,
//! `--check-config`, environment overrides, SIGHUP reloading the accounts, JSON logs without
//! secrets, and a clean exit on SIGTERM.

mod tracker_common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ppsp_proto::{Response, Status};
use tracker_common::{add_account, wait_for_exit};

/// A spawned tracker, killed (by its own handle) if a test fails before stopping it.
struct Tracker {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn_tracker(extra: &[&str]) -> Tracker {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ppsp"))
        .args(["--quiet", "tracker", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ppsp tracker");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the tracker never blocks on a full pipe.
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("readiness line within 30 s");
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected readiness line {line:?}"))
        .parse()
        .expect("address in readiness line");
    Tracker { child, addr }
}

/// One HTTP/1.1 exchange over a fresh connection: (status, headers, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/xml; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("receive");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, head, body)
}

/// POSTs an XML request and decodes the XML response, checking the HTTP status.
fn call(addr: SocketAddr, body: &str, expected_http: u16) -> Response {
    let (status, head, raw) = http(addr, "POST", "/", body);
    let text = String::from_utf8_lossy(&raw).into_owned();
    assert_eq!(status, expected_http, "{head}\n{text}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/xml"),
        "{head}"
    );
    ppsp_proto::xml::decode_response(&raw, &ppsp_proto::Limits::default())
        .unwrap_or_else(|err| panic!("undecodable response ({err}): {text}"))
}

const HEAD: &str =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PPSPTrackerProtocol version=\"1.0\">";
const TAIL: &str = "</PPSPTrackerProtocol>";

fn connect_body(peer: &str, txid: u64, port: u16) -> String {
    format!(
        "{HEAD}<Method>CONNECT</Method><PeerID>{peer}</PeerID><Auth mechanism=\"ANONYMOUS\"/>\
         <TransactionID>{txid}</TransactionID><PeerAddresses>\
         <PeerAddress ip=\"127.0.0.1\" port=\"{port}\" priority=\"2130706431\" type=\"HOST\"/>\
         </PeerAddresses>{TAIL}"
    )
}

fn with_token(method: &str, peer: &str, token: &str, txid: u64, inner: &str) -> String {
    format!(
        "{HEAD}<Method>{method}</Method><PeerID>{peer}</PeerID><AuthToken>{token}</AuthToken>\
         {inner}<TransactionID>{txid}</TransactionID>{TAIL}"
    )
}

fn join_inner(swarm: &str, mode: &str) -> String {
    format!(
        "<SwarmID>{swarm}</SwarmID><PeerMode>{mode}</PeerMode><PeerNum>20</PeerNum>\
         <Stats><Stat property=\"STUN\">true</Stat></Stats><ExpireTime>0</ExpireTime>"
    )
}

fn find_inner(swarm: &str, scope: Option<(u64, u64)>) -> String {
    let clip = scope.map_or(String::new(), |(from, to)| {
        format!(
            "<Clip><Name>feature</Name><ChunkSegments type=\"video\">\
             <Segment from=\"{from}\" to=\"{to}\"/></ChunkSegments></Clip>"
        )
    });
    format!("<SwarmID>{swarm}</SwarmID><PeerNum>10</PeerNum>{clip}")
}

fn report_inner(swarm: &str, bitmap: &str, uploaded: u64, downloaded: u64) -> String {
    format!(
        "<Stats><Stat property=\"ChunkMap\"><ChunkMapReport><SwarmID>{swarm}</SwarmID><Clip>\
         <Name>feature</Name><ChunkSegments type=\"video\">\
         <Segment from=\"0\" to=\"15\" bitmapsize=\"16\">{bitmap}</Segment></ChunkSegments>\
         </Clip></ChunkMapReport></Stat><Stat property=\"StreamStats\"><StreamStatsReport>\
         <SwarmID>{swarm}</SwarmID><UploadedBytes>{uploaded}</UploadedBytes>\
         <DownloadedBytes>{downloaded}</DownloadedBytes><AvailBandwidth>8000000</AvailBandwidth>\
         </StreamStatsReport></Stat><Stat property=\"NAT\">false</Stat></Stats>"
    )
}

fn listed(response: &Response) -> Vec<String> {
    let mut ids: Vec<String> = response
        .swarm_results
        .first()
        .map(|r| {
            r.peers
                .iter()
                .map(|p| p.peer_id.as_str().to_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn txid(response: &Response) -> Option<u64> {
    response.transaction_id.as_ref().and_then(|t| t.as_u64())
}

#[test]
fn typical_session_with_three_peers() {
    let tracker = spawn_tracker(&[]);
    let addr = tracker.addr;
    let swarm = "feature-film-1";

    // CONNECT: every peer gets a token and its observed address.
    let mut tokens = Vec::new();
    for (i, peer) in ["seed-1", "leech-1", "leech-2"].iter().enumerate() {
        let id = 100 + i as u64;
        let response = call(addr, &connect_body(peer, id, 7000 + i as u16), 200);
        assert_eq!(response.status, Status::Ok);
        assert_eq!(txid(&response), Some(id));
        let reflexive = response
            .reflexive_addresses
            .first()
            .expect("reflexive address");
        assert_eq!(reflexive.ip.to_string(), "127.0.0.1");
        tokens.push(response.auth_token.expect("AuthToken").as_str().to_owned());
    }
    let [seed, leech1, leech2] = [&tokens[0], &tokens[1], &tokens[2]];

    // JOIN: the seed gets no list; each leech gets the members before it.
    let response = call(
        addr,
        &with_token("JOIN", "seed-1", seed, 200, &join_inner(swarm, "SEED")),
        200,
    );
    assert!(listed(&response).is_empty());
    assert_eq!(response.swarm_results[0].swarm_id.as_str(), swarm);
    let response = call(
        addr,
        &with_token("JOIN", "leech-1", leech1, 201, &join_inner(swarm, "LEECH")),
        200,
    );
    assert_eq!(listed(&response), vec!["seed-1"]);
    let response = call(
        addr,
        &with_token("JOIN", "leech-2", leech2, 202, &join_inner(swarm, "LEECH")),
        200,
    );
    assert_eq!(listed(&response), vec!["leech-1", "seed-1"]);
    let seed_info = &response.swarm_results[0]
        .peers
        .iter()
        .find(|p| p.peer_id.as_str() == "seed-1")
        .expect("seed listed");
    assert!(seed_info.addresses.iter().any(|a| a.port == 7000));

    // FIND over the whole swarm.
    let response = call(
        addr,
        &with_token("FIND", "leech-2", leech2, 300, &find_inner(swarm, None)),
        200,
    );
    assert_eq!(txid(&response), Some(300));
    assert_eq!(listed(&response), vec!["leech-1", "seed-1"]);

    // STAT_REPORT with chunk maps: leech-1 holds 0..7 (FF 00), leech-2 holds 8..15 (00 FF).
    call(
        addr,
        &with_token(
            "STAT_REPORT",
            "leech-1",
            leech1,
            400,
            &report_inner(swarm, "/wA=", 1000, 5000),
        ),
        200,
    );
    call(
        addr,
        &with_token(
            "STAT_REPORT",
            "leech-2",
            leech2,
            401,
            &report_inner(swarm, "AP8=", 2000, 6000),
        ),
        200,
    );

    // Chunk-scoped FIND: only holders of the chunks (and seeds) qualify.
    let response = call(
        addr,
        &with_token(
            "FIND",
            "leech-2",
            leech2,
            500,
            &find_inner(swarm, Some((0, 3))),
        ),
        200,
    );
    assert_eq!(listed(&response), vec!["leech-1", "seed-1"]);
    let response = call(
        addr,
        &with_token(
            "FIND",
            "leech-1",
            leech1,
            501,
            &find_inner(swarm, Some((12, 15))),
        ),
        200,
    );
    assert_eq!(listed(&response), vec!["leech-2", "seed-1"]);

    // The statistics page reflects the reports.
    let (status, _, body) = http(addr, "GET", "/api/stats", "");
    assert_eq!(status, 200);
    let stats = String::from_utf8(body).expect("utf-8");
    assert!(stats.contains("\"sessions\":3"), "{stats}");
    assert!(
        stats.contains("\"peers_by_mode\":{\"SEED\":1,\"LIVESEED\":0,\"LEECH\":2}"),
        "{stats}"
    );
    let (status, _, body) = http(addr, "GET", &format!("/api/stats?swarm={swarm}"), "");
    assert_eq!(status, 200);
    let detail = String::from_utf8(body).expect("utf-8");
    assert!(detail.contains("\"uploaded_bytes\":2000"), "{detail}");

    // KEEPALIVE.
    for (i, (peer, token)) in [("seed-1", seed), ("leech-1", leech1), ("leech-2", leech2)]
        .into_iter()
        .enumerate()
    {
        let response = call(
            addr,
            &with_token("KEEPALIVE", peer, token, 600 + i as u64, ""),
            200,
        );
        assert_eq!(txid(&response), Some(600 + i as u64));
    }

    // LEAVE: leech-1 disappears from lists.
    call(
        addr,
        &with_token(
            "LEAVE",
            "leech-1",
            leech1,
            700,
            &format!("<SwarmID>{swarm}</SwarmID>"),
        ),
        200,
    );
    let response = call(
        addr,
        &with_token("FIND", "leech-2", leech2, 701, &find_inner(swarm, None)),
        200,
    );
    assert_eq!(listed(&response), vec!["seed-1"]);
    // Leaving a swarm that does not exist is 404.
    let response = call(
        addr,
        &with_token(
            "LEAVE",
            "leech-1",
            leech1,
            702,
            "<SwarmID>no-such-swarm</SwarmID>",
        ),
        404,
    );
    assert_eq!(response.status, Status::ObjectNotFound);
    assert_eq!(txid(&response), Some(702));

    // DISCONNECT everyone; their tokens stop working.
    for (i, (peer, token)) in [("seed-1", seed), ("leech-1", leech1), ("leech-2", leech2)]
        .into_iter()
        .enumerate()
    {
        call(
            addr,
            &with_token("DISCONNECT", peer, token, 800 + i as u64, ""),
            200,
        );
    }
    let response = call(
        addr,
        &with_token("KEEPALIVE", "leech-2", leech2, 900, ""),
        401,
    );
    assert_eq!(response.status, Status::AuthenticationRequired);
    let (status, head, _) = http(
        addr,
        "POST",
        "/",
        &with_token("KEEPALIVE", "seed-1", seed, 901, ""),
    );
    assert_eq!(status, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: ppsp-sasl")
    );

    let (status, _, body) = http(addr, "GET", "/healthz", "");
    assert_eq!((status, body.as_slice()), (200, b"ok".as_slice()));
}

fn signal_exits_cleanly(signal: &str) {
    let mut tracker = spawn_tracker(&[]);
    // One request first, so the shutdown has a connection history to drain.
    let (status, _, _) = http(tracker.addr, "GET", "/healthz", "");
    assert_eq!(status, 200);
    let pid = tracker.child.id().to_string();
    let killed = Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let status = wait_for_exit(&mut tracker.child, Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?} after {signal}");
}

#[test]
fn sigterm_exits_cleanly() {
    signal_exits_cleanly("-TERM");
}

#[test]
fn sigint_exits_cleanly() {
    signal_exits_cleanly("-INT");
}

#[test]
fn print_config_parses_back_to_the_default() {
    let output = Command::new(env!("CARGO_BIN_EXE_ppsp"))
        .args(["tracker", "--print-config"])
        .output()
        .expect("run");
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).expect("utf-8");
    assert!(text.lines().filter(|l| l.starts_with('#')).count() > 30);
    let parsed = ppsp_server::ServerConfig::from_toml(&text).expect("valid TOML config");
    assert_eq!(parsed, ppsp_server::ServerConfig::default());
}

#[test]
fn accounts_add_then_plain_connect() {
    let dir = std::env::temp_dir().join(format!("ppsp-tracker-accounts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("accounts");
    add_account(&file, "656164657221", "s3cret-passw0rd", None);
    let stored = std::fs::read_to_string(&file).expect("accounts file");
    assert!(stored.contains("656164657221 $argon2id$"));
    assert!(!stored.contains("s3cret"));

    let file_arg = file.to_string_lossy().into_owned();
    let tracker = spawn_tracker(&["--accounts", &file_arg, "--no-anonymous"]);
    // The credentials of the project's CONNECT example: base64("\0656164657221\0s3cret-passw0rd").
    let plain = |txid: u64, credentials: &str| {
        format!(
            "{HEAD}<Method>CONNECT</Method><PeerID>656164657221</PeerID>\
             <Auth mechanism=\"PLAIN\"/><Credentials>{credentials}</Credentials>\
             <TransactionID>{txid}</TransactionID>{TAIL}"
        )
    };
    let response = call(
        tracker.addr,
        &plain(1, "ADY1NjE2NDY1NzIyMQBzM2NyZXQtcGFzc3cwcmQ="),
        200,
    );
    assert!(response.auth_token.is_some());
    // base64("\0656164657221\0wrong")
    let response = call(tracker.addr, &plain(2, "ADY1NjE2NDY1NzIyMQB3cm9uZw=="), 401);
    assert_eq!(response.status, Status::AuthenticationRequired);
    assert_eq!(txid(&response), Some(2));
    let response = call(tracker.addr, &connect_body("656164657221", 3, 7000), 401);
    assert_eq!(response.status, Status::AuthenticationRequired);
    drop(tracker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn readiness_lines_for_every_listener_and_stun() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ppsp"))
        .args([
            "--quiet",
            "tracker",
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
            "--stun",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ppsp tracker");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    for _ in 0..3 {
        lines.push(
            rx.recv_timeout(Duration::from_secs(30))
                .expect("readiness line within 30 s"),
        );
    }
    let http: Vec<SocketAddr> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("listening on http://"))
        .map(|a| a.parse().expect("address"))
        .collect();
    assert_eq!(http.len(), 2, "{lines:?}");
    assert_ne!(http[0], http[1]);
    let stun: SocketAddr = lines[2]
        .strip_prefix("stun on udp://")
        .unwrap_or_else(|| panic!("no stun line in {lines:?}"))
        .parse()
        .expect("address");
    for addr in &http {
        assert_eq!(http_get_status(*addr), 200);
    }

    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let transaction = [42u8; 12];
    socket
        .send_to(&ppsp_proto::stun::binding_request(transaction), stun)
        .expect("send");
    let mut buf = [0u8; 1024];
    let (len, _) = socket.recv_from(&mut buf).expect("STUN answer");
    let mapped =
        ppsp_proto::stun::parse_binding_response(&buf[..len], &transaction).expect("answer");
    assert_eq!(mapped, socket.local_addr().expect("addr"));

    let _ = child.kill();
    let _ = child.wait();
}

fn http_get_status(addr: SocketAddr) -> u16 {
    http(addr, "GET", "/healthz", "").0
}

#[test]
fn config_file_settings_apply_and_bad_files_are_refused() {
    let dir = std::env::temp_dir().join(format!("ppsp-tracker-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("tracker.toml");
    // The file's listener is replaced by --listen; its tracker setting stays.
    std::fs::write(
        &file,
        "[server]\nlisten = [\"127.0.0.1:1\"]\n\n[tracker]\npeer_num_max = 1\n",
    )
    .expect("write config");
    let file_arg = file.to_string_lossy().into_owned();
    let tracker = spawn_tracker(&["--config", &file_arg]);
    let addr = tracker.addr;
    assert_ne!(addr.port(), 1);
    let mut tokens = Vec::new();
    for (i, peer) in ["s-1", "s-2", "l-1"].iter().enumerate() {
        let response = call(addr, &connect_body(peer, i as u64 + 1, 7000), 200);
        tokens.push(response.auth_token.expect("token").as_str().to_owned());
    }
    call(
        addr,
        &with_token("JOIN", "s-1", &tokens[0], 10, &join_inner("cfg", "SEED")),
        200,
    );
    call(
        addr,
        &with_token("JOIN", "s-2", &tokens[1], 11, &join_inner("cfg", "SEED")),
        200,
    );
    let response = call(
        addr,
        &with_token("JOIN", "l-1", &tokens[2], 12, &join_inner("cfg", "LEECH")),
        200,
    );
    assert_eq!(listed(&response).len(), 1, "peer_num_max = 1 caps the list");
    drop(tracker);

    std::fs::write(&file, "[server]\nlisten_on = [\"127.0.0.1:0\"]\n").expect("write config");
    let output = Command::new(env!("CARGO_BIN_EXE_ppsp"))
        .args(["tracker", "--config", &file_arg])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("listen_on"), "{stderr}");
    assert!(output.stdout.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tracker whose standard error lines arrive on the returned channel.
fn spawn_logging_tracker(
    global: &[&str],
    args: &[&str],
    env: &[(&str, &str)],
) -> (Tracker, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ppsp"))
        .args(global)
        .args(["tracker", "--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ppsp tracker");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (log_tx, log_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = log_tx.send(line);
        }
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("readiness line within 30 s");
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected readiness line {line:?}"))
        .parse()
        .expect("address in readiness line");
    (Tracker { child, addr }, log_rx)
}

/// Waits for a log line containing `needle`, keeping every line seen in `seen`.
fn wait_for_log(logs: &mpsc::Receiver<String>, seen: &mut Vec<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match logs.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
            Err(_) => panic!("no log line with {needle:?} in:\n{}", seen.join("\n")),
        }
    }
}

fn plain_connect(peer: &str, credentials: &str, txid: u64) -> String {
    format!(
        "{HEAD}<Method>CONNECT</Method><PeerID>{peer}</PeerID>\
         <Auth mechanism=\"PLAIN\"/><Credentials>{credentials}</Credentials>\
         <TransactionID>{txid}</TransactionID>{TAIL}"
    )
}

#[test]
fn sighup_reloads_accounts_keeps_sessions_and_logs_hold_no_secret() {
    let dir = std::env::temp_dir().join(format!("ppsp-tracker-sighup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("accounts");
    add_account(&file, "616c696365", "alice-pass-1", None);
    let file_arg = file.to_string_lossy().into_owned();
    let (tracker, logs) = spawn_logging_tracker(
        &["--log-format", "json"],
        &["--accounts", &file_arg, "--no-anonymous"],
        &[("RUST_LOG", "debug")],
    );
    let mut seen = Vec::new();

    // base64("\0616c696365\0alice-pass-1")
    let alice_credentials = "ADYxNmM2OTYzNjUAYWxpY2UtcGFzcy0x";
    let alice = call(
        tracker.addr,
        &plain_connect("616c696365", alice_credentials, 1),
        200,
    );
    let alice_token = alice.auth_token.expect("token").as_str().to_owned();
    // base64("\0626f62\0bob-pass-22")
    let bob_credentials = "ADYyNmY2MgBib2ItcGFzcy0yMg==";
    call(
        tracker.addr,
        &plain_connect("626f62", bob_credentials, 2),
        401,
    );

    add_account(&file, "626f62", "bob-pass-22", None);
    let pid = tracker.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let reloaded = wait_for_log(&logs, &mut seen, "SIGHUP: accounts file reloaded");
    assert!(reloaded.contains("2 accounts"), "{reloaded}");
    let bob = call(
        tracker.addr,
        &plain_connect("626f62", bob_credentials, 3),
        200,
    );
    let bob_token = bob.auth_token.expect("token").as_str().to_owned();
    // Alice's session survived the reload.
    let alive = call(
        tracker.addr,
        &with_token("KEEPALIVE", "616c696365", &alice_token, 4, ""),
        200,
    );
    assert_eq!(alive.status, Status::Ok);

    // A broken file on SIGHUP keeps the accounts in force.
    std::fs::write(&file, "not an accounts line\n").expect("break the file");
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    wait_for_log(&logs, &mut seen, "keeping the previous accounts");
    call(
        tracker.addr,
        &with_token("KEEPALIVE", "626f62", &bob_token, 5, ""),
        200,
    );
    call(
        tracker.addr,
        &with_token("JOIN", "626f62", &bob_token, 6, &join_inner("film", "SEED")),
        200,
    );
    // The request line comes first, then the lifecycle line.
    let request_line = wait_for_log(&logs, &mut seen, "\"method\":\"JOIN\"");
    wait_for_log(&logs, &mut seen, "joined swarm");

    // JSON lines: the per-request line at debug, the lifecycle at info.
    let request: serde_json::Value = serde_json::from_str(&request_line).expect("JSON log line");
    assert_eq!(request["level"], "DEBUG");
    assert_eq!(request["message"], "request");
    assert_eq!(request["swarm"], "film");
    assert_eq!(request["status"], "OK");
    assert!(request["micros"].is_u64());
    let opened = seen
        .iter()
        .find(|l| l.contains("session opened"))
        .expect("session line");
    let opened: serde_json::Value = serde_json::from_str(opened).expect("JSON log line");
    assert_eq!(opened["level"], "INFO");
    for line in &seen {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|err| panic!("not a JSON line ({err}): {line}"));
        for secret in [
            "alice-pass-1",
            "bob-pass-22",
            alice_credentials,
            bob_credentials,
            alice_token.as_str(),
            bob_token.as_str(),
        ] {
            assert!(!line.contains(secret), "secret in log line: {line}");
        }
    }
    drop(tracker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_says_ok_or_names_the_problem() {
    let dir = std::env::temp_dir().join(format!("ppsp-check-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let good = dir.join("good.toml");
    std::fs::write(&good, "[tracker]\npeer_num_max = 20\n").expect("write");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[tracker]\npeer_num_max = 20\npeer_num_maximum = 3\n").expect("write");
    let check = |file: &std::path::Path, env: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_ppsp"))
            .args(["tracker", "--check-config"])
            .arg(file)
            .envs(env.iter().copied())
            .output()
            .expect("run")
    };
    let output = check(&good, &[]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("configuration OK: {}", good.display())
    );
    let output = check(&bad, &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 3, column 1"), "{stderr}");
    assert!(stderr.contains("peer_num_maximum"), "{stderr}");
    // The environment is checked too: here it breaks a good file.
    let output = check(&good, &[("PPSP_TRACKER__PEER_NUM_MAX", "0")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("peer_num_max must be at least 1"),
        "{output:?}"
    );
    let output = check(&good, &[("PPSP_TRACKER__NO_SUCH_KEY", "1")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("PPSP_TRACKER__NO_SUCH_KEY"),
        "{output:?}"
    );
    let output = check(&dir.join("missing.toml"), &[]);
    assert_eq!(output.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn flags_override_the_environment_which_overrides_the_file() {
    let dir = std::env::temp_dir().join(format!("ppsp-env-override-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("tracker.toml");
    std::fs::write(&file, "[tracker]\npeer_num_default = 1\npeer_num_max = 1\n").expect("write");
    let file_arg = file.to_string_lossy().into_owned();
    // The environment names a listener the flag replaces, and raises the file's peer cap.
    let (tracker, _logs) = spawn_logging_tracker(
        &["--quiet"],
        &["--config", &file_arg],
        &[
            ("PPSP_SERVER__LISTEN", "[\"127.0.0.1:1\"]"),
            ("PPSP_TRACKER__PEER_NUM_DEFAULT", "3"),
            ("PPSP_TRACKER__PEER_NUM_MAX", "3"),
        ],
    );
    assert_ne!(tracker.addr.port(), 1);
    let mut tokens = Vec::new();
    for (index, peer) in ["e1", "e2", "e3", "e4"].iter().enumerate() {
        let txid = 10 * index as u64;
        let response = call(
            tracker.addr,
            &connect_body(peer, txid, 7000 + index as u16),
            200,
        );
        let token = response.auth_token.expect("token").as_str().to_owned();
        call(
            tracker.addr,
            &with_token("JOIN", peer, &token, txid + 1, &join_inner("env", "SEED")),
            200,
        );
        tokens.push(token);
    }
    let found = call(
        tracker.addr,
        &with_token("FIND", "e4", &tokens[3], 100, &find_inner("env", None)),
        200,
    );
    // The file alone would allow one peer; the environment allows three.
    assert_eq!(listed(&found).len(), 3, "{found:?}");
    drop(tracker);
    let _ = std::fs::remove_dir_all(&dir);
}

use ppsp_store_redis::testing::{RedisCluster, RedisServer};

/// Retries `attempt` until it gives a value, for at most `limit`.
fn eventually<T>(limit: Duration, mut attempt: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = attempt() {
            return Some(value);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn connect_token(addr: SocketAddr, peer: &str, txid: u64, port: u16) -> String {
    let response = call(addr, &connect_body(peer, txid, port), 200);
    response.auth_token.expect("AuthToken").as_str().to_owned()
}

#[test]
fn unreachable_store_at_start_exits_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ppsp"))
        .args([
            "--quiet",
            "tracker",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ppsp tracker");
    let status = wait_for_exit(&mut child, Duration::from_secs(10));
    assert!(!status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr text");
    assert!(stderr.contains(&url), "{stderr}");
}

#[test]
fn two_nodes_on_one_cluster_share_peers_and_tokens() {
    let cluster = RedisCluster::start().expect("redis cluster");
    let url = cluster.url();
    let a = spawn_tracker(&["--store", &url]);
    let b = spawn_tracker(&["--store", &url]);
    let swarm = "shared-swarm";

    let token_1 = connect_token(a.addr, "peer-a", 1, 7001);
    let response = call(
        a.addr,
        &with_token("JOIN", "peer-a", &token_1, 2, &join_inner(swarm, "SEED")),
        200,
    );
    assert!(listed(&response).is_empty());

    let token_2 = connect_token(b.addr, "peer-b", 3, 7002);
    let response = call(
        b.addr,
        &with_token("JOIN", "peer-b", &token_2, 4, &join_inner(swarm, "LEECH")),
        200,
    );
    assert_eq!(listed(&response), vec!["peer-a"]);

    // A's token is good on B: the nodes share the AuthToken key through the store.
    let response = call(
        b.addr,
        &with_token("FIND", "peer-a", &token_1, 5, &find_inner(swarm, None)),
        200,
    );
    assert_eq!(listed(&response), vec!["peer-b"]);
    // And a forged one is not.
    let forged = format!("{}A", &token_1[..token_1.len() - 1]);
    let forged = if forged == token_1 {
        format!("{}B", &token_1[..token_1.len() - 1])
    } else {
        forged
    };
    let (status, _, _) = http(
        b.addr,
        "POST",
        "/",
        &with_token("FIND", "peer-a", &forged, 6, &find_inner(swarm, None)),
    );
    assert_eq!(status, 401);
}

#[test]
fn store_lost_while_running_gives_503_then_service_resumes() {
    let mut redis = RedisServer::start().expect("redis-server");
    let tracker = spawn_tracker(&["--store", &redis.url()]);
    connect_token(tracker.addr, "before", 1, 7001);
    assert_eq!(http_get_status(tracker.addr), 200);

    redis.kill();
    let (status, head, _) = http(tracker.addr, "POST", "/", &connect_body("during", 2, 7002));
    assert_eq!(status, 503, "{head}");
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    let (status, _, body) = http(tracker.addr, "GET", "/healthz", "");
    assert_eq!(status, 503);
    assert!(String::from_utf8_lossy(&body).contains("unhealthy"));

    redis.restart().expect("restart redis-server");
    let resumed = eventually(Duration::from_secs(20), || {
        let (status, _, _) = http(tracker.addr, "POST", "/", &connect_body("after", 3, 7003));
        (status == 200).then_some(())
    });
    assert!(resumed.is_some(), "service did not resume");
    assert_eq!(http_get_status(tracker.addr), 200);
}

#[test]
fn members_survive_the_failover_of_their_primary() {
    let mut cluster = RedisCluster::start().expect("redis cluster");
    let tracker = spawn_tracker(&["--store", &cluster.url()]);
    let swarm = "failover-swarm";
    let token = connect_token(tracker.addr, "member", 1, 7001);
    call(
        tracker.addr,
        &with_token("JOIN", "member", &token, 2, &join_inner(swarm, "SEED")),
        200,
    );
    let key = format!("{{ppsp:w:{swarm}}}:m");
    let primary = cluster.primary_of(&key).expect("primary of the swarm");
    // Replication is asynchronous: the test is about failover, so wait for the copy.
    let copied = eventually(Duration::from_secs(10), || {
        cluster.replicated(primary, &key, "member").then_some(())
    });
    assert!(copied.is_some(), "member never reached the replica");
    cluster.kill(primary);
    cluster.wait_healthy().expect("failover");

    let listed_after = eventually(Duration::from_secs(30), || {
        let (status, _, raw) = http(
            tracker.addr,
            "POST",
            "/",
            &connect_body("newcomer", 3, 7002),
        );
        if status != 200 {
            return None;
        }
        let response =
            ppsp_proto::xml::decode_response(&raw, &ppsp_proto::Limits::default()).ok()?;
        let token = response.auth_token?.as_str().to_owned();
        let (status, _, raw) = http(
            tracker.addr,
            "POST",
            "/",
            &with_token("JOIN", "newcomer", &token, 4, &join_inner(swarm, "LEECH")),
        );
        if status != 200 {
            return None;
        }
        let response =
            ppsp_proto::xml::decode_response(&raw, &ppsp_proto::Limits::default()).ok()?;
        Some(listed(&response))
    });
    assert_eq!(listed_after, Some(vec!["member".to_owned()]));
}
