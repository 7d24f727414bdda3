//! HLS and DASH VoD packages as swarms, with the real binary: ffmpeg makes each package
//! (a lavfi test pattern), `seed DIR` publishes it as one swarm, and ffmpeg's HLS and DASH
//! demuxers read it from another peer's `play`: every frame decodes as it does from the
//! package on disk, without errors, also after seeking into the middle.

mod peer_common;
mod stream_common;

use peer_common::{TempDir, http_get};
use stream_common::{PACKAGE_SECONDS, Package, Served, decode, serve, vod_package};

/// Plays `kind` from `play` from the start (and from the middle when `seek`), comparing
/// every decoded frame with the package on disk; returns the running swarm for more checks.
fn plays_like_the_files(kind: Package, tag: &str, seek: bool) -> (TempDir, Served) {
    let dir = TempDir::new(tag);
    let package = vod_package(&dir.join("package"), kind);
    let served = serve(&dir, &package);
    let local = package.join(kind.entry());
    let local = local.to_str().expect("utf-8");
    let url = format!("http://{}/{}", served.addr, kind.entry());

    let expected = decode(local, None);
    let got = decode(&url, None);
    assert!(
        got.errors.is_empty(),
        "{kind:?}: decoding from play printed errors: {}\nviewer log:\n{}",
        got.errors,
        served.viewer.log_text()
    );
    assert_eq!(
        expected.frames.len(),
        usize::try_from(PACKAGE_SECONDS * 25).expect("frames"),
        "{kind:?}: the package holds every frame"
    );
    assert!(
        got.frames == expected.frames,
        "{kind:?}: {} frames from play, {} from the files, or they differ",
        got.frames.len(),
        expected.frames.len()
    );

    if !seek {
        return (dir, served);
    }
    let middle = Some(PACKAGE_SECONDS / 2);
    let expected = decode(local, middle);
    let got = decode(&url, middle);
    assert!(got.errors.is_empty(), "{kind:?} seek: {}", got.errors);
    assert!(
        !got.frames.is_empty()
            && got.frames.len() < usize::try_from(PACKAGE_SECONDS * 25).expect("frames"),
        "{kind:?}: seeking skipped the first half ({} frames)",
        got.frames.len()
    );
    assert!(
        got.frames == expected.frames,
        "{kind:?} seek: {} frames from play, {} from the files, or they differ",
        got.frames.len(),
        expected.frames.len()
    );
    (dir, served)
}

fn content_type(addr: &str, path: &str) -> String {
    let response = http_get(addr, path, &[]);
    assert_eq!(response.status, 200, "GET {path}");
    response
        .header("content-type")
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn an_hls_package_with_ts_segments_plays_and_seeks_from_play() {
    let (_dir, served) = plays_like_the_files(Package::HlsTs, "vod-hls-ts", true);
    let addr = &served.addr;
    assert_eq!(
        content_type(addr, "/master.m3u8"),
        "application/vnd.apple.mpegurl"
    );
    assert_eq!(
        content_type(addr, "/v1/index.m3u8"),
        "application/vnd.apple.mpegurl"
    );
    assert_eq!(content_type(addr, "/v0/seg003.ts"), "video/mp2t");
}

/// Without a seek: ffmpeg's HLS demuxer misreads fragmented-MP4 segments after `-ss` even
/// from the files on disk ("Invalid NAL unit size").
#[test]
fn an_hls_package_with_fmp4_segments_plays_from_play() {
    let (_dir, served) = plays_like_the_files(Package::HlsFmp4, "vod-hls-fmp4", false);
    assert_eq!(content_type(&served.addr, "/init.mp4"), "video/mp4");
}

#[test]
fn a_dash_package_plays_and_seeks_from_play() {
    let (_dir, served) = plays_like_the_files(Package::Dash, "vod-dash", true);
    let addr = &served.addr;
    assert_eq!(content_type(addr, "/manifest.mpd"), "application/dash+xml");
    assert_eq!(content_type(addr, "/init-stream0.m4s"), "video/iso.segment");
}
