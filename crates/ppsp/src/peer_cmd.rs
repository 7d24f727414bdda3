//! `ppsp peer`: publish, fetch or play content through a swarm.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ppsp_peer::link::ShareLink;
use ppsp_peer::node::{Node, NodeConfig, Output};
use ppsp_peer::swarm::Swarm;
use ppsp_peer::tracker_client::Credentials;
use tokio::net::TcpListener;

use crate::CliError;

/// Options every peer subcommand shares.
#[derive(Debug, clap::Args)]
pub(crate) struct Common {
    /// Tracker URL, for example http://127.0.0.1:7070 (repeat for fallback trackers, best
    /// first). Needed unless a ppsp: share link names the trackers.
    #[arg(long, value_name = "URL")]
    tracker: Vec<String>,
    /// Address of this peer's endpoint for other peers (port 0 picks a free port); for
    /// `play`, the media player's endpoint (see --peer-listen). Use 0.0.0.0:PORT to be
    /// reachable from other hosts.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: String,
    /// get and play: how long to look for a peer serving the swarm's manifest, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    manifest_timeout: u64,
    /// Concurrent chunk uploads to other peers; further requests are answered 503.
    #[arg(long, value_name = "N", default_value_t = 8)]
    upload_slots: usize,
    /// Cap on upload bandwidth to other peers, in KiB/s (default: no cap).
    #[arg(long, value_name = "KIB_PER_SEC")]
    upload_rate: Option<u64>,
    /// Seconds between STAT_REPORTs to the tracker.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    report_interval: u64,
    /// Seconds between FIND requests for more peers.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    find_interval: u64,
    /// This peer's PeerID (default: a fresh random one). Must match the account name when
    /// the tracker checks SASL PLAIN credentials.
    #[arg(long, value_name = "ID")]
    peer_id: Option<String>,
    /// Authenticate with SASL PLAIN, the password being the first line of FILE (default:
    /// ANONYMOUS, for open trackers).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Learn this peer's public address from a STUN server (host:port, for example the
    /// tracker's `--stun` service) and declare it to the tracker as a REFLEXIVE address.
    #[arg(long, value_name = "HOST:PORT")]
    stun: Option<String>,
    /// PEM file of extra CA certificates to trust for https:// trackers.
    #[arg(long, value_name = "FILE")]
    tracker_ca: Option<PathBuf>,
    /// Web pages allowed to read the player endpoint (CORS): `*` for any, `none`, or
    /// origins such as `https://example.org` (repeat for several).
    #[arg(long, value_name = "ORIGIN", default_value = "*")]
    cors_origin: Vec<String>,
}

/// Peer subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum PeerCommand {
    /// Publish a file, or a directory as one swarm, (peer mode SEED) and serve it until
    /// stopped.
    Seed {
        /// The file or directory to publish.
        path: PathBuf,
        #[command(flatten)]
        common: Common,
        /// Chunk size in KiB (1 to 16384).
        #[arg(long, value_name = "KIB", default_value_t = 128, value_parser = chunk_kib_range())]
        chunk_kib: u32,
        /// Testing only: corrupt every chunk served (to exercise other peers' checks).
        #[arg(long, hide = true)]
        corrupt_uploads: bool,
    },
    /// Publish a live stream read from standard input (peer mode LIVESEED).
    Live {
        #[command(flatten)]
        common: Common,
        /// Stream name; its extension picks the media type players see (default live.ts).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Largest chunk in KiB (1 to 16384); a partial chunk is published after --flush-ms anyway.
        #[arg(long, value_name = "KIB", default_value_t = 64, value_parser = chunk_kib_range())]
        chunk_kib: u32,
        /// Longest time, in milliseconds, input waits before it is published.
        #[arg(long, value_name = "MS", default_value_t = 250)]
        flush_ms: u64,
        /// Publish the live HLS output an encoder keeps writing into DIR (for example
        /// `ffmpeg ... -f hls DIR/index.m3u8`) instead of standard input.
        #[arg(long, value_name = "DIR")]
        hls: Option<PathBuf>,
    },
    /// Join a swarm as LEECH, fetch and verify every chunk, write FILE, exit.
    ///
    /// For a live swarm, records the stream from near the live edge until the source ends
    /// it.
    Get {
        /// The swarm ID or the ppsp: share link printed by the publishing peer.
        swarm: String,
        /// Where to write the content (a directory, for a directory swarm). An interrupted
        /// download continues from FILE.part; a FILE that already holds the content is
        /// verified and kept as it is.
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
        /// Replace an existing FILE that is not this swarm's content.
        #[arg(long)]
        force: bool,
        /// After the file is written, keep serving peers that are still fetching from this
        /// one, until nobody has for 2 s or for at most SECS seconds (0: exit at once).
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        linger: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Join a swarm as LEECH and serve it to a local media player while fetching it.
    Play {
        /// The swarm ID or the ppsp: share link printed by the publishing peer.
        swarm: String,
        /// Address of the endpoint for other peers (the player's is --listen).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
        peer_listen: String,
        /// Keep what is fetched in FILE (through FILE.part, resumed next time) instead of a
        /// scratch file deleted at exit.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// With --output: replace an existing FILE that is not this swarm's content.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        common: Common,
    },
}

