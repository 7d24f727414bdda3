//! Helpers for the streaming tests: outside tools (ffmpeg, ffprobe) as child processes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::peer_common::{Proc, TempDir, http_get, tracker, wait_until};

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
/// source's directory, and after `lead` a viewer's `play`; returns once the viewer serves
/// `entry` (the playlist or MPD a player opens).
pub(crate) fn live_hls(
    tag: &str,
    encoder: impl FnOnce(&Path) -> Tool,
    lead: Duration,
    entry: &str,
) -> LiveHls {
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
    // The endpoint listens before the stream's index has come through the swarm, and
    // answers 503 with Retry-After meanwhile. Players retry that only so often (hls.js
    // once, after a second), so on a busy machine a player opened at once may give up
    // before the index arrives.
    let entry_path = format!("/{entry}");
    wait_until(
        Duration::from_secs(30),
        &format!("the viewer to serve {entry}"),
        || http_get(&addr, &entry_path, &[]).status == 200,
    );
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

/// The kinds of VoD package ffmpeg makes for the tests.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Package {
    /// HLS with MPEG-TS segments: a master playlist over two variants.
    HlsTs,
    /// HLS with fragmented-MP4 segments and their initialization section.
    HlsFmp4,
    /// DASH: an MPD, initialization and media segments.
    Dash,
}

impl Package {
    /// The file a player opens.
    pub(crate) fn entry(self) -> &'static str {
        match self {
            Self::HlsTs => "master.m3u8",
            Self::HlsFmp4 => "index.m3u8",
            Self::Dash => "manifest.mpd",
        }
    }
}

/// Seconds of video in a test package (25 fps, one keyframe a second, 1 s segments).
pub(crate) const PACKAGE_SECONDS: u32 = 8;

/// Encodes a VoD package of `kind` into the new directory `dir` with ffmpeg (a lavfi test
/// pattern) and returns `dir`.
pub(crate) fn vod_package(dir: &Path, kind: Package) -> PathBuf {
    std::fs::create_dir_all(dir).expect("package dir");
    let source = format!("testsrc=size=320x240:rate=25:duration={PACKAGE_SECONDS}");
    let mut args: Vec<String> = [
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        &source,
    ]
    .map(str::to_owned)
    .to_vec();
    let encode = [
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "25",
    ];
    let rest: Vec<&str> = match kind {
        Package::HlsTs => vec![
            "-filter_complex",
            "[0:v]split=2[a][b];[b]scale=160:120[small]",
            "-map",
            "[a]",
            "-map",
            "[small]",
        ]
        .into_iter()
        .chain(encode)
        // The master playlist lists variants by their bandwidth.
        .chain(["-b:v:0", "400k", "-b:v:1", "150k"])
        .chain([
            "-f",
            "hls",
            "-hls_time",
            "1",
            "-hls_playlist_type",
            "vod",
            "-hls_flags",
            "independent_segments",
            "-hls_segment_filename",
            "v%v/seg%03d.ts",
            "-master_pl_name",
            "master.m3u8",
            "-var_stream_map",
            "v:0 v:1",
            "v%v/index.m3u8",
        ])
        .collect(),
        Package::HlsFmp4 => encode
            .into_iter()
            .chain([
                "-f",
                "hls",
                "-hls_time",
                "1",
                "-hls_playlist_type",
                "vod",
                "-hls_segment_type",
                "fmp4",
                "-hls_segment_filename",
                "seg%03d.m4s",
                "index.m3u8",
            ])
            .collect(),
        Package::Dash => encode
            .into_iter()
            .chain(["-f", "dash", "-seg_duration", "1", "manifest.mpd"])
            .collect(),
    };
    args.extend(rest.into_iter().map(str::to_owned));
    let output = Command::new("ffmpeg")
        .args(&args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("ffmpeg (scripts/test.sh installs it)");
    assert!(
        output.status.success(),
        "ffmpeg {kind:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    dir.to_path_buf()
}

/// What ffmpeg decoded of an input: one line per video frame (timestamps, size, MD5), and
/// its errors.
pub(crate) struct Decoded {
    pub(crate) frames: Vec<String>,
    pub(crate) errors: String,
}

/// Decodes the first video stream of `input` (a URL or a file) with ffmpeg, from `seek`
/// seconds on when given, into per-frame checksums.
pub(crate) fn decode(input: &str, seek: Option<u32>) -> Decoded {
    let mut command = Command::new("ffmpeg");
    command.args(["-hide_banner", "-nostdin", "-v", "error"]);
    if let Some(seconds) = seek {
        command.args(["-ss", &seconds.to_string()]);
    }
    let output = command
        .args(["-i", input, "-map", "0:v:0", "-f", "framemd5", "-"])
        .stdin(Stdio::null())
        .output()
        .expect("ffmpeg (scripts/test.sh installs it)");
    let errors = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "ffmpeg failed on {input}: {errors}"
    );
    let frames = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.trim().to_owned())
        .collect();
    Decoded { frames, errors }
}

/// A package seeded by one peer and served by another peer's `play`.
pub(crate) struct Served {
    /// The viewer's player endpoint, host:port.
    pub(crate) addr: String,
    pub(crate) viewer: Proc,
    _seed: Proc,
    _tracker: Proc,
}

/// Starts a tracker, `seed PACKAGE` and a viewer's `play`.
pub(crate) fn serve(dir: &TempDir, package: &Path) -> Served {
    let (tracker, url) = tracker(dir);
    let seed = Proc::spawn(
        dir,
        "seed",
        &[
            "peer",
            "seed",
            package.to_str().expect("utf-8"),
            "--tracker",
            &url,
        ],
        false,
    );
    let swarm = seed.wait_line("swarm ", Duration::from_secs(30));
    seed.wait_listening();
    let viewer = Proc::spawn(
        dir,
        "viewer",
        &["peer", "play", &swarm, "--tracker", &url, "-q"],
        false,
    );
    let addr = viewer.wait_listening();
    Served {
        addr,
        viewer,
        _seed: seed,
        _tracker: tracker,
    }
}
