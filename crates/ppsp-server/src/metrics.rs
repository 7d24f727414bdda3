//! The tracker's Prometheus metrics, kept with `prometheus-client`.
//!
//! Every counter and histogram is an atomic updated on the request path; label sets are
//! small `&'static str` tuples, so a request costs a read-locked hash lookup and a few
//! atomic adds. Gauges that describe the tracker state (sessions, swarms, peers by mode) are
//! set from the tracker when `/metrics` is scraped. The exposition is OpenMetrics text
//! (`application/openmetrics-text; version=1.0.0`), which Prometheus reads natively.
//!
//! The full list of series, with their labels, is in `docs/tracker.md`.

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ppsp_proto::{Method, PeerMode, Status};
use ppsp_tracker_core::Cap;
use ppsp_tracker_core::Format as Dialect;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// Content type of [`Metrics::encode`]'s output.
pub(crate) const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the server refused a request before or instead of the tracker answering it.
///
/// One value of the `cause` label of `ppsp_refusals_total`; add a variant for a new kind of
/// refusal rather than a new counter.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum RefusalCause {
    /// CONNECT answered 401: credentials missing, wrong or unusable.
    authentication,
    /// CONNECT answered 503 because its source or PeerID failed too often recently.
    failed_connect_holdoff,
    /// CONNECT answered 503 because no password-check slot freed up in time.
    load_shedding,
    /// Body over `limits.max_body_bytes` or, once decompressed, `max_decompressed_bytes`.
    body_limit,
    /// The tracker's session cap (`tracker.max_sessions`).
    sessions,
    /// The per-address session cap (`tracker.max_sessions_per_address`).
    sessions_per_address,
    /// The swarm cap (`tracker.max_swarms`).
    swarms,
    /// The tracker-wide chunk-map memory cap (`tracker.max_chunk_map_bytes`).
    chunk_map_bytes,
    /// The per-membership chunk-map cap (`tracker.max_chunk_map_bytes_per_member`).
    chunk_map_bytes_per_member,
    /// The per-session chunk-map cap (`tracker.max_chunk_map_bytes_per_session`).
    chunk_map_bytes_per_session,
}

impl RefusalCause {
    /// Every cause, so each series exists (at 0) from the start.
    const ALL: [Self; 10] = [
        Self::authentication,
        Self::failed_connect_holdoff,
        Self::load_shedding,
        Self::body_limit,
        Self::sessions,
        Self::sessions_per_address,
        Self::swarms,
        Self::chunk_map_bytes,
        Self::chunk_map_bytes_per_member,
        Self::chunk_map_bytes_per_session,
    ];

    /// The cause a tracker cap is counted under.
    fn of_cap(cap: Cap) -> Option<Self> {
        Some(match cap {
            Cap::Sessions => Self::sessions,
            Cap::SessionsPerAddress => Self::sessions_per_address,
            Cap::Swarms => Self::swarms,
            Cap::ChunkMapBytes => Self::chunk_map_bytes,
            Cap::ChunkMapBytesPerMember => Self::chunk_map_bytes_per_member,
            Cap::ChunkMapBytesPerSession => Self::chunk_map_bytes_per_session,
            _ => return None,
        })
    }
}

/// Which way reported bytes went, from the reporting peer's point of view.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum Direction {
    /// Sent to other peers.
    uploaded,
    /// Received from other peers.
    downloaded,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    protocol: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: RefusalCause,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: Direction,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

/// Method label of a request that could not be decoded, so its method is unknown.
pub(crate) const UNDECODED_METHOD: &str = "unknown";

/// Series of the requests family: each method and the undecoded one, times two protocols,
/// times the statuses.
/// The HTTP status codes the server answers with, every one but the rarest.
const COMMON_HTTP_CODES: [u16; 15] = [
    200, 204, 304, 400, 401, 403, 404, 405, 406, 408, 413, 415, 429, 500, 503,
];

const REQUEST_SERIES: usize = (Method::ALL.len() + 1) * 2 * Status::ALL.len();

