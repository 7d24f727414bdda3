//! End-to-end swarms with the real binary: a tracker, a seed and leeches on loopback.

mod peer_common;

use std::time::Duration;

use peer_common::{Proc, TempDir, peer_stats, random_file, tracker, tracker_members, wait_until};

const MIB: usize = 1024 * 1024;

fn seed(
    dir: &TempDir,
    name: &str,
    tracker_url: &str,
    path: &str,
    extra: &[&str],
) -> (Proc, String, String) {
    let mut args = vec![
        "peer",
        "seed",
        path,
        "--tracker",
        tracker_url,
        "--listen",
        "127.0.0.1:0",
        "--report-interval",
        "1",
    ];
    args.extend_from_slice(extra);
    let proc = Proc::spawn(dir, name, &args, false);
    let swarm = proc.wait_line("swarm ", Duration::from_secs(60));
    let addr = proc.wait_listening();
    (proc, swarm, addr)
}

fn get(dir: &TempDir, name: &str, tracker_url: &str, swarm: &str, output: &str) -> Proc {
    Proc::spawn(
        dir,
        name,
        &[
            "peer",
            "get",
            swarm,
            "--tracker",
            tracker_url,
            "--output",
            output,
            "--listen",
            "127.0.0.1:0",
            "--find-interval",
            "1",
        ],
        false,
    )
}

