//! End-to-end with the real binary: an interrupted `get` resumes from its `.part` file, a
//! complete output is recognised without a download, and another file is not overwritten
//! unless asked.

mod peer_common;

use std::time::Duration;

use peer_common::{Proc, TempDir, peer_stats, random_file, tracker, wait_until};

const MIB: usize = 1024 * 1024;

fn uploaded(seed_addr: &str, swarm: &str) -> u64 {
    peer_stats(seed_addr, swarm)["uploaded_bytes"]
        .as_u64()
        .expect("uploaded_bytes")
}

fn get(dir: &TempDir, name: &str, url: &str, swarm: &str, output: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "peer",
        "get",
        swarm,
        "--tracker",
        url,
        "--output",
        output,
        "--linger",
        "0",
        "--find-interval",
        "1",
    ];
    args.extend_from_slice(extra);
    Proc::spawn(dir, name, &args, false)
}

#[test]
fn interrupted_get_resumes_and_existing_outputs_are_respected() {
    let dir = TempDir::new("resume");
    let (_tracker, url) = tracker(&dir);
    let input = dir.join("input.bin");
    let total = 8 * MIB;
    let data = random_file(&input, total, 11);
    // Capped at 2 MiB/s so the first run can be stopped part way.
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
    let seed_addr = seed.wait_listening();

    let out = dir.join("out.bin");
    let out_str = out.to_str().expect("utf-8");
    let mut first = get(&dir, "first", &url, &swarm, out_str, &[]);
    wait_until(Duration::from_secs(30), "a third of the content", || {
        uploaded(&seed_addr, &swarm) >= (total / 3) as u64
    });
    first.terminate(Duration::from_secs(20));
    assert!(!out.exists(), "an interrupted download is not renamed");
    assert!(
        dir.join("out.bin.part").exists(),
        "the partial file is kept"
    );
    let before = uploaded(&seed_addr, &swarm);
    assert!(before < total as u64, "the first run was not interrupted");

    let mut second = get(&dir, "second", &url, &swarm, out_str, &[]);
    let status = second.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "resume failed:\n{}", second.log_text());
    assert!(
        std::fs::read(&out).expect("output") == data,
        "output differs"
    );
    assert!(
        second.log_text().contains("resuming"),
        "{}",
        second.log_text()
    );
    let fetched_again = uploaded(&seed_addr, &swarm) - before;
    // Only what was missing, plus at most the requests that were in flight at the stop.
    let in_flight_slack = 16 * 32 * 1024;
    assert!(
        fetched_again <= total as u64 - before + in_flight_slack,
        "the second run fetched {fetched_again} bytes; {before} were already there"
    );

    // A complete, verified output: nothing is fetched.
    let before = uploaded(&seed_addr, &swarm);
    let mut third = get(&dir, "third", &url, &swarm, out_str, &[]);
    let status = third.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{}", third.log_text());
    assert!(
        third
            .log_text()
            .contains("already holds the verified content"),
        "{}",
        third.log_text()
    );
    assert_eq!(uploaded(&seed_addr, &swarm), before, "fetched again");

    // Another file under the output name is refused, and left alone ...
    let other = dir.join("other.bin");
    std::fs::write(&other, b"not the content").expect("write");
    let other_str = other.to_str().expect("utf-8");
    let mut refused = get(&dir, "refused", &url, &swarm, other_str, &[]);
    let status = refused.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "overwrote without --force");
    assert!(
        refused.log_text().contains("pass --force"),
        "{}",
        refused.log_text()
    );
    assert_eq!(std::fs::read(&other).expect("kept"), b"not the content");
    // ... unless --force.
    let mut forced = get(&dir, "forced", &url, &swarm, other_str, &["--force"]);
    let status = forced.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{}", forced.log_text());
    assert!(
        std::fs::read(&other).expect("output") == data,
        "output differs"
    );
}
