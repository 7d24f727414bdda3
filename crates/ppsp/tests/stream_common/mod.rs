//! Helpers for the streaming tests: outside tools (ffmpeg, ffprobe) as child processes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::peer_common::{Proc, TempDir, tracker};

/// ffmpeg's MPEG-TS and HLS muxers start timestamps at 1.4 s (their default mux delay).
pub(crate) const FIRST_PTS: f64 = 1.4;

/// A child process killed when dropped.
pub(crate) struct Tool(pub(crate) Child);

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What ffprobe saw of the first decoded video frame of `url`.
pub(crate) struct FirstFrame {
    /// From the request to ffprobe's exit.
    pub(crate) took: Duration,
    /// When ffprobe was done.
    pub(crate) at: Instant,
    pub(crate) pts: f64,
    pub(crate) errors: String,
}

pub(crate) fn first_frame(url: &str) -> FirstFrame {
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

/// Starts ffmpeg writing a 25 fps test pattern in real time as two HLS variants (320x240
/// and 160x120, one keyframe a second, 1 s segments) with a master playlist into `dir`.
pub(crate) fn hls_encoder(dir: &Path) -> Tool {
    let out = dir.join("stream_%v.m3u8");
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
            "-filter_complex",
            "[0:v]split=2[a][b];[b]scale=160:120[small]",
            "-map",
            "[a]",
            "-map",
            "[small]",
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
            "-b:v:0",
            "400k",
            "-b:v:1",
            "150k",
            "-f",
            "hls",
            "-hls_time",
            "1",
            "-hls_list_size",
            "6",
            "-hls_flags",
            "delete_segments+independent_segments",
            "-master_pl_name",
            "master.m3u8",
            "-var_stream_map",
            "v:0 v:1",
        ])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ffmpeg (scripts/test.sh installs it)");
    Tool(child)
}

/// A live HLS swarm running: tracker, `live --hls` source fed by an encoder, one viewer.
pub(crate) struct LiveHls {
    pub(crate) encoder_dir: PathBuf,
    /// When the encoder was started.
    pub(crate) encoding_since: Instant,
    /// The viewer's player endpoint, host:port.
    pub(crate) addr: String,
    pub(crate) viewer: Proc,
    // Dropped in this order: processes first, the scratch directory last.
    _encoder: Tool,
    _source: Proc,
    _tracker: Proc,
    pub(crate) dir: TempDir,
}

/// Starts a tracker and a `ppsp peer live --hls` source, then `encoder` writing into the
/// source's directory, and after `lead` a viewer's `play`.
pub(crate) fn live_hls(tag: &str, encoder: impl FnOnce(&Path) -> Tool, lead: Duration) -> LiveHls {
    let dir = TempDir::new(tag);
    let encoder_dir = dir.join("encoder");
    std::fs::create_dir_all(&encoder_dir).expect("encoder dir");
    let (tracker, url) = tracker(&dir);
    let source = Proc::spawn(
        &dir,
        "source",
        &[
            "peer",
            "live",
            "--hls",
            encoder_dir.to_str().expect("utf-8"),
            "--tracker",
            &url,
        ],
        false,
    );
    let swarm = source.wait_line("swarm ", Duration::from_secs(30));
    source.wait_listening();
    let encoding_since = Instant::now();
    let encoder = encoder(&encoder_dir);
    std::thread::sleep(lead);
    let viewer = Proc::spawn(
        &dir,
        "viewer",
        &["peer", "play", &swarm, "--tracker", &url],
        false,
    );
    let addr = viewer.wait_listening();
    LiveHls {
        encoder_dir,
        encoding_since,
        addr,
        viewer,
        _encoder: encoder,
        _source: source,
        _tracker: tracker,
        dir,
    }
}