/// The version this binary was built from.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The source commit, when the build environment sets `PPSP_GIT_COMMIT` (for example
/// `PPSP_GIT_COMMIT=$(git rev-parse HEAD) cargo build`); "unknown" otherwise. Read at compile
/// time, so no build script and no git are needed to build.
pub(crate) const GIT_COMMIT: &str = match option_env!("PPSP_GIT_COMMIT") {
    Some(commit) => commit,
    None => "unknown",
};

/// Latency buckets: 10 µs to about 2.6 s, each four times the one before. Core calls take
/// microseconds; CONNECTs that check a password hash take tens of milliseconds.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 4.0, 10))
}

/// Every metric the server keeps, and the registry that encodes them.
#[derive(Debug)]
pub(crate) struct Metrics {
    started: Instant,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// The series of `requests` met so far, by method (or undecoded), protocol and status:
    /// counting a request then needs no lock and no hashing of its labels.
    request_series: Box<[OnceLock<Counter>]>,
    latency: HistogramFamily<MethodLabels>,
    /// The series of `latency` met so far, by method.
    latency_series: [OnceLock<Histogram>; Method::ALL.len()],
    http_responses: Family<CodeLabels, Counter>,
    /// The series of `http_responses` met so far, for the codes of [`COMMON_HTTP_CODES`]:
    /// counting a response then takes neither the family's lock nor a hash of its label.
    http_series: [OnceLock<Counter>; COMMON_HTTP_CODES.len()],
    refusals: Family<CauseLabels, Counter>,
    reported_bytes: Family<DirectionLabels, Counter>,
    peers: Family<ModeLabels, Gauge>,
    sessions: Gauge,
    swarms: Gauge,
    /// Sessions removed by the inactivity timer.
    pub(crate) sessions_expired: Counter,
    /// Swarm memberships removed when their ExpireTime passed.
    pub(crate) memberships_expired: Counter,
    /// Swarm memberships started (JOIN, or a JSON CONNECT's join action, answered 200).
    pub(crate) swarm_joins: Counter,
    /// Swarm memberships ended by LEAVE (or a JSON leave action) answered 200.
    pub(crate) swarm_leaves: Counter,
    /// HTTP connections accepted.
    pub(crate) connections_total: Counter,
    /// HTTP connections open now.
    pub(crate) connections_open: Gauge,
    /// STUN Binding requests answered.
    pub(crate) stun_answers: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `ppsp_` prefix, plus `process_start_time_seconds`.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let start = Gauge::<f64, AtomicU64>::default();
        start.set(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs_f64(),
        );
        registry.register_with_unit(
            "process_start_time",
            "Start time of the process since the Unix epoch.",
            Unit::Seconds,
            start,
        );
        let ppsp = registry.sub_registry_with_prefix("ppsp");
        ppsp.register(
            "build",
            "Version and source commit of the running tracker.",
            Info::new(BuildLabels {
                version: VERSION,
                commit: GIT_COMMIT,
            }),
        );
        let metrics_requests = Family::<RequestLabels, Counter>::default();
        ppsp.register(
            "requests",
            "PPSP requests answered, by method, protocol (xml, json) and PPSP status.",
            metrics_requests.clone(),
        );
        let latency: HistogramFamily<MethodLabels> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        ppsp.register_with_unit(
            "request_duration",
            "Time the tracker took to answer a decoded request (password checks included), by method.",
            Unit::Seconds,
            latency.clone(),
        );
        let http_responses = Family::<CodeLabels, Counter>::default();
        ppsp.register(
            "http_responses",
            "HTTP responses sent, by status code.",
            http_responses.clone(),
        );
        let refusals = Family::<CauseLabels, Counter>::default();
        ppsp.register(
            "refusals",
            "Requests refused by the server, by cause.",
            refusals.clone(),
        );
        let reported_bytes = Family::<DirectionLabels, Counter>::default();
        ppsp.register_with_unit(
            "reported",
            "Bytes peers reported moving in STAT_REPORTs (increase of their per-swarm totals).",
            Unit::Bytes,
            reported_bytes.clone(),
        );
        let peers = Family::<ModeLabels, Gauge>::default();
        ppsp.register("peers", "Swarm memberships, by peer mode.", peers.clone());
        let sessions = Gauge::default();
        ppsp.register(
            "sessions",
            "Registered peers (live sessions).",
            sessions.clone(),
        );
        let swarms = Gauge::default();
        ppsp.register("swarms", "Swarms with at least one member.", swarms.clone());
        let sessions_expired = Counter::default();
        ppsp.register(
            "sessions_expired",
            "Sessions removed by the inactivity timer.",
            sessions_expired.clone(),
        );
        let memberships_expired = Counter::default();
        ppsp.register(
            "memberships_expired",
            "Swarm memberships removed when their ExpireTime passed.",
            memberships_expired.clone(),
        );
        let swarm_joins = Counter::default();
        ppsp.register(
            "swarm_joins",
            "Swarm memberships started (JOIN or a JSON join action answered OK).",
            swarm_joins.clone(),
        );
        let swarm_leaves = Counter::default();
        ppsp.register(
            "swarm_leaves",
            "Swarm memberships ended by LEAVE or a JSON leave action answered OK.",
            swarm_leaves.clone(),
        );
        let connections_total = Counter::default();
        ppsp.register(
            "connections",
            "HTTP connections accepted.",
            connections_total.clone(),
        );
        let connections_open = Gauge::default();
        ppsp.register(
            "connections_open",
            "HTTP connections open now.",
            connections_open.clone(),
        );
        let stun_answers = Counter::default();
        ppsp.register(
            "stun_answers",
            "STUN Binding requests answered.",
            stun_answers.clone(),
        );
        let metrics = Self {
            started: Instant::now(),
            registry,
            requests: metrics_requests,
            request_series: (0..REQUEST_SERIES).map(|_| OnceLock::new()).collect(),
            latency,
            latency_series: std::array::from_fn(|_| OnceLock::new()),
            http_responses,
            http_series: std::array::from_fn(|_| OnceLock::new()),
            refusals,
            reported_bytes,
            peers,
            sessions,
            swarms,
            sessions_expired,
            memberships_expired,
            swarm_joins,
            swarm_leaves,
            connections_total,
            connections_open,
            stun_answers,
        };
        // Series that exist from the start, so rates and alerts work before the first event.
        for mode in [PeerMode::Seed, PeerMode::LiveSeed, PeerMode::Leech] {
            metrics.set_peers(mode, 0);
        }
        for direction in [Direction::uploaded, Direction::downloaded] {
            metrics.add_reported_bytes(direction, 0);
        }
        for cause in RefusalCause::ALL {
            drop(metrics.refusals.get_or_create(&CauseLabels { cause }));
        }
        metrics
    }

    /// Counts one answered PPSP request; `method` is [`UNDECODED_METHOD`] when the body
    /// could not be decoded.
    pub(crate) fn count_request(&self, method: &'static str, dialect: Dialect, status: Status) {
        let method_index = Method::ALL
            .iter()
            .position(|m| m.as_str() == method)
            .unwrap_or(Method::ALL.len());
        let status_index = Status::ALL
            .iter()
            .position(|s| *s == status)
            .unwrap_or_default();
        let dialect_index = match dialect {
            Dialect::Xml => 0,
            Dialect::Json => 1,
        };
        let index = (method_index * 2 + dialect_index) * Status::ALL.len() + status_index;
        let labels = || RequestLabels {
            method,
            protocol: protocol_name(dialect),
            status: status_label(status),
        };
        with_series(
            self.request_series.get(index),
            &self.requests,
            &labels(),
            |c| {
                c.inc();
            },
        );
    }

    /// Answers with `status` so far, over every method and protocol.
    pub(crate) fn responses_with(&self, status: Status) -> u64 {
        Method::ALL
            .iter()
            .map(|m| m.as_str())
            .chain([UNDECODED_METHOD])
            .map(|method| self.requests_with(method, status))
            .sum()
    }

    /// Time since the metrics (and so the server) started.
    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Records how long the tracker took to answer a request of `method`.
    pub(crate) fn observe_latency(&self, method: Method, elapsed: Duration) {
        let series = Method::ALL
            .iter()
            .position(|m| *m == method)
            .and_then(|index| self.latency_series.get(index));
        let labels = MethodLabels {
            method: method.as_str(),
        };
        with_series(series, &self.latency, &labels, |h| {
            h.observe(elapsed.as_secs_f64());
        });
    }

    /// Requests answered per method so far (index = position in [`Method::ALL`]).
    pub(crate) fn requests_by_method(&self) -> [u64; 7] {
        Method::ALL.map(|method| {
            Status::ALL
                .iter()
                .map(|status| self.requests_with(method.as_str(), *status))
                .sum()
        })
    }

    /// Requests of `method` answered with `status`, over both protocols.
    fn requests_with(&self, method: &'static str, status: Status) -> u64 {
        [Dialect::Xml, Dialect::Json]
            .iter()
            .map(|dialect| {
                self.requests
                    .get(&RequestLabels {
                        method,
                        protocol: protocol_name(*dialect),
                        status: status_label(status),
                    })
                    .map_or(0, |counter| counter.get())
            })
            .sum()
    }

    /// Counts one HTTP response.
    pub(crate) fn count_http_status(&self, code: u16) {
        let series = COMMON_HTTP_CODES
            .iter()
            .position(|common| *common == code)
            .and_then(|index| self.http_series.get(index));
        let labels = CodeLabels { code };
        with_series(series, &self.http_responses, &labels, |c| {
            c.inc();
        });
    }

    /// Counts one refusal.
    pub(crate) fn refuse(&self, cause: RefusalCause) {
        self.refusals.get_or_create(&CauseLabels { cause }).inc();
    }

    /// Brings the cap refusal counters up to the tracker's own counts (indexed like
    /// [`Cap::ALL`]); the tracker counts them where it refuses, this only mirrors them.
    pub(crate) fn set_cap_refusals(&self, counts: &[u64; Cap::ALL.len()]) {
        for (cap, count) in Cap::ALL.iter().zip(counts) {
            let Some(cause) = RefusalCause::of_cap(*cap) else {
                continue;
            };
            let counter = self.refusals.get_or_create(&CauseLabels { cause });
            let seen = counter.get();
            if *count > seen {
                counter.inc_by(count - seen);
            }
        }
    }

    /// Refusals of `cause` so far.
    #[cfg(test)]
    pub(crate) fn refusals(&self, cause: RefusalCause) -> u64 {
        self.refusals
            .get(&CauseLabels { cause })
            .map_or(0, |counter| counter.get())
    }

    /// Adds reported bytes.
    pub(crate) fn add_reported_bytes(&self, direction: Direction, bytes: u64) {
        self.reported_bytes
            .get_or_create(&DirectionLabels { direction })
            .inc_by(bytes);
    }

    /// Reported bytes so far in `direction`.
    pub(crate) fn reported_bytes(&self, direction: Direction) -> u64 {
        self.reported_bytes
            .get(&DirectionLabels { direction })
            .map_or(0, |counter| counter.get())
    }

    /// Sets the state gauges from the tracker's totals.
    pub(crate) fn set_state(&self, sessions: usize, swarms: usize) {
        self.sessions.set(saturating_i64(sessions));
        self.swarms.set(saturating_i64(swarms));
    }

    /// Sets the membership gauge of one mode.
    pub(crate) fn set_peers(&self, mode: PeerMode, count: usize) {
        self.peers
            .get_or_create(&ModeLabels {
                mode: mode_name(mode),
            })
            .set(saturating_i64(count));
    }

    /// The OpenMetrics text of every metric.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail; an encoder error would mean a broken label,
        // and the partial text is still the most useful answer.
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("metrics encoding failed: {err}");
        }
        out
    }
}