/// Per-peer uploaded bytes the tracker shows for `swarm`, by PeerID.
fn tracker_uploads(tracker_url: &str, swarm: &str) -> Vec<(String, u64)> {
    tracker_members(tracker_url, swarm)
        .iter()
        .map(|p| {
            (
                p["peer_id"].as_str().unwrap_or_default().to_owned(),
                p["uploaded_bytes"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// The tracker's `/api/stats` entry for one peer of `swarm`.
fn tracker_peer(tracker_url: &str, swarm: &str, peer_id: &str) -> Option<serde_json::Value> {
    tracker_members(tracker_url, swarm)
        .into_iter()
        .find(|p| p["peer_id"] == peer_id)
}

#[test]
fn five_peers_share_32_mib_and_the_seed_uploads_less_than_half() {
    let dir = TempDir::new("five");
    let (_tracker, url) = tracker(&dir);
    let input = dir.join("input.bin");
    let data = random_file(&input, 32 * MIB, 1);
    let (_seed, swarm, seed_addr) = seed(&dir, "seed", &url, input.to_str().expect("utf-8"), &[]);

    let outputs: Vec<_> = (0..4).map(|i| dir.join(&format!("out{i}.bin"))).collect();
    let mut leeches: Vec<Proc> = outputs
        .iter()
        .enumerate()
        .map(|(i, out)| {
            get(
                &dir,
                &format!("leech{i}"),
                &url,
                &swarm,
                out.to_str().expect("utf-8"),
            )
        })
        .collect();
    for leech in &mut leeches {
        let status = leech.wait_exit(Duration::from_secs(120));
        assert!(
            status.success(),
            "{} failed:\n{}",
            leech.name,
            leech.log_text()
        );
    }
    for out in &outputs {
        let got = std::fs::read(out).expect("output written");
        assert!(got == data, "{} differs from the input", out.display());
    }

    let delivered = 4 * data.len() as u64;
    let seed_stats = peer_stats(&seed_addr, &swarm);
    let seed_uploaded = seed_stats["uploaded_bytes"]
        .as_u64()
        .expect("uploaded_bytes");
    let seed_id = seed_stats["peer_id"].as_str().expect("peer_id").to_owned();
    assert!(seed_uploaded > 0, "the seed uploaded nothing");
    assert!(
        seed_uploaded * 2 < delivered,
        "the seed uploaded {seed_uploaded} of {delivered} bytes delivered"
    );
    // The tracker learns the same figure from the seed's STAT_REPORTs.
    wait_until(Duration::from_secs(15), "the seed's STAT_REPORT", || {
        tracker_uploads(&url, &swarm)
            .iter()
            .any(|(id, up)| *id == seed_id && *up == seed_uploaded)
    });
}

#[test]
fn corrupt_peer_is_dropped_and_download_completes() {
    let dir = TempDir::new("corrupt");
    let (_tracker, url) = tracker(&dir);
    let input = dir.join("input.bin");
    let data = random_file(&input, 4 * MIB, 2);
    let path = input.to_str().expect("utf-8");
    let chunk = ["--chunk-kib", "32"];
    let (_good, swarm, _) = seed(&dir, "good", &url, path, &chunk);
    let mut bad_args = chunk.to_vec();
    bad_args.push("--corrupt-uploads");
    let (_bad, bad_swarm, bad_addr) = seed(&dir, "bad", &url, path, &bad_args);
    assert_eq!(swarm, bad_swarm, "same file, same manifest, same swarm");

    let out = dir.join("out.bin");
    let mut leech = get(&dir, "leech", &url, &swarm, out.to_str().expect("utf-8"));
    let status = leech.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "leech failed:\n{}", leech.log_text());
    assert!(
        std::fs::read(&out).expect("output") == data,
        "output differs"
    );

    let log = leech.log_text();
    // Not a terminal: plain progress lines on standard error.
    assert!(
        log.contains("progress: 100.0% 4.0/4.0 MiB"),
        "no progress lines:\n{log}"
    );
    // The last line gives the average rate, not 0 (the download may end between lines).
    let final_rate = log
        .lines()
        .rfind(|line| line.starts_with("progress: 100.0%"))
        .and_then(|line| line.split(", ").nth(1))
        .and_then(|rate| rate.strip_suffix(" MiB/s"))
        .and_then(|rate| rate.parse::<f64>().ok());
    assert!(
        final_rate.is_some_and(|rate| rate > 0.0),
        "no rate in the final progress line:\n{log}"
    );
    assert!(
        log.contains("dropping a peer that sent a corrupt chunk"),
        "the corrupt peer was not detected:\n{log}"
    );
    // Dropped after its first bad answers and never asked again: it served at most the
    // two requests a leech may have outstanding to one seed.
    let bad_uploaded = peer_stats(&bad_addr, &swarm)["uploaded_bytes"]
        .as_u64()
        .expect("uploaded_bytes");
    assert!(bad_uploaded > 0);
    assert!(
        bad_uploaded <= 2 * 32 * 1024,
        "corrupt peer kept serving: {bad_uploaded}"
    );
}

#[test]
fn leech_completes_after_the_seed_left() {
    let dir = TempDir::new("seedgone");
    let (_tracker, url) = tracker(&dir);
    let input = dir.join("input.bin");
    let data = random_file(&input, 4 * MIB, 3);
    let (mut seed_proc, swarm, seed_addr) = seed(
        &dir,
        "seed",
        &url,
        input.to_str().expect("utf-8"),
        &["--chunk-kib", "64"],
    );

    // A viewer that fetches everything and keeps serving it.
    let viewer = Proc::spawn(
        &dir,
        "viewer",
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
    viewer.wait_listening();
    let viewer_addr = viewer.wait_peer_on();
    wait_until(
        Duration::from_secs(60),
        "the viewer to hold every chunk",
        || {
            let response =
                peer_common::http_get(&viewer_addr, &format!("/ppsp/v1/{swarm}/stats"), &[]);
            response.status == 200
                && serde_json::from_slice::<serde_json::Value>(&response.body)
                    .is_ok_and(|s| s["chunks_held"] == s["chunks_total"] && s["chunks_total"] == 64)
        },
    );

    // The viewer's STAT_REPORTs carry its counters and chunk map to the tracker.
    let viewer_stats = peer_stats(&viewer_addr, &swarm);
    let viewer_id = viewer_stats["peer_id"]
        .as_str()
        .expect("peer_id")
        .to_owned();
    let viewer_downloaded = viewer_stats["downloaded_bytes"]
        .as_u64()
        .expect("downloaded");
    assert!(viewer_downloaded >= data.len() as u64);
    wait_until(Duration::from_secs(15), "the viewer's STAT_REPORT", || {
        tracker_peer(&url, &swarm, &viewer_id).is_some_and(|p| {
            p["downloaded_bytes"].as_u64() == Some(viewer_downloaded)
                && p["chunks_held"].as_u64() == Some(64)
        })
    });

    // The seed stops (LEAVE + DISCONNECT) ...
    let seed_id = peer_stats(&seed_addr, &swarm)["peer_id"]
        .as_str()
        .expect("peer_id")
        .to_owned();
    assert!(
        tracker_uploads(&url, &swarm)
            .iter()
            .any(|(id, _)| *id == seed_id)
    );
    let status = seed_proc.terminate(Duration::from_secs(20));
    assert!(
        status.success(),
        "seed exit: {status:?}\n{}",
        seed_proc.log_text()
    );
    assert!(
        seed_proc
            .log_text()
            .contains("left the swarm and disconnected")
    );
    assert!(
        !tracker_uploads(&url, &swarm)
            .iter()
            .any(|(id, _)| *id == seed_id),
        "the tracker still lists the seed after its LEAVE"
    );

    // ... and a new leech still gets everything, from the viewer.
    let out = dir.join("out.bin");
    let mut leech = get(&dir, "late", &url, &swarm, out.to_str().expect("utf-8"));
    let status = leech.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "late leech failed:\n{}", leech.log_text());
    assert!(
        std::fs::read(&out).expect("output") == data,
        "output differs"
    );
    let viewer_uploaded = peer_stats(&viewer_addr, &swarm)["uploaded_bytes"]
        .as_u64()
        .expect("uploaded_bytes");
    assert!(
        viewer_uploaded >= data.len() as u64,
        "the viewer served {viewer_uploaded}"
    );
}