/// `--chunk-kib`: 1 KiB to 16 MiB, the manifest's chunk size bounds, checked by clap so a
/// mistake is reported in KiB, as typed.
fn chunk_kib_range() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..=16 * 1024)
}

/// The swarm ID of `swarm` (a bare ID or a share link) and every tracker to use: those of
/// `--tracker`, then those the link names.
fn swarm_and_trackers(swarm: &str, common: &Common) -> Result<(String, Vec<String>), CliError> {
    let mut trackers = common.tracker.clone();
    let id = if ShareLink::is_link(swarm) {
        let link = ShareLink::parse(swarm)?;
        for url in link.trackers {
            if !trackers.contains(&url) {
                trackers.push(url);
            }
        }
        link.swarm
    } else {
        ppsp_peer::node::parse_swarm_id(swarm)?;
        swarm.to_owned()
    };
    Ok((id, trackers))
}

/// The node settings from the shared options, with `trackers` (checked: at least one, each
/// an http:// or https:// URL, so a mistake is reported before any readiness line).
fn config_of(common: &Common, trackers: Vec<String>) -> Result<NodeConfig, CliError> {
    if trackers.is_empty() {
        return Err("no tracker: give --tracker URL (or a ppsp: share link naming one)".into());
    }
    for url in &trackers {
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(format!(
                "tracker {url:?} is not a URL; give it as http://HOST:PORT or https://HOST:PORT"
            )
            .into());
        }
    }
    let mut config = NodeConfig::new(trackers);
    config.manifest_timeout = Duration::from_secs(common.manifest_timeout.max(1));
    if let Some(id) = &common.peer_id {
        config.peer_id =
            ppsp_proto::PeerId::new(id.clone()).map_err(|e| format!("--peer-id {id:?}: {e}"))?;
    }
    if let Some(path) = &common.password_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading password file {}: {e}", path.display()))?;
        let password = text.lines().next().unwrap_or_default().to_owned();
        if password.is_empty() {
            return Err(format!("password file {} is empty", path.display()).into());
        }
        config.credentials = Credentials::Plain {
            authzid: None,
            username: config.peer_id.as_str().to_owned(),
            password,
        };
    }
    config.stun.clone_from(&common.stun);
    if let Some(path) = &common.tracker_ca {
        config.tls_roots = ppsp_peer::tracker_client::load_pem_certificates(path)?;
    }
    config.swarm.upload_slots = common.upload_slots.max(1);
    // One host gets at most half of the slots (and at least four), so that it cannot take
    // them all, while a few leeches behind one address still get a fair share.
    config.swarm.uploads_per_address = (config.swarm.upload_slots / 2).max(4);
    config.swarm.upload_rate = common.upload_rate.map(|k| k.saturating_mul(1024));
    config.swarm.cors = ppsp_peer::player::CorsPolicy::from_values(&common.cors_origin)?;
    config.find_interval = Duration::from_secs(common.find_interval.max(1));
    let interval = Duration::from_secs(common.report_interval.max(1));
    config.session.stat_report_interval = interval;
    config.session.min_report_gap = config.session.min_report_gap.min(interval);
    Ok(config)
}

/// Prints a readiness line on standard output and flushes it at once.
fn ready(line: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Binds `listen`: an address, or a host name with a port (`localhost:0`).
async fn bind(listen: &str) -> Result<(TcpListener, SocketAddr), CliError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Waits for Ctrl-C or SIGTERM.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// LEAVE and DISCONNECT, bounded in time so a vanished tracker cannot hold up the exit.
async fn close(node: Node) {
    match tokio::time::timeout(Duration::from_secs(10), node.shutdown()).await {
        Ok(Ok(())) => tracing::info!("left the swarm and disconnected"),
        Ok(Err(err)) => tracing::warn!(%err, "closing the tracker session failed"),
        Err(_) => tracing::warn!("the tracker did not answer LEAVE/DISCONNECT in time"),
    }
}

/// Runs a peer subcommand; `quiet` leaves out progress lines.
pub(crate) fn run(cmd: PeerCommand, quiet: bool) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(cmd, quiet))
}

/// The share link of a swarm this peer publishes.
fn share_line(swarm: &Swarm, config: &NodeConfig) -> String {
    let link = ShareLink {
        swarm: swarm.id().to_owned(),
        trackers: config.trackers.clone(),
    };
    format!("share {link}")
}

