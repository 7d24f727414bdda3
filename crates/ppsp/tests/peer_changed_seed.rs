//! End-to-end with the real binary: a seed whose file changes on disk stops offering the
//! damaged chunk (logging it once, with the file name), its leech says why it waits and
//! completes from another seed, and the seed exits with an error once the file is gone.

mod peer_common;

use std::time::Duration;

use peer_common::{Proc, TempDir, http_json, random_file, tracker, tracker_members, wait_until};

const CHUNK: usize = 32 * 1024;

fn seed(dir: &TempDir, name: &str, url: &str, path: &str) -> (Proc, String, String) {
    let proc = Proc::spawn(
        dir,
        name,
        &[
            "peer",
            "seed",
            path,
            "--tracker",
            url,
            "--chunk-kib",
            "32",
            "--report-interval",
            "1",
        ],
        false,
    );
    let swarm = proc.wait_line("swarm ", Duration::from_secs(30));
    let addr = proc.wait_listening();
    (proc, swarm, addr)
}

#[test]
fn a_changed_seed_file_is_not_served_and_its_loss_ends_the_seed() {
    let dir = TempDir::new("changed");
    let (_tracker, url) = tracker(&dir);
    let first = dir.join("first.bin");
    let data = random_file(&first, 64 * CHUNK, 31);
    // The same name in another folder: same manifest, same swarm.
    std::fs::create_dir_all(dir.join("copy")).expect("mkdir");
    let second = dir.join("copy/first.bin");
    std::fs::write(&second, &data).expect("copy");
    let (mut damaged, swarm, damaged_addr) =
        seed(&dir, "damaged", &url, first.to_str().expect("utf-8"));

    // Chunk 5 changes under the running seed (same length, written in place).
    {
        use std::os::unix::fs::FileExt as _;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&first)
            .expect("open");
        file.write_all_at(b"changed", (5 * CHUNK + 100) as u64)
            .expect("write");
    }

    let out = dir.join("out.bin");
    let mut leech = Proc::spawn(
        &dir,
        "leech",
        &[
            "peer",
            "get",
            &swarm,
            "--tracker",
            &url,
            "--output",
            out.to_str().expect("utf-8"),
            "--find-interval",
            "1",
            "--linger",
            "0",
        ],
        false,
    );
    wait_until(
        Duration::from_secs(30),
        "the leech to say why it waits",
        || leech.log_text().contains("1 chunks held by no known peer"),
    );
    let map = http_json(&damaged_addr, &format!("/ppsp/v1/{swarm}/chunkmap"));
    assert_eq!(
        map["complete"], false,
        "the damaged seed still claims it all"
    );
    // The tracker learns the reduced chunk map from the seed's next STAT_REPORT.
    let seed_id = http_json(&damaged_addr, &format!("/ppsp/v1/{swarm}/stats"))["peer_id"]
        .as_str()
        .expect("peer_id")
        .to_owned();
    wait_until(Duration::from_secs(15), "the tracker's chunk map", || {
        tracker_members(&url, &swarm)
            .iter()
            .any(|p| p["peer_id"] == seed_id && p["chunks_held"].as_u64() == Some(63))
    });

    // Another seed of the same content: the leech completes from it.
    let (_good, good_swarm, _) = seed(&dir, "good", &url, second.to_str().expect("utf-8"));
    assert_eq!(good_swarm, swarm);
    let status = leech.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "leech failed:\n{}", leech.log_text());
    assert!(
        std::fs::read(&out).expect("output") == data,
        "output differs"
    );

    let log = damaged.log_text();
    let reports = log.matches("no longer offering it").count();
    assert_eq!(reports, 1, "logged {reports} times:\n{log}");
    assert!(
        log.contains(first.to_str().expect("utf-8")),
        "no file name:\n{log}"
    );

    // The file goes away: the seed exits with an error saying so.
    std::fs::remove_file(&first).expect("remove");
    let status = damaged.wait_exit(Duration::from_secs(20));
    assert!(!status.success(), "the seed went on without its content");
    assert!(
        damaged.log_text().contains("the content is gone"),
        "{}",
        damaged.log_text()
    );
}
