//! End-to-end with the real binary: a directory published as one swarm comes back as the
//! same tree, byte for byte, and `play` serves each file at its path plus an index.

mod peer_common;

use std::path::Path;
use std::time::Duration;

use peer_common::{Proc, TempDir, http_get, random_file, tracker};

/// Every regular file under `root`, as (relative path, contents), sorted.
fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if entry.file_type().expect("type").is_dir() {
                walk(&entry.path(), &relative, out);
            } else {
                out.push((relative, std::fs::read(entry.path()).expect("read")));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, "", &mut out);
    out.sort();
    out
}

#[test]
fn a_directory_round_trips_and_plays_file_by_file() {
    let dir = TempDir::new("directory");
    let (_tracker, url) = tracker(&dir);
    let package = dir.join("package");
    std::fs::create_dir_all(package.join("video/720p")).expect("mkdir");
    random_file(&package.join("master.m3u8"), 300, 51);
    random_file(&package.join("video/720p/seg 1.ts"), 200_000, 52);
    random_file(&package.join("video/720p/seg2.ts"), 65_536, 53);
    random_file(&package.join("video/cover.jpg"), 70_000, 54);
    std::fs::write(package.join("empty.txt"), b"").expect("empty");
    let original = tree(&package);

    let seed = Proc::spawn(
        &dir,
        "seed",
        &[
            "peer",
            "seed",
            package.to_str().expect("utf-8"),
            "--tracker",
            &url,
            "--chunk-kib",
            "64",
        ],
        false,
    );
    let swarm = seed.wait_line("swarm ", Duration::from_secs(30));
    seed.wait_listening();

    let out = dir.join("copy");
    let mut get = Proc::spawn(
        &dir,
        "get",
        &[
            "peer",
            "get",
            &swarm,
            "--tracker",
            &url,
            "--output",
            out.to_str().expect("utf-8"),
            "--linger",
            "0",
        ],
        false,
    );
    let status = get.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "get failed:\n{}", get.log_text());
    assert!(tree(&out) == original, "the tree differs");
    assert!(
        !dir.join("copy.part").exists(),
        "partial folder left behind"
    );

    // A second get onto the complete tree fetches nothing.
    let mut again = Proc::spawn(
        &dir,
        "again",
        &[
            "peer",
            "get",
            &swarm,
            "--tracker",
            &url,
            "--output",
            out.to_str().expect("utf-8"),
            "--linger",
            "0",
        ],
        false,
    );
    assert!(again.wait_exit(Duration::from_secs(60)).success());
    assert!(
        again
            .log_text()
            .contains("already holds the verified content")
    );

    let player = Proc::spawn(
        &dir,
        "player",
        &["peer", "play", &swarm, "--tracker", &url],
        false,
    );
    let addr = player.wait_listening();
    let index = http_get(&addr, "/", &[]);
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let page = String::from_utf8(index.body).expect("utf-8");
    for (path, _) in &original {
        assert!(
            page.contains(path.as_str()),
            "{path} missing from the index:\n{page}"
        );
    }
    assert!(page.contains("href=\"/video/720p/seg%201.ts\""), "{page}");
    let segment = http_get(
        &addr,
        "/video/720p/seg%201.ts",
        &[("Range", "bytes=70000-70099")],
    );
    assert_eq!(segment.status, 206);
    assert_eq!(segment.header("content-type"), Some("video/mp2t"));
    let expected = &original
        .iter()
        .find(|(p, _)| p == "video/720p/seg 1.ts")
        .expect("segment")
        .1;
    assert!(segment.body == expected[70_000..70_100], "wrong bytes");
    let cover = http_get(&addr, "/video/cover.jpg", &[]);
    assert_eq!(cover.status, 200);
    assert_eq!(cover.header("content-type"), Some("image/jpeg"));
    assert_eq!(cover.body.len(), 70_000);
    assert_eq!(http_get(&addr, "/video/missing.ts", &[]).status, 404);
    assert_eq!(http_get(&addr, "/../package/master.m3u8", &[]).status, 404);
}
