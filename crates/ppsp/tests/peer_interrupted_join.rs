//! A leech stopped while it is still searching for the manifest leaves the tracker cleanly:
//! the tracker must not keep listing a peer that is gone until its session expires.

mod peer_common;

use std::time::Duration;

use peer_common::{Proc, TempDir, authority, http_json, tracker, tracker_members, wait_until};

/// Peers the tracker lists in `swarm`, and its LEAVE and DISCONNECT counts.
fn tracker_view(url: &str, swarm: &str) -> (usize, u64, u64) {
    let stats = http_json(authority(url), "/api/stats");
    let peers = tracker_members(url, swarm).len();
    let count = |method: &str| stats["requests_by_method"][method].as_u64().unwrap_or(0);
    (peers, count("LEAVE"), count("DISCONNECT"))
}

#[test]
fn sigterm_during_the_manifest_search_leaves_and_disconnects() {
    let dir = TempDir::new("interrupted-join");
    let (_tracker, url) = tracker(&dir);
    // Well formed, but nobody serves it: the leech waits for a manifest.
    let swarm = "5".repeat(64);
    let output = dir.join("never.bin");
    let output = output.to_str().expect("utf-8");
    for command in ["get", "play"] {
        let mut args = vec!["peer", command, &swarm, "--tracker", &url];
        if command == "get" {
            args.extend(["--output", output]);
        }
        let mut leech = Proc::spawn(&dir, command, &args, false);
        leech.wait_listening();
        wait_until(
            Duration::from_secs(20),
            "the tracker lists the leech",
            || tracker_view(&url, &swarm).0 == 1,
        );
        let (_, leaves, disconnects) = tracker_view(&url, &swarm);
        let status = leech.terminate(Duration::from_secs(20));
        assert!(
            !status.success(),
            "{command}: an interrupted join is not a success"
        );
        let (peers, leaves_after, disconnects_after) = tracker_view(&url, &swarm);
        assert_eq!(
            peers, 0,
            "{command}: the tracker still lists the stopped leech"
        );
        assert_eq!(leaves_after, leaves + 1, "{command}: no LEAVE");
        assert_eq!(
            disconnects_after,
            disconnects + 1,
            "{command}: no DISCONNECT"
        );
        assert!(
            leech.log_text().contains("interrupted"),
            "{command}: unclear message:\n{}",
            leech.log_text()
        );
    }
}
