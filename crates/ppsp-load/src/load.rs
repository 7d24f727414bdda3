//! The load run: simulated peers driving a running tracker.
//!
//! Every simulated peer runs the life of a real one, back to back with no think time (a
//! closed loop: the number of peers is the number of requests in flight, capped by
//! `--connections`):
//!
//! * XML protocol: CONNECT (SASL `ANONYMOUS`), JOIN (every tenth peer as SEED, the rest as
//!   LEECH), then FIND, STAT_REPORT (stream statistics and a chunk map) and KEEPALIVE in
//!   turn until the run ends, then LEAVE and DISCONNECT. A 401 in the loop (session expired)
//!   sends the peer back to CONNECT and JOIN.
//! * JSON protocol (`--json`, RFC 7846): CONNECT with a JOIN swarm action, then FIND,
//!   STAT_REPORT (stream statistics; RFC 7846 has no chunk maps) and STAT_REPORT without
//!   statistics (its keep-alive) in turn, then CONNECT with a LEAVE swarm action, which ends
//!   the registration (RFC 7846 has no DISCONNECT).
//!
//! With `--rate R` the loop is open instead: once every peer has set up, the loop requests
//! are due at fixed times, `k / R` seconds after the start, handed out in turn to the
//! peers; a peer waits for its request's time and sends it. Latency then runs from the time
//! the request was due, not from when it could be sent, so time spent waiting for a peer
//! still busy with its previous request or for a free connection counts (the correction
//! for coordinated omission that wrk2 makes). A pacer task releases the requests on a timer
//! of the operating system's resolution (`timerfd` on Linux, waited for in the runtime's own
//! event loop), not on tokio's timer, whose one-millisecond ticks would release them in
//! bursts and count up to a millisecond of lateness as latency. It wakes at most once per
//! [`PACING_QUANTUM`] and releases every request due by then: waking once per request (every
//! 40 µs at 25,000 requests a second) cost the load generator and the tracker a wake-up per
//! request, which on a two-core machine left little of it idle at half the closed-loop
//! rate. An earlier pacer was a thread of its own that slept and woke the runtime; each of
//! its releases then cost a wake-up of another thread, and the timer in the runtime saves
//! 12 to 38 % of the load generator's context switches (`docs/benchmarks.md`). The wait
//! for the next wake-up counts as latency, like any other. The report adds a `send delay` row:
//! how long after its due time each request was handed to its connection. That part of a
//! latency is the load generator's own (the pacer waking late, a peer still waiting for its
//! previous answer, no free connection, the runtime busy reading answers); the rest is the
//! exchange with the tracker.
//!
//! An answer counts as an error when it is not HTTP 200, when its body does not decode, when
//! it reports a failure, or when the exchange fails or takes longer than the request timeout.
//! Setup answers (CONNECT, JOIN, LEAVE, DISCONNECT) and every [`FULL_CHECK_EVERY`]th loop
//! answer of each peer are decoded in full; the other loop answers only need to carry the
//! success status in the form the tracker writes it (`<Response>OK</Response>`,
//! `"error_code":0`) and no new AuthToken; any other is decoded in full. Decoding every
//! FIND's peer list would cost the load generator a quarter of its CPU, which the tracker
//! sharing the machine would then miss.
//! In the closed loop, latency is measured from sending the request (after a connection slot
//! is free) to the last byte of the answer. It is kept in a log-linear histogram per method
//! (about 0.4 % resolution), so memory stays fixed however long the run; the report gives
//! p50, p90, p99, p99.9 and the maximum.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hyper::Uri;
use ppsp_proto::{
    AddressType, AuthToken, ChunkMap, ChunkMapReport, ChunkSegments, Clip, Connect, Find, Join,
    Leave, Limits, MediaType, NatHints, PeerAddress, PeerId, PeerMode, PeerNum, Request,
    RequestBody, Response, SaslAuth, Segment, Stat, StatReport, Status, StreamStats, SwarmAction,
    SwarmActionKind, SwarmId, TransactionId,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;

use crate::LoadError;
use crate::wire::{Wire, WireError};

/// Options of the load run (`ppsp bench --tracker URL ...`).
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Tracker to drive, for example http://127.0.0.1:7070/ (the path is used as is).
    #[arg(long, value_name = "URL")]
    tracker: String,
    /// Simulated peers, each with one request in flight at a time.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    peers: u32,
    /// Swarms the peers spread over (peer i joins swarm i mod N).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    swarms: u32,
    /// How long the request loop runs, in seconds (default 10 unless --requests is given).
    #[arg(long, value_name = "SECS", conflicts_with = "requests")]
    duration: Option<f64>,
    /// Stop the loop after this many FIND/STAT_REPORT/KEEPALIVE requests instead of after a
    /// time (set-up and tear-down requests come on top).
    #[arg(long, value_name = "N")]
    requests: Option<u64>,
    /// Most requests in flight, and so most connections open, at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    connections: u32,
    /// Threads the load generator runs on (like wrk's `-t`): one by default, where it
    /// spends no CPU on handing work between threads, which a tracker on the same machine
    /// would otherwise miss.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: u32,
    /// Speak the RFC 7846 JSON protocol instead of the XML one.
    #[arg(long)]
    json: bool,
    /// Chunks covered by each peer's chunk map in STAT_REPORT (XML only).
    #[arg(long, value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    chunk_map_bits: u64,
    /// Give up on a request after this many seconds (counted as an error).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    timeout: f64,
    /// Open loop: send the FIND/STAT_REPORT/KEEPALIVE loop at this many requests per second
    /// in all, each at its scheduled time, once every peer has joined. Latency then counts
    /// from the scheduled time, so a request that waited for a busy peer or connection
    /// counts the wait. Needs enough peers to keep up: each has one request in flight. The
    /// report's `send delay` row shows how much of that was spent before sending.
    #[arg(long, value_name = "REQ_PER_SEC")]
    rate: Option<f64>,
    /// Requests of the loop: `all` (FIND, STAT_REPORT and KEEPALIVE in turn) or `find`
    /// (FIND only: the cost of peer lists alone).
    #[arg(long, value_enum, default_value_t = Mix::All)]
    mix: Mix,
}

