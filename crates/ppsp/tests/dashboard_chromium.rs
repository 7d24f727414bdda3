//! The dashboard in a real browser: a tracker with a seed and a leech transferring through
//! it (XML protocol) and a JSON (RFC 7846) peer, the page loaded in headless Chromium, the
//! swarm and peer counts and a completion figure read from the rendered DOM, and a
//! screenshot saved (`target/tmp/dashboard.png`; `docs/dashboard.png` is one of them).

mod peer_common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use peer_common::{Proc, TempDir, http_json, random_file, wait_until};
use ppsp_proto::{
    Connect, PeerAddress, PeerId, PeerMode, Request, RequestBody, SwarmAction, SwarmActionKind,
    SwarmId, TransactionId,
};

/// POSTs a JSON protocol request and returns the HTTP status.
fn post_json(addr: &str, request: &Request) -> u16 {
    let body = ppsp_proto::json::encode_request(request);
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/ppsp-tracker+json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("receive");
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status line")
}

/// Runs Chromium headless with the flags that keep it off the network, on `url`, with
/// `extra` arguments; fails after two minutes.
fn chromium(profile: &Path, extra: &[&str], url: &str) -> Output {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium runs (scripts/test.sh installs Debian's chromium)");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish in two minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().expect("chromium output")
}

/// The text of the element with `id="ID"` in a DOM dump.
fn text_by_id<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let marker = format!("id=\"{id}\">");
    let start = dom.find(&marker)? + marker.len();
    dom[start..].split('<').next()
}

/// Every "X of Y chunks" figure of the peers table.
fn completions(dom: &str) -> Vec<(u64, u64)> {
    dom.split("class=\"completion\">")
        .skip(1)
        .filter_map(|rest| {
            let text = rest.split('<').next()?;
            let (held, rest) = text.split_once(" of ")?;
            let total = rest.strip_suffix(" chunks")?;
            Some((held.parse().ok()?, total.parse().ok()?))
        })
        .collect()
}

#[test]
fn dashboard_shows_swarms_peers_and_completion_in_chromium() {
    let dir = TempDir::new("dashboard");
    let config = dir.join("tracker.toml");
    std::fs::write(&config, "[server]\nhistory_sample_secs = 1\n").expect("config");
    let tracker = Proc::spawn(
        &dir,
        "tracker",
        &[
            "tracker",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().expect("utf-8"),
        ],
        false,
    );
    let addr = tracker.wait_listening();
    let url = format!("http://{addr}");

    // 8 MiB in 256 chunks of 32 KiB, uploaded at 256 KiB/s: half a minute of transfer.
    let input = dir.join("film.bin");
    random_file(&input, 8 * 1024 * 1024, 7);
    let seed = Proc::spawn(
        &dir,
        "seed",
        &[
            "peer",
            "seed",
            input.to_str().expect("utf-8"),
            "--tracker",
            &url,
            "--chunk-kib",
            "32",
            "--upload-rate",
            "256",
            "--report-interval",
            "1",
        ],
        false,
    );
    let swarm = seed.wait_line("swarm ", Duration::from_secs(30));
    seed.wait_listening();
    let leech = Proc::spawn(
        &dir,
        "leech",
        &[
            "peer",
            "play",
            &swarm,
            "--tracker",
            &url,
            "--listen",
            "127.0.0.1:0",
            "--report-interval",
            "1",
        ],
        false,
    );
    leech.wait_listening();

    // A JSON peer joins the same swarm.
    let json_join = Request {
        peer_id: PeerId::new("json-viewer").expect("id"),
        auth_token: None,
        transaction_id: TransactionId::new("dash-1").expect("txid"),
        body: RequestBody::Connect(Connect {
            auth: None,
            addresses: vec![PeerAddress::new(
                std::net::IpAddr::from([127, 0, 0, 1]),
                6999,
            )],
            peer_num: None,
            swarm_actions: vec![SwarmAction {
                swarm_id: SwarmId::new(swarm.clone()).expect("swarm id"),
                action: SwarmActionKind::Join,
                mode: PeerMode::Leech,
            }],
        }),
    };
    assert_eq!(post_json(&addr, &json_join), 200);

    // Wait until the leech has reported part of the content: the transfer is running.
    let detail = format!("/api/stats?swarm={swarm}");
    let mut partial = None;
    wait_until(
        Duration::from_secs(60),
        "a partial completion report",
        || {
            let doc = http_json(&addr, &detail);
            partial = doc["swarm"]["peers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["mode"] == "LEECH")
                .map(|p| (p["chunks_held"].as_u64(), p["chunks_total"].as_u64()))
                .find_map(|pair| match pair {
                    (Some(held), Some(total)) if held > 0 && held < total => Some((held, total)),
                    _ => None,
                });
            partial.is_some()
        },
    );
    let (_, chunks_total) = partial.expect("partial report");
    assert_eq!(chunks_total, 256);

    let profile = dir.join("chromium-profile");
    let dump = chromium(
        &profile,
        &["--virtual-time-budget=10000", "--dump-dom"],
        &format!("{url}/"),
    );
    let dom = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert_eq!(text_by_id(&dom, "total-swarms"), Some("1"), "{dom}");
    assert_eq!(text_by_id(&dom, "total-peers"), Some("3"), "{dom}");
    assert_eq!(text_by_id(&dom, "total-sessions"), Some("3"), "{dom}");
    assert_eq!(
        text_by_id(&dom, "selected-swarm"),
        Some(swarm.as_str()),
        "{dom}"
    );
    let figures = completions(&dom);
    // The seed holds all 256 chunks; the XML leech is part-way (or done by now).
    assert!(figures.contains(&(256, 256)), "{figures:?}");
    assert!(
        figures
            .iter()
            .any(|(held, total)| *total == 256 && *held < 256 && *held > 0)
            || figures.iter().filter(|f| **f == (256, 256)).count() == 2,
        "{figures:?}"
    );
    assert!(dom.contains("json-viewer"), "JSON peer listed");

    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let shot = chromium(
        &profile,
        &[
            "--virtual-time-budget=10000",
            "--window-size=1400,1000",
            &format!("--screenshot={}", screenshot.display()),
        ],
        &format!("{url}/"),
    );
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let png = std::fs::read(&screenshot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    println!("screenshot: {}", screenshot.display());
    drop((leech, seed, tracker));
}
