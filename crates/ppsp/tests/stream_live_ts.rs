//! A raw MPEG-TS live stream from a real encoder (ffmpeg, lavfi test source) through a
//! LIVESEED and a viewer's `play`: a player joining mid-stream decodes its first frame
//! without decoder errors, from near the live edge. (Latencies are measured by
//! `scripts/stream-latency.sh`, not asserted here.)

mod peer_common;
mod stream_common;

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::time::Duration;

use peer_common::{Proc, TempDir, tracker};
use stream_common::{FIRST_PTS, Tool, first_frame};

/// Starts `ffmpeg` encoding a 25 fps test pattern in real time with one keyframe a second,
/// writing MPEG-TS into the live source's standard input.
fn encoder(source: &mut Proc, codec: &[&str]) -> Tool {
    let mut args = vec![
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25",
    ];
    args.extend_from_slice(codec);
    args.extend_from_slice(&["-g", "25", "-f", "mpegts", "-"]);
    let mut child = Command::new("ffmpeg")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ffmpeg (scripts/test.sh installs it)");
    let mut out = child.stdout.take().expect("ffmpeg stdout");
    let mut input = source.stdin.take().expect("source stdin");
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || input.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    Tool(child)
}

fn viewer_starts_on_a_keyframe(tag: &str, codec: &[&str]) {
    let dir = TempDir::new(tag);
    let (_tracker, url) = tracker(&dir);
    let mut source = Proc::spawn(&dir, "source", &["peer", "live", "--tracker", &url], true);
    let swarm = source.wait_line("swarm ", Duration::from_secs(30));
    source.wait_listening();
    let _encoder = encoder(&mut source, codec);
    // Join well after the first keyframe, so the viewer lands mid-GOP.
    std::thread::sleep(Duration::from_millis(3300));

    let viewer = Proc::spawn(
        &dir,
        "viewer",
        &["peer", "play", &swarm, "--tracker", &url],
        false,
    );
    let addr = viewer.wait_listening();
    let player_url = format!("http://{addr}/");
    let first = first_frame(&player_url);
    eprintln!(
        "{tag}: first frame after {:.2} s (see scripts/stream-latency.sh for measurements)",
        first.took.as_secs_f64()
    );
    // Decoding from the very first byte served without a single error means the stream
    // started on a keyframe with its program tables.
    assert!(
        first.errors.trim().is_empty(),
        "decoder errors: {}",
        first.errors
    );
    // Near the live edge, not at the oldest chunk kept: the viewer joined 3.3 s in.
    assert!(
        first.pts - FIRST_PTS >= 2.0,
        "started at {:.2} s of the stream",
        first.pts - FIRST_PTS
    );

    // A second player of the same viewer starts on a keyframe too, further on.
    let again = first_frame(&player_url);
    assert!(again.errors.trim().is_empty(), "{}", again.errors);
    assert!(again.pts > first.pts, "later request, later frame");
}

#[test]
fn h264_viewer_starts_on_a_keyframe_near_the_edge() {
    viewer_starts_on_a_keyframe(
        "ts-h264",
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ],
    );
}

#[test]
fn mpeg2_viewer_starts_on_a_keyframe_near_the_edge() {
    viewer_starts_on_a_keyframe("ts-mpeg2", &["-c:v", "mpeg2video", "-b:v", "600k"]);
}