/// Which requests the loop sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Mix {
    /// FIND, STAT_REPORT and KEEPALIVE in turn.
    All,
    /// FIND only.
    Find,
}

impl Mix {
    fn rotation(self) -> &'static [Op] {
        match self {
            Self::All => &[Op::Find, Op::StatReport, Op::KeepAlive],
            Self::Find => &[Op::Find],
        }
    }
}

/// Runs the load generator on a runtime of its own and returns its report: a summary line
/// and a table with one row per method.
///
/// # Errors
///
/// [`LoadError`] when an option is out of range, the runtime cannot start, or no request
/// got an answer (then with the report).
pub fn run_load(args: &LoadArgs) -> Result<String, LoadError> {
    let plan = Plan::from_args(args)?;
    let mut builder = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(args.threads as usize);
        builder
    };
    let runtime = builder.enable_all().build().map_err(LoadError::Runtime)?;
    runtime.block_on(drive(Arc::new(plan)))
}

/// The STAT_REPORT a simulated peer sends: its stream statistics in `swarm_id` (bytes up and
/// down, a fixed available bandwidth) and, when `chunks` is given (the XML protocol; RFC
/// 7846 has no chunk maps), the chunks it holds as one segment of a clip named `bench`.
/// Public so that measurements of the tracker's decoder can use the very request the load
/// run sends (`crates/ppsp/examples/hot_path_counts.rs`).
pub fn simulated_stat_report(
    swarm_id: &SwarmId,
    uploaded: u64,
    downloaded: u64,
    chunks: Option<&ChunkMap>,
) -> StatReport {
    let mut stats = vec![Stat::StreamStats(StreamStats {
        swarm_id: Some(swarm_id.clone()),
        uploaded_bytes: Some(uploaded),
        downloaded_bytes: Some(downloaded),
        available_bandwidth: Some(10_000_000),
        concurrent_links: None,
    })];
    if let Some(chunks) = chunks {
        stats.push(Stat::ChunkMap(ChunkMapReport {
            swarm_id: swarm_id.clone(),
            clips: vec![Clip {
                name: "bench".to_owned(),
                kind: None,
                chunk_segment_index: None,
                segments: Some(ChunkSegments {
                    media: MediaType::Video,
                    segments: vec![Segment::with_map(chunks.clone())],
                }),
            }],
        }));
    }
    StatReport { stats }
}

// --- plan ----------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    Xml,
    Json,
}

/// When the request loop stops.
#[derive(Debug)]
enum Stop {
    At(Duration),
    AfterRequests(AtomicU64),
}

#[derive(Debug)]
struct Plan {
    uri: Uri,
    dialect: Dialect,
    peers: u32,
    swarms: u32,
    connections: u32,
    stop: Stop,
    chunk_map_bits: u64,
    timeout: Duration,
    /// Distinguishes this run's peer IDs from a previous run's still-live sessions.
    run_tag: u32,
    /// Requests per second of the open loop; a closed loop when absent.
    rate: Option<f64>,
    /// The requests of the loop, taken in turn.
    rotation: &'static [Op],
}

impl Plan {
    fn from_args(args: &LoadArgs) -> Result<Self, LoadError> {
        let uri = crate::tracker_uri(&args.tracker)?;
        let stop = match (args.duration, args.requests) {
            (_, Some(0)) => return Err(LoadError::NoRequests),
            (_, Some(n)) => Stop::AfterRequests(AtomicU64::new(n)),
            (Some(secs), None) => Stop::At(seconds(secs, "--duration")?),
            (None, None) => Stop::At(Duration::from_secs(10)),
        };
        Ok(Self {
            uri,
            dialect: if args.json {
                Dialect::Json
            } else {
                Dialect::Xml
            },
            peers: args.peers,
            swarms: args.swarms,
            connections: args.connections,
            stop,
            chunk_map_bits: args.chunk_map_bits,
            timeout: seconds(args.timeout, "--timeout")?,
            run_tag: StdRng::from_os_rng().random(),
            rotation: args.mix.rotation(),
            rate: match args.rate {
                Some(rate) if !(rate.is_finite() && rate > 0.0 && rate <= 10_000_000.0) => {
                    return Err(LoadError::OutOfRange {
                        option: "--rate",
                        value: rate,
                        min: 0.0,
                        max: 10_000_000.0,
                    });
                }
                rate => rate,
            },
        })
    }
}

/// A duration option in seconds, above 0 and at most a day.
pub(crate) fn seconds(value: f64, option: &'static str) -> Result<Duration, LoadError> {
    if !(value.is_finite() && value > 0.0 && value <= 86_400.0) {
        return Err(LoadError::OutOfRange {
            option,
            value,
            min: 0.0,
            max: 86_400.0,
        });
    }
    Ok(Duration::from_secs_f64(value))
}

// --- methods and their statistics ----------------------------------------------------------------

/// The steps of a simulated peer's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Connect,
    Join,
    Find,
    StatReport,
    KeepAlive,
    Leave,
    Disconnect,
}

impl Op {
    const ALL: [Self; 7] = [
        Self::Connect,
        Self::Join,
        Self::Find,
        Self::StatReport,
        Self::KeepAlive,
        Self::Leave,
        Self::Disconnect,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// What the step is called on the wire of `dialect`.
    fn label(self, dialect: Dialect) -> &'static str {
        match (dialect, self) {
            (_, Self::Find) => "FIND",
            (_, Self::StatReport) => "STAT_REPORT",
            (Dialect::Xml, Self::Connect) => "CONNECT",
            (Dialect::Xml, Self::Join) => "JOIN",
            (Dialect::Xml, Self::KeepAlive) => "KEEPALIVE",
            (Dialect::Xml, Self::Leave) => "LEAVE",
            (Dialect::Xml, Self::Disconnect) => "DISCONNECT",
            (Dialect::Json, Self::Connect | Self::Join) => "CONNECT(JOIN)",
            (Dialect::Json, Self::KeepAlive) => "STAT_REPORT(keep-alive)",
            (Dialect::Json, Self::Leave | Self::Disconnect) => "CONNECT(LEAVE)",
        }
    }
}

