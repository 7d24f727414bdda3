//! A raw MPEG-TS live stream from a real encoder (ffmpeg, lavfi test source) through a
//! LIVESEED and a viewer's `play`: a player joining mid-stream decodes its first frame
//! promptly, without decoder errors, close behind the source.

mod peer_common;

use std::io::{Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use peer_common::{Proc, TempDir, tracker};

/// ffmpeg's MPEG-TS muxer starts timestamps at 1.4 s (its default mux delay).
const FIRST_PTS: f64 = 1.4;

/// A child process killed when dropped.
struct Tool(Child);

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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

/// What ffprobe saw of the first decoded video frame of `url`.
struct FirstFrame {
    /// From the request to ffprobe's exit.
    took: Duration,
    /// When ffprobe was done.
    at: Instant,
    pts: f64,
    errors: String,
}

fn first_frame(url: &str) -> FirstFrame {
    let started = Instant::now();
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-probesize",
            "32768",
            "-analyzeduration",
            "0",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=pts_time",
            "-read_intervals",
            "%+#1",
            "-of",
            "csv=p=0",
            url,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("ffprobe (scripts/test.sh installs it)");
    let at = Instant::now();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let errors = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "ffprobe failed: {errors}");
    let pts = stdout
        .lines()
        .find_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no frame in ffprobe output {stdout:?}, errors {errors}"));
    FirstFrame {
        took: at - started,
        at,
        pts,
        errors,
    }
}

fn viewer_starts_on_a_keyframe(tag: &str, codec: &[&str]) {
    let dir = TempDir::new(tag);
    let (_tracker, url) = tracker(&dir);
    let mut source = Proc::spawn(&dir, "source", &["peer", "live", "--tracker", &url], true);
    let swarm = source.wait_line("swarm ", Duration::from_secs(30));
    source.wait_listening();
    let encoding_since = Instant::now();
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
    let behind = (first.at - encoding_since).as_secs_f64() - (first.pts - FIRST_PTS);
    eprintln!(
        "{tag}: first frame after {:.2} s, {behind:.2} s behind the encoder",
        first.took.as_secs_f64()
    );
    assert!(
        first.errors.trim().is_empty(),
        "decoder errors: {}",
        first.errors
    );
    assert!(first.took < Duration::from_secs(2), "took {:?}", first.took);
    // `behind` counts the encoder's own start-up too, so it is an upper bound.
    assert!(behind < 2.0, "{behind:.2} s behind the source");

    // A second player of the same viewer starts on a keyframe too, at the live edge.
    let again = first_frame(&player_url);
    assert!(again.errors.trim().is_empty(), "{}", again.errors);
    assert!(again.pts > first.pts, "later request, later frame");
    assert!(again.took < Duration::from_secs(2), "took {:?}", again.took);
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