/// Applies `update` to the series of `family` for `labels`. With a `cache` slot the series
/// is looked up once and kept there, so that later updates take neither the family's lock
/// nor a hash of the labels; without one (a label value outside the cached set) it is
/// looked up every time.
fn with_series<L, M, C>(
    cache: Option<&OnceLock<M>>,
    family: &Family<L, M, C>,
    labels: &L,
    update: impl FnOnce(&M),
) where
    L: Clone + std::hash::Hash + Eq,
    M: Clone,
    C: MetricConstructor<M>,
{
    match cache {
        Some(slot) => update(slot.get_or_init(|| family.get_or_create(labels).clone())),
        None => update(&family.get_or_create(labels)),
    }
}

fn saturating_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The `protocol` label: `xml` for the draft's XML, `json` for RFC 7846.
pub(crate) fn protocol_name(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Xml => "xml",
        Dialect::Json => "json",
    }
}

/// A PPSP status as a label: the draft's status string, `OK` for success.
pub(crate) fn status_label(status: Status) -> &'static str {
    match status {
        Status::Ok => "OK",
        other => other.ppsp_str(),
    }
}

/// A peer mode as the XML protocol writes it.
pub(crate) fn mode_name(mode: PeerMode) -> &'static str {
    mode.xml_name()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_series() {
        let metrics = Metrics::new();
        metrics.count_request("JOIN", Dialect::Xml, Status::Ok);
        metrics.count_request("JOIN", Dialect::Xml, Status::Ok);
        metrics.count_request(UNDECODED_METHOD, Dialect::Json, Status::InvalidSyntax);
        metrics.observe_latency(Method::Join, Duration::from_micros(30));
        metrics.refuse(RefusalCause::body_limit);
        metrics.add_reported_bytes(Direction::uploaded, 4096);
        // A common code (a cached series) and a rare one (looked up in the family).
        metrics.count_http_status(200);
        metrics.count_http_status(200);
        metrics.count_http_status(418);
        let text = metrics.encode();
        for line in [
            "ppsp_http_responses_total{code=\"200\"} 2",
            "ppsp_http_responses_total{code=\"418\"} 1",
            "ppsp_requests_total{method=\"JOIN\",protocol=\"xml\",status=\"OK\"} 2",
            "ppsp_requests_total{method=\"unknown\",protocol=\"json\",status=\"INVALID SYNTAX\"} 1",
            "ppsp_request_duration_seconds_count{method=\"JOIN\"} 1",
            "ppsp_refusals_total{cause=\"body_limit\"} 1",
            "ppsp_reported_bytes_total{direction=\"uploaded\"} 4096",
            "ppsp_reported_bytes_total{direction=\"downloaded\"} 0",
            "ppsp_peers{mode=\"LIVESEED\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(text.contains("ppsp_build_info{version=\""));
        assert!(text.contains("process_start_time_seconds "));
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(metrics.requests_by_method()[2], 2);
        assert_eq!(metrics.responses_with(Status::InvalidSyntax), 1);
        assert_eq!(metrics.refusals(RefusalCause::body_limit), 1);
    }

    #[test]
    fn every_label_combination_has_a_series_of_its_own() {
        let metrics = Metrics::new();
        let methods = Method::ALL.map(Method::as_str);
        for method in methods.iter().copied().chain([UNDECODED_METHOD]) {
            for dialect in [Dialect::Xml, Dialect::Json] {
                for status in Status::ALL {
                    metrics.count_request(method, dialect, status);
                }
            }
        }
        for method in methods.iter().copied().chain([UNDECODED_METHOD]) {
            for status in Status::ALL {
                // One count per protocol, nothing more.
                assert_eq!(
                    metrics.requests_with(method, status),
                    2,
                    "{method} {status:?}"
                );
            }
        }
    }
}