/// Latency histogram in microseconds: exact below 512 µs, then 256 buckets per power of two
/// (relative error under 0.4 %), values above about 18 minutes clamped. Shared by all peers
/// through relaxed atomic counters.
struct Histogram {
    counts: Box<[AtomicU64]>,
    max: AtomicU64,
}

const EXACT: u64 = 512;
const SUB_BUCKETS: u64 = 256;
const MAX_RECORDED_MICROS: u64 = (1 << 30) - 1;

impl Histogram {
    fn new() -> Self {
        let buckets = bucket_of(MAX_RECORDED_MICROS) + 1;
        Self {
            counts: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }

    /// Records `elapsed` in whole microseconds.
    fn record_duration(&self, elapsed: Duration) {
        self.record(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    fn record(&self, micros: u64) {
        let micros = micros.min(MAX_RECORDED_MICROS);
        if let Some(count) = self.counts.get(bucket_of(micros)) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.max.fetch_max(micros, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The smallest recorded value such that at least `quantile` of the samples are at or
    /// below it (reported as the top of its bucket, never above the maximum).
    fn quantile(&self, quantile: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((quantile * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count.load(Ordering::Relaxed);
            if seen >= rank {
                return bucket_top(bucket).min(self.max.load(Ordering::Relaxed));
            }
        }
        self.max.load(Ordering::Relaxed)
    }
}

fn bucket_of(micros: u64) -> usize {
    if micros < EXACT {
        return micros as usize;
    }
    // `shift` is how far `micros` must move right to land in [256, 512).
    let shift = u64::from(63 - micros.leading_zeros()) - 8;
    (EXACT + (shift - 1) * SUB_BUCKETS + ((micros >> shift) - SUB_BUCKETS)) as usize
}

fn bucket_top(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < EXACT {
        return bucket;
    }
    let shift = (bucket - EXACT) / SUB_BUCKETS + 1;
    let mantissa = (bucket - EXACT) % SUB_BUCKETS + SUB_BUCKETS;
    ((mantissa + 1) << shift) - 1
}

/// Why an exchange counts as an error.
#[derive(Debug)]
enum Failure {
    /// The tracker answered with this HTTP status.
    Http(u16),
    /// HTTP 200, but the body reports a failure (RFC 7846 trackers may answer errors with 200).
    Refused(Status),
    /// The body did not decode.
    BadBody,
    /// No answer: connection refused, reset, or the like, as the connection reported it;
    /// `None` when no connection slot could be had (the slots are never closed).
    Transport(Option<WireError>),
    /// No answer within the request timeout.
    Timeout,
}

impl Failure {
    fn key(&self) -> String {
        match self {
            Self::Http(code) => format!("HTTP {code}"),
            Self::Refused(status) => format!("refused: {status}"),
            Self::BadBody => "undecodable answer".to_owned(),
            Self::Transport(Some(cause)) => format!("transport error: {cause}"),
            Self::Transport(None) => "transport error".to_owned(),
            Self::Timeout => "timeout".to_owned(),
        }
    }
}

/// Everything measured during a run.
struct Recorder {
    latency: [Histogram; 7],
    errors: [AtomicU64; 7],
    /// Requests that got no answer at all (not in the latency histograms).
    unanswered: [AtomicU64; 7],
    kinds: Mutex<BTreeMap<String, u64>>,
    /// Open loop: from each loop request's due time to its hand-over to a connection.
    send_delay: Histogram,
}

impl Recorder {
    fn new() -> Self {
        Self {
            latency: std::array::from_fn(|_| Histogram::new()),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            unanswered: std::array::from_fn(|_| AtomicU64::new(0)),
            kinds: Mutex::new(BTreeMap::new()),
            send_delay: Histogram::new(),
        }
    }

    fn sent_late(&self, delay: Duration) {
        self.send_delay.record_duration(delay);
    }

    fn success(&self, op: Op, elapsed: Duration) {
        if let Some(histogram) = self.latency.get(op.index()) {
            histogram.record_duration(elapsed);
        }
    }

    fn failure(&self, op: Op, elapsed: Duration, failure: &Failure) {
        // Failed exchanges count in the latency too, except those that never got an answer.
        if matches!(failure, Failure::Transport(_) | Failure::Timeout) {
            if let Some(unanswered) = self.unanswered.get(op.index()) {
                unanswered.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            self.success(op, elapsed);
        }
        if let Some(errors) = self.errors.get(op.index()) {
            errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut kinds) = self.kinds.lock() {
            *kinds.entry(failure.key()).or_default() += 1;
        }
    }
}

// --- HTTP -------------------------------------------------------------------------------------

struct Tracker {
    wire: Wire,
    dialect: Dialect,
    slots: Semaphore,
    limits: Limits,
    timeout: Duration,
    recorder: Recorder,
}

impl Tracker {
    fn new(plan: &Plan) -> Self {
        let content_type = match plan.dialect {
            Dialect::Xml => ppsp_proto::XML_MEDIA_TYPE,
            Dialect::Json => ppsp_proto::JSON_MEDIA_TYPE,
        };
        Self {
            // At most `connections` exchanges run at once (`slots`), so at most that many
            // connections are ever open.
            wire: Wire::new(&plan.uri, content_type),
            dialect: plan.dialect,
            slots: Semaphore::new(plan.connections as usize),
            limits: Limits::default(),
            timeout: plan.timeout,
            recorder: Recorder::new(),
        }
    }

    /// Sends one request, records the outcome, and returns the answer on success, decoded
    /// when `check` asked for it. A request with a scheduled time waits for it, and its
    /// latency counts from it.
    async fn exchange(
        &self,
        op: Op,
        request: &Request,
        scheduled: Option<Due<'_>>,
        check: Check,
    ) -> Result<Option<Response>, Failure> {
        let body = match self.dialect {
            Dialect::Xml => ppsp_proto::xml::encode_request(request),
            Dialect::Json => ppsp_proto::json::encode_request(request),
        };
        let scheduled = match scheduled {
            Some(due) => Some(due.wait().await),
            None => None,
        };
        // The semaphore is never closed, so acquiring only fails if it were.
        let Ok(_slot) = self.slots.acquire().await else {
            return Err(Failure::Transport(None));
        };
        if let Some(due) = scheduled {
            self.recorder.sent_late(due.elapsed());
        }
        let started = scheduled.unwrap_or_else(Instant::now);
        let outcome = tokio::time::timeout(self.timeout, self.wire.post(body.as_bytes())).await;
        let elapsed = started.elapsed();
        let result = match outcome {
            Err(_) => Err(Failure::Timeout),
            Ok(Err(cause)) => Err(Failure::Transport(Some(cause))),
            Ok(Ok((200, bytes)))
                if check == Check::Status && reports_success(self.dialect, &bytes) =>
            {
                Ok(None)
            }
            Ok(Ok((200, bytes))) => self.read_answer(&bytes).map(Some),
            Ok(Ok((code, _))) => Err(Failure::Http(code)),
        };
        match &result {
            Ok(_) => self.recorder.success(op, elapsed),
            Err(failure) => self.recorder.failure(op, elapsed, failure),
        }
        result
    }

    fn read_answer(&self, bytes: &[u8]) -> Result<Response, Failure> {
        let response = match self.dialect {
            Dialect::Xml => ppsp_proto::xml::decode_response(bytes, &self.limits),
            Dialect::Json => ppsp_proto::json::decode_response(bytes, &self.limits),
        }
        .map_err(|_| Failure::BadBody)?;
        if response.status == Status::Ok {
            Ok(response)
        } else {
            Err(Failure::Refused(response.status))
        }
    }
}

/// One loop answer in this many, per peer, is decoded in full (see the module docs).
const FULL_CHECK_EVERY: u64 = 16;

/// How much of an answer's body is looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// Decoded in full.
    Full,
    /// Only the success status is looked for; a body without it is decoded in full.
    Status,
}

/// Whether `body` can be taken for a success without decoding it: it carries the success
/// status as this project's tracker writes it and, in XML, no AuthToken (a tracker may hand
/// out a new one with any answer, and the peer must not miss it).
fn reports_success(dialect: Dialect, body: &[u8]) -> bool {
    match dialect {
        Dialect::Xml => {
            memchr::memmem::find(body, b"<Response>OK</Response>").is_some()
                && memchr::memmem::find(body, b"<AuthToken>").is_none()
        }
        Dialect::Json => {
            memchr::memmem::find(body, b"\"error_code\":0,").is_some()
                || memchr::memmem::find(body, b"\"error_code\":0}").is_some()
        }
    }
}

// --- simulated peers ----------------------------------------------------------------------------

/// Failed CONNECT (and JOIN) attempts in a row after which a simulated peer stops.
const MAX_SETUP_ATTEMPTS: u32 = 20;

struct SimPeer {
    peer_id: PeerId,
    swarm_id: SwarmId,
    mode: PeerMode,
    token: Option<AuthToken>,
    next_transaction: u64,
    /// Loop answers so far, for choosing which are decoded in full.
    loop_answers: u64,
    chunks: ChunkMap,
    uploaded: u64,
    downloaded: u64,
    rng: StdRng,
    port: u16,
}

impl SimPeer {
    fn new(plan: &Plan, index: u32) -> Result<Self, LoadError> {
        let mut rng = StdRng::seed_from_u64(u64::from(plan.run_tag) << 32 | u64::from(index));
        let mode = if index % 10 == 0 {
            PeerMode::Seed
        } else {
            PeerMode::Leech
        };
        let chunks = if mode.is_seed() {
            ChunkMap::full(0, plan.chunk_map_bits)
        } else {
            let mut map = ChunkMap::new(0, plan.chunk_map_bits);
            for chunk in 0..plan.chunk_map_bits {
                if rng.random_bool(0.5) {
                    map.insert(chunk);
                }
            }
            map
        };
        Ok(Self {
            peer_id: PeerId::new(format!("bench-{:08x}-{index}", plan.run_tag))
                .map_err(LoadError::Identifier)?,
            swarm_id: SwarmId::new(format!("bench-swarm-{}", index % plan.swarms))
                .map_err(LoadError::Identifier)?,
            mode,
            token: None,
            next_transaction: 1,
            loop_answers: 0,
            chunks,
            uploaded: 0,
            downloaded: 0,
            rng,
            port: 20_000 + (index % 40_000) as u16,
        })
    }

    fn request(&mut self, body: RequestBody) -> Request {
        let transaction_id = TransactionId::numeric(self.next_transaction);
        self.next_transaction += 1;
        Request {
            peer_id: self.peer_id.clone(),
            auth_token: self.token.clone(),
            transaction_id,
            body,
        }
    }

    fn swarm_action(&self, action: SwarmActionKind) -> SwarmAction {
        SwarmAction {
            swarm_id: self.swarm_id.clone(),
            action,
            mode: self.mode,
        }
    }

    /// Sends one step of the peer's life; keeps a rotated token.
    async fn step(
        &mut self,
        tracker: &Tracker,
        op: Op,
        scheduled: Option<Due<'_>>,
    ) -> Result<(), Failure> {
        let request = self.build(tracker.dialect, op);
        let check = match op {
            Op::Find | Op::StatReport | Op::KeepAlive => {
                self.loop_answers += 1;
                if self.loop_answers % FULL_CHECK_EVERY == 0 {
                    Check::Full
                } else {
                    Check::Status
                }
            }
            Op::Connect | Op::Join | Op::Leave | Op::Disconnect => Check::Full,
        };
        let response = tracker.exchange(op, &request, scheduled, check).await?;
        if let Some(token) = response.and_then(|r| r.auth_token) {
            self.token = Some(token);
        }
        Ok(())
    }

    fn build(&mut self, dialect: Dialect, op: Op) -> Request {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let body = match (dialect, op) {
            (Dialect::Xml, Op::Connect) => RequestBody::Connect(Connect {
                auth: Some(SaslAuth {
                    mechanism: "ANONYMOUS".to_owned(),
                    credentials: None,
                }),
                addresses: vec![
                    PeerAddress::new(loopback, self.port)
                        .with_kind(AddressType::Host)
                        .with_priority(1),
                ],
                peer_num: None,
                swarm_actions: Vec::new(),
            }),
            (Dialect::Xml, Op::Join) => RequestBody::Join(Join {
                swarm_id: self.swarm_id.clone(),
                mode: self.mode,
                hints: NatHints::default(),
                peer_num: Some(20),
                clip: None,
                expire_time: 0,
            }),
            // RFC 7846 joins inside CONNECT.
            (Dialect::Json, Op::Connect | Op::Join) => RequestBody::Connect(Connect {
                auth: None,
                addresses: vec![
                    PeerAddress::new(loopback, self.port)
                        .with_kind(AddressType::Host)
                        .with_priority(1),
                ],
                peer_num: Some(PeerNum::count(20)),
                swarm_actions: vec![self.swarm_action(SwarmActionKind::Join)],
            }),
            (_, Op::Find) => RequestBody::Find(Find {
                swarm_id: self.swarm_id.clone(),
                peer_num: Some(PeerNum::count(20)),
                hints: NatHints::default(),
                clip: None,
            }),
            (_, Op::StatReport) => RequestBody::StatReport(self.stat_report(dialect)),
            (Dialect::Xml, Op::KeepAlive) => RequestBody::KeepAlive,
            (Dialect::Json, Op::KeepAlive) => RequestBody::StatReport(StatReport::default()),
            (Dialect::Xml, Op::Leave) => RequestBody::Leave(Leave {
                swarm_id: self.swarm_id.clone(),
            }),
            (Dialect::Xml, Op::Disconnect) => RequestBody::Disconnect,
            // Leaving the only swarm ends an RFC 7846 registration.
            (Dialect::Json, Op::Leave | Op::Disconnect) => RequestBody::Connect(Connect {
                auth: None,
                addresses: Vec::new(),
                peer_num: None,
                swarm_actions: vec![self.swarm_action(SwarmActionKind::Leave)],
            }),
        };
        self.request(body)
    }

    fn stat_report(&mut self, dialect: Dialect) -> StatReport {
        // A leech fetches a few chunks between reports; everyone uploads some.
        if !self.mode.is_seed() {
            for _ in 0..4 {
                let chunk = self.rng.random_range(0..self.chunks.len());
                if self.chunks.insert(chunk) {
                    self.downloaded += 16_384;
                }
            }
        }
        self.uploaded += self.rng.random_range(0..65_536);
        let chunks = (dialect == Dialect::Xml).then_some(&self.chunks);
        simulated_stat_report(&self.swarm_id, self.uploaded, self.downloaded, chunks)
    }

    /// CONNECT and JOIN (one CONNECT in JSON), retried until they work or the run ends.
    /// Gives up after [`MAX_SETUP_ATTEMPTS`] failures in a row, so that a run bounded by
    /// a request count still ends when the tracker refuses every session.
    async fn enter(&mut self, tracker: &Tracker, plan: &Plan, clock: &Clock) -> bool {
        for _ in 0..MAX_SETUP_ATTEMPTS {
            if clock.finished(plan) {
                return false;
            }
            self.token = None;
            let joined = match tracker.dialect {
                Dialect::Xml => {
                    self.step(tracker, Op::Connect, None).await.is_ok()
                        && self.step(tracker, Op::Join, None).await.is_ok()
                }
                Dialect::Json => self.step(tracker, Op::Connect, None).await.is_ok(),
            };
            if joined {
                return true;
            }
            // Do not spin against a tracker that refuses everything.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    async fn live(mut self, tracker: Arc<Tracker>, plan: Arc<Plan>, clock: Arc<Clock>) {
        let entered = self.enter(&tracker, &plan, &clock).await;
        if let Some(schedule) = &clock.schedule {
            // The open loop's schedule starts once every peer has set up.
            schedule.everyone_joined.wait().await;
        }
        if !entered {
            return;
        }
        let rotation = plan.rotation;
        let mut turn = self.rng.random_range(0..rotation.len());
        while let Some(ticket) = clock.take_ticket(&plan) {
            let op = rotation[turn % rotation.len()];
            turn += 1;
            if let Err(Failure::Http(401) | Failure::Refused(Status::AuthenticationRequired)) =
                self.step(&tracker, op, ticket).await
            {
                // The session is gone (expired or replaced): start over.
                if !self.enter(&tracker, &plan, &clock).await {
                    return;
                }
            }
        }
        let _ = self.step(&tracker, Op::Leave, None).await;
        if tracker.dialect == Dialect::Xml {
            let _ = self.step(&tracker, Op::Disconnect, None).await;
        }
    }
}

/// The run's clock and request budget.
struct Clock {
    started: Instant,
    /// The open loop's schedule; `None` for a closed loop.
    schedule: Option<Schedule>,
}

/// Shortest sleep of an open loop's pacer: requests falling due meanwhile are released
/// together when it wakes.
const PACING_QUANTUM: Duration = Duration::from_micros(200);

/// Send times of an open loop: request `k` is due `k / rate` seconds after the origin.
struct Schedule {
    rate: f64,
    /// Set by the first peer past the barrier.
    origin: OnceLock<Instant>,
    /// Requests handed out so far.
    scheduled: AtomicU64,
    everyone_joined: tokio::sync::Barrier,
    /// One permit per request whose time has come, added by the pacer.
    released: Arc<Semaphore>,
}

impl Schedule {
    /// Starts the task that releases request `k` at `origin + k / rate`. It ends with the
    /// run's time, or once the schedule is dropped (the run stopped after a request count).
    /// Call from within the runtime.
    fn start_pacing(&self, origin: Instant, plan: &Plan) {
        let released = Arc::clone(&self.released);
        let rate = self.rate;
        let end = match &plan.stop {
            Stop::At(duration) => Some(origin + *duration),
            Stop::AfterRequests(_) => None,
        };
        tokio::spawn(async move {
            match Alarm::new() {
                Ok(alarm) => {
                    if let Err(error) = pace(&alarm, &released, origin, rate, end).await {
                        tracing::error!(%error, "the open loop's timer failed; the loop ends");
                    }
                }
                Err(error) => tracing::error!(%error, "no timer for the open loop"),
            }
            // Whoever still waits is released; the run is over for them.
            released.close();
        });
    }
}

/// Releases every request due by now, sleeps until the next is due (at least
/// [`PACING_QUANTUM`]), and again, until `end` or until only this task holds `released`.
async fn pace(
    alarm: &Alarm,
    released: &Arc<Semaphore>,
    origin: Instant,
    rate: f64,
    end: Option<Instant>,
) -> std::io::Result<()> {
    let mut index: u64 = 0;
    while Arc::strong_count(released) > 1 {
        let now = Instant::now();
        if end.is_some_and(|end| now >= end) {
            break;
        }
        // Every request due by now, at once if the task woke late.
        let due = (now.duration_since(origin).as_secs_f64() * rate) as u64 + 1;
        if due > index {
            released.add_permits(usize::try_from(due - index).unwrap_or(usize::MAX));
            index = due;
        }
        let next =
            (origin + Duration::from_secs_f64(index as f64 / rate)).max(now + PACING_QUANTUM);
        alarm
            .sleep(next.saturating_duration_since(Instant::now()))
            .await?;
    }
    Ok(())
}

/// A one-shot timer with the operating system's resolution, waited for in the runtime's
/// event loop, so that a release costs no wake-up of another thread (see the module docs).
#[cfg(any(target_os = "linux", target_os = "android"))]
struct Alarm {
    timer: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Alarm {
    fn new() -> std::io::Result<Self> {
        use rustix::time::{TimerfdClockId, TimerfdFlags, timerfd_create};
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
        )?;
        Ok(Self {
            // Deprecated because it cannot know that a type keeps its descriptor open; an
            // `OwnedFd` does, for as long as the `AsyncFd` holds it.
            #[allow(deprecated)]
            timer: tokio::io::unix::AsyncFd::with_interest(fd, tokio::io::Interest::READABLE)?,
        })
    }

    /// Returns once `duration` has passed.
    async fn sleep(&self, duration: Duration) -> std::io::Result<()> {
        use rustix::time::{Itimerspec, TimerfdTimerFlags, Timespec, timerfd_settime};
        if duration.is_zero() {
            return Ok(());
        }
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let value = Timespec {
            tv_sec: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(duration.subsec_nanos()),
        };
        timerfd_settime(
            self.timer.get_ref(),
            TimerfdTimerFlags::empty(),
            &Itimerspec {
                it_interval: zero,
                it_value: value,
            },
        )?;
        loop {
            let mut ready = self.timer.readable().await?;
            // The expiry count is 8 bytes; reading it re-arms readiness for the next sleep.
            let mut expirations = [0u8; 8];
            match ready.try_io(|timer| {
                rustix::io::read(timer.get_ref(), &mut expirations).map_err(std::io::Error::from)
            }) {
                Ok(result) => return result.map(drop),
                // Readiness was stale: wait for the timer again.
                Err(_would_block) => continue,
            }
        }
    }
}

/// Elsewhere, tokio's timer: one-millisecond resolution, so releases come in bursts.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
struct Alarm;

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl Alarm {
    #[allow(clippy::unnecessary_wraps)]
    fn new() -> std::io::Result<Self> {
        Ok(Self)
    }

    #[allow(clippy::unnecessary_wraps)]
    async fn sleep(&self, duration: Duration) -> std::io::Result<()> {
        tokio::time::sleep(duration).await;
        Ok(())
    }
}

/// The time one request of an open loop is due, and the schedule that releases it.
struct Due<'a> {
    at: Instant,
    schedule: &'a Schedule,
}

impl Due<'_> {
    /// Waits until the pacer has released as many requests as are due by now, then
    /// returns the due time, from which the request's latency counts.
    async fn wait(self) -> Instant {
        if let Ok(permit) = self.schedule.released.acquire().await {
            permit.forget();
        }
        self.at
    }
}

impl Clock {
    fn new(plan: &Plan) -> Self {
        Self {
            started: Instant::now(),
            schedule: plan.rate.map(|rate| Schedule {
                rate,
                origin: OnceLock::new(),
                scheduled: AtomicU64::new(0),
                everyone_joined: tokio::sync::Barrier::new(plan.peers as usize),
                released: Arc::new(Semaphore::new(0)),
            }),
        }
    }

    /// When the loop's time started: at once for a closed loop, once every peer has set
    /// up for an open one.
    fn loop_origin(&self) -> Option<Instant> {
        match &self.schedule {
            None => Some(self.started),
            Some(schedule) => schedule.origin.get().copied(),
        }
    }

    fn finished(&self, plan: &Plan) -> bool {
        match &plan.stop {
            Stop::At(duration) => self
                .loop_origin()
                .is_some_and(|origin| origin.elapsed() >= *duration),
            Stop::AfterRequests(left) => left.load(Ordering::Relaxed) == 0,
        }
    }

    /// Whether the loop may send one more request (`None`: the run is over), and in an
    /// open loop the time it is due.
    fn take_ticket(&self, plan: &Plan) -> Option<Option<Due<'_>>> {
        let due = match &self.schedule {
            None => None,
            Some(schedule) => {
                let origin = *schedule.origin.get_or_init(|| {
                    let origin = Instant::now();
                    schedule.start_pacing(origin, plan);
                    origin
                });
                let index = schedule.scheduled.fetch_add(1, Ordering::Relaxed);
                let offset = Duration::from_secs_f64(index as f64 / schedule.rate);
                if let Stop::At(duration) = &plan.stop {
                    if offset >= *duration {
                        return None;
                    }
                }
                Some(Due {
                    at: origin + offset,
                    schedule,
                })
            }
        };
        let more = match &plan.stop {
            Stop::At(duration) => due.is_some() || self.started.elapsed() < *duration,
            Stop::AfterRequests(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        };
        more.then_some(due)
    }
}

// --- driver and report --------------------------------------------------------------------------

async fn drive(plan: Arc<Plan>) -> Result<String, LoadError> {
    let tracker = Arc::new(Tracker::new(&plan));
    let peers = (0..plan.peers)
        .map(|i| SimPeer::new(&plan, i))
        .collect::<Result<Vec<_>, _>>()?;
    let clock = Arc::new(Clock::new(&plan));
    let mut tasks = tokio::task::JoinSet::new();
    for peer in peers {
        tasks.spawn(peer.live(Arc::clone(&tracker), Arc::clone(&plan), Arc::clone(&clock)));
    }
    // Every request is bounded by the timeout, so this only guards against a stuck runtime.
    let limit = match plan.stop {
        Stop::At(duration) => {
            // An open loop first waits for every peer's set-up, which retries on failure.
            let setup = if plan.rate.is_some() {
                plan.timeout * 2 * MAX_SETUP_ATTEMPTS
            } else {
                Duration::ZERO
            };
            duration + setup + plan.timeout * 4 + Duration::from_secs(10)
        }
        Stop::AfterRequests(_) => Duration::from_secs(86_400),
    };
    let finished =
        tokio::time::timeout(limit, async { while tasks.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        tasks.abort_all();
    }
    let elapsed = clock.loop_origin().unwrap_or(clock.started).elapsed();
    let report = render(&plan, &tracker.recorder, elapsed);
    let answered: u64 = tracker.recorder.latency.iter().map(Histogram::count).sum();
    if answered == 0 {
        return Err(LoadError::NothingAnswered { report });
    }
    Ok(report)
}

fn render(plan: &Plan, recorder: &Recorder, elapsed: Duration) -> String {
    let mut out = String::new();
    let protocol = match plan.dialect {
        Dialect::Xml => "XML (draft-gu-ppsp-tracker-protocol-06)",
        Dialect::Json => "JSON (RFC 7846)",
    };
    let pacing = match plan.rate {
        None => "closed loop".to_owned(),
        Some(rate) => format!("open loop at {rate} req/s"),
    };
    let _ = writeln!(
        out,
        "ppsp bench: {} peers, {} swarms, {} connections, {protocol}, {pacing}, target {}",
        plan.peers, plan.swarms, plan.connections, plan.uri
    );
    let mut total = 0u64;
    let mut total_errors = 0u64;
    let mut rows = String::new();
    let _ = writeln!(
        rows,
        "{:<24} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "method", "requests", "errors", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    let row = |rows: &mut String, label: &str, requests: u64, errors: &str, h: &Histogram| {
        let ms = |micros: u64| micros as f64 / 1000.0;
        let _ = writeln!(
            rows,
            "{:<24} {:>9} {:>7} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            label,
            requests,
            errors,
            ms(h.quantile(0.50)),
            ms(h.quantile(0.90)),
            ms(h.quantile(0.99)),
            ms(h.quantile(0.999)),
            ms(h.max.load(Ordering::Relaxed)),
        );
    };
    for op in Op::ALL {
        let histogram = &recorder.latency[op.index()];
        let errors = recorder.errors[op.index()].load(Ordering::Relaxed);
        let requests = histogram.count() + recorder.unanswered[op.index()].load(Ordering::Relaxed);
        if requests == 0 {
            continue;
        }
        total += requests;
        total_errors += errors;
        row(
            &mut rows,
            op.label(plan.dialect),
            requests,
            &errors.to_string(),
            histogram,
        );
    }
    let delays = recorder.send_delay.count();
    if plan.rate.is_some() && delays > 0 {
        // Not a method: its count is the loop requests again, so it is left out of the
        // total, and it has no errors of its own.
        row(&mut rows, "send delay", delays, "-", &recorder.send_delay);
    }
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let _ = writeln!(
        out,
        "requests {total}  errors {total_errors}  elapsed {seconds:.2} s  throughput {:.1} req/s",
        total as f64 / seconds
    );
    out.push_str(&rows);
    if let Ok(kinds) = recorder.kinds.lock() {
        for (kind, count) in kinds.iter() {
            let _ = writeln!(out, "error {kind}: {count}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_alarm_sleeps_at_least_as_long_as_asked_and_again() {
        let alarm = Alarm::new().expect("timer");
        // A zero sleep returns at once; five short ones in a row each wait for a new expiry
        // (a stale readiness would return early, a lost one would hang until the timeout).
        tokio::time::timeout(Duration::from_secs(5), alarm.sleep(Duration::ZERO))
            .await
            .expect("zero sleep returns")
            .expect("zero sleep");
        let started = Instant::now();
        for _ in 0..5 {
            let before = Instant::now();
            tokio::time::timeout(
                Duration::from_secs(5),
                alarm.sleep(Duration::from_micros(300)),
            )
            .await
            .expect("the timer fires")
            .expect("sleep");
            assert!(before.elapsed() >= Duration::from_micros(300));
        }
        assert!(started.elapsed() >= Duration::from_micros(1_500));
    }

    #[tokio::test]
    async fn the_pacer_releases_what_is_due_and_never_ahead_of_time() {
        let released = Arc::new(Semaphore::new(0));
        let held = Arc::clone(&released);
        let alarm = Alarm::new().expect("timer");
        let rate = 10_000.0;
        let origin = Instant::now();
        let run = Duration::from_millis(100);
        tokio::time::timeout(
            Duration::from_secs(10),
            pace(&alarm, &held, origin, rate, Some(origin + run)),
        )
        .await
        .expect("the pacer ends with its run")
        .expect("pace");
        let permits = released.available_permits();
        // Request k is due at k / rate: none after the end (1,000 of them, and the one at
        // the origin), and all that were due half-way through at the latest, however late
        // the task woke.
        assert!(permits <= 1_001, "{permits} released for 1,001 due");
        assert!(permits >= 501, "only {permits} released");
    }

    #[tokio::test]
    async fn the_pacer_stops_once_nobody_else_holds_the_schedule() {
        let released = Arc::new(Semaphore::new(0));
        let alarm = Alarm::new().expect("timer");
        // No end time and no other holder: the loop has nothing to pace for.
        tokio::time::timeout(
            Duration::from_secs(5),
            pace(&alarm, &released, Instant::now(), 1_000.0, None),
        )
        .await
        .expect("the pacer returns")
        .expect("pace");
        assert_eq!(released.available_permits(), 0);
    }

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for micros in (0..5_000u64).chain((5_000..MAX_RECORDED_MICROS).step_by(9_973)) {
            let bucket = bucket_of(micros);
            assert!(bucket >= last, "bucket order at {micros}");
            last = bucket;
            let top = bucket_top(bucket);
            assert!(top >= micros, "top {top} below {micros}");
            // Relative error bound of the log-linear layout.
            assert!(
                (top - micros) as f64 <= micros as f64 / 256.0 + 1.0,
                "{micros} -> {top}"
            );
        }
        assert!(bucket_of(MAX_RECORDED_MICROS) < Histogram::new().counts.len());
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let histogram = Histogram::new();
        for micros in 1..=10_000 {
            histogram.record(micros);
        }
        assert_eq!(histogram.count(), 10_000);
        let close = |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 * 0.005;
        assert!(
            close(histogram.quantile(0.5), 5_000),
            "{}",
            histogram.quantile(0.5)
        );
        assert!(
            close(histogram.quantile(0.9), 9_000),
            "{}",
            histogram.quantile(0.9)
        );
        assert!(
            close(histogram.quantile(0.99), 9_900),
            "{}",
            histogram.quantile(0.99)
        );
        assert_eq!(histogram.quantile(1.0), 10_000);
        assert_eq!(Histogram::new().quantile(0.5), 0);
    }

    #[test]
    fn the_quick_status_check_knows_the_trackers_own_answers() {
        for status in Status::ALL {
            let response = Response::status(status, Some(TransactionId::numeric(7)));
            let xml = ppsp_proto::xml::encode_response(&response);
            let json = ppsp_proto::json::encode_response(&response);
            let ok = status == Status::Ok;
            assert_eq!(reports_success(Dialect::Xml, xml.as_bytes()), ok, "{xml}");
            assert_eq!(
                reports_success(Dialect::Json, json.as_bytes()),
                ok,
                "{json}"
            );
        }
        // An answer with a token is decoded, so that the peer takes the new token.
        let mut with_token = Response::status(Status::Ok, Some(TransactionId::numeric(8)));
        with_token.auth_token = Some(AuthToken::new("rotated").expect("token"));
        let xml = ppsp_proto::xml::encode_response(&with_token);
        assert!(!reports_success(Dialect::Xml, xml.as_bytes()), "{xml}");
        // Other spellings are not recognised, and so get decoded in full.
        assert!(!reports_success(Dialect::Json, b"{\"error_code\": 0}"));
        assert!(!reports_success(Dialect::Xml, b"<Response> OK </Response>"));
    }

    #[test]
    fn every_step_encodes_in_both_dialects() {
        let plan = Plan::from_args(&LoadArgs {
            tracker: "http://127.0.0.1:1/".to_owned(),
            peers: 2,
            swarms: 1,
            duration: None,
            requests: Some(1),
            connections: 1,
            threads: 1,
            json: false,
            chunk_map_bits: 100,
            timeout: 1.0,
            rate: None,
            mix: Mix::All,
        })
        .expect("valid plan");
        let limits = Limits::default();
        for index in 0..2 {
            let mut peer = SimPeer::new(&plan, index).expect("peer");
            peer.token = Some(AuthToken::new("token").expect("token"));
            for op in Op::ALL {
                let request = peer.build(Dialect::Xml, op);
                let xml = ppsp_proto::xml::encode_request(&request);
                assert!(
                    ppsp_proto::xml::decode_request(xml.as_bytes(), &limits).is_ok(),
                    "{xml}"
                );
                let request = peer.build(Dialect::Json, op);
                let json = ppsp_proto::json::encode_request(&request);
                assert!(
                    ppsp_proto::json::decode_request(json.as_bytes(), &limits).is_ok(),
                    "{json}"
                );
            }
        }
    }

    #[test]
    fn bad_targets_are_refused() {
        let args = |tracker: &str| LoadArgs {
            tracker: tracker.to_owned(),
            peers: 1,
            swarms: 1,
            duration: Some(1.0),
            requests: None,
            connections: 1,
            threads: 1,
            json: false,
            chunk_map_bits: 8,
            timeout: 1.0,
            rate: None,
            mix: Mix::All,
        };
        assert!(Plan::from_args(&args("https://127.0.0.1:1/")).is_err());
        assert!(Plan::from_args(&args("127.0.0.1:7070")).is_err());
        assert!(Plan::from_args(&args("http://127.0.0.1:7070/")).is_ok());
    }
}
