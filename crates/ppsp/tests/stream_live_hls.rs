//! Live HLS (and DASH written beside it) from a real encoder through the real binary:
//! ffmpeg writes 1 s segments into a directory, `ppsp peer live --hls DIR` publishes them,
//! and a viewer's `play` serves the playlists (or the MPD) and the segments, which ffmpeg's
//! HLS and DASH demuxers play without errors.

mod peer_common;
mod stream_common;

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use peer_common::http_get;
use stream_common::{Tool, first_frame, hls_encoder, live_hls};

/// The media sequence numbers a playlist lists.
fn sequences(text: &str) -> Vec<u64> {
    let first: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let count = text.lines().filter(|l| l.starts_with("#EXTINF:")).count() as u64;
    (first..first + count).collect()
}

#[test]
fn live_hls_variants_reach_a_viewer_and_play() {
    let live = live_hls("hls", hls_encoder, Duration::from_secs(3), "master.m3u8");
    let (addr, encoder_dir) = (&live.addr, &live.encoder_dir);
    let root = http_get(addr, "/", &[]);
    assert_eq!(root.status, 302);
    assert_eq!(root.header("location"), Some("/master.m3u8"));
    let master = http_get(addr, "/master.m3u8", &[]);
    assert_eq!(master.status, 200);
    assert_eq!(
        master.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    let master_text = String::from_utf8(master.body).expect("utf-8");
    assert!(
        master_text.contains("stream_0.m3u8") && master_text.contains("stream_1.m3u8"),
        "{master_text}"
    );

    // A standard player follows it (from 3 segments before the newest, its own choice).
    let first = first_frame(&format!("http://{addr}/master.m3u8"));
    assert!(first.errors.trim().is_empty(), "{}", first.errors);

    // Each new segment is in the viewer's playlist soon after the encoder lists it.
    let encoder_playlist = encoder_dir.join("stream_0.m3u8");
    let encoder_sequences = || {
        std::fs::read_to_string(&encoder_playlist)
            .map(|t| sequences(&t))
            .unwrap_or_default()
    };
    // Segments already there do not count: only those completed while watching.
    let already: HashSet<u64> = encoder_sequences().into_iter().collect();
    let mut listed_by_encoder: HashMap<u64, Instant> = HashMap::new();
    let mut lag_of: HashMap<u64, Duration> = HashMap::new();
    let mut window_sizes = Vec::new();
    let mut previous_first = 0;
    let watch_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < watch_until {
        for seq in encoder_sequences() {
            if !already.contains(&seq) {
                listed_by_encoder.entry(seq).or_insert_with(Instant::now);
            }
        }
        let playlist = http_get(addr, "/stream_0.m3u8", &[]);
        assert_eq!(playlist.status, 200);
        let text = String::from_utf8(playlist.body).expect("utf-8");
        let listed = sequences(&text);
        assert!(!listed.is_empty(), "empty playlist:\n{text}");
        assert!(listed[0] >= previous_first, "window went backwards");
        previous_first = listed[0];
        window_sizes.push(listed.len());
        for seq in &listed {
            if let Some(at) = listed_by_encoder.get(seq) {
                lag_of.entry(*seq).or_insert_with(|| at.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let lags: Vec<Duration> = lag_of.values().copied().collect();
    // New segments keep arriving in the viewer's playlist (how fast: scripts/stream-latency.sh).
    assert!(lags.len() >= 4, "segments seen arriving: {lags:?}");
    assert!(window_sizes.iter().all(|n| *n <= 6), "{window_sizes:?}");

    // Every listed segment of the small variant is served, as MPEG-TS, completely.
    let small = String::from_utf8(http_get(addr, "/stream_1.m3u8", &[]).body).expect("utf-8");
    let name = small
        .lines()
        .rfind(|l| l.ends_with(".ts"))
        .expect("a segment");
    let segment = http_get(addr, &format!("/{name}"), &[]);
    assert_eq!(segment.status, 200);
    assert_eq!(segment.header("content-type"), Some("video/mp2t"));
    assert_eq!(segment.body.first(), Some(&0x47), "starts with a TS packet");
    let served = std::fs::read(encoder_dir.join(name));
    if let Ok(on_disk) = served {
        assert_eq!(
            segment.body, on_disk,
            "the encoder's segment, byte for byte"
        );
    }
    // Old segments leave the index (10 per variant) and are not served any more.
    peer_common::wait_until(Duration::from_secs(15), "12 segments encoded", || {
        std::fs::read_to_string(&encoder_playlist)
            .is_ok_and(|t| sequences(&t).last().is_some_and(|n| *n >= 11))
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(http_get(addr, "/stream_00.ts", &[]).status, 404);

    // And the stream decodes from the viewer's playlists for a few seconds.
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(format!("http://{addr}/master.m3u8"))
        .args(["-map", "0:v:0", "-t", "3", "-f", "null", "-"])
        .stdin(Stdio::null())
        .output()
        .expect("ffmpeg");
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{errors}");
    assert!(errors.trim().is_empty(), "decoder errors: {errors}");
}

/// ffmpeg writing one variant of fragmented-MP4 segments (`EXT-X-MAP` init section).
fn fmp4_encoder(dir: &std::path::Path) -> Tool {
    let child = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "25",
            "-f",
            "hls",
            "-hls_time",
            "1",
            "-hls_list_size",
            "6",
            "-hls_segment_type",
            "fmp4",
            "-hls_flags",
            "delete_segments+independent_segments",
        ])
        .arg(dir.join("index.m3u8"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ffmpeg (scripts/test.sh installs it)");
    Tool(child)
}

#[test]
fn live_hls_fmp4_segments_play_with_their_init_section() {
    let live = live_hls(
        "hls-fmp4",
        fmp4_encoder,
        Duration::from_secs(3),
        "index.m3u8",
    );
    let addr = &live.addr;
    let playlist = String::from_utf8(http_get(addr, "/index.m3u8", &[]).body).expect("utf-8");
    assert!(
        playlist.contains("#EXT-X-MAP:URI=\"init.mp4\""),
        "{playlist}"
    );
    let init = http_get(addr, "/init.mp4", &[]);
    assert_eq!(init.status, 200);
    assert_eq!(init.header("content-type"), Some("video/mp4"));
    assert_eq!(
        init.body,
        std::fs::read(live.encoder_dir.join("init.mp4")).expect("init.mp4"),
        "the encoder's init section, byte for byte"
    );
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(format!("http://{addr}/index.m3u8"))
        .args(["-t", "3", "-f", "null", "-"])
        .stdin(Stdio::null())
        .output()
        .expect("ffmpeg");
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{errors}");
    assert!(errors.trim().is_empty(), "decoder errors: {errors}");
}

/// ffmpeg's DASH muxer, live, writing HLS playlists beside the MPD (`-hls_playlist 1`).
fn dash_encoder(dir: &std::path::Path) -> Tool {
    let child = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "25",
            "-f",
            "dash",
            "-seg_duration",
            "1",
            "-window_size",
            "6",
            "-hls_playlist",
            "1",
        ])
        .arg(dir.join("manifest.mpd"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ffmpeg (scripts/test.sh installs it)");
    Tool(child)
}

#[test]
fn live_dash_mpd_and_its_segments_play_from_play() {
    let live = live_hls("dash", dash_encoder, Duration::from_secs(4), "manifest.mpd");
    let addr = &live.addr;
    let mpd = http_get(addr, "/manifest.mpd", &[]);
    assert_eq!(mpd.status, 200);
    assert_eq!(mpd.header("content-type"), Some("application/dash+xml"));
    let text = String::from_utf8(mpd.body).expect("utf-8");
    assert!(
        text.contains("type=\"dynamic\"") && text.contains("SegmentTemplate"),
        "{text}"
    );
    // ffmpeg's DASH demuxer reads the MPD and the segments it names from the viewer.
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(format!("http://{addr}/manifest.mpd"))
        .args(["-t", "3", "-f", "framemd5", "-"])
        .stdin(Stdio::null())
        .output()
        .expect("ffmpeg");
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{errors}");
    assert!(errors.trim().is_empty(), "decoder errors: {errors}");
    let frames = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    assert_eq!(frames, 75, "3 s at 25 fps decoded");
}

#[test]
fn live_hls_refuses_a_directory_that_is_not_there() {
    let dir = peer_common::TempDir::new("hls-missing");
    let missing = dir.join("no-such-dir");
    let mut source = peer_common::Proc::spawn(
        &dir,
        "source",
        &[
            "peer",
            "live",
            "--hls",
            missing.to_str().expect("utf-8"),
            "--tracker",
            "http://127.0.0.1:9",
        ],
        false,
    );
    let status = source.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let log = source.log_text();
    assert!(log.contains("no-such-dir is not a directory"), "{log}");
}
