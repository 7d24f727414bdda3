//! Mistakes on the `ppsp peer` command line end with a clear error, quickly, instead of a
//! peer that waits for content that can never exist.

mod peer_common;

use std::time::Duration;

use peer_common::{Proc, TempDir, tracker};

#[test]
fn malformed_swarm_ids_are_refused_before_joining() {
    let dir = TempDir::new("bad-args");
    let (_tracker, url) = tracker(&dir);
    let output = dir.join("out.bin");
    let output = output.to_str().expect("utf-8");
    for (name, args) in [
        (
            "get",
            vec!["peer", "get", "zzz", "--tracker", &url, "--output", output],
        ),
        ("play", vec!["peer", "play", "live-1234", "--tracker", &url]),
    ] {
        let mut proc = Proc::spawn(&dir, name, &args, false);
        let status = proc.wait_exit(Duration::from_secs(10));
        assert!(!status.success(), "{name} accepted a malformed swarm ID");
        let log = proc.log_text();
        assert!(log.contains("swarm ID"), "{name}: unclear error:\n{log}");
    }
    assert!(
        !std::path::Path::new(output).exists(),
        "an output file was created"
    );
}

#[test]
fn a_directory_as_output_of_a_one_file_swarm_is_refused() {
    let dir = TempDir::new("bad-output");
    let (_tracker, url) = tracker(&dir);
    let content = dir.join("content.bin");
    std::fs::write(&content, vec![7u8; 5000]).expect("content");
    let seed = Proc::spawn(
        &dir,
        "seed",
        &[
            "peer",
            "seed",
            content.to_str().expect("utf-8"),
            "--tracker",
            &url,
        ],
        false,
    );
    let swarm = seed.wait_line("swarm ", Duration::from_secs(30));
    let target = dir.join("a-directory");
    std::fs::create_dir(&target).expect("mkdir");
    let target = target.to_str().expect("utf-8");
    let args = ["peer", "get", &swarm, "--tracker", &url, "--output", target];
    let mut proc = Proc::spawn(&dir, "get", &args, false);
    let status = proc.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "a directory was accepted as --output");
    let log = proc.log_text();
    assert!(log.contains("is a directory"), "unclear error:\n{log}");
    assert_eq!(
        std::fs::read_dir(target).expect("dir").count(),
        0,
        "written into"
    );
}

#[test]
fn chunk_sizes_out_of_bounds_are_reported_in_kib() {
    let dir = TempDir::new("bad-chunk-kib");
    let file = dir.join("content.bin");
    std::fs::write(&file, b"some content").expect("content");
    let file = file.to_str().expect("utf-8");
    // No tracker is needed: the value is refused while the arguments are parsed.
    let tracker = "http://127.0.0.1:1";
    for (name, args) in [
        (
            "seed-huge",
            vec![
                "peer",
                "seed",
                file,
                "--tracker",
                tracker,
                "--chunk-kib",
                "99999999",
            ],
        ),
        (
            "live-zero",
            vec!["peer", "live", "--tracker", tracker, "--chunk-kib", "0"],
        ),
    ] {
        let mut proc = Proc::spawn(&dir, name, &args, false);
        let status = proc.wait_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(2), "{name}: not a usage error");
        let log = proc.log_text();
        assert!(log.contains("1..=16384"), "{name}: range not given:\n{log}");
    }
}

#[test]
fn a_tracker_without_a_scheme_is_refused_before_any_readiness_line() {
    let dir = TempDir::new("bad-tracker");
    let swarm = "5".repeat(64);
    let output = dir.join("out.bin");
    let output = output.to_str().expect("utf-8");
    for (name, args) in [
        (
            "get",
            vec![
                "peer",
                "get",
                &swarm,
                "--tracker",
                "127.0.0.1:7070",
                "--output",
                output,
            ],
        ),
        ("play-none", vec!["peer", "play", &swarm]),
    ] {
        let mut proc = Proc::spawn(&dir, name, &args, false);
        let status = proc.wait_exit(Duration::from_secs(10));
        assert!(!status.success(), "{name}: accepted");
        let log = proc.log_text();
        assert!(log.contains("tracker"), "{name}: unclear error:\n{log}");
        assert_eq!(
            proc.drain_lines(),
            Vec::<String>::new(),
            "{name}: readiness lines"
        );
    }
}

#[test]
fn a_swarm_nobody_serves_says_so_and_gives_up_after_manifest_timeout() {
    let dir = TempDir::new("nobody");
    let (_tracker, url) = tracker(&dir);
    let swarm = "6".repeat(64);
    let output = dir.join("out.bin");
    let args = [
        "peer",
        "get",
        &swarm,
        "--tracker",
        &url,
        "--output",
        output.to_str().expect("utf-8"),
        "--manifest-timeout",
        "1",
    ];
    let mut proc = Proc::spawn(&dir, "get", &args, false);
    let status = proc.wait_exit(Duration::from_secs(20));
    assert!(!status.success());
    let log = proc.log_text();
    assert!(
        log.contains("looking for a peer that serves the manifest"),
        "{log}"
    );
    assert!(log.contains("no peer served a valid manifest"), "{log}");
}
