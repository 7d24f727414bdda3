//! A closed tracker (accounts, no ANONYMOUS) with its STUN service: peers authenticate with
//! SASL PLAIN and declare the reflexive address STUN told them.

mod peer_common;

use std::io::Write as _;
use std::time::Duration;

use peer_common::{Proc, TempDir, random_file, tracker_all_members, wait_until};

fn add_account(dir: &TempDir, accounts: &str, peer_id: &str, password: &str) {
    let mut proc = Proc::spawn(
        dir,
        &format!("accounts-{peer_id}"),
        &["accounts", "add", "--file", accounts, peer_id],
        true,
    );
    let mut stdin = proc.stdin.take().expect("stdin");
    writeln!(stdin, "{password}").expect("password");
    drop(stdin);
    assert!(proc.wait_exit(Duration::from_secs(60)).success());
}

/// The tracker's `/api/stats` peers of every swarm.
fn peers(tracker_url: &str) -> Vec<serde_json::Value> {
    tracker_all_members(tracker_url)
}

#[test]
fn plain_credentials_and_stun_reach_a_closed_tracker() {
    let dir = TempDir::new("closed");
    let accounts = dir.join("accounts");
    let accounts = accounts.to_str().expect("utf-8");
    add_account(&dir, accounts, "seed-1", "right horse battery");
    let good = dir.join("good-password");
    std::fs::write(&good, "right horse battery\n").expect("password file");
    let bad = dir.join("bad-password");
    std::fs::write(&bad, "wrong\n").expect("password file");

    let tracker = Proc::spawn(
        &dir,
        "tracker",
        &[
            "tracker",
            "--listen",
            "127.0.0.1:0",
            "--stun",
            "127.0.0.1:0",
            "--accounts",
            accounts,
            "--no-anonymous",
        ],
        false,
    );
    // Readiness lines come in this order: HTTP listeners, then the STUN service.
    let url = format!("http://{}", tracker.wait_listening());
    let stun = tracker.wait_line("stun on udp://", Duration::from_secs(60));
    let input = dir.join("input.bin");
    random_file(&input, 200_000, 7);
    let input = input.to_str().expect("utf-8");

    // Without an account the closed tracker refuses the peer, which gives up with an error.
    let mut anonymous = Proc::spawn(
        &dir,
        "anonymous",
        &["peer", "seed", input, "--tracker", &url],
        false,
    );
    assert!(!anonymous.wait_exit(Duration::from_secs(60)).success());

    // A wrong password is refused the same way.
    let mut wrong = Proc::spawn(
        &dir,
        "wrong",
        &[
            "peer",
            "seed",
            input,
            "--tracker",
            &url,
            "--peer-id",
            "seed-1",
            "--password-file",
            bad.to_str().expect("utf-8"),
        ],
        false,
    );
    assert!(!wrong.wait_exit(Duration::from_secs(60)).success());
    assert!(peers(&url).is_empty());

    // The right password gets in, and STUN's answer shows as STUN support at the tracker.
    let seed = Proc::spawn(
        &dir,
        "seed",
        &[
            "peer",
            "seed",
            input,
            "--tracker",
            &url,
            "--peer-id",
            "seed-1",
            "--password-file",
            good.to_str().expect("utf-8"),
            "--stun",
            &stun,
        ],
        false,
    );
    seed.wait_line("swarm ", Duration::from_secs(60));
    wait_until(Duration::from_secs(30), "seed joined", || {
        peers(&url)
            .iter()
            .any(|p| p["peer_id"] == "seed-1" && p["stun"] == true)
    });
}
