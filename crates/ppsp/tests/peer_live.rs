//! End-to-end live streaming: a LIVESEED reading standard input and two viewers.

mod peer_common;

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peer_common::{HttpStream, Proc, RECORD, TempDir, parse, record, tracker};

/// Records the source produces before its input ends.
const TOTAL: u64 = 220;

#[test]
fn live_chunks_reach_two_viewers_in_order_and_promptly() {
    let dir = TempDir::new("live");
    let (_tracker, url) = tracker(&dir);
    let mut source = Proc::spawn(
        &dir,
        "source",
        &["peer", "live", "--tracker", &url, "--flush-ms", "100"],
        true,
    );
    let swarm = source.wait_line("swarm ", Duration::from_secs(30));
    assert!(swarm.starts_with("live-"));
    source.wait_listening();

    // Produce a record every 20 ms for about four seconds, remembering when each was written, then
    // end the input.
    let written: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let mut stdin = source.stdin.take().expect("stdin");
    let writer_log = Arc::clone(&written);
    let writer = std::thread::spawn(move || {
        for seq in 0..TOTAL {
            // Noted before the write: the record may reach a viewer before this thread
            // runs again.
            writer_log.lock().expect("lock").push(Instant::now());
            if stdin.write_all(&record(seq)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    while written.lock().expect("lock").len() < 50 {
        std::thread::sleep(Duration::from_millis(10));
    }

    let viewers: Vec<Proc> = (0..2)
        .map(|i| {
            Proc::spawn(
                &dir,
                &format!("viewer{i}"),
                &[
                    "peer",
                    "play",
                    &swarm,
                    "--tracker",
                    &url,
                    "--listen",
                    "127.0.0.1:0",
                ],
                false,
            )
        })
        .collect();
    // A recorder: `get` on a live swarm writes the stream until the source ends it.
    let recording = dir.join("recording.ts");
    let mut recorder = Proc::spawn(
        &dir,
        "recorder",
        &[
            "peer",
            "get",
            &swarm,
            "--tracker",
            &url,
            "--output",
            recording.to_str().expect("utf-8"),
        ],
        false,
    );
    let readers: Vec<_> = viewers
        .iter()
        .map(|viewer| {
            let addr = viewer.wait_listening();
            let written = Arc::clone(&written);
            std::thread::spawn(move || {
                let produced_at_start = written.lock().expect("lock").len() as u64;
                let mut stream = HttpStream::open(&addr, "GET", "/", &[]);
                assert_eq!(stream.status, 200);
                let mut pending = Vec::new();
                let mut seen: Vec<u64> = Vec::new();
                let mut worst = Duration::ZERO;
                let deadline = Instant::now() + Duration::from_secs(30);
                while seen.len() < 100 {
                    assert!(Instant::now() < deadline, "viewer stalled after {seen:?}");
                    let piece = stream.next_piece();
                    assert!(!piece.is_empty(), "stream ended early");
                    let arrived = Instant::now();
                    pending.extend_from_slice(&piece);
                    while pending.len() >= RECORD {
                        let seq = parse(&pending[..RECORD]);
                        pending.drain(..RECORD);
                        let produced = written.lock().expect("lock")[seq as usize];
                        worst = worst.max(arrived.duration_since(produced));
                        seen.push(seq);
                    }
                }
                (produced_at_start, seen, worst)
            })
        })
        .collect();
    for reader in readers {
        let (produced_at_start, seen, worst) = reader.join().expect("viewer thread");
        for pair in seen.windows(2) {
            assert_eq!(
                pair[1],
                pair[0] + 1,
                "records out of order or missing: {seen:?}"
            );
        }
        // Near the live edge: not from the start of the stream.
        assert!(
            seen[0] + 40 >= produced_at_start,
            "viewer started at record {} while {produced_at_start} existed",
            seen[0]
        );
        assert!(
            worst < Duration::from_secs(3),
            "a record took {worst:?} to arrive"
        );
    }
    let _ = writer.join();
    let status = recorder.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "recorder failed:\n{}",
        recorder.log_text()
    );
    let recorded = std::fs::read(&recording).expect("recording");
    assert!(recorded.len() % RECORD == 0 && !recorded.is_empty());
    let seqs: Vec<u64> = recorded.chunks(RECORD).map(parse).collect();
    for pair in seqs.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "recording out of order or missing records"
        );
    }
    assert_eq!(
        seqs.last(),
        Some(&(TOTAL - 1)),
        "recording stops at the end of the input"
    );
    assert!(
        seqs[0] > 0,
        "recording starts near the live edge, not at the beginning"
    );
    drop(viewers);
    drop(source);
}
