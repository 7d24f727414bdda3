//! Two tracker nodes on one Redis store: a leech whose tracker is SIGKILLed mid-download
//! goes on through the other node with its session and finishes the download there.

mod peer_common;

use std::process::Command;
use std::time::Duration;

use peer_common::{Proc, TempDir, peer_stats, random_file, tracker_members, wait_until};
use ppsp_store_redis::testing::RedisServer;

const MIB: usize = 1024 * 1024;

fn tracker_on(dir: &TempDir, name: &str, store: &str) -> (Proc, String) {
    let proc = Proc::spawn(
        dir,
        name,
        &["tracker", "--listen", "127.0.0.1:0", "--store", store],
        false,
    );
    let addr = proc.wait_listening();
    (proc, format!("http://{addr}"))
}

fn seed(
    dir: &TempDir,
    name: &str,
    trackers: &[&str],
    path: &str,
    extra: &[&str],
) -> (Proc, String, String) {
    let mut args = vec![
        "peer",
        "seed",
        path,
        "--listen",
        "127.0.0.1:0",
        "--report-interval",
        "1",
    ];
    for tracker in trackers {
        args.extend(["--tracker", tracker]);
    }
    args.extend_from_slice(extra);
    let proc = Proc::spawn(dir, name, &args, false);
    let swarm = proc.wait_line("swarm ", Duration::from_secs(60));
    let addr = proc.wait_listening();
    (proc, swarm, addr)
}

fn uploaded(addr: &str, swarm: &str) -> u64 {
    peer_stats(addr, swarm)["uploaded_bytes"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn a_download_goes_on_through_the_second_node_when_the_first_is_killed() {
    let redis = RedisServer::start().expect("redis-server");
    let dir = TempDir::new("failover");
    let (mut node_a, url_a) = tracker_on(&dir, "tracker-a", &redis.url());
    let (_node_b, url_b) = tracker_on(&dir, "tracker-b", &redis.url());
    let input = dir.join("input.bin");
    let data = random_file(&input, 8 * MIB, 7);
    let input = input.to_str().expect("utf-8");

    // A slow seed known through A: alone it would take about 16 s to serve the file.
    let (_slow, swarm, slow_addr) = seed(
        &dir,
        "slow-seed",
        &[&url_a],
        input,
        &["--upload-rate", "512"],
    );
    let output = dir.join("out.bin");
    let mut leech = Proc::spawn(
        &dir,
        "leech",
        &[
            "peer",
            "get",
            &swarm,
            "--tracker",
            &url_a,
            "--tracker",
            &url_b,
            "--output",
            output.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
            "--find-interval",
            "1",
            "--peer-id",
            "the-leech",
        ],
        false,
    );
    wait_until(Duration::from_secs(60), "download under way", || {
        uploaded(&slow_addr, &swarm) > 0
    });

    // Node A dies without a word; a fast seed appears, registered through B only.
    let killed = Command::new("kill")
        .args(["-KILL", &node_a.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    node_a.wait_exit(Duration::from_secs(10));
    let (_fast, fast_swarm, fast_addr) = seed(&dir, "fast-seed", &[&url_b], input, &[]);
    assert_eq!(fast_swarm, swarm);

    let status = leech.wait_exit(Duration::from_secs(120));
    assert!(status.success(), "leech failed:\n{}", leech.log_text());
    assert!(
        std::fs::read(&output).expect("output") == data,
        "output differs"
    );
    // The leech could only learn of the fast seed from B, after A was gone.
    assert!(
        uploaded(&fast_addr, &swarm) > 0,
        "the fast seed served nothing"
    );
    // The state is shared: B lists the seed that registered through A.
    let slow_id = peer_stats(&slow_addr, &swarm)["peer_id"].clone();
    let members = tracker_members(&url_b, &swarm);
    assert!(
        members.iter().any(|m| m["peer_id"] == slow_id),
        "{members:?}"
    );
}
