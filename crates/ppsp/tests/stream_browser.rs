//! A browser plays a live HLS stream and a VoD HLS package from `play`: Debian's headless
//! Chromium opens a page served from another origin (so CORS is exercised), which plays the
//! viewer's master playlist with hls.js from the npm registry and reports back what its
//! `<video>` does.
//!
//! hls.js is taken from `PPSP_TEST_HLS_JS` (the path of `hls.min.js`, which
//! `scripts/test.sh` installs into a temporary folder) or installed with npm into this
//! test's scratch directory.

mod peer_common;
mod stream_common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use peer_common::{Proc, TempDir};
use stream_common::{Package, Tool, hls_encoder, live_hls, serve, vod_package};

/// The page: plays `SRC` with hls.js and POSTs every error event and, twice a second, the
/// playback position and hls.js's latency estimate.
const PAGE: &str = r#"<!doctype html>
<html><body><video id="v" muted autoplay playsinline></video>
<script src="/hls.min.js"></script>
<script>
const report = (kind, data) =>
  fetch('/report', {method: 'POST', body: JSON.stringify({kind, ...data})});
const video = document.getElementById('v');
report('support', {hls: Hls.isSupported()});
const hls = new Hls();
hls.on(Hls.Events.ERROR, (_, d) =>
  report('error', {type: d.type, details: d.details, fatal: d.fatal}));
video.addEventListener('error', () =>
  report('error', {type: 'video', details: String(video.error && video.error.code)}));
hls.loadSource('SRC');
hls.attachMedia(video);
setInterval(() => report('time', {t: video.currentTime, latency: hls.latency}), 500);
</script></body></html>
"#;

/// hls.js, from the path test.sh gives or freshly installed with npm into `dir`.
fn hls_js(dir: &TempDir) -> PathBuf {
    if let Some(path) = std::env::var_os("PPSP_TEST_HLS_JS") {
        return PathBuf::from(path);
    }
    let prefix = dir.join("npm");
    let status = Command::new("npm")
        .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
        .arg(&prefix)
        .arg("hls.js")
        .stdin(Stdio::null())
        .status()
        .expect("npm (scripts/test.sh installs it)");
    assert!(status.success(), "npm install hls.js failed");
    prefix.join("node_modules/hls.js/dist/hls.min.js")
}

/// Serves the page and hls.js on a free loopback port and passes each report on.
fn page_server(page: String, script: Vec<u8>, reports: mpsc::Sender<serde_json::Value>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (page, script, reports) = (page.clone(), script.clone(), reports.clone());
            std::thread::spawn(move || serve_one(stream, &page, &script, &reports));
        }
    });
    port
}

fn serve_one(
    stream: TcpStream,
    page: &str,
    script: &[u8],
    reports: &mpsc::Sender<serde_json::Value>,
) {
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, kind, body): (&str, &str, &[u8]) = match path {
        "/" => ("200 OK", "text/html", page.as_bytes()),
        "/hls.min.js" => ("200 OK", "text/javascript", script),
        "/report" => {
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_ok()
                && let Ok(value) = serde_json::from_slice(&body)
            {
                let _ = reports.send(value);
            }
            ("204 No Content", "text/plain", b"")
        }
        _ => ("404 Not Found", "text/plain", b""),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = &stream;
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn chromium(profile: &Path, url: &str) -> Tool {
    let child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--autoplay-policy=no-user-gesture-required",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium (scripts/test.sh installs it)");
    Tool(child)
}

/// One browser at a time: two headless Chromiums decoding at once on a small, busy
/// machine stall each other's playback.
static ONE_BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What a page reported while its video played `seconds` past its first position.
struct Watched {
    supported: bool,
    latencies: Vec<f64>,
}

/// Opens `url` (the master playlist on a player endpoint) in a page of another origin and
/// follows its reports until the video has played `seconds`, panicking on any error event.
fn watch(scratch: &TempDir, url: &str, viewer: &Proc, seconds: f64) -> Watched {
    let script = std::fs::read(hls_js(scratch)).expect("hls.min.js");
    let (tx, reports) = mpsc::channel();
    let port = page_server(PAGE.replace("SRC", url), script, tx);
    let _browser = chromium(
        &scratch.join("profile"),
        &format!("http://127.0.0.1:{port}/"),
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut first: Option<f64> = None;
    let mut watched = Watched {
        supported: false,
        latencies: Vec::new(),
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let report = reports.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "no playback within 40 s; viewer log:\n{}",
                viewer.log_text()
            )
        });
        match report["kind"].as_str() {
            Some("support") => watched.supported = report["hls"].as_bool() == Some(true),
            Some("error") => panic!("hls.js or <video> error: {report}"),
            Some("time") => {
                let t = report["t"].as_f64().unwrap_or(0.0);
                if let Some(latency) = report["latency"].as_f64().filter(|l| *l > 0.0) {
                    watched.latencies.push(latency);
                }
                if t <= 0.0 {
                    continue;
                }
                let t0 = *first.get_or_insert(t);
                if t - t0 >= seconds {
                    return watched;
                }
            }
            _ => {}
        }
    }
}

#[test]
fn hls_js_in_chromium_plays_a_live_stream_from_play() {
    let _one = ONE_BROWSER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let scratch = TempDir::new("browser");
    let live = live_hls(
        "browser-hls",
        hls_encoder,
        Duration::from_secs(2),
        "master.m3u8",
    );
    let url = format!("http://{}/master.m3u8", live.addr);
    let watched = watch(&scratch, &url, &live.viewer, 4.0);
    assert!(watched.supported, "hls.js reports MSE support");
    assert!(
        !watched.latencies.is_empty(),
        "hls.js estimates its latency once playing"
    );
}

#[test]
fn hls_js_in_chromium_plays_a_vod_package_from_play() {
    let _one = ONE_BROWSER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let scratch = TempDir::new("browser-vod");
    let package = vod_package(&scratch.join("package"), Package::HlsTs);
    let served = serve(&scratch, &package);
    let url = format!("http://{}/{}", served.addr, Package::HlsTs.entry());
    let watched = watch(&scratch, &url, &served.viewer, 4.0);
    assert!(watched.supported, "hls.js reports MSE support");
}
