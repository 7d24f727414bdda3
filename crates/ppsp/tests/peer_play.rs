//! End-to-end: the player endpoint answers Range requests while the content is still
//! arriving.

mod peer_common;

use std::time::Duration;

use peer_common::{HttpStream, Proc, TempDir, http_get, peer_stats, random_file, tracker};

#[test]
fn range_request_answered_with_206_while_downloading() {
    let dir = TempDir::new("play");
    let (_tracker, url) = tracker(&dir);
    let input = dir.join("clip.mp4");
    let total = 8 * 1024 * 1024;
    let data = random_file(&input, total, 4);
    // A seed capped at 2 MiB/s: the whole download takes about four seconds.
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
            "2048",
        ],
        false,
    );
    let swarm = seed.wait_line("swarm ", Duration::from_secs(30));
    seed.wait_listening();

    let player = Proc::spawn(
        &dir,
        "player",
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
    );
    assert_eq!(player.wait_line("swarm ", Duration::from_secs(30)), swarm);
    let addr = player.wait_listening();
    let peer_addr = player.wait_peer_on();
    assert_ne!(
        addr, peer_addr,
        "the player endpoint is a listener of its own"
    );

    // A range near the end: the player must not wait for the chunks before it.
    let (start, end) = (total - 1_000_000 + 123, total - 1_000);
    let range = format!("bytes={start}-{end}");
    let response = http_get(&addr, "/", &[("Range", &range)]);
    assert_eq!(response.status, 206);
    assert_eq!(
        response.header("content-range"),
        Some(format!("bytes {start}-{end}/{total}").as_str())
    );
    assert_eq!(response.header("content-type"), Some("video/mp4"));
    assert_eq!(response.header("accept-ranges"), Some("bytes"));
    assert_eq!(response.body.len(), end - start + 1);
    assert!(
        response.body == data[start..=end],
        "wrong bytes for {range}"
    );

    let stats = peer_stats(&peer_addr, &swarm);
    let (held, all) = (
        stats["chunks_held"].as_u64(),
        stats["chunks_total"].as_u64(),
    );
    assert!(
        held < all,
        "the range was answered only after the whole download ({held:?} of {all:?})"
    );

    // An open range from the start, read only partly, streams from the beginning.
    let mut head = HttpStream::open(&addr, "GET", "/", &[("Range", "bytes=100-")]);
    assert_eq!(head.status, 206);
    let piece = head.next_piece();
    assert!(!piece.is_empty());
    assert!(piece[..] == data[100..100 + piece.len()]);
    drop(head);

    // Outside the content: 416 with the full length.
    let response = http_get(&addr, "/", &[("Range", &format!("bytes={total}-"))]);
    assert_eq!(response.status, 416);
    assert_eq!(
        response.header("content-range"),
        Some(format!("bytes */{total}").as_str())
    );

    // Without a Range header: everything, once it has all arrived.
    let response = http_get(&addr, "/", &[]);
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-length"),
        Some(total.to_string().as_str())
    );
    assert!(response.body == data, "full body differs");

    // The peer endpoint answers only the peer protocol (and its metrics) ...
    assert_eq!(http_get(&peer_addr, "/", &[]).status, 404);
    let metrics = http_get(&peer_addr, "/metrics", &[]);
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body).expect("utf-8");
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    assert!(value("ppsp_peer_downloaded_bytes_total") >= total as f64);
    assert_eq!(
        value("ppsp_peer_chunks_verified_total"),
        (total / 32768) as f64
    );
    assert_eq!(value("ppsp_peer_chunks_rejected_total"), 0.0);
    assert!(value("ppsp_peer_peers_connected") >= 1.0);
    assert!(
        text.contains("ppsp_peer_peer_downloaded_bytes_total{swarm="),
        "no per-peer figures:\n{text}"
    );
    // ... and the player endpoint does not answer it.
    assert_eq!(
        http_get(&addr, &format!("/ppsp/v1/{swarm}/stats"), &[]).status,
        404
    );
    // The content is also served under its own name.
    let named = http_get(&addr, "/clip.mp4", &[("Range", "bytes=0-99")]);
    assert_eq!(named.status, 206);
    assert!(named.body == data[..100]);
}