/// `--output` exists and is something else: say how to replace it.
fn output_error(err: ppsp_peer::Error) -> CliError {
    match err {
        ppsp_peer::Error::OutputExists { path } => format!(
            "--output {} exists and is not this swarm's content; pass --force to replace it",
            path.display()
        )
        .into(),
        other => CliError::from(other),
    }
}

async fn run_async(cmd: PeerCommand, quiet: bool) -> Result<(), CliError> {
    match cmd {
        PeerCommand::Seed {
            path,
            common,
            chunk_kib,
            corrupt_uploads,
        } => {
            let mut config = config_of(&common, common.tracker.clone())?;
            config.chunk_size = chunk_kib.saturating_mul(1024);
            config.swarm.corrupt_uploads = corrupt_uploads;
            let (listener, local) = bind(&common.listen).await?;
            let node = Node::seed_file(&config, listener, &path).await?;
            ready(&format!("swarm {}", node.swarm().id()))?;
            ready(&format!("listening on http://{local}"))?;
            ready(&share_line(node.swarm(), &config))?;
            let result = tokio::select! {
                () = stopped() => Ok(()),
                lost = node.content_lost() => Err(CliError::from(lost)),
            };
            close(node).await;
            result
        }
        PeerCommand::Live {
            common,
            name,
            chunk_kib,
            flush_ms,
            hls,
        } => {
            let mut config = config_of(&common, common.tracker.clone())?;
            config.chunk_size = chunk_kib.saturating_mul(1024);
            config.name = name;
            config.live_flush = Duration::from_millis(flush_ms.max(1));
            let (listener, local) = bind(&common.listen).await?;
            let node = match &hls {
                Some(dir) => Node::live_hls_source(&config, listener, dir).await?,
                None => Node::live_source(&config, listener, tokio::io::stdin()).await?,
            };
            ready(&format!("swarm {}", node.swarm().id()))?;
            ready(&format!("listening on http://{local}"))?;
            ready(&share_line(node.swarm(), &config))?;
            stopped().await;
            close(node).await;
            Ok(())
        }
        PeerCommand::Get {
            swarm,
            output,
            force,
            linger,
            common,
        } => {
            let (swarm, trackers) = swarm_and_trackers(&swarm, &common)?;
            let mut config = config_of(&common, trackers)?;
            config.overwrite = force;
            // A live recording cannot be checked against anything: never replace a file
            // unasked.
            if ppsp_peer::manifest::is_live_swarm(&swarm) && output.exists() && !force {
                return Err(format!(
                    "--output {} exists; pass --force to replace it with the recording",
                    output.display()
                )
                .into());
            }
            let (listener, local) = bind(&common.listen).await?;
            ready(&format!("swarm {swarm}"))?;
            ready(&format!("listening on http://{local}"))?;
            let mut node = Node::leech_until(
                &config,
                listener,
                &swarm,
                Output::File(output.clone()),
                stopped(),
            )
            .await
            .map_err(output_error)?;
            if node.swarm().is_live() {
                let result = tokio::select! {
                    result = record_live(node.swarm(), &output) => result,
                    () = stopped() => Err("interrupted".into()),
                };
                close(node).await;
                return result;
            }
            let download_started = Instant::now();
            let progress =
                (!quiet).then(|| tokio::spawn(report_progress(Arc::clone(node.swarm()))));
            let result = tokio::select! {
                result = node.wait_complete() => result.map_err(CliError::from),
                () = stopped() => Err("interrupted".into()),
            };
            if let Some(progress) = progress {
                progress.abort();
                finish_progress(node.swarm(), download_started);
            }
            if result.is_ok() {
                tracing::info!(path = %output.display(), "download complete");
                tokio::select! {
                    () = linger_while_needed(node.swarm(), Duration::from_secs(linger)) => {}
                    () = stopped() => {}
                }
            }
            close(node).await;
            result
        }
        PeerCommand::Play {
            swarm,
            peer_listen,
            output,
            force,
            common,
        } => {
            let (swarm, trackers) = swarm_and_trackers(&swarm, &common)?;
            let mut config = config_of(&common, trackers)?;
            config.overwrite = force;
            let (player_listener, player_local) = bind(&common.listen).await?;
            let (listener, local) = bind(&peer_listen).await?;
            ready(&format!("swarm {swarm}"))?;
            ready(&format!("listening on http://{player_local}"))?;
            ready(&format!("peer on http://{local}"))?;
            let keep = output.clone().map_or(Output::Scratch, Output::File);
            let mut node = Node::leech_until(&config, listener, &swarm, keep, stopped())
                .await
                .map_err(output_error)?;
            node.serve_player(player_listener)?;
            tracing::info!("point a media player at http://{player_local}/");
            let live = node.swarm().is_live();
            let progress =
                (!quiet && !live).then(|| tokio::spawn(report_progress(Arc::clone(node.swarm()))));
            let started = Instant::now();
            tokio::select! {
                result = node.wait_complete() => {
                    if let Some(progress) = progress {
                        progress.abort();
                        finish_progress(node.swarm(), started);
                    }
                    result?;
                    if !live {
                        match &output {
                            Some(path) => tracing::info!(path = %path.display(), "all content fetched and kept; still serving"),
                            None => tracing::info!("all content fetched; still serving"),
                        }
                    }
                    stopped().await;
                }
                () = stopped() => {}
            }
            close(node).await;
            Ok(())
        }
    }
}

