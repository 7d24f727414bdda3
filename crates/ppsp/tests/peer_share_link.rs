//! End-to-end with the real binary: the share link a seed prints is all a viewer needs,
//! and `play --output` keeps what it fetched (and picks it up again next time).

mod peer_common;

use std::time::Duration;

use peer_common::{Proc, TempDir, http_get, random_file, tracker, wait_until};

#[test]
fn the_share_link_works_end_to_end_and_play_keeps_its_download() {
    let dir = TempDir::new("link");
    let (_tracker, url) = tracker(&dir);
    let input = dir.join("movie.mp4");
    let data = random_file(&input, 3 * 1024 * 1024, 41);
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
            "64",
        ],
        false,
    );
    let swarm = seed.wait_line("swarm ", Duration::from_secs(30));
    let link = seed.wait_line("share ", Duration::from_secs(30));
    assert!(
        link.starts_with(&format!("ppsp:{swarm}?tracker=")),
        "{link}"
    );

    // A viewer with nothing but the link; host names are accepted for --listen.
    let kept = dir.join("kept.mp4");
    let kept_str = kept.to_str().expect("utf-8");
    let mut viewer = Proc::spawn(
        &dir,
        "viewer",
        &[
            "-q",
            "peer",
            "play",
            &link,
            "--listen",
            "localhost:0",
            "--output",
            kept_str,
        ],
        false,
    );
    assert_eq!(viewer.wait_line("swarm ", Duration::from_secs(30)), swarm);
    let player = viewer.wait_listening();
    let response = http_get(&player, "/", &[]);
    assert_eq!(response.status, 200);
    assert!(response.body == data, "played bytes differ");
    wait_until(Duration::from_secs(30), "the kept file", || kept.exists());
    viewer.terminate(Duration::from_secs(20));
    assert!(
        std::fs::read(&kept).expect("kept") == data,
        "kept file differs"
    );
    assert!(
        !viewer.log_text().contains("progress:"),
        "-q still shows progress:\n{}",
        viewer.log_text()
    );

    // Next time the kept file is used as it is.
    let mut again = Proc::spawn(
        &dir,
        "again",
        &["peer", "play", &link, "--output", kept_str],
        false,
    );
    let player = again.wait_listening();
    let response = http_get(&player, "/", &[("Range", "bytes=10-19")]);
    assert_eq!(response.status, 206);
    assert!(response.body == data[10..20]);
    wait_until(
        Duration::from_secs(10),
        "the check of the kept file",
        || {
            again
                .log_text()
                .contains("already holds the verified content")
        },
    );
    again.terminate(Duration::from_secs(20));
    assert!(
        again.log_text().contains("progress: 100.0%"),
        "play shows no progress:\n{}",
        again.log_text()
    );

    // get takes the link too.
    let out = dir.join("out.mp4");
    let mut get = Proc::spawn(
        &dir,
        "get",
        &[
            "peer",
            "get",
            &link,
            "--output",
            out.to_str().expect("utf-8"),
            "--linger",
            "0",
        ],
        false,
    );
    let status = get.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{}", get.log_text());
    assert!(
        std::fs::read(&out).expect("output") == data,
        "output differs"
    );
}
