//! Helpers for the end-to-end peer tests: spawning the real `ppsp` binary, reading its
//! readiness lines, and a small blocking HTTP client.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A scratch directory removed when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "ppsp-peer-test-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `len` pseudo-random bytes to `path` and returns them. splitmix64 rather than a
/// cryptographic generator: tests run unoptimised, and 32 MiB must take well under a second.
pub(crate) fn random_file(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len.div_ceil(8) * 8];
    let mut state = seed;
    for word in data.chunks_exact_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        word.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    data.truncate(len);
    std::fs::write(path, &data).expect("write input");
    data
}

/// A running `ppsp` process; killed when dropped.
pub(crate) struct Proc {
    pub(crate) name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Starts `ppsp ARGS`, with standard error going to `dir/NAME.log`.
    pub(crate) fn spawn(dir: &TempDir, name: &str, args: &[&str], with_stdin: bool) -> Self {
        let log = dir.join(&format!("{name}.log"));
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ppsp"))
            .args(args)
            .stdin(if with_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn ppsp");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Self {
            name: name.to_owned(),
            child,
            lines,
            stdin,
            log,
        }
    }

    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a standard-output line starting with `prefix`; returns the rest.
    pub(crate) fn wait_line(&self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_owned();
                    }
                }
                Err(_) => panic!(
                    "{}: no line starting with {prefix:?} within {limit:?}; log:\n{}",
                    self.name,
                    self.log_text()
                ),
            }
        }
    }

    /// The host:port of a `listening on http://HOST:PORT` line.
    pub(crate) fn wait_listening(&self) -> String {
        self.wait_line("listening on http://", Duration::from_secs(30))
    }

    /// The host:port of `play`'s `peer on http://HOST:PORT` line (its endpoint for other
    /// peers; `listening on` is the player's).
    pub(crate) fn wait_peer_on(&self) -> String {
        self.wait_line("peer on http://", Duration::from_secs(30))
    }

    /// Standard-output lines printed so far and not yet consumed.
    pub(crate) fn drain_lines(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit on its own.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "{}: still running after {limit:?}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub(crate) fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        self.wait_exit(limit)
    }
}

/// Starts a tracker on a free loopback port; returns it and its base URL.
pub(crate) fn tracker(dir: &TempDir) -> (Proc, String) {
    let proc = Proc::spawn(
        dir,
        "tracker",
        &["tracker", "--listen", "127.0.0.1:0"],
        false,
    );
    let addr = proc.wait_listening();
    (proc, format!("http://{addr}"))
}

/// A parsed HTTP response.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl HttpResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 response whose head has been read; the body is read on demand.
pub(crate) struct HttpStream {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    chunked: bool,
    remaining: Option<u64>,
}

impl HttpStream {
    pub(crate) fn open(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        (&stream).write_all(request.as_bytes()).expect("send");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header line");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let chunked = find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let remaining = if method == "HEAD" {
            Some(0)
        } else {
            find("content-length").and_then(|v| v.parse().ok())
        };
        Self {
            status,
            headers,
            reader,
            chunked,
            remaining,
        }
    }

    /// The next piece of the body; empty at its end.
    pub(crate) fn next_piece(&mut self) -> Vec<u8> {
        if self.chunked {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
                return Vec::new();
            }
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
            let mut piece = vec![0u8; size];
            self.reader.read_exact(&mut piece).expect("chunk data");
            let mut crlf = [0u8; 2];
            self.reader.read_exact(&mut crlf).expect("chunk end");
            piece
        } else {
            let mut buf = vec![0u8; 64 * 1024];
            let want = match self.remaining {
                Some(0) => return Vec::new(),
                Some(n) => buf.len().min(n as usize),
                None => buf.len(),
            };
            let n = self.reader.read(&mut buf[..want]).expect("body");
            if let Some(r) = self.remaining.as_mut() {
                *r -= n as u64;
            }
            buf.truncate(n);
            buf
        }
    }

    pub(crate) fn read_all(mut self) -> HttpResponse {
        let mut body = Vec::new();
        loop {
            let piece = self.next_piece();
            if piece.is_empty() {
                break;
            }
            body.extend_from_slice(&piece);
        }
        HttpResponse {
            status: self.status,
            headers: self.headers,
            body,
        }
    }
}

pub(crate) fn http_get(addr: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    HttpStream::open(addr, "GET", path, headers).read_all()
}

pub(crate) fn http_json(addr: &str, path: &str) -> serde_json::Value {
    let response = http_get(addr, path, &[]);
    assert_eq!(response.status, 200, "GET {path}");
    serde_json::from_slice(&response.body).expect("JSON body")
}

/// Every member of `swarm` as the tracker's `/api/stats?swarm=` lists it (empty when the
/// swarm does not exist).
pub(crate) fn tracker_members(tracker_url: &str, swarm: &str) -> Vec<serde_json::Value> {
    let response = http_get(
        authority(tracker_url),
        &format!("/api/stats?swarm={swarm}&limit=500"),
        &[],
    );
    if response.status != 200 {
        return Vec::new();
    }
    let detail: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON body");
    detail["swarm"]["peers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Every member of every swarm the tracker lists, each with its `swarm_id` added.
pub(crate) fn tracker_all_members(tracker_url: &str) -> Vec<serde_json::Value> {
    let stats = http_json(authority(tracker_url), "/api/stats?limit=500&peers=0");
    let swarms = stats["swarms"].as_array().cloned().unwrap_or_default();
    swarms
        .iter()
        .filter_map(|s| s["swarm_id"].as_str().map(str::to_owned))
        .flat_map(|swarm| {
            tracker_members(tracker_url, &swarm)
                .into_iter()
                .map(move |mut member| {
                    member["swarm_id"] = serde_json::Value::from(swarm.clone());
                    member
                })
        })
        .collect()
}

/// The host:port of an `http://host:port` URL.
pub(crate) fn authority(url: &str) -> &str {
    url.trim_start_matches("http://").trim_end_matches('/')
}

/// A peer's own counters (`/ppsp/v1/{swarm}/stats`).
pub(crate) fn peer_stats(addr: &str, swarm: &str) -> serde_json::Value {
    http_json(addr, &format!("/ppsp/v1/{swarm}/stats"))
}

/// Polls `check` every 50 ms until it returns true or `limit` passes.
pub(crate) fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Live test streams are made of records of 32 bytes: `rec ` + 8 digits + padding + newline.
pub(crate) const RECORD: usize = 32;
/// Record `seq` of a live test stream.
pub(crate) fn record(seq: u64) -> Vec<u8> {
    let mut line = format!("rec {seq:08} ").into_bytes();
    line.resize(RECORD - 1, b'.');
    line.push(b'\n');
    line
}

/// The sequence number of a record; panics when `record` is not at a record boundary.
pub(crate) fn parse(record: &[u8]) -> u64 {
    assert!(
        record.starts_with(b"rec "),
        "not a record boundary: {record:?}"
    );
    std::str::from_utf8(&record[4..12])
        .expect("utf-8")
        .parse()
        .expect("sequence number")
}