/// Writes a live stream to `path` from near the live edge until the source ends it.
async fn record_live(swarm: &Arc<Swarm>, path: &std::path::Path) -> Result<(), CliError> {
    use tokio::io::AsyncWriteExt as _;
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    let mut stream = ppsp_peer::player::live_stream(swarm);
    let mut written = 0u64;
    tracing::info!(path = %path.display(), "recording the live stream until it ends");
    while let Some(piece) = stream.recv().await {
        file.write_all(&piece).await?;
        written += piece.len() as u64;
    }
    file.flush().await?;
    tracing::info!(bytes = written, "live stream ended");
    Ok(())
}

/// Keeps serving while other peers still fetch from this one: returns once nothing was
/// uploaded for two seconds, or after `limit`.
async fn linger_while_needed(swarm: &Swarm, limit: Duration) {
    const IDLE: Duration = Duration::from_secs(2);
    if limit.is_zero() {
        return;
    }
    let start = Instant::now();
    let mut last_upload = (Instant::now(), swarm.uploaded());
    tracing::info!(
        limit_secs = limit.as_secs(),
        "serving other peers before leaving"
    );
    while start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let uploaded = swarm.uploaded();
        if uploaded != last_upload.1 {
            last_upload = (Instant::now(), uploaded);
        } else if last_upload.0.elapsed() >= IDLE {
            return;
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn progress_line(swarm: &Swarm, rate: f64) -> (String, f64) {
    let total = swarm.store().vod_manifest().map_or(0, |m| m.total_length());
    let stats = swarm.stats();
    let held_bytes = swarm.store().vod_manifest().map_or(0, |m| {
        (stats.chunks_held * u64::from(m.chunk_size())).min(m.total_length())
    });
    let fraction = if total == 0 {
        1.0
    } else {
        held_bytes as f64 / total as f64
    };
    let peers = match stats.peers_known {
        1 => "1 peer".to_owned(),
        n => format!("{n} peers"),
    };
    let mut line = format!(
        "{:5.1}% {:.1}/{:.1} MiB, {:.1} MiB/s, {peers}, {:.1} MiB uploaded",
        fraction * 100.0,
        mib(held_bytes),
        mib(total),
        rate,
        mib(stats.uploaded_bytes),
    );
    if fraction < 1.0
        && let Some(problem) = swarm.recent_problem(Duration::from_secs(10))
    {
        line.push_str(" (");
        line.push_str(&problem);
        line.push(')');
    }
    (line, fraction)
}

/// Shows download progress: a bar redrawn in place on a terminal, a plain line every few
/// seconds otherwise (logs and pipes).
async fn report_progress(swarm: Arc<Swarm>) {
    let terminal = std::io::stderr().is_terminal();
    let period = if terminal {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(2)
    };
    let mut last = (Instant::now(), swarm.downloaded());
    loop {
        tokio::time::sleep(period).await;
        let now = Instant::now();
        let downloaded = swarm.downloaded();
        let elapsed = now.duration_since(last.0).as_secs_f64().max(1e-3);
        let rate = mib(downloaded.saturating_sub(last.1)) / elapsed;
        last = (now, downloaded);
        let (line, fraction) = progress_line(&swarm, rate);
        if terminal {
            const WIDTH: usize = 30;
            let filled = ((fraction * WIDTH as f64) as usize).min(WIDTH);
            eprint!(
                "\r[{}{}] {line}\x1b[K",
                "#".repeat(filled),
                "-".repeat(WIDTH - filled)
            );
        } else {
            eprintln!("progress: {line}");
        }
    }
}

/// The last progress line, with the average rate since `started`: a download that ends
/// between two periodic lines (a small file, a fast network) would otherwise show no rate.
fn finish_progress(swarm: &Swarm, started: Instant) {
    let elapsed = started.elapsed().as_secs_f64().max(1e-3);
    let (line, _) = progress_line(swarm, mib(swarm.downloaded()) / elapsed);
    if std::io::stderr().is_terminal() {
        eprintln!("\r{line}\x1b[K");
    } else {
        eprintln!("progress: {line}");
    }
}
