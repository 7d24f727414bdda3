//! `ppsp bench` against a real `ppsp tracker` on loopback: both protocols, a time-bounded and
//! a count-bounded run, `bench fill` registering a population, and a clear failure when no
//! tracker answers.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const PPSP: &str = env!("CARGO_BIN_EXE_ppsp");

/// A tracker child process, killed (by its own PID) when dropped.
struct Tracker {
    child: Child,
    url: String,
}

impl Tracker {
    fn start() -> Self {
        let mut child = Command::new(PPSP)
            .args(["--quiet", "tracker", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ppsp tracker");
        let stdout = child.stdout.take().expect("stdout piped");
        let (lines, ready) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let url = loop {
            match ready.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        break url.trim().to_owned();
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    panic!("tracker printed no readiness line: {e}");
                }
            }
        };
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        Self { child, url }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bench(args: &[&str]) -> Output {
    Command::new(PPSP)
        .arg("--quiet")
        .arg("bench")
        .args(args)
        .output()
        .expect("run ppsp bench")
}

/// The numbers of the summary line `requests N  errors N  elapsed S s  throughput R req/s`.
fn summary(stdout: &str) -> (u64, u64, f64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("requests "))
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |name: &str| {
        let at = words
            .iter()
            .position(|w| *w == name)
            .unwrap_or_else(|| panic!("no {name} in {line}"));
        words[at + 1].to_owned()
    };
    (
        number("requests").parse().expect("requests"),
        number("errors").parse().expect("errors"),
        number("throughput").parse().expect("throughput"),
    )
}

/// The request and error counts of one method's row.
fn row(stdout: &str, method: &str) -> (u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(method))
        .unwrap_or_else(|| panic!("no row for {method} in:\n{stdout}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    (
        words[1].parse().expect("requests"),
        words[2].parse().expect("errors"),
    )
}

#[test]
fn xml_run_against_a_live_tracker_has_no_errors() {
    let tracker = Tracker::start();
    let output = bench(&[
        "--tracker",
        &tracker.url,
        "--peers",
        "20",
        "--swarms",
        "4",
        "--connections",
        "8",
        "--duration",
        "2",
        "--chunk-map-bits",
        "512",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (requests, errors, throughput) = summary(&stdout);
    assert_eq!(errors, 0, "{stdout}");
    assert!(requests > 20 * 4, "{stdout}");
    assert!(throughput > 0.0, "{stdout}");
    // Every peer went through the whole life cycle exactly once.
    for method in ["CONNECT", "JOIN", "LEAVE", "DISCONNECT"] {
        assert_eq!(row(&stdout, method), (20, 0), "{method}\n{stdout}");
    }
    for method in ["FIND", "STAT_REPORT", "KEEPALIVE"] {
        let (count, errors) = row(&stdout, method);
        assert!(count > 0 && errors == 0, "{method}\n{stdout}");
    }
}

#[test]
fn json_run_with_a_request_budget() {
    let tracker = Tracker::start();
    let output = bench(&[
        "--tracker",
        &tracker.url,
        "--json",
        "--peers",
        "10",
        "--swarms",
        "3",
        "--connections",
        "4",
        "--requests",
        "300",
        // The multi-threaded runtime; the other runs take the default single thread.
        "--threads",
        "3",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (requests, errors, throughput) = summary(&stdout);
    assert_eq!(errors, 0, "{stdout}");
    // 300 loop requests plus one joining and one leaving CONNECT per peer.
    assert_eq!(requests, 300 + 2 * 10, "{stdout}");
    assert!(throughput > 0.0);
    assert_eq!(row(&stdout, "CONNECT(JOIN)"), (10, 0), "{stdout}");
    assert_eq!(row(&stdout, "CONNECT(LEAVE)"), (10, 0), "{stdout}");
    let loop_requests: u64 = ["FIND", "STAT_REPORT", "STAT_REPORT(keep-alive)"]
        .iter()
        .map(|m| row(&stdout, m).0)
        .sum();
    assert_eq!(loop_requests, 300, "{stdout}");
}

#[test]
fn zero_threads_is_refused() {
    let output = bench(&["--tracker", "http://127.0.0.1:9/", "--threads", "0"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--threads"), "{stderr}");
}

#[test]
fn find_mix_sends_only_finds_in_its_loop() {
    let tracker = Tracker::start();
    let output = bench(&[
        "--tracker",
        &tracker.url,
        "--mix",
        "find",
        "--peers",
        "10",
        "--swarms",
        "2",
        "--connections",
        "4",
        "--requests",
        "200",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(row(&stdout, "FIND"), (200, 0), "{stdout}");
    // Rows are printed only for methods that were sent.
    for method in ["STAT_REPORT", "KEEPALIVE"] {
        assert!(
            !stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(method)),
            "{method}\n{stdout}"
        );
    }
    assert_eq!(row(&stdout, "JOIN"), (10, 0), "{stdout}");
}

#[test]
fn no_tracker_is_an_error() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let output = bench(&[
        "--tracker",
        &url,
        "--peers",
        "2",
        "--duration",
        "0.5",
        "--timeout",
        "1",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no request reached the tracker"),
        "{stderr}"
    );
    assert!(stderr.contains("transport error"), "{stderr}");

    // A run bounded by a request count ends too: the peers give up on setting up.
    let started = std::time::Instant::now();
    let output = bench(&[
        "--tracker",
        &url,
        "--peers",
        "2",
        "--requests",
        "100",
        "--timeout",
        "1",
    ]);
    assert!(!output.status.success());
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// `GET /api/stats` of the tracker at `url`, decoded.
fn api_stats(url: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let authority = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(authority).expect("connect to tracker");
    write!(
        stream,
        "GET /api/stats HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .expect("send GET");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read answer");
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").expect("HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    serde_json::from_str(body).expect("stats JSON")
}

/// The numbers of the fill summary line `peers N  failed N  requests N  retries N ...`.
fn fill_summary(stdout: &str) -> (u64, u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("peers "))
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |name: &str| -> u64 {
        let at = words
            .iter()
            .position(|w| *w == name)
            .unwrap_or_else(|| panic!("no {name} in {line}"));
        words[at + 1].parse().expect(name)
    };
    (number("peers"), number("failed"), number("requests"))
}

#[test]
fn fill_registers_every_peer_in_both_protocols() {
    let tracker = Tracker::start();
    for (format, requests_per_peer) in [("xml", 2), ("json", 1)] {
        let output = bench(&[
            "fill",
            "--tracker",
            &tracker.url,
            "--format",
            format,
            "--peers",
            "300",
            "--swarms",
            "7",
            "--connections",
            "20",
        ]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            fill_summary(&stdout),
            (300, 0, 300 * requests_per_peer),
            "{stdout}"
        );
        assert!(
            stdout.contains("20 connections from 255 source addresses"),
            "{stdout}"
        );
    }
    // Both fills stay registered, in the same 7 swarms.
    let stats = api_stats(&tracker.url);
    assert_eq!(stats["totals"]["sessions"], 600, "{stats}");
    assert_eq!(stats["totals"]["peers"], 600, "{stats}");
    assert_eq!(stats["totals"]["swarms"], 7, "{stats}");
}

#[test]
fn fill_without_a_tracker_fails_and_says_so() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let output = bench(&[
        "fill",
        "--tracker",
        &url,
        "--peers",
        "3",
        "--connections",
        "3",
        "--timeout",
        "1",
    ]);
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(fill_summary(&stdout).0, 0, "{stdout}");
    assert_eq!(fill_summary(&stdout).1, 3, "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("3 peers were not registered"), "{stderr}");
}

#[test]
fn open_loop_sends_at_the_given_rate() {
    let tracker = Tracker::start();
    let output = bench(&[
        "--tracker",
        &tracker.url,
        "--peers",
        "16",
        "--swarms",
        "2",
        "--connections",
        "8",
        "--rate",
        "200",
        "--duration",
        "2",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("open loop at 200 req/s"), "{stdout}");
    let (_, errors, _) = summary(&stdout);
    assert_eq!(errors, 0, "{stdout}");
    // Due times k / 200 s for k = 0, 1, ... below 2 s: exactly 400 loop requests, which a
    // closed loop of 16 peers would send many times over in 2 s.
    let loop_requests: u64 = ["FIND", "STAT_REPORT", "KEEPALIVE"]
        .iter()
        .map(|m| row(&stdout, m).0)
        .sum();
    assert_eq!(loop_requests, 400, "{stdout}");
    let elapsed: f64 = stdout
        .lines()
        .find(|l| l.starts_with("requests "))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "elapsed").nth(1))
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no elapsed in:\n{stdout}"));
    assert!(elapsed >= 1.99, "{stdout}");
    // The header names the extra percentile.
    assert!(stdout.contains("p99.9 ms"), "{stdout}");
    // Every loop request's delay before sending is in its own row, after the methods, and
    // is not counted in the total again.
    let delay = stdout
        .lines()
        .find(|l| l.starts_with("send delay "))
        .unwrap_or_else(|| panic!("no send delay row in:\n{stdout}"));
    let words: Vec<&str> = delay.split_whitespace().collect();
    assert_eq!(words.get(2..4), Some(&["400", "-"][..]), "{stdout}");
    let delays: Vec<f64> = words[4..]
        .iter()
        .map(|w| w.parse().expect("milliseconds"))
        .collect();
    assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{stdout}");
    let (total, _, _) = summary(&stdout);
    let setup: u64 = ["CONNECT", "JOIN", "LEAVE", "DISCONNECT"]
        .iter()
        .map(|m| row(&stdout, m).0)
        .sum();
    assert_eq!(total, setup + 400, "{stdout}");
}

#[test]
fn a_closed_loop_has_no_send_delay_row() {
    let tracker = Tracker::start();
    let output = bench(&[
        "--tracker",
        &tracker.url,
        "--peers",
        "4",
        "--swarms",
        "1",
        "--requests",
        "40",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(!stdout.contains("send delay"), "{stdout}");
}
